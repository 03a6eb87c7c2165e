"""Adapter for Alibaba Cloud SMS (短信服务, product ``Dysmsapi``, API 2017-05-25): action ``SendSms``.

RPC style: a signed GET (signature version 1.0, HMAC-SHA1 over ``GET&%2F&`` and the percent-encoded sorted
query, key = AccessKey secret + ``&``; the signing is shared with the virtual-number adapter). Parameters:
``PhoneNumbers``, ``SignName``, ``TemplateCode`` (our template name mapped by ``WAYBILL_SMS_TEMPLATE_CODES``),
``TemplateParam`` (JSON) and ``OutId`` (our message id, so a retried task can be told apart at Aliyun).
The answer's ``Code`` maps to the named errors of :mod:`.base`; the provider's ``Message`` is never passed on.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from waybill.messages.base import Delivery, InvalidPhone, MessageError, OutgoingMessage, ProviderError, Throttled
from waybill.virtual_numbers.aliyun import CredentialsError as CredentialsError
from waybill.virtual_numbers.aliyun import read_credential_fields, rpc_call, sign

API_VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"

#: Codes where trying again later can help (the outbox retries with backoff).
_RETRYABLE = frozenset({"isp.SYSTEM_ERROR", "isp.RAM_PERMISSION_DENY", "isv.AMOUNT_NOT_ENOUGH", "Throttling",
                        "Throttling.User", "ServiceUnavailable", "InternalError"})
#: Codes that will fail the same way every time: the message is marked failed, not retried.
PERMANENT = frozenset({"isv.TEMPLATE_MISSING_PARAMETERS", "isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL",
                       "InvalidAccessKeyId.NotFound", "SignatureDoesNotMatch", "isv.INVALID_PARAMETERS",
                       "isv.PARAM_LENGTH_LIMIT", "isv.BLACK_KEY_CONTROL_LIMIT"})


@dataclass(frozen=True)
class SmsCredentials:
    """The operator's AccessKey for Dysmsapi, from a 0600 JSON file (secrets are not settings)."""

    access_key_id: str
    access_key_secret: str = field(repr=False)


def load_credentials(path: Path) -> SmsCredentials:
    """Read and check the credentials file: owner-only, ``access_key_id`` and ``access_key_secret`` present."""
    return SmsCredentials(**read_credential_fields(path, ("access_key_id", "access_key_secret"), "SMS"))


def error_for(code: str) -> MessageError:
    """Map a Dysmsapi error code to a named exception (unknown codes: a permanent ProviderError)."""
    short = code[:60] or "unknown"
    if code == "isv.BUSINESS_LIMIT_CONTROL":
        return Throttled(60.0)
    if code == "isv.MOBILE_NUMBER_ILLEGAL":
        return InvalidPhone(field="phone")
    return ProviderError(f"短信服务商拒绝了请求（{short}）", code=short, retryable=code in _RETRYABLE)


class AliyunMessageProvider:
    """:class:`~waybill.messages.base.MessageProvider` on top of Dysmsapi ``SendSms``."""

    name = "aliyun"

    def __init__(self, *, access_key_id: str, access_key_secret: str, sign_name: str,
                 template_codes: Mapping[str, str], endpoint: str = DEFAULT_ENDPOINT, timeout: float = 10.0) -> None:
        if not access_key_id or not access_key_secret:
            raise ValueError("access key id and secret are required")
        if not endpoint.startswith(("https://", "http://")):
            raise ValueError("endpoint must be an http(s) URL")
        if not sign_name:
            raise ValueError("sign name is required")
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.sign_name = sign_name
        self.template_codes = dict(template_codes)
        self.endpoint = endpoint
        self.timeout = timeout

    def __repr__(self) -> str:  # the secret must not end up in logs or tracebacks
        return f"<AliyunMessageProvider {self.endpoint} key={self.access_key_id}>"

    def deliver(self, message: OutgoingMessage) -> Delivery:
        code = self.template_codes.get(message.template)
        if code is None:  # settings check the map covers every template; a new template without a code is a bug
            raise ProviderError("短信模板未配置", code="template_not_configured")
        doc = self.call("SendSms", {
            "PhoneNumbers": message.phone, "SignName": self.sign_name, "TemplateCode": code,
            "TemplateParam": json.dumps(message.params, ensure_ascii=False, sort_keys=True), "OutId": message.id})
        biz_id = doc.get("BizId")
        return Delivery(provider_ref=str(biz_id)[:64] if biz_id else None, keep_text=False)

    def call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        """One signed GET; the JSON answer when ``Code`` is ``OK``, a named error otherwise."""
        query = {
            "Action": action, "Version": API_VERSION, "Format": "JSON", "AccessKeyId": self.access_key_id,
            "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": secrets.token_hex(16),
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "RegionId": "cn-hangzhou", **params,
        }
        query["Signature"] = sign("GET", query, self._secret)
        url = self.endpoint + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        request = urllib.request.Request(url, method="GET", headers={"Accept": "application/json"})  # noqa: S310
        return rpc_call(request, self.timeout, provider="短信服务商", error_type=ProviderError, error_for=error_for)
