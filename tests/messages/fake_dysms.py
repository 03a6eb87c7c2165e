"""A loopback stand-in for Alibaba Cloud SMS (Dysmsapi 2017-05-25, RPC style, action SendSms over GET).

It re-implements the RPC signature check independently of the adapter (percent-encoding, sorted canonical
query, ``GET&%2F&...``, HMAC-SHA1 keyed with secret + "&"), rejects replayed nonces and stale timestamps, and
checks SendSms the way the real service does: a registered sign name, a registered template whose variables
are all given, an 11-digit mainland mobile, and a per-number limit (``isv.BUSINESS_LIMIT_CONTROL``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

COMMON = ("Action", "Version", "Format", "AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureNonce",
          "Timestamp", "Signature")
#: Template codes the fake "registered", with the variables each text uses.
TEMPLATE_CODES = {"subject_code": "SMS_100000001", "pickup_code": "SMS_100000002",
                  "incident_notice": "SMS_100000003", "partner_pickup_notice": "SMS_100000004"}
REGISTERED = {"SMS_100000001": {"code", "minutes"}, "SMS_100000002": {"tail", "code"},
              "SMS_100000003": {"ref", "contact"}, "SMS_100000004": {"tail", "partner", "code"}}


def _enc(value: str) -> str:
    return quote(value, safe="~")


def expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()) if k != "Signature")
    to_sign = "&".join((method, _enc("/"), _enc(canonical)))
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


class FakeDysms:
    """Start with ``with FakeDysms() as fake:``; ``fake.url`` is the endpoint to configure."""

    def __init__(self, *, access_key_id: str = "LTAI-sms-test", access_key_secret: str = "sms-secret-456",
                 sign_name: str = "隐私快递", per_phone_limit: int = 100) -> None:
        self.access_key_id = access_key_id
        self.secret = access_key_secret
        self.sign_name = sign_name
        self.per_phone_limit = per_phone_limit
        self.requests: list[dict[str, str]] = []  # accepted-signature SendSms requests (parameters)
        self.raw_queries: list[str] = []
        self.rejected: list[str] = []
        self.fail_next: str | None = None
        self.delivered: dict[str, int] = {}
        self._nonces: set[str] = set()
        self._ids = itertools.count(900000001)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urlsplit(self.path).query
                fake.raw_queries.append(query)
                params = dict(parse_qsl(query, keep_blank_values=True))
                status, doc = fake.handle("GET", params)
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> FakeDysms:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _error(self, code: str, status: int = 200) -> tuple[int, dict[str, Any]]:
        self.rejected.append(code)
        return status, {"Code": code, "Message": f"fake error {code}", "RequestId": "FAKE-REQ"}

    def handle(self, method: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if [k for k in COMMON if not params.get(k)]:
                return self._error("MissingParameter", 400)
            if params["AccessKeyId"] != self.access_key_id:
                return self._error("InvalidAccessKeyId.NotFound", 404)
            if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
                return self._error("InvalidParameter", 400)
            if not hmac.compare_digest(params["Signature"], expected_signature(method, params, self.secret)):
                return self._error("SignatureDoesNotMatch", 400)
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            if abs(datetime.now(UTC) - stamp) > timedelta(minutes=15):
                return self._error("InvalidTimeStamp.Expired", 400)
            if params["SignatureNonce"] in self._nonces:
                return self._error("SignatureNonceUsed", 400)
            self._nonces.add(params["SignatureNonce"])
            if params["Version"] != "2017-05-25" or params["Action"] != "SendSms":
                return self._error("InvalidAction.NotFound", 404)
            self.requests.append({k: v for k, v in params.items() if k not in COMMON})
            if self.fail_next:
                code, self.fail_next = self.fail_next, None
                return self._error(code)
            return self._send_sms(params)

    def _send_sms(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
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
