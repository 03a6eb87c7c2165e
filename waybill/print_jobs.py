"""Sorters' print jobs, issued set-based: tokens, status changes and audit events a chunk at a time.

A job is checked whole first (:func:`plan_print_job`: permission, duplicates, scope, status, the labels as they
will print), then issued :data:`PRINT_CHUNK` labels at a time (:func:`issue_in_chunks`), each chunk one unit of
work: its shipments locked with one ``SELECT ... FOR UPDATE``, its tokens inserted with one multi-row statement,
its ``created`` -> ``printed`` moves one ``UPDATE ... RETURNING`` and one multi-row insert of tracking events
(:func:`waybill.tracking.move_many`), and one audit event per label (``waybill.audit.record``: the commit hook
chains a transaction's events with one executemany). A chunk's labels are handed on (rendered, streamed) only
after its transaction committed, so no label ever carries a token that is not durable; the first chunk is small
(:data:`FIRST_CHUNK`), so the first page goes out long before the last token is issued.

Each job is a :class:`~waybill.models.PrintJob` row: the tokens a chunk issues name it, and the chunk's transaction
advances its ``issued`` count, so progress is durable per chunk and never counts a chunk that did not commit. A
job retried with the same ``Idempotency-Key`` (after a dropped connection, a node killed mid-job) finds its row:
every shipment whose live token this job issued gets that token again (no new token, no reprint counted), the
rest are issued as usual. A shipment never has two live tokens (a partial unique index, and the row locks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from printing.model import LabelModel
from waybill import audit, reprint_caps, tracking
from waybill.crypto.vault import subject_key_of
from waybill.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidStatusTransition,
    NotFound,
    ReprintLimitReached,
    SandboxShipment,
    ValidationFailed,
)
from waybill.ids import looks_like, new_id
from waybill.labels import (
    CHINA_TIME,
    PRINTABLE,
    TOKEN_BYTES,
    LabelDeps,
    _again,
    _check_reason,
    _exists,
    _reprints,
    derive_token,
    hash_token,
    label_model,
    revoke_many,
)
from waybill.models import PrintJob, QrToken, Shipment, utcnow
from waybill.permissions import Permission, Principal
from waybill.scope import label_scope
from waybill.uow import unit_of_work

PRINT_CHUNK = 500  # labels issued (and committed) per unit of work in a streamed job, at most
FIRST_CHUNK = 50  # the first chunk: small, so the first page is out after a few milliseconds
PLACEHOLDER_TOKEN = "0" * 32
_IN = 500  # ids per IN list (SQLite's bound-variable limit; PostgreSQL plans short lists better too)
_TOKENS, _SHIPMENTS, _JOBS = (cast(Table, m.__table__) for m in (QrToken, Shipment, PrintJob))
# What a label is made of that can change after the job's check: a correction re-seals the masked snapshot (a new
# ciphertext, as it does when it changes the region or the phone's index) and re-routes, a destruction clears it. A
# chunk compares these with the check's and rebuilds the label of a shipment that changed in between.
_LABEL_COLUMNS = (Shipment.recipient_masked_ct, Shipment.sender_masked_ct, Shipment.sorting_code,
                  Shipment.consolidation, Shipment.weight_g, Shipment.pieces)
# Everything label_model reads of a shipment, and what the checks read: a plan's rows.
_PLANNED = tuple(dict.fromkeys((*_LABEL_COLUMNS, Shipment.id, Shipment.status, Shipment.test_mode,
                                Shipment.merchant_id, Shipment.waybill_no, Shipment.merchant_order_id,
                                Shipment.recipient_region, Shipment.sender_region, Shipment.recipient_phone_bidx,
                                Shipment.sender_phone_bidx)))
_LOCKED = (Shipment.id, Shipment.status, Shipment.test_mode, Shipment.merchant_id, Shipment.waybill_no,
           Shipment.merchant_order_id, *_LABEL_COLUMNS)


def _fingerprint(row: Any) -> tuple[Any, ...]:
    return tuple(getattr(row, c.key) for c in _LABEL_COLUMNS)


def _moving(row: Any) -> tracking.Moving:
    return tracking.Moving(shipment_id=row.id, status=row.status, merchant_id=row.merchant_id,
                           waybill_no=row.waybill_no, merchant_order_id=row.merchant_order_id)


# --- the job row --------------------------------------------------------------------------------------------


def request_digest(shipment_ids: Sequence[str], reprint_reason: str | None) -> bytes:
    """What a retry must repeat: the shipment ids in order and the reprint reason."""
    return hashlib.sha256("\n".join([reprint_reason or "", *shipment_ids]).encode()).digest()


def open_job(session: Session, principal: Principal, shipment_ids: Sequence[str], *, reprint_reason: str | None,
             idempotency_key: str | None) -> PrintJob:
    """The job's row: a new one, or (same actor, same ``idempotency_key``) the earlier attempt's, whose tokens
    the job then reuses. A key used for a different request is refused (409, field ``Idempotency-Key``)."""
    digest, now = request_digest(shipment_ids, reprint_reason), utcnow()
    if idempotency_key is not None:
        # Claim the key first: two requests with one new key at once (a client's timeout and retry) must not both
        # insert, the second waiting on the unique index and failing. On a conflict nothing is inserted and the
        # lookup below, locked, finds the other request's job once it committed.
        fresh = {"id": new_id("pjb"), "actor": principal.actor, "idempotency_key": idempotency_key,
                 "request_digest": digest, "total": len(shipment_ids), "issued": 0, "reprint_reason": reprint_reason,
                 "attempts": 0, "created_at": now, "updated_at": now}
        dialect = session.connection().dialect.name
        claim = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_JOBS).values(
            fresh).on_conflict_do_nothing(index_elements=[_JOBS.c.actor, _JOBS.c.idempotency_key])
        session.execute(claim)
        job = session.execute(select(PrintJob).where(PrintJob.actor == principal.actor,
                                                     PrintJob.idempotency_key == idempotency_key)
                              .with_for_update().execution_options(populate_existing=True)).scalar_one()
        if bytes(job.request_digest) != digest:
            raise IdempotencyConflict(field="Idempotency-Key")
        job.attempts += 1
        job.updated_at = now
        if job.attempts > 1:
            audit.record(session, principal, "print_job.retry", object_type="print_job", object_id=job.id,
                         purpose=f"issued={job.issued} total={job.total} attempt={job.attempts}")
        session.flush()
        return job
    job = PrintJob(id=new_id("pjb"), actor=principal.actor, idempotency_key=idempotency_key, request_digest=digest,
                   total=len(shipment_ids), issued=0, reprint_reason=reprint_reason, attempts=1, created_at=now,
                   updated_at=now)
    session.add(job)
    session.flush()
    return job


def record_progress(session: Session, job_id: str, upto: int, total: int) -> None:
    """The job's first ``upto`` labels have their tokens (in the caller's transaction, so with them or not at all)."""
    now = utcnow()
    values: dict[str, Any] = {"issued": case((_JOBS.c.issued < upto, upto), else_=_JOBS.c.issued), "updated_at": now}
    if upto >= total:
        values["finished_at"] = now
    session.execute(update(_JOBS).where(_JOBS.c.id == job_id).values(**values))


# --- set-based issuing ----------------------------------------------------------------------------------------


def issue_tokens(session: Session, deps: LabelDeps, principal: Principal, targets: Sequence[tracking.Moving], *,
                 reason: str, reprint: bool, now: datetime, job_id: str | None) -> dict[str, str]:
    """A new token for each target (locked by the caller, printable, without a live token), set-based: one
    multi-row insert of the tokens, the ``created`` ones moved to ``printed`` by :func:`tracking.move_many`, the
    others' ``printed_at`` and ``updated_at`` in one ``UPDATE``, one audit event each. Returns the raw tokens."""
    if not targets:
        return {}
    key = deps.token_key
    tokens: dict[str, str] = {}
    rows = []
    for target in targets:
        nonce = secrets.token_bytes(TOKEN_BYTES)
        tokens[target.shipment_id] = raw = derive_token(key, nonce)
        rows.append({"id": new_id("qrt"), "shipment_id": target.shipment_id, "nonce": nonce,
                     "token_hash": hash_token(key, raw), "issued_at": now, "issued_by": principal.actor,
                     "issue_reason": reason, "is_reprint": reprint, "print_job_id": job_id})
    session.flush()  # revocations and the ORM's other changes first (one live token per shipment)
    session.execute(insert(_TOKENS), rows)
    first = func.coalesce(_SHIPMENTS.c.printed_at, now)
    tracking.move_many(session, principal, [t for t in targets if t.status == "created"], "printed", at=now,
                       also={"printed_at": first})
    staying = [t.shipment_id for t in targets if t.status != "created"]
    for start in range(0, len(staying), _IN):
        session.execute(update(_SHIPMENTS).where(_SHIPMENTS.c.id.in_(staying[start:start + _IN]))
                        .values(printed_at=first, updated_at=now))
    action, purpose = ("label.reprint", reason) if reprint else ("label.print", None)
    for target in targets:
        audit.record(session, principal, action, object_type="shipment", object_id=target.shipment_id,
                     fields=["masked"], purpose=purpose)
    return tokens


