"""Adapter for Alibaba Cloud Phone Number Protection (号码隐私保护, product ``Dyplsapi``, API 2017-05-25).

Actions used: ``BindAxb`` (AXB), ``BindAxnExtension`` (X plus extension), ``UnbindSubscription`` and
``UpdateSubscription`` (``OperateType=updateExpire``, for a grace-period release). Requests are RPC-style,
signed with HMAC-SHA1 over the canonicalised parameters (signature version 1.0), and sent with the
standard library only. Business errors come back as ``{"Code": "isv.…"}`` and are mapped to the named
exceptions of :mod:`.base`; the provider's ``Message`` is never passed on (it may echo a number).

The adapter keeps the same local records as the built-in provider (``provider="aliyun"``, ``provider_ref``
= SubsId), so release, local routing decisions and call receipts (``SecretReport`` pushes, parsed by
:func:`parse_receipts`) work the same way.

AXE mapping: Aliyun's AXN extension connects *anyone* dialling X plus the extension to its ``PhoneNoA`` and
connects ``PhoneNoA`` calling X to ``PhoneNoB``. So our B (the recipient, reached through the extension)
is sent as ``PhoneNoA`` and our A (the courier, reached on call-back) as ``PhoneNoB``. Unlike the built-in
provider, Aliyun lets third parties who know X and the extension through; its extensions have 1-3 digits.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from waybill.crypto.vault import FieldCodec
from waybill.models import utcnow
from waybill.uow import on_rollback
from waybill.virtual_numbers.base import (
    BindConflict,
    Binding,
    CallReceipt,
    Mode,
    NoAvailableNumber,
    OutOfSession,
    ProviderError,
    VirtualNumberError,
)
from waybill.virtual_numbers.models import VnBinding, VnBindingEndpoint
from waybill.virtual_numbers.store import StoredProvider, after_transaction, normalise, to_binding

API_VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dyplsapi.aliyuncs.com/"
BEIJING = timezone(timedelta(hours=8))  # Aliyun's Expiration and receipt times are Beijing wall-clock time
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
#: What the receipt push endpoint must answer so Aliyun stops re-sending a batch.
RECEIPT_ACK = {"code": 0, "msg": "成功"}

_NAMED_ERRORS: dict[str, type[VirtualNumberError]] = {
    "isv.NO_AVAILABLE_NUMBER": NoAvailableNumber,
    "isv.BIND_CONFLICT": BindConflict,
    "isv.SUBS_NOT_EXIST": OutOfSession,
}
_RETRYABLE = {"isv.FLOW_LIMIT", "isp.SYSTEM_ERROR", "isp.DAO_EXCEPTION", "isp.GATEWAY_ERROR", "isp.UNKNOWN_ERR_CODE",
              "isp.VENDOR_UNAVAILABLE", "Throttling", "Throttling.User", "ServiceUnavailable"}


# -- signing -------------------------------------------------------------------------------------------------
def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the RPC signature wants it: only ``A-Z a-z 0-9 - _ . ~`` stay as they are."""
    return urllib.parse.quote(value, safe="~")


def string_to_sign(method: str, params: dict[str, str]) -> str:
    """``METHOD&%2F&`` plus the encoded, sorted, encoded query (the ``Signature`` parameter excluded)."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items())
                         if k != "Signature")
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def sign(method: str, params: dict[str, str], access_key_secret: str) -> str:
    """Alibaba Cloud RPC signature: base64(HMAC-SHA1(secret + "&", string to sign))."""
    digest = hmac.new((access_key_secret + "&").encode(), string_to_sign(method, params).encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


def to_beijing(moment: datetime) -> str:
    """An aware datetime as Aliyun's ``YYYY-MM-DD HH:MM:SS`` Beijing time."""
    return moment.astimezone(BEIJING).strftime(_TIME_FORMAT)


def from_beijing(text: str) -> datetime:
    """Parse Aliyun's Beijing-time stamp into an aware UTC datetime."""
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=BEIJING).astimezone(UTC)


def wire_number(normalised: str) -> str:
    """Aliyun wants digits only: landlines as area code and number without the dash."""
    return normalised.replace("-", "")


