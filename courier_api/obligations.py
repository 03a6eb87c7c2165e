"""Staff obligations as gates: confidentiality agreement, training and background check (seed 004; GB/T 35273 11.6).

Each staff account records when its confidentiality agreement and its personal-data protection training were last
attested (both at ``waybill users create``, renewed together by ``waybill users attest``), and, for the roles that
reach personal data (:data:`waybill.permissions.PERSONAL_DATA_ROLES`: couriers and privacy officers), the reference
of a background check. A staff member whose training is older than ``WAYBILL_TRAINING_VALID_DAYS`` is refused every
personal-data permission (:data:`waybill.permissions.PERSONAL_DATA_PERMISSIONS`) with ``403 obligations_lapsed``:
the token lookup computes it (no extra query) and the route check refuses it before any object is looked up.

Accounts from before migration 0025 were recorded as attested at the upgrade (source ``upgrade``), so an upgrade
does not lock every courier out at once; they lapse ``WAYBILL_TRAINING_VALID_DAYS`` after it unless attested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from courier_api.models import StaffUser
from waybill import audit
from waybill.errors import NotFound, ValidationFailed
from waybill.models import utcnow
from waybill.permissions import PERSONAL_DATA_ROLES, Permission, Principal

# A background check is named by its case reference (``BG-2026-0042``), never by anything about the person.
BACKGROUND_REF_RE = re.compile(r"[A-Z]{2,10}-20[0-9]{2}-[0-9]{1,6}")
SOURCES = ("create", "attest", "upgrade")


@dataclass(frozen=True)
class Obligations:
    """What an account has attested, and until when its training counts."""

    user_id: str
    username: str
    role: str
    confidentiality_attested_at: datetime | None
    training_attested_at: datetime | None
    training_valid_until: datetime | None
    background_check_ref: str | None
    background_checked_at: datetime | None
    background_check_required: bool
    source: str | None


def lapsed(training_attested_at: datetime | None, valid_days: int, now: datetime) -> bool:
    """Whether training attested at ``training_attested_at`` (None: never) no longer counts at ``now``."""
    return training_attested_at is None or now >= training_attested_at + timedelta(days=valid_days)


def check_background_ref(ref: str | None) -> str | None:
    """The reference, stripped, or :class:`ValidationFailed` (field ``background_check``) when it is malformed."""
    if ref is None:
        return None
    ref = ref.strip()
    if BACKGROUND_REF_RE.fullmatch(ref) is None:
        raise ValidationFailed("背景调查编号须为案件编号格式，如 BG-2026-0042", field="background_check")
    return ref


def record_at_creation(user: StaffUser, background_check_ref: str | None, now: datetime) -> None:
    """A new account: its confidentiality agreement and training attested now (and its background check, if given)."""
    user.confidentiality_attested_at = user.training_attested_at = now
    user.obligations_source = "create"
    ref = check_background_ref(background_check_ref)
    if ref is not None:
        user.background_check_ref, user.background_checked_at = ref, now


def attest(session: Session, actor: Principal, username: str, *, background_check_ref: str | None = None,
           valid_days: int, now: datetime | None = None) -> Obligations:
    """Renew an account's confidentiality agreement and training (both, now), and record a background check.

    A role that reaches personal data needs a background check on file: without one given now or recorded
    before, the attestation is refused (``ValidationFailed`` field ``background_check``) and nothing changes.
    Audited (``user.attest``, the fields renewed; never the reference's meaning).
    """
    if actor.kind != "system":
        actor.require(Permission.USER_MANAGE)
    now = now or utcnow()
    ref = check_background_ref(background_check_ref)
    user = session.execute(select(StaffUser).where(StaffUser.username == username).with_for_update()
                           ).scalar_one_or_none()
    if user is None:
        raise NotFound("用户不存在", field="username")
    if user.role in PERSONAL_DATA_ROLES and ref is None and user.background_check_ref is None:
        raise ValidationFailed("该角色须登记背景调查编号（--background-check）", field="background_check")
    user.confidentiality_attested_at = user.training_attested_at = now
    user.obligations_source = "attest"
    fields = ["confidentiality", "training"]
    if ref is not None:
        user.background_check_ref, user.background_checked_at = ref, now
        fields.append("background_check")
    session.flush()
    audit.record(session, actor, "user.attest", object_type="staff_user", object_id=user.id, fields=fields)
    return describe(user, valid_days)


def describe(user: StaffUser, valid_days: int) -> Obligations:
    """The account's obligations as recorded."""
    until = None if user.training_attested_at is None else user.training_attested_at + timedelta(days=valid_days)
    return Obligations(user_id=user.id, username=user.username, role=user.role,
                       confidentiality_attested_at=user.confidentiality_attested_at,
                       training_attested_at=user.training_attested_at, training_valid_until=until,
                       background_check_ref=user.background_check_ref,
                       background_checked_at=user.background_checked_at,
                       background_check_required=user.role in PERSONAL_DATA_ROLES, source=user.obligations_source)
