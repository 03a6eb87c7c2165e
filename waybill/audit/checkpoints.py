"""Signed checkpoints of the audit chains: every shard's head, signed with Ed25519, in an append-only log.

A hash chain alone cannot show that its tail was deleted and its head moved back to the new last event: what is
left is consistent. A checkpoint (a Certificate Transparency "signed tree head" for each chain) records every
shard's head (place, hash) at a moment, links to the previous checkpoint by its hash, and is signed with a key
that has that one purpose (the key file's ``audit_checkpoint`` secret, through HKDF-SHA256, is the Ed25519 seed).
:mod:`waybill.audit.logcheck` then checks each chain against the checkpoints: a head behind one, or a chain whose
hash at a checkpoint's place is not the signed one, fails.

The signed message is plain text, one ``LF``-terminated line each (UTF-8)::

    waybill-audit-checkpoint/v1
    id <checkpoint number: 1, 2, 3...>
    at <UTC time, YYYY-MM-DDTHH:MM:SSZ>
    tree_size <sum of the heads' places: events in the log>
    prev <hex SHA-256 of the previous checkpoint's message; 64 zeros for the first>
    head <shard> <place> <hex hash of the event at that place>      (one line per shard, shards ascending)

Its SHA-256 is the checkpoint's ``hash`` (the next one's ``prev``). Anyone holding only the public key (raw 32
bytes, base64; ``GET /v1/audit/checkpoints`` or ``waybill audit public-key``) can check a checkpoint: the
signature over ``signed`` (the message), and the fields against the message (:func:`check_document`).

A verify that found every chain sound up to a checkpoint writes a signed confirmation (same key, its own header
``waybill-audit-verified/v1``), from which an incremental verify may start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from waybill.audit.chain import GENESIS
from waybill.audit.models import AuditCheckpoint, AuditVerification
from waybill.keyfile import KeyMaterial
from waybill.models import AuditEvent, AuditHead, utcnow
from waybill.permissions import Permission, Principal

HEADER = "waybill-audit-checkpoint/v1"
VERIFIED_HEADER = "waybill-audit-verified/v1"
SECRET_PURPOSE = "audit_checkpoint"  # noqa: S105 (a key-file purpose, not a secret)
_HKDF_INFO = b"waybill audit checkpoint ed25519 v1"
_HEAD, _EVENTS = cast(Table, AuditHead.__table__), cast(Table, AuditEvent.__table__)
_HEX64 = r"[0-9a-f]{64}"
_LINES = {"id": r"[1-9][0-9]{0,17}", "at": r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
          "tree_size": r"0|[1-9][0-9]{0,18}", "prev": _HEX64}
_HEAD_LINE = re.compile(rf"head (0|[1-9][0-9]{{0,2}}) (0|[1-9][0-9]{{0,18}}) ({_HEX64})")


class CheckpointInvalid(ValueError):
    """A checkpoint (or confirmation) that does not check out; ``reason`` says why (an English phrase)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CheckpointRefused(RuntimeError):
    """A chain no longer extends the previous checkpoint: signing its head now would bless a rewound chain
    (``shard`` -1, ``seq`` the checkpoint's id: the previous checkpoint itself does not check)."""

    def __init__(self, shard: int, seq: int, reason: str) -> None:
        self.shard, self.seq, self.reason = shard, seq, reason
        super().__init__(f"shard {shard} at {seq}: {reason}")


