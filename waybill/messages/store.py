"""Sending a message: validate, store it encrypted, enqueue ``messages.send``; the task delivers it.

- :func:`send` checks the template's parameters and that the number is a mobile, applies the per-number
  hourly budget, stores a row (phone, text and parameters encrypted; the phone also as a keyed hash) and
  enqueues the task in the caller's transaction: the message exists exactly when the work asking for it
  commits. The outbox payload is the message id alone. A canary's number (never issued to a person) gets a
  ``suppressed`` row without text and no task: it is never sent, and the caller cannot tell.
- :func:`deliver` (the task) decrypts and hands the message to the provider. Accepted: the row is marked
  sent and, unless the provider keeps it (the built-in outbox), its ciphertexts are erased: the text does
  not outlive its delivery. Refused for good (a bad number, a template the provider does not know): marked
  failed, ciphertexts erased, not retried. Failed for now (network, throttling): the attempt is counted on
  the row and the task raises, so the outbox retries it later.
- :func:`sent_to` reads the built-in outbox back by number (development tooling and tests);
  :func:`forget` deletes a shipment's messages with its personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, delete, func, select
from sqlalchemy.orm import Session

from waybill import audit, outbox
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import CryptoError, FieldCodec
from waybill.errors import PersonalDataDestroyed
from waybill.ids import new_id
from waybill.keyfile import KeyMaterial
from waybill.messages import templates
from waybill.messages.base import (
    InvalidPhone,
    MessageProvider,
    NotMobile,
    OutgoingMessage,
    ProviderError,
    Throttled,
)
from waybill.messages.models import SmsMessage
from waybill.metrics import Metrics
from waybill.models import Shipment, utcnow
from waybill.phones import InvalidPhone as UnparsablePhone
from waybill.phones import is_canary_number, normalize_phone
from waybill.settings import Settings
from waybill.uow import UnitOfWork, after_commit

log = logging.getLogger("waybill.messages")

TABLE = "sms_messages"
TOPIC = "messages.send"
EXPIRE_TOPIC = "messages.expire"
SUPPRESSED_TOPIC = "messages.suppressed"  # a canary's message: the traces of a delivery, nothing sent
#: How long any message row is kept at all (the built-in outbox's texts included); the hourly budget needs one hour.
KEEP = timedelta(days=30)
PARTIES = ("sender", "recipient")
_HASH_CONTEXT = b"sms_phone|v1|"
_CHUNK = 500


class MessageServices(Protocol):
    """The parts of :class:`waybill.services.Services` messages use (typed here: services imports this)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def codec(self) -> FieldCodec: ...

    @property
    def keys(self) -> KeyMaterial: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def subject_keys(self) -> SubjectKeyring: ...

    @property
    def messages(self) -> MessageProvider: ...


def mobile_number(phone: str) -> str:
    """The normalised mobile number, or :class:`InvalidPhone` / :class:`NotMobile` (field ``phone``)."""
    try:
        parsed = normalize_phone(phone)
    except (UnparsablePhone, TypeError):
        raise InvalidPhone(field="phone") from None
    if parsed.kind != "mobile":
        raise NotMobile(field="phone")
    return parsed.number


def phone_hash(keys: KeyMaterial, number: str) -> bytes:
    """Keyed hash of a normalised mobile number under the ``sms_phone`` secret (full width: it finds one number)."""
    return hmac.new(keys.secret("sms_phone"), _HASH_CONTEXT + number.encode(), hashlib.sha256).digest()


def _subject_key(session: Session, svc: MessageServices, shipment_id: str | None, party: str | None) -> int | None:
    """The data key a party's messages are sealed under (so they die with its data); None: not a party's message.

    A party whose data is destroyed gets no message at all (:class:`PersonalDataDestroyed`, nothing stored)."""
    if shipment_id is None or party is None:
        return None
    key = svc.subject_keys.key_id(session, shipment_id, party)
    if key is None:
        raise PersonalDataDestroyed()
    return key


def _check_budget(session: Session, svc: MessageServices, hashed: bytes, now: datetime) -> None:
    """At most ``sms_per_phone_per_hour`` messages to one number in any hour, whoever asks for them."""
    since = now - timedelta(hours=1)
    count, oldest = session.execute(select(func.count(), func.min(SmsMessage.created_at)).where(
        SmsMessage.phone_hash == hashed, SmsMessage.created_at > since)).one()
    if count >= svc.settings.sms_per_phone_per_hour:
        first = oldest if isinstance(oldest, datetime) else now
        if first.tzinfo is None:  # SQLite's aggregate comes back without the column type's conversion
            first = first.replace(tzinfo=now.tzinfo)
        raise Throttled(max(1.0, (first + timedelta(hours=1) - now).total_seconds()))


