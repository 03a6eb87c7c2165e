"""The incident register's domain: record an incident, find whom it affects, notify them, keep its timeline.

- :func:`create`: the affected subjects come from the audit log. An actor-and-window scope takes every audit
  event of that actor in ``[from, to]`` with outcome ``ok`` on a shipment whose ``fields`` name personal data:
  ``recipient.phone`` names the recipient, ``sender.*`` the sender, ``masked`` / ``personal_data`` both parties.
  A shipment-ids scope takes both parties of each shipment. The (shipment, party) pairs are stored.
- The regulator-report deadline: significant (较大) and graver incidents are due ``incident_report_hours`` after
  detection (default 4, the CAC incident-reporting measures in force since 2025-11-01); a general (一般) incident
  has no regulator deadline under that rule and a drill is never reported. The rule applied is stored by name.
- :func:`notify`: one SMS notice (template ``incident_notice``) per affected subject not yet notified; each
  reading of a phone for it is an ``incident.notify`` audit event on the shipment naming the party's phone, so
  it shows in that subject's access log (and the provider's delivery as ``message.deliver``). A landline or an
  unusable number is recorded ``unreachable``, a destroyed party ``destroyed``: neither is notified, neither is
  tried again. A drill notifies nobody.

Free text (title, who found it, where, which system, effects, cause, harm, remedies, timeline notes) is the
officer's and may hold personal data by accident: it is stored encrypted, never audited or logged.
Domain functions: a session, the acting principal and plain data; they flush, never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import audit, messages
from waybill.crypto.vault import CryptoError, FieldCodec
from waybill.errors import NotFound, PersonalDataDestroyed, ValidationFailed
from waybill.ids import looks_like, new_id
from waybill.incidents.models import SEVERITIES, Incident, IncidentEvent, IncidentSubject
from waybill.messages.store import MessageServices
from waybill.models import AuditEvent, Shipment, utcnow
from waybill.permissions import Permission, Principal

TABLE = "incidents"
EVENTS_TABLE = "incident_events"
PARTIES = ("sender", "recipient")
TEXT_FIELDS = ("found_by", "location", "system", "connected_effects", "cause", "harm", "remedies")
MAX_SHIPMENTS = 1000
# The data categories of the report; an audit field's last part (``recipient.phone``) maps onto one.
CATEGORIES = ("name", "phone", "address", "parcel_description", "masked_waybill", "pickup_code", "other")
FIELD_CATEGORY = {"name": "name", "phone": "phone", "address": "address", "description": "parcel_description",
                  "pickup_code": "pickup_code"}
REPORTABLE = frozenset({"significant", "major", "critical"})
RULE_CAC = "cac_incident_reporting_2025-11-01:significant_and_above:{hours}h"
RULE_GENERAL = "cac_incident_reporting_2025-11-01:general:no_regulator_deadline"
RULE_DRILL = "drill:not_reported"
# Timeline actions an officer adds by hand; a status change moves the incident's status with it.
MANUAL_ACTIONS = {"note": None, "contained": "contained", "reported_to_regulator": "reported", "closed": "closed"}


@dataclass(frozen=True)
class Scope:
    """An actor (or anyone, when None) and a window, or a list of shipment ids."""

    actor: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    shipment_ids: Sequence[str] | None = None


@dataclass(frozen=True)
class NewIncident:
    title: str
    kind: str
    severity: str
    detected_at: datetime
    scope: Scope
    data_categories: Sequence[str] = ()
    law_enforcement_contacted: bool = False
    texts: dict[str, str] = field(default_factory=dict)  # TEXT_FIELDS given


def _seal(codec: FieldCodec, value: str, table: str, column: str, row_id: str) -> bytes:
    return codec.encrypt(value, table=table, column=column, row_id=row_id)


def open_text(codec: FieldCodec, incident: Incident, name: str) -> str | None:
    """One of the incident's free texts in clear (``title`` or a TEXT_FIELDS name), None when not given."""
    blob: bytes | None = getattr(incident, f"{name}_ct")
    if blob is None:
        return None
    try:
        return codec.decrypt(blob, table=TABLE, column=name, row_id=incident.id)
    except CryptoError:
        return None


