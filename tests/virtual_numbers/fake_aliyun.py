"""A loopback stand-in for Alibaba Cloud Phone Number Protection (Dyplsapi 2017-05-25, RPC style).

It verifies every request's HMAC-SHA1 signature (re-implemented here independently of the adapter),
rejects replayed nonces and stale timestamps, and speaks BindAxb, BindAxnExtension, UnbindSubscription
and UpdateSubscription with a small X pool, answering the provider's error codes where the real service
would (``isv.NO_AVAILABLE_NUMBER`` when no X is free for both parties, ``isv.SUBS_NOT_EXIST`` ...).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from tests.fake_aliyun_rpc import COMMON, Answer, FakeRpcServer
from tests.fake_aliyun_rpc import expected_signature as expected_signature


class FakeAliyun(FakeRpcServer):
    """Start with ``with FakeAliyun(...) as fake:``; ``fake.url`` is the endpoint to configure."""

    def __init__(self, *, access_key_id: str = "LTAI-test", access_key_secret: str = "fake-secret-123",
                 pool_key: str = "FC100000", pool: list[str] | None = None) -> None:
        super().__init__(access_key_id=access_key_id, access_key_secret=access_key_secret)
        self.pool_key = pool_key
        self.pool = list(pool or ["17100000001", "17100000002"])
        self.bindings: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, str]] = []
        self._ids = itertools.count(1000000001)

    def accept(self, method: str, params: dict[str, str]) -> Answer:
        if method != "POST":
            return self._error("InvalidAction.NotFound", 404)
        self.requests.append({k: v for k, v in params.items() if k not in COMMON or k == "Action"})
        failed = self.failing()
        if failed is not None:
            return failed
        if params.get("PoolKey") != self.pool_key:
            return self._error("isv.POOLKEY_NOT_EXISTS")
        action = getattr(self, "_" + params["Action"], None)
        if action is None:
            return self._error("InvalidAction.NotFound", 404)
        result: Answer = action(params)
        return result

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

    def _bind(self, params: dict[str, str], extension: str | None) -> Answer:
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

    def _BindAxb(self, params: dict[str, str]) -> Answer:  # noqa: N802
        return self._bind(params, None)

    def _BindAxnExtension(self, params: dict[str, str]) -> Answer:  # noqa: N802
        return self._bind(params, f"{next(self._ids) % 900 + 100}")  # 1-3 digits, as the real service

    def _UnbindSubscription(self, params: dict[str, str]) -> Answer:  # noqa: N802
        binding = self.bindings.get(params.get("SubsId", ""))
        if binding is None or binding["x"] != params.get("SecretNo"):
            return self._error("isv.SUBS_NOT_EXIST")
        del self.bindings[params["SubsId"]]
        return 200, {"Code": "OK", "Message": "OK", "RequestId": "FAKE-REQ", "ChargeId": "true"}

    def _UpdateSubscription(self, params: dict[str, str]) -> Answer:  # noqa: N802
        binding = self.bindings.get(params.get("SubsId", ""))
        if binding is None or binding["x"] != params.get("PhoneNoX"):
            return self._error("isv.SUBS_NOT_EXIST")
        if params.get("OperateType") != "updateExpire":
            return self._error("isv.INVALID_PARAMETERS")
        binding["expiration"] = datetime.strptime(params["Expiration"], "%Y-%m-%d %H:%M:%S")
        return 200, {"Code": "OK", "Message": "OK", "RequestId": "FAKE-REQ"}