def send(session: Session, svc: MessageServices, *, phone: str, template: str, params: Mapping[str, str],
         shipment_id: str | None = None, party: str | None = None, now: datetime | None = None) -> str:
    """Queue ``template`` with ``params`` for the mobile ``phone``; returns the message id.

    Raises :class:`InvalidPhone` / :class:`NotMobile` (field ``phone``) and :class:`Throttled`; parameters that
    do not match the template are a :class:`~waybill.messages.templates.TemplateError` (a bug). With
    ``shipment_id`` and ``party`` the message belongs to that party: sealed under its key, forgotten with it.
    Flushes, never commits.
    """
    tpl = templates.get(template)
    values = tpl.check(params)
    text = tpl.render(values)
    if (shipment_id is None) != (party is None) or (party is not None and party not in PARTIES):
        raise ValueError("shipment_id and party (sender or recipient) go together")
    if shipment_id is not None and session.get(Shipment, shipment_id) is None:
        raise ValueError("unknown shipment")
    number = mobile_number(phone)
    now = now or utcnow()
    hashed = phone_hash(svc.keys, number)
    _check_budget(session, svc, hashed, now)
    message_id = new_id("sms")
    subject_key = _subject_key(session, svc, shipment_id, party)

    def seal(column: str, value: str) -> bytes:
        return svc.codec.encrypt(value, table=TABLE, column=column, row_id=message_id, subject_key=subject_key)

    if is_canary_number(number):
        # A canary's number (waybill/phones.py): never handed to a provider. The caller sees what it sees for any
        # number (an id; the hourly budget counts the row), but the row keeps no text and no delivery task is
        # queued. A task of its own (SUPPRESSED_TOPIC) records the delivery's audit event and metric as the
        # delivery task would: without them an auditor could tell canaries apart as the assigned shipments whose
        # pickup code never shows a ``message.deliver`` event.
        session.add(SmsMessage(id=message_id, created_at=now, template=template, phone_hash=hashed,
                               shipment_id=shipment_id, party=party, provider=svc.messages.name,
                               status="suppressed", attempts=0))
        session.flush()
        outbox.enqueue(session, SUPPRESSED_TOPIC, {"suppressed_id": message_id}, now=now)
        after_commit(session, lambda: svc.metrics.sms_messages.labels(template, "queued").inc())
        return message_id
    session.add(SmsMessage(
        id=message_id, created_at=now, template=template, phone_hash=hashed,
        phone_ct=seal("phone", number), text_ct=seal("text", text),
        params_ct=seal("params", json.dumps(values, ensure_ascii=False, sort_keys=True)),
        shipment_id=shipment_id, party=party, provider=svc.messages.name, status="queued", attempts=0))
    session.flush()
    outbox.enqueue(session, TOPIC, {"message_id": message_id}, now=now)
    after_commit(session, lambda: svc.metrics.sms_messages.labels(template, "queued").inc())
    return message_id


def _open(svc: MessageServices, row: SmsMessage) -> OutgoingMessage:
    if row.phone_ct is None or row.text_ct is None or row.params_ct is None:
        raise CryptoError("message ciphertext erased")

    def unseal(column: str, blob: bytes) -> str:
        return svc.codec.decrypt(blob, table=TABLE, column=column, row_id=row.id)

    params = json.loads(unseal("params", row.params_ct))
    return OutgoingMessage(id=row.id, template=row.template, phone=unseal("phone", row.phone_ct),
                           params={str(k): str(v) for k, v in params.items()}, text=unseal("text", row.text_ct))


def _erase(row: SmsMessage) -> None:
    row.phone_ct = row.text_ct = row.params_ct = None


def _audit(session: Session, row: SmsMessage, outcome: str) -> None:
    """The delivery as an audit event: which party's phone was used, for which template; never number or text.

    A party's message is an event on its shipment (so it shows in that party's access log); others on the message.
    """
    if row.shipment_id is not None and row.party is not None:
        audit.record(session, outbox.TASK_PRINCIPAL, "message.deliver", object_type="shipment",
                     object_id=row.shipment_id, fields=[f"{row.party}.phone"], purpose=f"sms:{row.template}",
                     outcome=outcome)
    else:
        audit.record(session, outbox.TASK_PRINCIPAL, "message.deliver", object_type="sms_message",
                     object_id=row.id, fields=["phone"], purpose=f"sms:{row.template}", outcome=outcome)


def _fail(session: Session, svc: MessageServices, row: SmsMessage, code: str) -> str:
    row.status, row.last_error_type = "failed", code[:64]
    _audit(session, row, "failed")
    _erase(row)
    svc.metrics.sms_messages.labels(row.template, "failed").inc()
    log.warning("message refused", extra={"message_id": row.id, "template": row.template, "error_type": code[:64]})
    return "failed"


