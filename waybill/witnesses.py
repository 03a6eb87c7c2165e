"""Audit checkpoint witnesses: copies of the checkpoints outside the database, so deleting checkpoint rows is caught.

``WAYBILL_AUDIT_WITNESS`` is a file path or an ``http(s)://`` URL:

- a file gets one JSON document per line (:func:`waybill.audit.checkpoints.document`), appended under an exclusive
  lock and fsynced; each publication appends every checkpoint newer than the file's last line, so a run whose
  append failed is made good by the next. Put it on storage the database's administrators cannot rewrite
  (another host, an append-only mount). `waybill audit verify` reads it back (``--witness FILE`` too).
- a URL gets each checkpoint POSTed as ``application/json`` (the document is signed already); anything but a
  ``2xx`` raises :class:`WitnessFailed` (the scheduled task is retried by the outbox). The operator's own
  endpoint: internal addresses are allowed, redirects are not followed (the webhooks' transport).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import audit
from waybill.audit.checkpoints import CheckpointRefused, Signer, create, document, read_witness_file
from waybill.audit.models import AuditCheckpoint
from waybill.permissions import Principal
from waybill.uow import UnitOfWork
from waybill.webhooks import guard
from waybill.webhooks.transport import HttpTransport, Transport

log = logging.getLogger("waybill.audit")


class WitnessFailed(RuntimeError):
    """The witness did not take the checkpoint (``reason``: an enum-like code)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Witness(Protocol):
    def publish(self, session: Session, row: AuditCheckpoint) -> int:
        """Hand the witness ``row`` (and what it missed); returns how many checkpoints it was given."""
        ...


class FileWitness:
    """Appends JSON lines to a file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _last_id(self) -> int:
        if not self.path.exists():
            return 0
        ids = [d["id"] for d in read_witness_file(self.path) if d is not None and isinstance(d.get("id"), int)]
        return max(ids, default=0)

    def publish(self, session: Session, row: AuditCheckpoint) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two processes of one host never interleave their lines
            last = self._last_id()
            rows: Sequence[AuditCheckpoint] = session.scalars(
                select(AuditCheckpoint).where(AuditCheckpoint.id > last, AuditCheckpoint.id <= row.id)
                .order_by(AuditCheckpoint.id)).all()
            data = b"".join(json.dumps(document(r), separators=(",", ":")).encode() + b"\n" for r in rows)
            if data:
                os.write(fd, data)
                os.fsync(fd)
            return len(rows)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class UrlWitness:
    """POSTs each checkpoint to an endpoint of the operator's (see the module docstring)."""

    def __init__(self, url: str, transport: Transport | None = None) -> None:
        self.url = url
        self._transport = transport or HttpTransport()

    def publish(self, session: Session, row: AuditCheckpoint) -> int:
        try:
            target = guard.resolve(self.url, allow_private=True)
        except guard.BlockedAddress as exc:
            raise WitnessFailed(exc.reason) from None
        body = json.dumps(document(row), separators=(",", ":")).encode()
        answer = self._transport.post(target, {"Content-Type": "application/json"}, body)
        if answer.status_code is None or not 200 <= answer.status_code < 300:
            raise WitnessFailed(answer.error or f"status_{answer.status_code}")
        return 1


def is_url(setting: str) -> bool:
    return setting.startswith(("https://", "http://"))


def make(setting: str | None) -> Witness | None:
    """The configured witness (``WAYBILL_AUDIT_WITNESS``), or ``None``."""
    if not setting:
        return None
    return UrlWitness(setting) if is_url(setting) else FileWitness(Path(setting))


def issue(tx: UnitOfWork, signer: Signer, witness: Witness | None,
          principal: Principal) -> tuple[AuditCheckpoint | None, CheckpointRefused | None, int]:
    """Make the next checkpoint, commit it, then hand it to the witness (`waybill audit checkpoint` and the
    scheduled task): ``(row, None, given to the witness)``, or ``(None, refusal, 0)`` when a chain no longer
    extends the last checkpoint (logged as critical and audited ``audit.checkpoint`` outcome ``refused``)."""
    try:
        row = create(tx.session, signer)
    except CheckpointRefused as exc:
        log.critical("audit checkpoint refused", extra={"shard": exc.shard, "seq": exc.seq, "reason": exc.reason})
        audit.record(tx.session, principal, "audit.checkpoint", object_type="audit_shard", object_id=str(exc.shard),
                     outcome="refused", purpose=exc.reason, durable=True)
        return None, exc, 0
    audit.record(tx.session, principal, "audit.checkpoint", object_type="audit_checkpoint", object_id=str(row.id))
    tx.commit_so_far()  # signed and stored before the witness sees it: a witness never holds an uncommitted one
    return row, None, witness.publish(tx.session, row) if witness is not None else 0
