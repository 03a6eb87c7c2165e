"""Reviewing alerts: the list auditors, privacy officers and admins read, and the resolution officers record.

- :func:`list_alerts`: newest first (keyset pagination by id: alert ids grow with time, so a page never repeats
  or skips a row while new alerts arrive), filtered by status and rule; audited (``alerts.list``).
- :func:`resolve`: an open alert becomes ``resolved`` with who and when, and the officer's free-text resolution,
  stored encrypted by the vault codec (``alerts.resolution_ct``): it is never logged, audited or answered (it may
  name people). Nobody resolves an alert raised on their own account (403). Resolving an alert does not lift a
  suspension (``waybill users enable`` does); the next burst of the same rule opens a new alert. Audited
  (``alerts.resolve``).

Both check the permission themselves (the second check); functions flush, never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from waybill import audit
from waybill.alerts.models import Alert
from waybill.crypto.vault import FieldCodec
from waybill.errors import AlertNotFound, AlertResolved, PermissionDenied, ValidationFailed
from waybill.ids import looks_like
from waybill.models import utcnow
from waybill.permissions import Permission, Principal

ID_PREFIX = "alr"
TABLE = "alerts"
RESOLUTION_COLUMN = "resolution"
RESOLUTION_MAX = 1000


def list_alerts(session: Session, principal: Principal, *, status: str | None = None, rule: str | None = None,
                limit: int = 50, cursor: str | None = None) -> tuple[list[Alert], str | None]:
    """A page of alerts, newest first, and the next page's cursor (the last alert's id; ``None``: no more)."""
    principal.require(Permission.ALERT_READ)
    query = select(Alert)
    if status is not None:
        query = query.where(Alert.status == status)
    if rule is not None:
        query = query.where(Alert.rule == rule)
    if cursor is not None:
        if not looks_like(ID_PREFIX, cursor):
            raise ValidationFailed("分页游标无效", field="cursor")
        query = query.where(Alert.id < cursor)
    rows = list(session.scalars(query.order_by(Alert.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    # The filters are enum values (checked by the caller against the rules and states), never free text.
    audit.record(session, principal, "alerts.list", purpose=f"status={status or '*'} rule={rule or '*'}")
    return rows, (rows[-1].id if more and rows else None)


def resolve(session: Session, codec: FieldCodec, principal: Principal, alert_id: str, resolution: str, *,
            now: datetime | None = None) -> Alert:
    """Resolve an open alert; :class:`AlertNotFound` for an unknown id, :class:`AlertResolved` for a resolved one."""
    principal.require(Permission.ALERT_RESOLVE)
    if not resolution or len(resolution) > RESOLUTION_MAX:
        raise ValidationFailed(f"resolution 须为 1-{RESOLUTION_MAX} 个字符", field="resolution")
    row = session.scalars(select(Alert).where(Alert.id == alert_id).with_for_update()).first() \
        if looks_like(ID_PREFIX, alert_id) else None
    if row is None:
        raise AlertNotFound()
    if row.actor == principal.actor:
        # Separation of duties: an officer's own privacy_reads (or any alert on their account) is for another
        # officer to judge, not for them to close before anyone reads it.
        raise PermissionDenied("不能处理针对本人账号的告警")
    if row.status != "open":
        raise AlertResolved()
    now = now or utcnow()
    row.status, row.resolved_by, row.resolved_at = "resolved", principal.actor, now
    row.resolution_ct = codec.encrypt(resolution, table=TABLE, column=RESOLUTION_COLUMN, row_id=row.id)
    session.flush()
    audit.record(session, principal, "alerts.resolve", object_type="alert", object_id=row.id)
    return row


def resolution_text(codec: FieldCodec, row: Alert) -> str | None:
    """The recorded resolution in the clear (for the record: never logged or answered by the API)."""
    if row.resolution_ct is None:
        return None
    return codec.decrypt(row.resolution_ct, table=TABLE, column=RESOLUTION_COLUMN, row_id=row.id)