# --- the whole job's checks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _JobRows:
    ids: list[str]
    rows: dict[str, Any]  # Shipment entities, or rows of _PLANNED
    live: dict[str, QrToken]
    mine: frozenset[str]  # shipments whose live token this job issued (an earlier attempt of it)


def _refuse(session: Session, principal: Principal, sid: str, index: int, shipment: Any) -> None:
    """Raise the error for item ``index`` if its shipment is missing, a sandbox one or unprintable (audited)."""
    error: DomainError | None = None
    if shipment is None:
        error = NotFound("运单不存在", field=f"shipment_ids[{index}]")
    elif shipment.test_mode:
        error = SandboxShipment(field=f"shipment_ids[{index}]")
    elif shipment.status not in PRINTABLE:
        error = InvalidStatusTransition("当前状态不可打印面单", field=f"shipment_ids[{index}]")
    if error is None:
        return
    outcome = ("test_mode" if shipment.test_mode else "invalid_status") if shipment is not None else (
        "denied" if looks_like("shp", sid) and _exists(session, sid) else "not_found")
    audit.record(session, principal, "print_job.create", object_type="shipment",
                 object_id=sid if looks_like("shp", sid) else None, outcome=outcome, durable=True)
    raise error


def _job_rows(session: Session, deps: LabelDeps, principal: Principal, shipment_ids: Sequence[str],
              reprint_reason: str | None, job_id: str | None, *, columns: bool = False) -> _JobRows:
    """Every check of a print job (permission, duplicates, job size, scope and existence, status, reprint
    caps), audited, with the shipments locked; nothing is issued yet. ``columns``: the shipments as rows of the
    columns a label is made of (:data:`_PLANNED`), not entities (nothing will be written through them)."""
    principal.require(Permission.PRINT_JOB_CREATE)
    if reprint_reason is not None:
        _check_reason(reprint_reason, "reprint_reason")
    ids = list(shipment_ids)
    if len(set(ids)) != len(ids):
        raise ValidationFailed("shipment_ids 中有重复", field="shipment_ids")
    if reprint_reason is not None:  # before any lookup: a mass reprint is refused whatever it names
        reprint_caps.check_job_size(session, principal, deps.reprints_per_job, len(ids))
    rows: dict[str, Any] = {}
    live: dict[str, QrToken] = {}
    scope = label_scope(principal)
    for start in range(0, len(ids), _IN):
        chunk = [i for i in ids[start:start + _IN] if looks_like("shp", i)]
        found: dict[str, Any]
        if columns:  # the plan of a streamed job: plain rows, a fraction of an entity's cost
            found = {r.id: r for r in session.execute(
                select(*_PLANNED).where(Shipment.id.in_(chunk), scope).with_for_update())}
        else:
            found = {s.id: s for s in session.execute(
                select(Shipment).where(Shipment.id.in_(chunk), scope).with_for_update()).scalars()}
        rows.update(found)
        if deps.keyring is not None:
            deps.keyring.prefetch(k for r in found.values() for blob in (r.sender_masked_ct, r.recipient_masked_ct)
                                  if blob is not None and (k := subject_key_of(blob)) is not None)
        live.update({t.shipment_id: t for t in session.execute(select(QrToken).where(
            QrToken.shipment_id.in_(list(found)), QrToken.revoked_at.is_(None))).scalars()})
    for index, sid in enumerate(ids):
        _refuse(session, principal, sid, index, rows.get(sid))
    mine = frozenset(sid for sid, t in live.items() if job_id is not None and t.print_job_id == job_id)
    if reprint_reason is not None:
        replaced = [sid for sid in live if sid not in mine]  # the tokens this job will revoke and replace
        counts = _reprints(session, replaced)
        for index, sid in enumerate(ids):
            if sid in replaced and counts.get(sid, 0) >= deps.reprint_max:
                raise ReprintLimitReached(field=f"shipment_ids[{index}]")
        reprint_caps.check_hourly(session, principal, deps.reprints_per_hour, len(replaced), utcnow())
    return _JobRows(ids, rows, live, mine)


