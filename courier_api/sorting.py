"""Sorting-centre scans: a batch of waybill numbers scanned on arrival or departure at the sorter's station.

Each number stands alone: it gets its own result, in input order, and an unknown or refused number does not
stop the others. The rules, per number:

- the sorter acts for shipments of their own station or hub (:func:`waybill.scope.sorter_scope`); one out of
  that scope answers ``not_found``, exactly like a number nobody issued;
- a sandbox (test-mode) shipment answers ``test_mode``; one whose status a scan makes no sense for (not
  printed yet, with a courier, delivered, cancelled, returned) answers ``invalid_status``;
- the first scan of a ``printed`` parcel moves it to ``in_transit``; a ``returning`` parcel's arrival scan at
  its sender's station (``origin_station``) moves it to ``returned``: its label stops resolving and its
  contract ends (retention counts from then, as after a delivery);
- every scan is a tracking event (``kind`` scan, the ``event`` and the station). A status change it causes is
  recorded first (through :func:`waybill.tracking.move`, so merchants' webhooks hear of it), the scan right
  after, so the scan event carries the status the parcel has after the scan.

One query per 500 numbers loads (and locks, in one order) the batch; the events are numbered from the locked
rows, so the whole batch's events and status changes are written by a few multi-row statements at the flush.
The batch is audited once with its counts; numbers of shipments that exist but are not the sorter's are
audited each (probing leaves a trace, as everywhere else).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import audit, labels, tracking
from waybill.alerts.counters import Watch
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.errors import (
    DomainError,
    InvalidStatusTransition,
    NotFound,
    PermissionDenied,
    SandboxShipment,
    ValidationFailed,
)
from waybill.models import Shipment, utcnow
from waybill.permissions import Permission, Principal
from waybill.scope import sorter_scope
from waybill.stations import HUB_RE, STATION_RE
from waybill.waybill_no import is_valid_waybill_no

__all__ = ["MAX_BATCH", "SCANNABLE", "ScanResult", "scan_batch"]

MAX_BATCH = 1000
#: Statuses a sorting scan applies to: on the way out (``printed`` becomes ``in_transit``), back at a station
#: after a failed attempt, or on the way back to the sender.
SCANNABLE = frozenset({"printed", "in_transit", "delivery_failed", "returning"})
_CHUNK = 500  # numbers per lookup: well under every database's bound-parameter limit


@dataclass(frozen=True)
class ScanResult:
    """One number's outcome: the shipment's status after the scan, or the error that refused it."""

    waybill_no: str
    status: str | None = None
    error: DomainError | None = None


def _station_of(principal: Principal) -> str:
    station = principal.station
    if station is None or not (HUB_RE.fullmatch(station) or STATION_RE.fullmatch(station)):
        # Where the parcel is is what a scan records: a sorter of no station or hub cannot say it.
        raise PermissionDenied("分拣员未登记所属站点或分拨中心，不能扫描")
    return station


def _load(session: Session, station: str, numbers: list[str]) -> dict[str, Shipment]:
    """The sorter's shipments among ``numbers`` (sorted), locked in waybill-number order (two batches sharing
    parcels queue instead of deadlocking)."""
    found: dict[str, Shipment] = {}
    scope = sorter_scope(station)
    for start in range(0, len(numbers), _CHUNK):
        chunk = numbers[start:start + _CHUNK]
        # populate_existing: what is checked under the lock is what committed, not an earlier read.
        found.update({s.waybill_no: s for s in session.scalars(
            select(Shipment).where(Shipment.waybill_no.in_(chunk), scope).order_by(Shipment.waybill_no)
            .with_for_update().execution_options(populate_existing=True))})
    return found


def _audit_foreign(session: Session, principal: Principal, numbers: list[str]) -> int:
    """Audit each number of an existing shipment the sorter may not scan; returns how many there were."""
    foreign = 0
    for start in range(0, len(numbers), _CHUNK):
        for shipment_id in session.scalars(select(Shipment.id).where(
                Shipment.waybill_no.in_(numbers[start:start + _CHUNK]))):
            audit.record(session, principal, "sorting.scan", object_type="shipment", object_id=shipment_id,
                         outcome="denied", durable=True)
            foreign += 1
    return foreign


def _refusal(shipment: Shipment | None, index: int) -> DomainError | None:
    field = f"waybill_nos[{index}]"
    if shipment is None:
        return NotFound("运单不存在", field=field)
    if shipment.test_mode:
        return SandboxShipment(field=field)
    if shipment.status not in SCANNABLE:
        return InvalidStatusTransition("当前状态不可分拣扫描", field=field)
    return None


def scan_batch(session: Session, principal: Principal, waybill_nos: Sequence[str], event: str, *,
               keyring: SubjectKeyring, now: datetime | None = None, watch: Watch | None = None) -> list[ScanResult]:
    """Record ``event`` (``arrival``/``departure``) for each number at the sorter's station; see the module.

    With a ``watch``, the batch's refused numbers count towards the alert rules: those of another station's
    shipments towards ``foreign_station``, those of no shipment (well-formed or not) towards ``not_found_burst``."""
    principal.require(Permission.SORTING_SCAN)
    station = _station_of(principal)
    if event not in tracking.SCAN_EVENTS:
        raise ValidationFailed("event 须为 arrival 或 departure", field="event")
    if not 1 <= len(waybill_nos) <= MAX_BATCH:
        raise ValidationFailed(f"waybill_nos 须为 1-{MAX_BATCH} 个运单号", field="waybill_nos")
    now = now or utcnow()
    # Malformed numbers are nobody's: not looked up at all.
    wanted = sorted({n for n in waybill_nos if isinstance(n, str) and is_valid_waybill_no(n)})
    found = _load(session, station, wanted)
    foreign = _audit_foreign(session, principal, [n for n in wanted if n not in found])
    results: list[ScanResult] = []
    counts: Counter[str] = Counter()
    returned: list[Shipment] = []
    for index, number in enumerate(waybill_nos):
        shipment = found.get(number)
        error = _refusal(shipment, index)
        if error is not None or shipment is None:
            results.append(ScanResult(waybill_no=number, error=error))
            counts[type(error).__name__] += 1
            continue
        if shipment.status == "printed":
            tracking.move(session, principal, shipment, "in_transit", station=station, at=now, locked=True)
        elif event == "arrival" and shipment.status == "returning" and station == shipment.origin_station:
            tracking.move(session, principal, shipment, "returned", station=station, at=now, locked=True)
            returned.append(shipment)
        tracking.record_scan(session, principal, shipment, event, station=station, at=now, locked=True)
        results.append(ScanResult(waybill_no=number, status=shipment.status))
        counts["ok"] += 1
    if returned:
        # Back with its sender: the label stops resolving and the contract ends, as after a delivery.
        labels.revoke_many(session, principal, [s.id for s in returned], "returned", now=now)
        for shipment in returned:
            keyring.end_contract(session, shipment, now)
            audit.record(session, principal, "sorting.returned", object_type="shipment", object_id=shipment.id)
    # One event for the batch: its size and outcomes (no numbers: the per-shipment trail is the tracking events).
    refused = len(waybill_nos) - counts["ok"]
    if watch is not None:
        # Each number that answered not_found: the out-of-scope ones (audited above) reached for another station.
        unknown = len({n for n in waybill_nos if n not in found}) - foreign
        watch.foreign(session, principal, foreign)
        watch.missed(session, principal, unknown)
    audit.record(session, principal, "sorting.scan", purpose=f"{event} at {station}: {counts['ok']} scanned, "
                 f"{refused} refused ({foreign} not the sorter's)", outcome="ok" if not refused else "partial")
    session.flush()
    return results