def parties_of(fields: Sequence[str]) -> set[str]:
    """The parties whose personal data an audit event's ``fields`` name."""
    found: set[str] = set()
    for f in fields:
        if f in ("masked", "personal_data"):
            found.update(PARTIES)
        else:
            head = f.split(".", 1)[0]
            if head in PARTIES and "." in f:
                found.add(head)
    return found


def categories_of(fields: Sequence[str]) -> set[str]:
    """The data categories (report vocabulary) an audit event's ``fields`` name."""
    found: set[str] = set()
    for f in fields:
        if f == "masked":
            found.add("masked_waybill")
        elif f == "personal_data":
            found.update(("name", "phone", "address"))
        else:
            tail = f.split(".", 1)[-1]
            found.add(FIELD_CATEGORY.get(tail, "other"))
    return found


def affected_by_actor(session: Session, actor: str | None, start: datetime,
                      end: datetime) -> tuple[set[tuple[str, str]], set[str]]:
    """Every (shipment, party) whose personal data ``actor`` (anyone but the subjects themselves, when None)
    accessed with outcome ok in ``[start, end]``, from the audit log; and the data categories accessed."""
    stmt = select(AuditEvent.object_id, AuditEvent.fields).where(
        AuditEvent.at >= start, AuditEvent.at <= end, AuditEvent.outcome == "ok",
        AuditEvent.object_type == "shipment", AuditEvent.object_id.is_not(None))
    stmt = stmt.where(AuditEvent.actor == actor) if actor is not None else stmt.where(AuditEvent.role != "subject")
    found: set[tuple[str, str]] = set()
    categories: set[str] = set()
    for object_id, fields in session.execute(stmt):
        parties = parties_of(list(fields or ()))
        if parties:
            found.update((str(object_id), party) for party in parties)
            categories |= categories_of(list(fields))
    return found, categories


def _shipments(session: Session, shipment_ids: Sequence[str]) -> set[tuple[str, str]]:
    if not shipment_ids or len(shipment_ids) > MAX_SHIPMENTS:
        raise ValidationFailed(f"scope.shipment_ids 须有 1-{MAX_SHIPMENTS} 个运单 ID", field="scope.shipment_ids")
    for i, sid in enumerate(shipment_ids):
        if not looks_like("shp", sid):
            raise ValidationFailed("运单 ID 无效", field=f"scope.shipment_ids[{i}]")
    known = set(session.scalars(select(Shipment.id).where(Shipment.id.in_(sorted(set(shipment_ids))))))
    for i, sid in enumerate(shipment_ids):
        if sid not in known:
            raise ValidationFailed("运单不存在", field=f"scope.shipment_ids[{i}]")
    return {(sid, party) for sid in known for party in PARTIES}


def deadline(kind: str, severity: str, detected_at: datetime, hours: int) -> tuple[str, datetime | None]:
    """The regulator-report rule that applies and the moment the report is due (None: no regulator deadline)."""
    if kind == "drill":
        return RULE_DRILL, None
    if severity in REPORTABLE:
        return RULE_CAC.format(hours=hours), detected_at + timedelta(hours=hours)
    return RULE_GENERAL, None


def add_event(session: Session, codec: FieldCodec, incident: Incident, actor: str, action: str,
              note: str | None = None, *, now: datetime | None = None) -> IncidentEvent:
    event_id = new_id("ine")
    row = IncidentEvent(id=event_id, incident_id=incident.id, at=now or utcnow(), actor=actor, action=action,
                        note_ct=None if note is None else _seal(codec, note, EVENTS_TABLE, "note", event_id))
    session.add(row)
    return row