@dataclass(frozen=True)
class JobPlan:
    """A checked job: its labels as they will print (placeholder tokens, for the release gate) and what each
    label was made of, so a chunk can tell whether its shipment changed since."""

    ids: list[str]
    models: dict[str, LabelModel]
    fingerprints: dict[str, tuple[Any, ...]]

    def labels(self) -> list[LabelModel]:
        return [self.models[sid] for sid in self.ids]


def plan_print_job(session: Session, deps: LabelDeps, principal: Principal, shipment_ids: Sequence[str], *,
                   reprint_reason: str | None = None, job_id: str | None = None) -> JobPlan:
    """Check a whole job before anything is issued or sent (see :func:`_job_rows`)."""
    job = _job_rows(session, deps, principal, shipment_ids, reprint_reason, job_id, columns=True)
    now = utcnow()
    return JobPlan(job.ids, {sid: label_model(deps, job.rows[sid], PLACEHOLDER_TOKEN, now) for sid in job.ids},
                   {sid: _fingerprint(job.rows[sid]) for sid in job.ids})


def check_print_job(session: Session, deps: LabelDeps, principal: Principal, shipment_ids: Sequence[str], *,
                    reprint_reason: str | None = None) -> list[LabelModel]:
    """The labels of a checked job as they will print, with a placeholder token (for the release gate)."""
    return plan_print_job(session, deps, principal, shipment_ids, reprint_reason=reprint_reason).labels()


