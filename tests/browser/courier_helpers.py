"""What the courier app's browser tests need besides the browser: a courier and a dispatcher at the recipients'
station, shipments printed and assigned through the API, the label filmed as the fake camera's MJPEG file, and
the pickup code the recipient would tell the courier."""

from __future__ import annotations

import io
import secrets
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image

from courier_api.staff import NewUser, set_phone
from tests.browser.flow import call, read_code
from tests.browser.live import LiveServer
from tests.conftest import make_merchant, shipment_body
from tests.courier_api import make_staff, totp_now
from waybill.permissions import SYSTEM
from waybill.virtual_numbers import add_numbers

STATION = "755-W012"  # the test recipient's 深圳市南山区
POOL = ["17000000101", "17000000102", "17000000103", "17000000104"]


@dataclass
class Crew:
    courier: NewUser
    dispatcher: dict[str, str]
    merchant: dict[str, str]


def make_crew(live: LiveServer) -> Crew:
    """A courier (no TOTP: couriers log in with a password) with a phone of their own, a dispatcher logged in,
    a merchant, and the virtual-number pool."""
    svc = live.services
    tag = secrets.token_hex(3)
    with svc.session_factory() as s:
        add_numbers(s, POOL)
        s.commit()
    courier = make_staff(svc, "kd_" + tag, "courier", STATION)
    with svc.session_factory() as s:
        set_phone(s, SYSTEM, courier.user.username, "137" + "".join(secrets.choice("0123456789") for _ in range(8)),
                  svc.codec)
        s.commit()
    disp = make_staff(svc, "dd_" + tag, "dispatcher", STATION)
    body = {"username": disp.user.username, "password": disp.password}
    if disp.totp_secret:
        body["totp"] = totp_now(disp.totp_secret)
    status, answer = call(live, "POST", "/v1/auth/token", body)
    assert status == 200, answer
    merchant = make_merchant(svc, "手持端测试商户" + tag)
    return Crew(courier, {"Authorization": f"Bearer {answer['access_token']}"}, merchant.headers)


def _get_bytes(live: LiveServer, path: str, headers: dict[str, str]) -> bytes:
    req = urllib.request.Request(live.url + path, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (the test's own localhost server)
        assert resp.status == 200
        return bytes(resp.read())


def printed_and_assigned(live: LiveServer, crew: Crew) -> dict[str, Any]:
    """A new shipment, its label rendered by the service as PNG (the QR token issued), assigned to the courier.
    Returns the shipment with ``label_png``, ``token`` (the QR payload, read by zxing-cpp) and the recipient's
    data as the merchant sent it."""
    body = shipment_body("HH-" + secrets.token_hex(4))
    body["recipient"]["phone"] = "139" + "".join(secrets.choice("0123456789") for _ in range(8))
    status, shipment = call(live, "POST", "/v1/shipments", body, crew.merchant)
    assert status == 201, shipment
    png = _get_bytes(live, f"/v1/shipments/{shipment['id']}/label?format=png", crew.merchant)
    status, answer = call(live, "POST", "/v1/dispatch/assignments",
                          {"shipment_id": shipment["id"], "courier": crew.courier.user.username}, crew.dispatcher)
    assert status == 201, answer
    (qr,) = [r for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
             if r.format == zxingcpp.BarcodeFormat.QRCode]
    r = body["recipient"]
    return {**shipment, "label_png": png, "token": qr.text, "recipient_phone": r["phone"],
            "full_address": f"{r['province']}{r['city']}{r['district']}{r['address']}"}


def pickup_code(live: LiveServer, shipment: dict[str, Any]) -> str:
    """The code the recipient tells the courier at a handover: the random 6-digit code sent by SMS when the
    parcel went out for delivery, read from the built-in SMS provider's outbox (``waybill.messages.sent_to``)."""
    return read_code(live, shipment["recipient_phone"])


def film(label_png: bytes, path: Path, *, frames: int = 45, qr_px: int = 300) -> Path:
    """The label as a camera would film it: an MJPEG file (JPEG frames back to back) of 1280x720 frames with
    the label scaled so its QR code is ``qr_px`` wide in the middle of the picture (where the app's centre
    crop looks), shifted a few pixels from frame to frame like a hand-held phone."""
    label = Image.open(io.BytesIO(label_png)).convert("L")
    (qr,) = [r for r in zxingcpp.read_barcodes(label) if r.format == zxingcpp.BarcodeFormat.QRCode]
    corners = [qr.position.top_left, qr.position.top_right, qr.position.bottom_right, qr.position.bottom_left]
    xs, ys = [c.x for c in corners], [c.y for c in corners]
    scale = qr_px / (max(xs) - min(xs))
    label = label.resize((round(label.width * scale), round(label.height * scale)), Image.Resampling.LANCZOS)
    cx, cy = (min(xs) + max(xs)) / 2 * scale, (min(ys) + max(ys)) / 2 * scale
    out = io.BytesIO()
    for i in range(frames):
        dx, dy = (i % 5) - 2, (i % 3) - 1
        canvas = Image.new("RGB", (1280, 720), (96, 86, 74))  # a parcel's brown cardboard around the label
        canvas.paste(label, (round(640 - cx) + dx, round(360 - cy) + dy))
        canvas.save(out, "JPEG", quality=88)
    path.write_bytes(out.getvalue())
    return path