def create(session: Session, codec: FieldCodec, principal: Principal, data: NewIncident, *, report_hours: int,
           now: datetime | None = None) -> Incident:
    """Record an incident and its affected subjects (found from the audit log); returns the row."""
    principal.require(Permission.INCIDENT_MANAGE)
    now = now or utcnow()
    if data.severity not in SEVERITIES:
        raise ValidationFailed("severity 无效", field="severity")
    if data.detected_at > now + timedelta(minutes=5):
        raise ValidationFailed("detected_at 不能晚于现在", field="detected_at")
    scope = data.scope
    if scope.shipment_ids is not None:
        affected, accessed = _shipments(session, scope.shipment_ids), {"name", "phone", "address"}
    else:
        if scope.start is None or scope.end is None:
            raise ValidationFailed("scope 须给出 from 与 to，或 shipment_ids", field="scope")
        if scope.end < scope.start:
            raise ValidationFailed("scope.to 须不早于 scope.from", field="scope.to")
        affected, accessed = affected_by_actor(session, scope.actor, scope.start, scope.end)
    incident_id = new_id("inc")
    rule, due = deadline(data.kind, data.severity, data.detected_at, report_hours)
    row = Incident(id=incident_id, kind=data.kind, severity=data.severity, status="open",
                   title_ct=_seal(codec, data.title, TABLE, "title", incident_id), detected_at=data.detected_at,
                   created_at=now, created_by=principal.actor, scope_actor=scope.actor, scope_from=scope.start,
                   scope_to=scope.end, data_categories=sorted(set(data.data_categories) or accessed),
                   law_enforcement_contacted=data.law_enforcement_contacted, affected_count=len(affected),
                   report_rule=rule, report_due_at=due)
    for name in TEXT_FIELDS:
        value = data.texts.get(name)
        setattr(row, f"{name}_ct", None if value is None else _seal(codec, value, TABLE, name, incident_id))
    session.add(row)
    session.flush()
    session.add_all(IncidentSubject(incident_id=incident_id, shipment_id=sid, party=party)
                    for sid, party in sorted(affected))
    add_event(session, codec, row, principal.actor, "created", now=now)
    audit.record(session, principal, "incident.create", object_type="incident", object_id=incident_id,
                 purpose=f"{data.kind} {data.severity} subjects={len(affected)}")
    session.flush()
    return row


def get(session: Session, principal: Principal, incident_id: str) -> Incident:
    """The incident (privacy officers and auditors); unknown ids are :class:`NotFound`."""
    principal.require(Permission.INCIDENT_READ)
    row = session.get(Incident, incident_id) if looks_like("inc", incident_id) else None
    if row is None:
        raise NotFound()
    return row


def list_incidents(session: Session, principal: Principal, *, limit: int, before: str | None = None) -> list[Incident]:
    """Newest first (ids grow with time), at most ``limit`` + 1 rows (the caller pages)."""
    principal.require(Permission.INCIDENT_READ)
    stmt = select(Incident).order_by(Incident.id.desc())
    if before is not None:
        stmt = stmt.where(Incident.id < before)
    return list(session.scalars(stmt.limit(limit + 1)))


def timeline(session: Session, incident_id: str) -> list[IncidentEvent]:
    return list(session.scalars(select(IncidentEvent).where(IncidentEvent.incident_id == incident_id)
                                .order_by(IncidentEvent.at, IncidentEvent.id)))


def notice_counts(session: Session, incident_id: str) -> dict[str, int]:
    """How the notices stand: ``sent``, ``unreachable``, ``destroyed`` and ``pending`` (not yet notified)."""
    counts = {"sent": 0, "unreachable": 0, "destroyed": 0, "pending": 0}
    for notice in session.scalars(select(IncidentSubject.notice).where(IncidentSubject.incident_id == incident_id)):
        counts[notice or "pending"] += 1
    return counts


def record_action(session: Session, codec: FieldCodec, principal: Principal, incident_id: str, action: str,
                  note: str | None, *, now: datetime | None = None) -> IncidentEvent:
    """A timeline entry by hand: a note or a status change (contained, reported to the regulator, closed)."""
    principal.require(Permission.INCIDENT_MANAGE)
    incident = get(session, principal, incident_id)
    if action not in MANUAL_ACTIONS:
        raise ValidationFailed("action 无效", field="action")
    now = now or utcnow()
    status = MANUAL_ACTIONS[action]
    if status is not None:
        incident.status = status
    if action == "reported_to_regulator" and incident.reported_at is None:
        incident.reported_at = now
    event = add_event(session, codec, incident, principal.actor, action, note, now=now)
    audit.record(session, principal, "incident.timeline", object_type="incident", object_id=incident.id,
                 purpose=action)
    session.flush()
    return event


