"""A loopback stand-in for Alibaba Cloud Phone Number Protection (Dyplsapi 2017-05-25, RPC style).

It verifies every request's HMAC-SHA1 signature (re-implemented here independently of the adapter),
rejects replayed nonces and stale timestamps, and speaks BindAxb, BindAxnExtension, UnbindSubscription
and UpdateSubscription with a small X pool, answering the provider's error codes where the real service
would (``isv.NO_AVAILABLE_NUMBER`` when no X is free for both parties, ``isv.SUBS_NOT_EXIST`` ...).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

COMMON = ("Action", "Version", "Format", "AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureNonce",
          "Timestamp", "Signature")


def _enc(value: str) -> str:
    return quote(value, safe="~")


def expected_signature(method: str, params: dict[str, str], secret: str) -> str:
    canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()) if k != "Signature")
    to_sign = "&".join((method, _enc("/"), _enc(canonical)))
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


class FakeAliyun:
    """Start with ``with FakeAliyun(...) as fake:``; ``fake.url`` is the endpoint to configure."""

    def __init__(self, *, access_key_id: str = "LTAI-test", access_key_secret: str = "fake-secret-123",
                 pool_key: str = "FC100000", pool: list[str] | None = None) -> None:
        self.access_key_id = access_key_id
        self.secret = access_key_secret
        self.pool_key = pool_key
        self.pool = list(pool or ["17100000001", "17100000002"])
        self.bindings: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, str]] = []
        self.rejected: list[str] = []
        self.fail_next: str | None = None
        # Called with each request's parameters before it is handled (e.g. to look at the database's locks
        # at the moment the service talks to the provider); whatever it returns is kept in ``observed``.
        self.on_request: Callable[[dict[str, str]], Any] | None = None
        self.observed: list[Any] = []
        self._nonces: set[str] = set()
        self._ids = itertools.count(1000000001)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
                params.update(parse_qsl(body, keep_blank_values=True))
                if fake.on_request is not None:
                    fake.observed.append(fake.on_request(params))
                status, doc = fake.handle("POST", params)
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

    def __enter__(self) -> FakeAliyun:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- protocol ------------------------------------------------------------------------------------------
    def _error(self, code: str, status: int = 200) -> tuple[int, dict[str, Any]]:
        self.rejected.append(code)
        return status, {"Code": code, "Message": f"fake error {code}", "RequestId": "FAKE-REQ"}

    def handle(self, method: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            missing = [k for k in COMMON if not params.get(k)]
            if missing:
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
            self.requests.append({k: v for k, v in params.items() if k not in COMMON or k == "Action"})
            if self.fail_next:
                code, self.fail_next = self.fail_next, None
                return self._error(code)
            if params.get("PoolKey") != self.pool_key:
                return self._error("isv.POOLKEY_NOT_EXISTS")
            action = getattr(self, "_" + params["Action"], None)
            if action is None:
                return self._error("InvalidAction.NotFound", 404)
            return action(params)

    def _free_x(self, a: str, b: str, *, extension: bool) -> str | None:
        """AXB: neither party on X. AXN extension: PhoneNoA (reached by X plus the extension) and PhoneNoB
        (reached when PhoneNoA calls X) must not be reachable by X alone already; PhoneNoB may hold other
        extension bindings on X, since each has its own extension."""
        for x in self.pool:
            on_x = [bd for bd in self.bindings.values() if bd["x"] == x]
            if extension:
                exclusive = {n for bd in on_x for n in ((bd["a"], bd["b"]) if not bd["ext"] else (bd["a"],))}
                if not exclusive & {a, b}:
                    return x
            elif not {n for bd in on_x for n in (bd["a"], bd["b"])} & {a, b}:
                return x
        return None

    def _bind(self, params: dict[str, str], extension: str | None) -> tuple[int, dict[str, Any]]:
        a, b = params.get("PhoneNoA", ""), params.get("PhoneNoB", "")
        if not (a.isdigit() and b.isdigit()):
            return self._error("isv.MOBILE_NUMBER_ILLEGAL")
        try:
            expires = datetime.strptime(params["Expiration"], "%Y-%m-%d %H:%M:%S")
        except (KeyError, ValueError):
            return self._error("isv.EXPIRE_DATE_ILLEGAL")
        x = self._free_x(a, b, extension=extension is not None)
        if x is None:
            return self._error("isv.NO_AVAILABLE_NUMBER")
        subs_id = str(next(self._ids))
        self.bindings[subs_id] = {"a": a, "b": b, "x": x, "ext": extension, "expiration": expires,
                                  "out_id": params.get("OutId")}
        dto = {"SubsId": subs_id, "SecretNo": x, "Extension": extension or ""}
        return 200, {"Code": "OK", "Message": "OK", "RequestId": "FAKE-REQ", "SecretBindDTO": dto}

    def _BindAxb(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return self._bind(params, None)

    def _BindAxnExtension(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        return self._bind(params, f"{next(self._ids) % 900 + 100}")  # 1-3 digits, as the real service

    def _UnbindSubscription(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        binding = self.bindings.get(params.get("SubsId", ""))
        if binding is None or binding["x"] != params.get("SecretNo"):
            return self._error("isv.SUBS_NOT_EXIST")
        del self.bindings[params["SubsId"]]
        return 200, {"Code": "OK", "Message": "OK", "RequestId": "FAKE-REQ", "ChargeId": "true"}

    def _UpdateSubscription(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        binding = self.bindings.get(params.get("SubsId", ""))
        if binding is None or binding["x"] != params.get("PhoneNoX"):
            return self._error("isv.SUBS_NOT_EXIST")
        if params.get("OperateType") != "updateExpire":
            return self._error("isv.INVALID_PARAMETERS")
        binding["expiration"] = datetime.strptime(params["Expiration"], "%Y-%m-%d %H:%M:%S")
        return 200, {"Code": "OK", "Message": "OK", "RequestId": "FAKE-REQ"}