def issue_print_job(session: Session, deps: LabelDeps, principal: Principal, shipment_ids: Sequence[str], *,
                    reprint_reason: str | None = None, job_id: str | None = None) -> list[LabelModel]:
    """A sorter's batch, in request order, in the caller's transaction: unprinted shipments get their first token,
    printed ones their live token again — or, with ``reprint_reason``, a new token each (a recorded, capped
    reprint), except those whose live token job ``job_id`` issued already (a retry reissues nothing). The caller
    records the job's progress (:func:`record_progress`) in the same transaction.

    All or nothing: an unknown or unprintable shipment fails the whole job, naming the item (and the
    attempt is audited) before any label is issued.
    """
    job = _job_rows(session, deps, principal, shipment_ids, reprint_reason, job_id)
    ids, rows, live = job.ids, job.rows, job.live
    now = utcnow()
    tokens: dict[str, str] = {}
    groups: list[tuple[list[str], str, bool]] = [([sid for sid in ids if sid not in live], "first_print", False)]
    if reprint_reason is not None:
        replaced = [sid for sid in ids if sid in live and sid not in job.mine]
        revoke_many(session, principal, replaced, "reprint", now=now)
        groups.append((replaced, reprint_reason, True))
    for group, reason, reprint in groups:
        tokens.update(issue_tokens(session, deps, principal, [_moving(rows[sid]) for sid in group], reason=reason,
                                   reprint=reprint, now=now, job_id=job_id))
        for sid in group:  # the loaded rows learn what the set-based statements wrote
            shipment = rows[sid]
            moved = shipment.status == "created"
            tracking.refresh_moved(shipment, "printed" if moved else shipment.status,
                                   shipment.event_seq + (1 if moved else 0), now,
                                   printed_at=shipment.printed_at or now)
    models = [label_model(deps, rows[sid], tokens[sid], now) if sid in tokens
              else _again(session, deps, principal, rows[sid], live[sid], now) for sid in ids]
    session.flush()
    return models


