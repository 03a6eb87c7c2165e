"""A loopback stand-in for Alibaba Cloud SMS (Dysmsapi 2017-05-25, RPC style, action SendSms over GET).

It re-implements the RPC signature check independently of the adapter (percent-encoding, sorted canonical
query, ``GET&%2F&...``, HMAC-SHA1 keyed with secret + "&"), rejects replayed nonces and stale timestamps, and
checks SendSms the way the real service does: a registered sign name, a registered template whose variables
are all given, an 11-digit mainland mobile, and a per-number limit (``isv.BUSINESS_LIMIT_CONTROL``).
"""

from __future__ import annotations

import itertools
import json

from tests.fake_aliyun_rpc import COMMON, Answer, FakeRpcServer
from tests.fake_aliyun_rpc import expected_signature as expected_signature

#: Template codes the fake "registered", with the variables each text uses.
TEMPLATE_CODES = {"subject_code": "SMS_100000001", "pickup_code": "SMS_100000002",
                  "incident_notice": "SMS_100000003", "partner_pickup_notice": "SMS_100000004"}
REGISTERED = {"SMS_100000001": {"code", "minutes"}, "SMS_100000002": {"tail", "code"},
              "SMS_100000003": {"ref", "contact"}, "SMS_100000004": {"tail", "partner", "code"}}


class FakeDysms(FakeRpcServer):
    """Start with ``with FakeDysms() as fake:``; ``fake.url`` is the endpoint to configure."""

    def __init__(self, *, access_key_id: str = "LTAI-sms-test", access_key_secret: str = "sms-secret-456",
                 sign_name: str = "隐私快递", per_phone_limit: int = 100) -> None:
        super().__init__(access_key_id=access_key_id, access_key_secret=access_key_secret)
        self.sign_name = sign_name
        self.per_phone_limit = per_phone_limit
        self.requests: list[dict[str, str]] = []  # accepted-signature SendSms requests (parameters)
        self.delivered: dict[str, int] = {}
        self._ids = itertools.count(900000001)

    def accept(self, method: str, params: dict[str, str]) -> Answer:
        if method != "GET" or params["Action"] != "SendSms":
            return self._error("InvalidAction.NotFound", 404)
        self.requests.append({k: v for k, v in params.items() if k not in COMMON})
        return self.failing() or self._send_sms(params)

    def _send_sms(self, params: dict[str, str]) -> Answer:
        phone = params.get("PhoneNumbers", "")
        if len(phone) != 11 or not phone.isdigit() or not phone.startswith("1"):
            return self._error("isv.MOBILE_NUMBER_ILLEGAL")
        if params.get("SignName") != self.sign_name:
            return self._error("isv.SMS_SIGNATURE_ILLEGAL")
        wanted = REGISTERED.get(params.get("TemplateCode", ""))
        if wanted is None:
            return self._error("isv.SMS_TEMPLATE_ILLEGAL")
        try:
            given = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return self._error("isv.INVALID_JSON_PARAM")
        if not isinstance(given, dict) or not wanted <= set(given):
            return self._error("isv.TEMPLATE_MISSING_PARAMETERS")
        if self.delivered.get(phone, 0) >= self.per_phone_limit:
            return self._error("isv.BUSINESS_LIMIT_CONTROL")
        self.delivered[phone] = self.delivered.get(phone, 0) + 1
        return 200, {"Code": "OK", "Message": "OK", "BizId": f"{next(self._ids)}^0", "RequestId": "FAKE-REQ"}