@dataclass(frozen=True)
class AliyunCredentials:
    """What the adapter needs from the operator's credentials file (a 0600 JSON object).

    ``receipt_token`` is the secret part of the URL Aliyun pushes call receipts to
    (``/v1/phone/receipts/<token>``): Aliyun signs nothing it pushes, so the URL itself is the secret.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    pool_key: str
    receipt_token: str = field(repr=False)


class CredentialsError(ValueError):
    """The credentials file is missing, readable by others, or incomplete; the message names the file."""


def read_credential_fields(path: Path, names: tuple[str, ...], label: str) -> dict[str, str]:
    """The named non-empty text fields of an owner-only JSON credentials file (``label`` names it in errors).

    Shared by the adapters of Alibaba Cloud's APIs (phone numbers here, SMS in waybill.messages.aliyun)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise CredentialsError(f"{label} credentials file not found: {path}") from None
    if mode & 0o077:
        raise CredentialsError(f"{label} credentials file {path} must be readable by its owner only (chmod 600)")
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        raise CredentialsError(f"{label} credentials file {path} is not a JSON object") from None
    if not isinstance(doc, dict):
        raise CredentialsError(f"{label} credentials file {path} is not a JSON object")
    values = {}
    for name in names:
        value = doc.get(name)
        if not isinstance(value, str) or not value.strip():
            raise CredentialsError(f"{label} credentials file {path}: {name} is missing")
        values[name] = value.strip()
    return values