@dataclass(frozen=True)
class SignedHead:
    shard: int
    seq: int
    hash: bytes


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint's message says (parsed back from the signed text: the signed text is the truth)."""

    id: int
    at: datetime
    tree_size: int
    prev_hash: bytes
    heads: tuple[SignedHead, ...]

    def message(self) -> str:
        lines = [HEADER, f"id {self.id}", f"at {_stamp(self.at)}", f"tree_size {self.tree_size}",
                 f"prev {self.prev_hash.hex()}"]
        lines += [f"head {h.shard} {h.seq} {h.hash.hex()}" for h in self.heads]
        return "".join(line + "\n" for line in lines)

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.message().encode()).digest()

    def places(self) -> dict[int, tuple[int, bytes]]:
        """``shard -> (place, hash)``: where an incremental verify starts."""
        return {h.shard: (h.seq, h.hash) for h in self.heads}


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(body: str) -> Checkpoint:
    """The checkpoint a signed message describes; :class:`CheckpointInvalid` for anything but the format above."""
    if not body.endswith("\n"):
        raise CheckpointInvalid("malformed message")
    lines = body[:-1].split("\n")
    if len(lines) < 5 or lines[0] != HEADER:
        raise CheckpointInvalid("malformed message")
    values: dict[str, str] = {}
    for line, name in zip(lines[1:5], _LINES, strict=True):
        label, _, value = line.partition(" ")
        if label != name or not re.fullmatch(_LINES[name], value):
            raise CheckpointInvalid("malformed message")
        values[name] = value
    heads: list[SignedHead] = []
    for line in lines[5:]:
        m = _HEAD_LINE.fullmatch(line)
        if m is None or (heads and int(m[1]) <= heads[-1].shard):
            raise CheckpointInvalid("malformed message")
        heads.append(SignedHead(int(m[1]), int(m[2]), bytes.fromhex(m[3])))
    cp = Checkpoint(int(values["id"]), datetime.strptime(values["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
                    int(values["tree_size"]), bytes.fromhex(values["prev"]), tuple(heads))
    if cp.message() != body or cp.tree_size != sum(h.seq for h in heads):
        raise CheckpointInvalid("malformed message")
    return cp


class Signer:
    """The checkpoint key: Ed25519, its seed derived from the key file's ``audit_checkpoint`` secret."""

    def __init__(self, keys: KeyMaterial) -> None:
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            keys.secret(SECRET_PURPOSE))
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = public_key_bytes(self._private.public_key())
        self.key_id = key_id(self.public_key)

    def sign(self, message: str) -> bytes:
        return self._private.sign(message.encode())


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> str:
    """A short name of a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def check_signature(public_key: bytes, message: str, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def check_row(row: AuditCheckpoint, public_key: bytes) -> Checkpoint:
    """The checkpoint a stored row holds, or :class:`CheckpointInvalid` (bad signature, edited row)."""
    if not check_signature(public_key, row.body, bytes(row.signature)):
        raise CheckpointInvalid("bad signature")
    cp = parse(row.body)
    if (cp.id != row.id or not hmac.compare_digest(cp.hash, bytes(row.hash))
            or cp.prev_hash != bytes(row.prev_hash) or cp.tree_size != row.tree_size):
        raise CheckpointInvalid("row differs from its signed message")
    return cp


def document(row: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as the API lists it and the witness keeps it (JSON)."""
    cp = parse(row.body)
    return {"id": row.id, "at": _stamp(row.at), "tree_size": row.tree_size,
            "heads": [{"shard": h.shard, "seq": h.seq, "hash": h.hash.hex()} for h in cp.heads],
            "prev_hash": bytes(row.prev_hash).hex(), "hash": bytes(row.hash).hex(), "key_id": row.key_id,
            "signature": base64.b64encode(bytes(row.signature)).decode(), "signed": row.body}


def check_document(doc: Mapping[str, Any], public_key: bytes) -> Checkpoint:
    """Check a checkpoint document with the public key alone: the signature over ``signed``, then every field
    against the signed message. :class:`CheckpointInvalid` names what failed."""
    try:
        body, signature = str(doc["signed"]), base64.b64decode(str(doc["signature"]), validate=True)
    except (KeyError, ValueError):
        raise CheckpointInvalid("malformed document") from None
    if not check_signature(public_key, body, signature):
        raise CheckpointInvalid("bad signature")
    cp = parse(body)
    heads = [{"shard": h.shard, "seq": h.seq, "hash": h.hash.hex()} for h in cp.heads]
    if (doc.get("id") != cp.id or doc.get("heads") != heads or doc.get("prev_hash") != cp.prev_hash.hex()
            or doc.get("hash") != cp.hash.hex() or doc.get("tree_size") != cp.tree_size):
        raise CheckpointInvalid("document differs from its signed message")
    return cp


def read_witness_file(path: Path) -> list[dict[str, Any] | None]:
    """The documents of a witness file, in order (``None`` for a line that is not a JSON object)."""
    docs: list[dict[str, Any] | None] = []
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            docs.append(doc if isinstance(doc, dict) else None)
    return docs


def latest(session: Session) -> AuditCheckpoint | None:
    return session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)).first()


