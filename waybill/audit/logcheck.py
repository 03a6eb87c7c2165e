"""Verifying the audit log against its signed checkpoints (what `waybill audit verify` and the API run).

1. The checkpoint log is checked as a chain: each row's signature, its fields against its signed message, its
   link (``prev``) to the one before, consecutive ids, and no chain going backwards from one checkpoint to the
   next. The first bad checkpoint, and every one after it, is not trusted.
2. A witness file, when there is one, is compared with the table: every checkpoint it holds (validly signed) must
   be in the table, identical. A witness that holds checkpoints beyond the table's last is deleted rows.
3. Every shard is walked (:func:`waybill.audit.verify.verify`) with the trusted checkpoints' heads as marks: a
   head behind a signed place fails ("head behind a checkpoint", naming the first missing event), so does a
   chain whose hash at a signed place differs ("differs from a checkpoint").

Incremental (``since_checkpoint``): the walk starts at the checkpoint the latest signed confirmation names, and
only the checkpoints from there on are read. A verify that found everything sound confirms the latest checkpoint
it checked against (:func:`waybill.audit.checkpoints.confirm`), whether it started from the first event or from
a confirmed checkpoint: the chains up to the earlier confirmation were sound, and from it to the new checkpoint
they were just walked, so the confirmation holds by induction. A forged confirmation (bad signature, or naming a
checkpoint that is not the signed one) fails the verify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill.audit.chain import GENESIS
from waybill.audit.checkpoints import (
    Checkpoint,
    CheckpointInvalid,
    Signer,
    check_document,
    check_row,
    confirm,
    last_confirmed,
    read_witness_file,
)
from waybill.audit.models import AuditCheckpoint
from waybill.audit.verify import VerifyResult, VerifySource, _reading, verify


@dataclass
class LogVerdict:
    """The chains' verdict and the checkpoints': ``confirmable`` is the latest trusted checkpoint (confirm it when
    ``ok``); ``from_checkpoint`` the confirmed one an incremental walk started at."""

    result: VerifyResult
    checkpoints: int = 0
    latest: Checkpoint | None = None
    from_checkpoint: int | None = None
    witness: int | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.problems

    @property
    def confirmable(self) -> Checkpoint | None:
        return self.latest if self.ok else None

    def as_dict(self) -> dict[str, Any]:
        doc = self.result.as_dict()
        doc["ok"] = self.ok
        if doc["first_bad"] is None and self.problems:
            doc["first_bad"] = self.problems[0]
        doc["checkpoints"] = {"checked": self.checkpoints, "latest": self.latest.id if self.latest else None,
                              "from_checkpoint": self.from_checkpoint, "witness": self.witness,
                              "problems": self.problems}
        return doc


def _chain(rows: list[AuditCheckpoint], public_key: bytes, after: Checkpoint | None,
           problems: list[dict[str, Any]]) -> list[Checkpoint]:
    """The trusted prefix of ``rows`` (those after ``after``); the first problem is appended to ``problems``."""
    trusted: list[Checkpoint] = []
    prev = after
    for row in rows:
        try:
            cp = check_row(row, public_key)
        except CheckpointInvalid as exc:
            problems.append({"checkpoint": row.id, "reason": exc.reason})
            break
        expected_id = prev.id + 1 if prev else 1
        if cp.id != expected_id:
            problems.append({"checkpoint": expected_id, "reason": "checkpoints missing before this one",
                             "found": cp.id})
            break
        if cp.prev_hash != (prev.hash if prev else GENESIS):
            problems.append({"checkpoint": cp.id, "reason": "chain link broken"})
            break
        if prev is not None:
            now = {h.shard: h.seq for h in cp.heads}
            back = [h.shard for h in prev.heads if now.get(h.shard, 0) < h.seq]
            if back:
                problems.append({"checkpoint": cp.id, "reason": "a chain goes back", "shard": back[0]})
                break
        trusted.append(cp)
        prev = cp
    return trusted


def _witness(path: Path, public_key: bytes, table: dict[int, Checkpoint], last_id: int, from_id: int,
             problems: list[dict[str, Any]]) -> tuple[int, list[Checkpoint]]:
    """Compare a witness file with the table; returns how many documents it held, and those validly signed."""
    try:
        docs = read_witness_file(path)
    except OSError:
        problems.append({"witness": str(path.name), "reason": "witness unreadable"})
        return 0, []
    good: list[Checkpoint] = []
    for line, doc in enumerate(docs, start=1):
        try:
            if doc is None:
                raise CheckpointInvalid("malformed document")
            cp = check_document(doc, public_key)
        except CheckpointInvalid as exc:
            problems.append({"witness_line": line, "reason": f"witness: {exc.reason}"})
            continue
        good.append(cp)
        if cp.id < from_id:
            continue  # before the incremental start: confirmed already
        if cp.id > last_id:
            problems.append({"checkpoint": cp.id, "reason": "checkpoint rows deleted (the witness holds it)"})
        elif cp.id not in table:
            problems.append({"checkpoint": cp.id, "reason": "checkpoint missing from the table (the witness holds it)"})
        elif table[cp.id].hash != cp.hash:
            problems.append({"checkpoint": cp.id, "reason": "checkpoint differs from the witness"})
    return len(docs), good


def check_log(source: VerifySource, key: bytes, public_key: bytes, *, witness: Path | None = None,
              since_checkpoint: bool = False, batch: int = 5000,
              after_chunk: Callable[[int], None] | None = None) -> LogVerdict:
    """Verify the checkpoints and every chain against them (see the module docstring)."""
    problems: list[dict[str, Any]] = []
    start_cp: Checkpoint | None = None
    with _reading(source) as s:
        if since_checkpoint:
            start_cp, problem = last_confirmed(s, public_key)
            if problem is not None:
                problems.append(problem)
        stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.id)
        if start_cp is not None:
            stmt = stmt.where(AuditCheckpoint.id > start_cp.id)
        rows = list(s.scalars(stmt))
        if isinstance(s, Session):
            for row in rows:
                s.expunge(row)
    trusted = _chain(rows, public_key, start_cp, problems)
    checked = ([start_cp] if start_cp else []) + trusted
    table = {cp.id: cp for cp in checked}
    witnessed: int | None = None
    marks_from = list(checked)
    if witness is not None:
        last_id = rows[-1].id if rows else (start_cp.id if start_cp else 0)
        witnessed, good = _witness(witness, public_key, table, last_id, start_cp.id if start_cp else 0, problems)
        # The witness's own (signed) checkpoints count too: deleting rows does not take their heads away.
        marks_from += [cp for cp in good if cp.id not in table and cp.id >= (start_cp.id if start_cp else 0)]
    marks: dict[int, dict[int, bytes]] = {}
    for cp in marks_from:
        for h in cp.heads:
            seen = marks.setdefault(h.shard, {}).setdefault(h.seq, h.hash)
            if seen != h.hash:
                problems.append({"checkpoint": cp.id, "reason": "checkpoints disagree", "shard": h.shard,
                                 "seq": h.seq})
    result = verify(source, key, batch=batch, after_chunk=after_chunk,
                    start=start_cp.places() if start_cp else None, marks=marks)
    latest = checked[-1] if checked else None
    return LogVerdict(result, len(checked), latest, start_cp.id if start_cp else None, witnessed, problems)


def record_confirmation(session: Session, signer: Signer, verdict: LogVerdict) -> int | None:
    """Confirm (signed, in ``session``'s transaction) the latest checkpoint a sound verify checked against; returns
    its id, or ``None`` when there is nothing to confirm (the log is not sound, or has no checkpoint yet)."""
    checkpoint = verdict.confirmable
    if checkpoint is None:
        return None
    confirm(session, signer, checkpoint, from_id=verdict.from_checkpoint, events=verdict.result.events)
    return checkpoint.id
