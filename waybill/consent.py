"""Notice and consent at collection: the versioned privacy notice, and what each shipment's parties agreed to.

- :class:`PrivacyNotice` is the notice shown before collection (35273 5.4-5.5): a version, its Chinese text and
  its purposes, each required (the delivery itself) or optional (consent is their basis). It is a data file,
  ``waybill/data/privacy_notice.json``, replaced by ``WAYBILL_PRIVACY_NOTICE_FILE``.
- A shipment records which notice version applied and which optional purposes were agreed to
  (``notice_version``, ``consent_purposes``; the merchant sends ``consents`` with the shipment). A shipment
  made without ``consents`` records the current version and no optional purpose.
- Each party may withdraw an optional purpose (35273 8.4); ``consent_withdrawn`` keeps when, per party. A
  withdrawn purpose stops: :func:`allows` answers False. Required purposes cannot be withdrawn.

``notice`` defaults to the packaged notice; callers holding the services pass ``svc.privacy_notice``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from waybill.datafiles import read_data_text
from waybill.errors import ValidationFailed
from waybill.models import Shipment, utcnow

if TYPE_CHECKING:
    from waybill.schemas import ConsentsIn

PARTIES = ("sender", "recipient")
FILE_NAME = "privacy_notice.json"
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_PURPOSE_ID = re.compile(r"[a-z][a-z0-9_]{1,31}")


@dataclass(frozen=True)
class Purpose:
    """One purpose of processing the notice names: ``required`` ones are the delivery itself."""

    id: str
    name: str
    required: bool


@dataclass(frozen=True)
class PrivacyNotice:
    """A version of the privacy notice: its text and its purposes."""

    version: str
    text: str
    purposes: tuple[Purpose, ...]

    @classmethod
    def load(cls, path: Path | None = None) -> PrivacyNotice:
        """The notice in ``path``, or the packaged one; a malformed file raises ``ValueError`` saying what is wrong."""
        if path is None:
            return _packaged()
        return cls.parse(read_data_text(FILE_NAME, path))

    @classmethod
    def parse(cls, raw: str) -> PrivacyNotice:
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ValueError("the privacy notice is not JSON") from None
        if not isinstance(doc, dict) or set(doc) != {"version", "text", "purposes"}:
            raise ValueError("the privacy notice must be an object with version, text and purposes")
        version, text, items = doc["version"], doc["text"], doc["purposes"]
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise ValueError("version must be 1-32 letters, digits, dots, dashes or underscores")
        if not isinstance(text, str) or not text.strip() or len(text) > 20_000:
            raise ValueError("text must be a non-empty string")
        if not isinstance(items, list) or not items:
            raise ValueError("purposes must be a non-empty list")
        purposes: list[Purpose] = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or set(item) != {"id", "name", "required"}:
                raise ValueError(f"purposes[{i}] must be an object with id, name and required")
            pid, name, required = item["id"], item["name"], item["required"]
            if not isinstance(pid, str) or not _PURPOSE_ID.fullmatch(pid) or any(p.id == pid for p in purposes):
                raise ValueError(f"purposes[{i}].id must be a unique snake_case name")
            if not isinstance(name, str) or not name.strip() or not isinstance(required, bool):
                raise ValueError(f"purposes[{i}] needs a name and a boolean required")
            purposes.append(Purpose(pid, name.strip(), required))
        if not any(p.required for p in purposes):
            raise ValueError("at least one purpose must be required (the delivery itself)")
        return cls(version, text.strip(), tuple(purposes))

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "text": self.text,
                "purposes": [{"id": p.id, "name": p.name, "required": p.required} for p in self.purposes]}

    def purpose(self, purpose_id: str) -> Purpose | None:
        return next((p for p in self.purposes if p.id == purpose_id), None)

    def record(self, consents: ConsentsIn | None) -> tuple[str, list[str]]:
        """``(notice_version, optional purposes agreed to)`` for a shipment, from the merchant's ``consents``.

        Raises :class:`ValidationFailed` naming ``consents.notice_version`` (not the current version) or
        ``consents.purposes[i]`` (a purpose this notice does not name). Required purposes may be listed; they
        apply anyway and are not stored.
        """
        if consents is None:
            return self.version, []
        if consents.notice_version != self.version:
            raise ValidationFailed("隐私告知版本不是当前版本，请重新获取 /v1/privacy-notice",
                                   field="consents.notice_version")
        chosen: list[str] = []
        for i, pid in enumerate(consents.purposes):
            purpose = self.purpose(pid)
            if purpose is None:
                raise ValidationFailed("隐私告知中没有该处理目的", field=f"consents.purposes[{i}]")
            if not purpose.required and pid not in chosen:
                chosen.append(pid)
        return self.version, sorted(chosen)


@functools.cache
def _packaged() -> PrivacyNotice:
    return PrivacyNotice.parse(read_data_text(FILE_NAME))


def _party(party: str) -> str:
    if party not in PARTIES:
        raise ValueError("party must be sender or recipient")
    return party


def _withdrawn(shipment: Shipment, party: str) -> dict[str, str]:
    return dict((shipment.consent_withdrawn or {}).get(party) or {})


def _active(shipment: Shipment, party: str, purpose: Purpose) -> bool:
    if purpose.required:
        return True
    return purpose.id in (shipment.consent_purposes or []) and purpose.id not in _withdrawn(shipment, party)


def purposes_of(shipment: Shipment, party: str, *, notice: PrivacyNotice | None = None) -> list[dict[str, Any]]:
    """Every purpose of the notice for this party: ``[{"id", "name", "required", "active"}]``.

    ``active``: required purposes always; optional ones when agreed to at collection and not withdrawn by
    this party. A shipment from before consents were recorded has its required purposes only.
    """
    notice = notice or _packaged()
    _party(party)
    return [{"id": p.id, "name": p.name, "required": p.required, "active": _active(shipment, party, p)}
            for p in notice.purposes]


def allows(shipment: Shipment, party: str, purpose: str, *, notice: PrivacyNotice | None = None) -> bool:
    """Whether ``purpose`` may be pursued for this party of the shipment (an unknown id is a bug: ValueError)."""
    found = (notice or _packaged()).purpose(purpose)
    if found is None:
        raise ValueError(f"unknown purpose {purpose[:40]!r}")
    return _active(shipment, _party(party), found)


def withdraw(session: Session, shipment: Shipment, party: str, purposes: Iterable[str] | None, *,
             notice: PrivacyNotice | None = None, now: datetime | None = None) -> list[str]:
    """Withdraw this party's consent to ``purposes`` (None: every optional purpose); returns, sorted, the
    purposes that were active and stopped now (withdrawing again changes nothing and returns ``[]``).

    Raises :class:`ValidationFailed` (field ``purposes``) for an unknown purpose or a required one (the
    delivery cannot go on without it: that is a deletion request, not a withdrawal). Flushes, never commits.
    """
    notice = notice or _packaged()
    _party(party)
    wanted = [p.id for p in notice.purposes if not p.required] if purposes is None else list(purposes)
    for pid in wanted:
        found = notice.purpose(pid)
        if found is None:
            raise ValidationFailed("隐私告知中没有该处理目的", field="purposes")
        if found.required:
            raise ValidationFailed("履行寄递所必需的处理目的不能撤回（如需停止处理请申请删除）", field="purposes")
    stopped = sorted({pid for pid in wanted if _active(shipment, party, notice.purpose(pid))})  # type: ignore[arg-type]
    moment = (now or utcnow()).isoformat().replace("+00:00", "Z")
    mine = _withdrawn(shipment, party)
    for pid in wanted:
        mine.setdefault(pid, moment)
    # A new dict: the JSON column is not mutation-tracked, so the change is assigned, not made in place.
    shipment.consent_withdrawn = {**(shipment.consent_withdrawn or {}), party: mine}
    shipment.updated_at = utcnow()
    session.flush()
    return stopped