def _phone(codec: FieldCodec, shipment: Shipment, party: str) -> str | None:
    if getattr(shipment, f"{party}_destroyed_at") is not None:
        return None
    blob: bytes | None = getattr(shipment, f"{party}_phone_ct")
    if blob is None:
        return None
    try:
        return codec.decrypt(blob, table="shipments", column=f"{party}_phone", row_id=shipment.id)
    except CryptoError:
        return None


def _notify_one(session: Session, svc: MessageServices, principal: Principal, incident: Incident,
                subject: IncidentSubject, contact: str, now: datetime) -> str | None:
    """Send one subject's notice; the outcome stored on the subject (None: throttled, try again later)."""
    shipment = session.get(Shipment, subject.shipment_id)
    phone = None if shipment is None else _phone(svc.codec, shipment, subject.party)
    if shipment is None or phone is None:
        return "destroyed"
    outcome = "sent"
    try:
        messages.send(session, svc, phone=phone, template="incident_notice",
                      params={"ref": incident.id, "contact": contact}, shipment_id=shipment.id,
                      party=subject.party, now=now)
    except (messages.NotMobile, messages.InvalidPhone):
        outcome = "unreachable"
    except PersonalDataDestroyed:
        return "destroyed"
    except messages.Throttled:
        return None
    # The phone was read to send the notice: an access to this party's data, in its access log.
    audit.record(session, principal, "incident.notify", object_type="shipment", object_id=shipment.id,
                 fields=[f"{subject.party}.phone"], purpose=f"incident_notice:{incident.id}",
                 outcome="ok" if outcome == "sent" else outcome)
    return outcome


def notify(session: Session, svc: MessageServices, principal: Principal, incident_id: str, *, contact: str,
           now: datetime | None = None) -> int:
    """Notify every affected subject not yet notified (a drill: nobody); returns how many notices were sent now."""
    principal.require(Permission.INCIDENT_MANAGE)
    incident = get(session, principal, incident_id)
    # One notifier at a time per incident: a second request (another officer, a double click) waits here and
    # then reads the notices the first stored, so nobody is sent the notice twice.
    session.execute(select(Incident.id).where(Incident.id == incident.id).with_for_update())
    now = now or utcnow()
    if incident.kind == "drill":
        add_event(session, svc.codec, incident, principal.actor, "notify_skipped_drill", now=now)
        audit.record(session, principal, "incident.notify", object_type="incident", object_id=incident.id,
                     purpose="drill notified=0")
        session.flush()
        return 0
    pending = list(session.scalars(select(IncidentSubject).where(
        IncidentSubject.incident_id == incident.id, IncidentSubject.notice.is_(None))
        .order_by(IncidentSubject.shipment_id, IncidentSubject.party)))
    sent = 0
    for subject in pending:
        outcome = _notify_one(session, svc, principal, incident, subject, contact, now)
        if outcome is None:
            continue
        subject.notice = outcome
        if outcome == "sent":
            subject.notified_at = now
            sent += 1
    if sent and incident.notified_at is None:
        incident.notified_at = now
    counts = notice_counts(session, incident.id) if pending else None
    note = None if counts is None else " ".join(f"{k}={v}" for k, v in counts.items())
    add_event(session, svc.codec, incident, principal.actor, "notified", note, now=now)
    audit.record(session, principal, "incident.notify", object_type="incident", object_id=incident.id,
                 purpose=f"notified={sent}")
    session.flush()
    return sent


def held_shipments(session: Session, incident_id: str) -> list[str] | None:
    """The shipments an incident's scope covers (for a legal hold), None for an unknown incident."""
    if not looks_like("inc", incident_id) or session.get(Incident, incident_id) is None:
        return None
    return sorted(set(session.scalars(select(IncidentSubject.shipment_id)
                                      .where(IncidentSubject.incident_id == incident_id))))

