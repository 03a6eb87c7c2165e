"""The subjects' part of the registry (built once per app): challenge throttles and verification keys.

Throttles are ``limits`` moving windows (waybill/ratelimit.py), in Redis when ``WAYBILL_REDIS_URL`` is set:
per phone (its keyed hash), per waybill number (keyed hash too) and per client address, each per hour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from courier_api.subjects.models import SubjectChallenge
from courier_api.subjects.verify import VerifyDeps, throttle_key
from waybill.crypto.vault import CryptoError
from waybill.errors import DomainError, RateLimited
from waybill.models import Shipment
from waybill.ratelimit import WindowLimiter
from waybill.services import Services

EXTENSION_KEY = "courier_api.subjects"
CODE_TEMPLATE = "subject_code"
log = logging.getLogger("courier_api.subjects")


@dataclass(frozen=True)
class SubjectServices:
    base: Services
    verify: VerifyDeps
    per_phone: WindowLimiter
    per_waybill: WindowLimiter
    per_client: WindowLimiter

    def throttle(self, waybill_no: str, phone: str, client: str) -> None:
        """Count one challenge against all three limits, or ``RateLimited`` if one is spent.

        A peek first (a client already refused charges nothing), then a hit of each whose answer decides: two
        requests racing past the peek (threads, or nodes sharing Redis) are each counted by the limits' own atomic
        hit, so the later one is refused. A refused hit may leave the limits before it charged: over-counting a
        flood, never under-counting it.
        """
        keys = ((self.per_client, client), (self.per_phone, throttle_key(self.verify, "phone", phone)),
                (self.per_waybill, throttle_key(self.verify, "waybill", waybill_no)))
        waits = [w for w in (lim.peek(key) for lim, key in keys) if w is not None]
        if waits:
            raise RateLimited(max(waits), "验证请求过于频繁，请稍后再试")
        for lim, key in keys:
            wait = lim.hit(key)
            if wait is not None:
                raise RateLimited(wait, "验证请求过于频繁，请稍后再试")


def build(svc: Services) -> SubjectServices:
    s = svc.settings
    storage = svc.limit_storage  # Redis when configured (shared by every node), else this process's
    verify = VerifyDeps(codec=svc.codec, keyring=svc.subject_keys, code_key=svc.keys.secret("subject_code"),
                        token_key=svc.keys.secret("subject_token"),
                        code_ttl=timedelta(seconds=s.subject_code_ttl_s),
                        token_ttl=timedelta(seconds=s.subject_token_ttl_s))
    return SubjectServices(
        base=svc, verify=verify,
        per_phone=WindowLimiter(s.subject_challenges_per_phone_per_hour, 3600, name="subject:phone", storage=storage),
        per_waybill=WindowLimiter(s.subject_challenges_per_waybill_per_hour, 3600, name="subject:waybill",
                                  storage=storage),
        per_client=WindowLimiter(s.subject_challenges_per_client_per_hour, 3600, name="subject:client",
                                 storage=storage))


def install(app: Flask, svc: Services) -> SubjectServices:
    found = app.extensions.get(EXTENSION_KEY)
    if not isinstance(found, SubjectServices):
        found = app.extensions[EXTENSION_KEY] = build(svc)
    return found


def subject_services() -> SubjectServices:
    found = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(found, SubjectServices):
        raise RuntimeError("the subjects' services are not installed on this app")
    return found


def send_code(session: Session, svc: Services, challenge_id: str) -> None:
    """The outbox task of a challenge: send its code to the matched party's mobile phone, then erase the sealed
    code. A miss, a landline or a destroyed party sends nothing; the request that made the challenge did the same
    work either way (no oracle, not even by timing)."""
    ch = session.execute(select(SubjectChallenge).where(SubjectChallenge.id == challenge_id)
                         .with_for_update()).scalar_one_or_none()
    if ch is None or ch.code_ct is None:
        return
    blob, ch.code_ct = bytes(ch.code_ct), None
    shipment = session.get(Shipment, ch.shipment_id) if ch.shipment_id else None
    if shipment is None or ch.party is None or ch.used_at is not None:
        return
    phone_ct = getattr(shipment, f"{ch.party}_phone_ct")
    if phone_ct is None:  # destroyed since
        return
    from waybill import messages  # the message provider (SMS), another part of this issue

    minutes = max(1, round(svc.settings.subject_code_ttl_s / 60))
    try:
        code = svc.codec.decrypt(blob, table="subject_challenges", column="code", row_id=ch.id)
        phone = svc.codec.decrypt(phone_ct, table="shipments", column=f"{ch.party}_phone", row_id=shipment.id)
        messages.send(session, svc, phone=phone, template=CODE_TEMPLATE,
                      params={"code": code, "minutes": str(minutes)}, shipment_id=shipment.id, party=ch.party)
    except (DomainError, ValueError, CryptoError) as exc:
        # A landline (NotMobile), a throttled number, a key destroyed meanwhile: the subject gets no code, and
        # the log says why by type only.
        log.info("subject code not sent", extra={"error_type": type(exc).__name__})