def create(session: Session, signer: Signer, *, now: datetime | None = None) -> AuditCheckpoint:
    """Sign every shard's head into the next checkpoint (flushed, not committed).

    Refused (:class:`CheckpointRefused`) when a chain no longer extends the previous checkpoint: its head is behind
    the signed place, or the event at that place no longer has the signed hash (one index probe per shard).
    Two creators at once: the second one's insert of the same id fails (the primary key) at flush.
    """
    now = (now or utcnow()).replace(microsecond=0)
    heads = [SignedHead(int(r[0]), int(r[1]), bytes(r[2]))
             for r in session.execute(select(_HEAD.c.id, _HEAD.c.seq, _HEAD.c.hash).order_by(_HEAD.c.id))
             if int(r[1]) > 0]
    last = latest(session)
    prev = GENESIS
    if last is not None:
        try:
            previous = check_row(last, signer.public_key)
        except CheckpointInvalid as exc:  # a forged or damaged last row: nothing can be linked to it
            raise CheckpointRefused(-1, last.id, f"the last checkpoint does not check ({exc.reason})") from None
        prev = previous.hash
        current = {h.shard: h for h in heads}
        for signed in previous.heads:
            head = current.get(signed.shard)
            if head is None or head.seq < signed.seq:
                raise CheckpointRefused(signed.shard, signed.seq, "head behind the previous checkpoint")
            found = session.execute(select(_EVENTS.c.hash).where(
                _EVENTS.c.shard == signed.shard, _EVENTS.c.shard_seq == signed.seq)).scalar()
            if found is None or not hmac.compare_digest(bytes(found), signed.hash):
                raise CheckpointRefused(signed.shard, signed.seq, "chain differs from the previous checkpoint")
    cp = Checkpoint(last.id + 1 if last else 1, now, sum(h.seq for h in heads), prev, tuple(heads))
    body = cp.message()
    row = AuditCheckpoint(id=cp.id, at=now, tree_size=cp.tree_size, prev_hash=prev, hash=cp.hash,
                          key_id=signer.key_id, body=body, signature=signer.sign(body))
    session.add(row)
    session.flush()
    return row


def confirmation_message(checkpoint: Checkpoint, from_id: int | None, events: int, at: datetime) -> str:
    lines = [VERIFIED_HEADER, f"checkpoint {checkpoint.id} {checkpoint.hash.hex()}",
             f"from {from_id if from_id is not None else '-'}", f"events {events}", f"at {_stamp(at)}"]
    return "".join(line + "\n" for line in lines)


def confirm(session: Session, signer: Signer, checkpoint: Checkpoint, *, from_id: int | None, events: int,
            now: datetime | None = None) -> AuditVerification:
    """Record (signed) that a verify found every chain sound up to ``checkpoint``."""
    at = (now or utcnow()).replace(microsecond=0)
    row = AuditVerification(at=at, checkpoint_id=checkpoint.id, checkpoint_hash=checkpoint.hash,
                            from_checkpoint_id=from_id, events=events,
                            signature=signer.sign(confirmation_message(checkpoint, from_id, events, at)))
    session.add(row)
    session.flush()
    return row


def last_confirmed(session: Session, public_key: bytes) -> tuple[Checkpoint | None, dict[str, Any] | None]:
    """The checkpoint the latest confirmation names, checked (its signature, the checkpoint's row and signature);
    or ``(None, problem)`` when that confirmation or its checkpoint is forged; ``(None, None)`` when there is none."""
    row = session.scalars(select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1)).first()
    if row is None:
        return None, None
    stored = session.get(AuditCheckpoint, row.checkpoint_id)
    problem = {"verification": row.id, "checkpoint": row.checkpoint_id}
    if stored is None:
        return None, {**problem, "reason": "confirmed checkpoint missing"}
    try:
        cp = check_row(stored, public_key)
    except CheckpointInvalid as exc:
        return None, {**problem, "reason": f"confirmed checkpoint: {exc.reason}"}
    message = confirmation_message(cp, row.from_checkpoint_id, row.events, row.at)
    if bytes(row.checkpoint_hash) != cp.hash or not check_signature(public_key, message, bytes(row.signature)):
        return None, {**problem, "reason": "bad confirmation signature"}
    return cp, None


def list_checkpoints(session: Session, principal: Principal, signer: Signer, *, limit: int,
                     before: int | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Checkpoints newest first for auditors (no personal data), as documents; the read is itself audited."""
    from waybill.audit import record

    principal.require(Permission.AUDIT_READ)
    stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(limit + 1)
    if before is not None:
        stmt = stmt.where(AuditCheckpoint.id < before)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    record(session, principal, "audit.checkpoints_read")
    return [document(r) for r in rows], str(rows[-1].id) if more and rows else None
