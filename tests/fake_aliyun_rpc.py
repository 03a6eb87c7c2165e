"""What the loopback stand-ins for Alibaba Cloud's RPC-style APIs share (SMS: tests/messages/fake_dysms.py,
virtual numbers: tests/virtual_numbers/fake_aliyun.py): a threaded HTTP server on 127.0.0.1 taking GET and POST,
and the checks every RPC request passes first. The signature check is re-implemented here independently of
the adapters (percent-encoding, sorted canonical query, ``METHOD&%2F&...``, HMAC-SHA1 keyed with secret + "&"),
with replayed nonces and stale timestamps rejected, as the real services do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

COMMON = ("Action", "Version", "Format", "AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureNonce",
          "Timestamp", "Signature")
Answer = tuple[int, dict[str, Any]]


def _enc(value: str) -> str:
    return quote(value, safe="~")


def expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()) if k != "Signature")
    to_sign = "&".join((method, _enc("/"), _enc(canonical)))
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


class FakeRpcServer:
    """Start with ``with Fake(...) as fake:``; ``fake.url`` is the endpoint. Subclasses answer :meth:`accept`."""

    def __init__(self, *, access_key_id: str, access_key_secret: str) -> None:
        self.access_key_id = access_key_id
        self.secret = access_key_secret
        self.raw_queries: list[str] = []
        self.rejected: list[str] = []
        self.fail_next: str | None = None
        # Called with each request's parameters before it is handled (e.g. to look at the database's locks
        # at the moment the service talks to the provider); whatever it returns is kept in ``observed``.
        self.on_request: Callable[[dict[str, str]], Any] | None = None
        self.observed: list[Any] = []
        self._nonces: set[str] = set()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                query = urlsplit(self.path).query
                fake.raw_queries.append(query)
                params = dict(parse_qsl(query, keep_blank_values=True))
                if method == "POST":
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                    params.update(parse_qsl(body, keep_blank_values=True))
                if fake.on_request is not None:
                    fake.observed.append(fake.on_request(params))
                status, doc = fake.handle(method, params)
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _error(self, code: str, status: int = 200) -> Answer:
        self.rejected.append(code)
        return status, {"Code": code, "Message": f"fake error {code}", "RequestId": "FAKE-REQ"}

    def handle(self, method: str, params: dict[str, str]) -> Answer:
        """The common checks (credentials, signature, time, nonce, API version), then :meth:`accept`."""
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
            if params["Version"] != "2017-05-25":
                return self._error("InvalidVersion", 400)
            return self.accept(method, params)

    def accept(self, method: str, params: dict[str, str]) -> Answer:
        """Answer a request that passed the common checks (under the fake's lock)."""
        raise NotImplementedError

    def failing(self) -> Answer | None:
        """The error asked for with ``fail_next`` (once), if any."""
        if self.fail_next:
            code, self.fail_next = self.fail_next, None
            return self._error(code)
        return None