def load_credentials(path: Path) -> AliyunCredentials:
    """Read and check the credentials file (owner-only, every key present, a long enough receipt token)."""
    values = read_credential_fields(path, ("access_key_id", "access_key_secret", "pool_key", "receipt_token"),
                                    "Aliyun")
    if len(values["receipt_token"]) < 32 or not values["receipt_token"].isascii() \
            or not values["receipt_token"].replace("-", "").replace("_", "").isalnum():
        raise CredentialsError(f"Aliyun credentials file {path}: receipt_token must be at least 32 URL-safe "
                               "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return AliyunCredentials(**values)


class AliyunClient:
    """A minimal signed RPC client for the Dyplsapi endpoint (POST, form-encoded, JSON answers)."""

    def __init__(self, access_key_id: str, access_key_secret: str, *, endpoint: str = DEFAULT_ENDPOINT,
                 timeout: float = 10.0) -> None:
        if not access_key_id or not access_key_secret:
            raise ValueError("access key id and secret are required")
        if not endpoint.startswith(("https://", "http://")):
            raise ValueError("endpoint must be an http(s) URL")
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.endpoint = endpoint
        self.timeout = timeout

    def __repr__(self) -> str:  # the secret must not end up in logs or tracebacks
        return f"<AliyunClient {self.endpoint} key={self.access_key_id}>"

    def call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        """Call one action; returns the JSON answer when ``Code`` is ``OK``, raises a named error otherwise."""
        query = {
            "Action": action, "Version": API_VERSION, "Format": "JSON", "AccessKeyId": self.access_key_id,
            "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": secrets.token_hex(16),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **params,
        }
        query["Signature"] = sign("POST", query, self._secret)
        request = urllib.request.Request(  # noqa: S310  (the scheme is checked in __init__)
            self.endpoint, data=urllib.parse.urlencode(query).encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        return rpc_call(request, self.timeout, provider="隐私号服务商", error_type=ProviderError, error_for=error_for)


def rpc_call(request: urllib.request.Request, timeout: float, *, provider: str,
             error_type: Callable[..., Exception], error_for: Callable[[str], Exception]) -> dict[str, Any]:
    """Send one signed Alibaba Cloud RPC request; the JSON answer when its ``Code`` is ``OK``.

    Shared by the virtual-number and the SMS adapters: a network failure or an unreadable answer raises
    ``error_type(message, code=..., retryable=True)`` (message naming ``provider``); any other ``Code``
    raises ``error_for(code)``.
    """
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked by callers)
            payload = response.read()
    except urllib.error.HTTPError as exc:  # 4xx/5xx still carry a JSON body with the error code
        payload = exc.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise error_type(f"{provider}无法连接", code="network", retryable=True) from exc
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise error_type(f"{provider}返回了无法解析的应答", code="bad_response", retryable=True)
    code = str(doc.get("Code", ""))
    if code != "OK":
        raise error_for(code)
    return doc


def error_for(code: str) -> VirtualNumberError:
    """Map an Aliyun error code to a named exception (the code is kept on ``provider_code``)."""
    cls = _NAMED_ERRORS.get(code)
    error = cls() if cls is not None else ProviderError(f"隐私号服务商拒绝了请求（{code[:60]}）", code=code[:60],
                                                        retryable=code in _RETRYABLE)
    error.provider_code = code[:60]  # type: ignore[attr-defined]
    return error


class AliyunProvider(StoredProvider):
    """The :class:`~waybill.virtual_numbers.base.VirtualNumberProvider` interface on top of Dyplsapi."""

    name = "aliyun"

    #: What the receipt push endpoint answers so Aliyun stops re-sending a batch.
    receipt_ack = RECEIPT_ACK
    # The remote bind comes first, before this transaction writes (and locks) anything; see _allocate.
    expire_before_allocate = False

    def __init__(self, codec: FieldCodec, endpoint_key: bytes, *, access_key_id: str, access_key_secret: str,
                 pool_key: str, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0,
                 clock: Callable[[], datetime] = utcnow, receipt_token: str | None = None) -> None:
        super().__init__(codec, endpoint_key, clock=clock)
        if not pool_key:
            raise ValueError("pool_key is required")
        self.pool_key = pool_key
        # The secret path segment Aliyun pushes receipts to; None: receipts are not taken over HTTP.
        self.receipt_token = receipt_token
        self.client = AliyunClient(access_key_id, access_key_secret, endpoint=endpoint, timeout=timeout)

    @staticmethod
    def parse_receipts(body: bytes | str) -> list[CallReceipt]:
        """Parse a pushed ``SecretReport`` batch (see :func:`parse_receipts`)."""
        return parse_receipts(body)

    @staticmethod
    def parse_receipt_batch(body: bytes | str) -> ReceiptBatch:
        """Parse a pushed ``SecretReport`` batch record by record (see :func:`parse_receipt_batch`)."""
        return parse_receipt_batch(body)

    def _allocate(self, session: Session, mode: Mode, a_number: str, b_number: str, ha: bytes, hb: bytes, *,
                  ttl: timedelta, ref: str, now: datetime) -> Binding:
        """``BindAxb`` / ``BindAxnExtension`` at Aliyun, then the local record of it.

        The HTTP call happens before this method writes anything, so it never waits on the network while
        holding row locks (the caller takes its locks after :meth:`bind_axe` returns). Every remote
        binding that ends up unused is given back once the transaction has ended.
        """
        expires_at = (now + ttl).replace(microsecond=0)  # Aliyun's granularity is the second
        params = {"PoolKey": self.pool_key, "Expiration": to_beijing(expires_at), "OutId": ref}
        if mode == "axb":
            action = "BindAxb"
            params.update(PhoneNoA=wire_number(a_number), PhoneNoB=wire_number(b_number))
        else:
            action = "BindAxnExtension"
            params.update(PhoneNoA=wire_number(b_number), PhoneNoB=wire_number(a_number))
        dto = self.client.call(action, params).get("SecretBindDTO") or {}
        try:
            subs_id, x_number = str(dto["SubsId"]), normalise(str(dto["SecretNo"]))
        except (KeyError, ValueError, TypeError):
            raise ProviderError("隐私号服务商返回了无法解析的应答", code="bad_response") from None
        extension = str(dto["Extension"]) if mode == "axe" and dto.get("Extension") else None
        fields = {"mode": mode, "x_number": x_number, "extension": extension, "a": a_number, "b": b_number,
                  "ref": ref, "now": now, "expires_at": expires_at, "provider_ref": subs_id}
        # The remote binding exists now; if the caller's unit of work does not commit, nothing local refers
        # to it, so give it back (it would otherwise route calls until it expires).
        on_rollback(session, lambda: self._unbind_quietly(subs_id, x_number))

        def give_back() -> None:  # after commit: the rollback case is the compensation above
            after_transaction(session, lambda: self._unbind_quietly(subs_id, x_number), on_rollback=False)

        self.expire_due(session, now)  # only now: its UPDATE takes row locks
        try:
            return to_binding(self.insert_binding(session, **fields))  # type: ignore[arg-type]
        except IntegrityError:
            pass
        # Aliyun has just vouched that this binding is valid; a local clash is either a concurrent bind of
        # the same ref (keep that one, undo ours) or local rows that are stale (the provider expired or
        # unbound them without telling us).
        try:
            existing = self.existing_for_ref(session, ref, mode, ha, hb, now)
        except BindConflict:
            give_back()
            raise
        if existing is not None:
            give_back()
            return existing
        self._drop_stale(session, x_number, (ha, hb), extension)
        try:
            return to_binding(self.insert_binding(session, **fields))  # type: ignore[arg-type]
        except IntegrityError:  # still clashing (a concurrent local change): give the remote binding back
            give_back()
            raise BindConflict() from None

    def _drop_stale(self, session: Session, x_number: str, hashes: tuple[bytes, bytes], extension: str | None) -> None:
        stale = set(session.scalars(select(VnBindingEndpoint.binding_id).where(
            VnBindingEndpoint.x_number == x_number, VnBindingEndpoint.active.is_(True),
            VnBindingEndpoint.endpoint_hash.in_(hashes), VnBindingEndpoint.slot.in_({"", extension or ""}))))
        if extension is not None:
            stale |= set(session.scalars(select(VnBinding.id).where(
                VnBinding.x_number == x_number, VnBinding.extension == extension, VnBinding.active.is_(True))))
        for binding_id in stale:
            self._deactivate(session, binding_id, released_at=self._clock())

    def _unbind_quietly(self, subs_id: str, x_number: str) -> None:
        # If this fails too, the binding still expires at the provider; nothing local refers to it.
        with contextlib.suppress(VirtualNumberError):
            self._unbind(subs_id, x_number)

    def _unbind(self, subs_id: str, x_number: str) -> None:
        with contextlib.suppress(OutOfSession):  # already gone at the provider: the goal is reached
            self.client.call("UnbindSubscription", {"PoolKey": self.pool_key, "SubsId": subs_id,
                                                    "SecretNo": wire_number(x_number)})

    def release_remote(self, provider_ref: str, x_number: str, at: datetime | None) -> None:
        """Unbind at Aliyun, or shorten the binding there (``UpdateSubscription``/``updateExpire``).

        Called after the local transaction (see :meth:`StoredProvider.release`); a binding Aliyun no longer
        has (``isv.SUBS_NOT_EXIST``) is the goal reached.
        """
        if at is None:
            self._unbind(provider_ref, x_number)
            return
        with contextlib.suppress(OutOfSession):
            self.client.call("UpdateSubscription", {
                "PoolKey": self.pool_key, "SubsId": provider_ref, "PhoneNoX": wire_number(x_number),
                "OperateType": "updateExpire", "Expiration": to_beijing(at)})


#: ``call_type`` values of SecretReport: 0 phone_no called peer_no, 1 the reverse, 4 an intercepted call.
CALL_TYPES = frozenset({0, 1, 4})
#: Legacy ``call_type`` values of SMS records (2 SMS sent, 3 SMS received, 5 SMS intercepted), which older
#: pools still push on the same channel: they are no calls and are not logged as such.
SMS_TYPES = frozenset({2, 3, 5})


@dataclass(frozen=True)
class RejectedRecord:
    """A record of a batch that could not be taken: its position, its call id if any, the field at fault."""

    index: int
    field: str
    call_id: str | None = None


@dataclass(frozen=True)
class ReceiptBatch:
    """A parsed push, record by record: the receipts to store, the SMS records passed over, the rejects."""

    receipts: list[tuple[int, CallReceipt]]
    sms: int
    rejected: list[RejectedRecord]


class _BadField(ValueError):
    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def _time(item: dict[str, Any], name: str) -> datetime:
    try:
        return from_beijing(str(item[name]))
    except (KeyError, ValueError, TypeError):
        raise _BadField(name) from None


def _one_receipt(item: dict[str, Any]) -> CallReceipt:
    call_type = _int(item.get("call_type"))
    if call_type not in CALL_TYPES:
        raise _BadField("call_type")
    started = _time(item, "call_time" if item.get("call_time") else "start_time")
    answered = _time(item, "start_time") if item.get("start_time") else started
    released = _time(item, "release_time") if item.get("release_time") else answered
    caller = item.get("peer_no") if call_type == 1 else item.get("phone_no")
    sub_id = item.get("sub_id")
    return CallReceipt(
        call_id=str(item["call_id"])[:100], x_number=str(item.get("secret_no") or ""), started_at=started,
        duration_s=max(0, int((released - answered).total_seconds())), caller=str(caller) if caller else None,
        provider_ref=str(sub_id)[:64] if sub_id is not None else None,
        release_cause=_int(item.get("release_cause")), routed=call_type != 4)


def parse_receipt_batch(body: bytes | str) -> ReceiptBatch:
    """Parse a ``SecretReport`` push (a JSON array of call records; a single object is accepted too).

    Each record stands alone: a malformed one is reported (by index and field) and the others are taken,
    since Aliyun re-sends a refused batch only three times (after 1, 5 and 10 minutes) and then drops
    it, good records included, while a malformed record stays malformed however often it comes. Only a
    body that is no JSON at all raises ``ValueError``. The talk time is ``release_time - start_time``.
    """
    doc = json.loads(body)
    items = doc if isinstance(doc, list) else [doc]
    receipts: list[tuple[int, CallReceipt]] = []
    rejected: list[RejectedRecord] = []
    sms = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            rejected.append(RejectedRecord(index, "record"))
            continue
        raw_id = item.get("call_id")
        call_id = str(raw_id)[:100] if isinstance(raw_id, str | int) and str(raw_id) else None
        if _int(item.get("call_type")) in SMS_TYPES:
            sms += 1
            continue
        if call_id is None:
            rejected.append(RejectedRecord(index, "call_id"))
            continue
        try:
            receipts.append((index, _one_receipt(item)))
        except _BadField as bad:
            rejected.append(RejectedRecord(index, bad.field, call_id))
    return ReceiptBatch(receipts, sms, rejected)


def parse_receipts(body: bytes | str) -> list[CallReceipt]:
    """The well-formed call receipts of a push (see :func:`parse_receipt_batch`)."""
    return [receipt for _index, receipt in parse_receipt_batch(body).receipts]


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (TypeError, ValueError):
        return None
