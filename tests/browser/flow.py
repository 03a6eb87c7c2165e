"""Steps the browser tests share: a shipment made through the merchant API, the SMS code read back from the
built-in provider's outbox, the page's verify step, a privacy officer's decision, and the width check."""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.error
import urllib.request
from typing import Any

from tests.browser.live import LiveServer
from tests.conftest import make_merchant, shipment_body
from tests.courier_api import make_staff, totp_now

_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def call(server: LiveServer, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One JSON request to the live server over HTTP: ``(status, decoded body)``."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (the test's own localhost server)
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def create_shipment(server: LiveServer) -> dict[str, Any]:
    """A new shipment whose recipient has a phone of its own (the challenge throttles per phone)."""
    merchant = make_merchant(server.services, "浏览器测试商户" + secrets.token_hex(2))
    body = shipment_body("BR-" + secrets.token_hex(4))
    body["recipient"]["phone"] = "139" + "".join(secrets.choice("0123456789") for _ in range(8))
    status, shipment = call(server, "POST", "/v1/shipments", body, merchant.headers)
    assert status == 201, shipment
    return {**shipment, "recipient_phone": body["recipient"]["phone"], "recipient_name": body["recipient"]["name"],
            "recipient_address": body["recipient"]["address"]}


def read_code(server: LiveServer, phone: str, timeout_s: float = 15.0) -> str:
    """The 6-digit code in the newest SMS the built-in provider 'sent' to ``phone`` (the outbox delivers it
    in the background, so this waits for it)."""
    from waybill import messages

    deadline = time.monotonic() + timeout_s
    while True:
        with server.services.session_factory() as session:
            sent = messages.sent_to(session, server.services, phone)
        found = _CODE.search(sent[0]["text"]) if sent else None
        if found:
            return found.group(1)
        assert time.monotonic() < deadline, f"no SMS code reached {phone[:3]}… within {timeout_s} s"
        time.sleep(0.2)


def verify(page: Any, code: str) -> None:
    page.fill("#code", code)
    page.click("#verify")
    page.wait_for_selector("#step-data", state="visible")


def sign_in(page: Any, server: LiveServer) -> dict[str, Any]:
    """A new shipment, and its recipient signed in on /my/ (code read from the outbox); returns the shipment."""
    shipment = create_shipment(server)
    page.goto(server.url + "/my/")
    page.fill("#waybill_no", shipment["waybill_no"])
    page.fill("#phone", shipment["recipient_phone"])
    page.click("#send-code")
    page.wait_for_selector("#code", state="visible")
    verify(page, read_code(server, shipment["recipient_phone"]))
    return shipment


def officer_headers(server: LiveServer) -> dict[str, str]:
    """A privacy officer, logged in over HTTP (password + TOTP)."""
    new = make_staff(server.services, "po_" + secrets.token_hex(3), "privacy_officer")
    status, answer = call(server, "POST", "/v1/auth/token", {
        "username": new.user.username, "password": new.password, "totp": totp_now(new.totp_secret or "")})
    assert status == 200, answer
    return {"Authorization": f"Bearer {answer['access_token']}"}


def fits_width(page: Any, width: int = 360) -> bool:
    """Nothing wider than the viewport: no horizontal scrolling on a ``width`` px screen."""
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]")
    return bool(sizes[2] == width and sizes[0] <= width and sizes[1] <= width)