def deliver(tx: UnitOfWork, svc: MessageServices, message_id: str, *, now: datetime | None = None) -> str:
    """Deliver one queued message (the ``messages.send`` task); returns ``sent``, ``failed`` or ``skipped``.

    Raises what a provider raised when trying again may help, after counting the attempt on the row.
    """
    session = tx.session
    row = session.scalars(select(SmsMessage).where(SmsMessage.id == message_id).with_for_update()).first()
    if row is None or row.status != "queued":
        return "skipped"  # forgotten with its shipment, or delivered by an earlier run of this task
    try:
        message = _open(svc, row)
    except (CryptoError, ValueError):
        return _fail(session, svc, row, "undecryptable")  # e.g. the party's key was destroyed meanwhile
    try:
        delivery = svc.messages.deliver(message)
    except (ProviderError, Throttled) as exc:
        code = exc.code if isinstance(exc, ProviderError) else "throttled"
        if isinstance(exc, ProviderError) and not exc.retryable:
            return _fail(session, svc, row, code)
        row.attempts += 1
        row.last_error_type = code[:64]
        # Counted although the task is retried: the row shows how often the provider was tried.
        tx.commit_so_far()
        svc.metrics.sms_messages.labels(row.template, "retry").inc()
        raise
    except InvalidPhone:
        return _fail(session, svc, row, "invalid_phone")
    row.status, row.sent_at, row.provider_ref = "sent", now or utcnow(), delivery.provider_ref
    _audit(session, row, "ok")
    row.attempts += 1
    row.last_error_type = None
    if not delivery.keep_text:
        _erase(row)
    session.flush()
    svc.metrics.sms_messages.labels(row.template, "sent").inc()
    return "sent"


def pretend_delivered(tx: UnitOfWork, svc: MessageServices, message_id: str, *, now: datetime | None = None) -> str:
    """The ``messages.suppressed`` task: a canary's message, never sent, leaves the traces a delivered one leaves
    (its ``message.deliver`` audit event, the ``sent`` metric), once; returns ``pretended`` or ``skipped``."""
    session = tx.session
    row = session.scalars(select(SmsMessage).where(SmsMessage.id == message_id).with_for_update()).first()
    if row is None or row.status != "suppressed" or row.sent_at is not None:
        return "skipped"
    row.sent_at = now or utcnow()
    _audit(session, row, "ok")
    session.flush()
    svc.metrics.sms_messages.labels(row.template, "sent").inc()
    return "pretended"


def suppressed_handler(svc: MessageServices) -> outbox.Handler:
    """The ``messages.suppressed`` task handler."""

    def run(tx: UnitOfWork, payload: Mapping[str, Any]) -> None:
        pretend_delivered(tx, svc, str(payload["suppressed_id"]))

    return run


def handler(svc: MessageServices) -> outbox.Handler:
    """The ``messages.send`` task handler."""

    def run(tx: UnitOfWork, payload: Mapping[str, Any]) -> None:
        deliver(tx, svc, str(payload["message_id"]))

    return run


def sent_to(session: Session, svc: MessageServices, phone: str) -> list[dict[str, str]]:
    """What the built-in outbox holds for ``phone``: ``[{"at", "template", "text"}]``, newest first.

    Only sent messages whose text is kept (the built-in provider's); a remote provider's texts are erased.
    """
    hashed = phone_hash(svc.keys, mobile_number(phone))
    rows = session.scalars(select(SmsMessage).where(
        SmsMessage.phone_hash == hashed, SmsMessage.status == "sent", SmsMessage.text_ct.is_not(None))
        .order_by(SmsMessage.sent_at.desc(), SmsMessage.id.desc())).all()
    out = []
    for row in rows:
        assert row.text_ct is not None and row.sent_at is not None
        text = svc.codec.decrypt(row.text_ct, table=TABLE, column="text", row_id=row.id)
        out.append({"at": row.sent_at.isoformat().replace("+00:00", "Z"), "template": row.template, "text": text})
    return out


def expire(session: Session, *, now: datetime | None = None, keep: timedelta = KEEP) -> int:
    """Delete every message older than ``keep`` (the periodic ``messages.expire`` job); returns how many.

    A message about no shipment (or one whose shipment lives long) would otherwise stay for ever: the
    built-in outbox keeps its texts, and every row keeps the number's keyed hash.
    """
    cutoff = (now or utcnow()) - keep
    result = session.execute(delete(SmsMessage).where(SmsMessage.created_at < cutoff)
                             .execution_options(synchronize_session=False))
    return int(cast("CursorResult[Any]", result).rowcount or 0)


def expire_handler(_svc: MessageServices) -> outbox.Handler:
    """The ``messages.expire`` job's handler."""

    def run(tx: UnitOfWork, _payload: Mapping[str, Any]) -> None:
        expire(tx.session)

    return run


def forget(session: Session, shipment_ids: Iterable[str], party: str | None = None) -> int:
    """Delete the messages of these shipments (of one party only, if given); returns how many were deleted.

    Retention and subject deletions call it with the party's personal data: a queued message of theirs is
    then never sent (its task finds no row).
    """
    ids = list(dict.fromkeys(shipment_ids))
    deleted = 0
    for start in range(0, len(ids), _CHUNK):
        stmt = delete(SmsMessage).where(SmsMessage.shipment_id.in_(ids[start:start + _CHUNK]))
        if party is not None:
            stmt = stmt.where(SmsMessage.party == party)
        result = session.execute(stmt.execution_options(synchronize_session=False))
        deleted += int(cast("CursorResult[Any]", result).rowcount or 0)
    return deleted