# --- streamed jobs --------------------------------------------------------------------------------------------


def _issue_chunk(session: Session, deps: LabelDeps, principal: Principal, ids: list[str], offset: int, total: int,
                 plan: JobPlan | None, job_id: str | None) -> list[LabelModel]:
    """One chunk of a checked job: locked, re-checked (a parcel may have been cancelled since), issued."""
    found: dict[str, Any] = {}
    live: dict[str, bytes] = {}
    for start in range(0, len(ids), _IN):
        part = ids[start:start + _IN]
        found.update({r.id: r for r in session.execute(
            select(*_LOCKED).where(Shipment.id.in_(part), label_scope(principal)).with_for_update())})
        live.update({sid: bytes(nonce) for sid, nonce in session.execute(
            select(QrToken.shipment_id, QrToken.nonce).where(QrToken.shipment_id.in_(part),
                                                             QrToken.revoked_at.is_(None)))})
    for index, sid in enumerate(ids):
        _refuse(session, principal, sid, offset + index, found.get(sid))
    now = utcnow()
    tokens = issue_tokens(session, deps, principal, [_moving(found[sid]) for sid in ids if sid not in live],
                          reason="first_print", reprint=False, now=now, job_id=job_id)
    for sid in ids:
        if sid in live:  # printed before (or by an earlier attempt of this job): the same token again
            audit.record(session, principal, "label.print_again", object_type="shipment", object_id=sid,
                         fields=["masked"])
    if job_id is not None:
        record_progress(session, job_id, offset + len(ids), total)
    # A shipment changed since the check (or no plan): its label is built again from the row as it is now.
    stale = [sid for sid in ids if plan is None or plan.fingerprints.get(sid) != _fingerprint(found[sid])]
    loaded = {s.id: s for s in session.scalars(select(Shipment).where(Shipment.id.in_(stale)))} if stale else {}
    printed_at = now.astimezone(CHINA_TIME)
    models = []
    for sid in ids:
        raw = tokens.get(sid) or derive_token(deps.token_key, live[sid])
        if sid in loaded:
            models.append(label_model(deps, loaded[sid], raw, now))
        else:
            assert plan is not None  # not stale, so planned
            models.append(dataclasses.replace(plan.models[sid], token=raw, printed_at=printed_at))
    return models


def issue_in_chunks(factory: sessionmaker[Session], deps: LabelDeps, principal: Principal,
                    shipment_ids: Sequence[str], *, reprint_reason: str | None = None,
                    context: audit.AuditContext | None = None, chunk: int = PRINT_CHUNK,
                    plan: JobPlan | None = None, job_id: str | None = None) -> Iterator[LabelModel]:
    """Issue a big job ``chunk`` labels at a time (the first chunk at most :data:`FIRST_CHUNK`), each chunk in a
    unit of work that commits before its labels are yielded (and so before they are rendered and sent). The
    documented exception to "commit before the answer": a job that breaks off leaves the chunks before it issued,
    and a retry prints their live tokens again (no reprint is counted for them). ``plan``: the job's check, whose
    labels are reused for every shipment that has not changed since."""
    ids = list(shipment_ids)
    if reprint_reason is not None and len(ids) > deps.reprints_per_job and reprint_caps.capped(principal):
        # The cap is the whole job's, not a chunk's: refused (and alerted) before the first chunk.
        with unit_of_work(factory, context=context) as tx:
            reprint_caps.check_job_size(tx.session, principal, deps.reprints_per_job, len(ids))
    start, size = 0, min(chunk, FIRST_CHUNK)
    while start < len(ids):
        part = ids[start:start + size]
        with unit_of_work(factory, context=context) as tx:
            if reprint_reason is not None:
                models = issue_print_job(tx.session, deps, principal, part, reprint_reason=reprint_reason,
                                         job_id=job_id)
                if job_id is not None:
                    record_progress(tx.session, job_id, start + len(part), len(ids))
            else:
                principal.require(Permission.PRINT_JOB_CREATE)
                models = _issue_chunk(tx.session, deps, principal, part, start, len(ids), plan, job_id)
        yield from models
        start, size = start + len(part), chunk
