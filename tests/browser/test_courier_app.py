"""The courier handheld app (/app/courier/) in Debian's chromium on a 360x640 phone: log in, film the label the
service rendered with the fake camera (the ZXing WebAssembly decoder: desktop Linux Chromium has no
BarcodeDetector), see the courier view, get the virtual number as a tel: link, sign off with the pickup code; a
typed token and the errors; a failed attempt. No request leaves the service's origin (every request the page
and its worker made, the .wasm included). A screenshot of each screen is written under the test's temp dir.

Waits are locator waits: the page's CSP has no 'unsafe-eval', which Playwright's string predicates need."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.conftest import CHROMIUM
from tests.browser.courier_helpers import POOL, Crew, film, make_crew, pickup_code, printed_and_assigned
from tests.browser.flow import call, fits_width
from tests.browser.live import LiveServer, Watched
from waybill.virtual_numbers.models import VnBinding

APP = "/app/courier/"
DECODE_TIMEOUT_MS = 30_000  # a generous bound on the first decode (the .wasm compiles first), not a measurement


@pytest.fixture(scope="module")
def crew(live_server: LiveServer) -> Crew:
    return make_crew(live_server)


@pytest.fixture(scope="module")
def filmed(live_server: LiveServer, crew: Crew, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shipment whose label the fake camera films, and the MJPEG file."""
    shipment = printed_and_assigned(live_server, crew)
    shipment["mjpeg"] = film(shipment["label_png"], tmp_path_factory.mktemp("camera") / "label.mjpeg")
    return shipment


@pytest.fixture(scope="module")
def camera_browser(filmed: dict[str, Any]) -> Iterator[Any]:
    """Chromium whose camera is the filmed label (and whose permission prompt says yes)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={filmed['mjpeg']}"])
        yield b
        b.close()


@pytest.fixture
def handheld(camera_browser: Any, live_server: LiveServer) -> Iterator[Watched]:
    context = camera_browser.new_context(viewport={"width": 360, "height": 640}, device_scale_factor=2,
                                         is_mobile=True, has_touch=True, locale="zh-CN", service_workers="block")
    context.grant_permissions(["camera"], origin=live_server.url)
    page = context.new_page()
    watched = Watched(page)
    # Context-wide: the page's requests and its worker's (the decoder fetches the .wasm from the worker).
    context.on("request", lambda r: watched.requests.append(r.url))
    page.on("console", lambda m: watched.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.errors.append(f"page error: {e}"))
    page.set_default_timeout(10_000)
    yield watched
    context.close()


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def _log_in(page: Any, live: LiveServer, crew: Crew) -> None:
    page.goto(live.url + APP)
    page.fill("#username", crew.courier.user.username)
    page.fill("#password", crew.courier.password)
    page.click("#login")
    expect(page.locator("#status")).to_have_attribute("data-outcome", "logged_in")
    expect(page.locator("#scan")).to_be_visible()


def _only_this_origin(watched: Watched, live: LiveServer) -> None:
    origin = urlsplit(live.url)
    strays = [u for u in watched.requests if (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)]
    assert strays == [], strays
    assert watched.requests, "no request was seen at all"


def _look_up(page: Any, token: str, waybill_no: str) -> None:
    page.fill("#manual-token", token)
    page.click("#lookup")
    expect(page.locator("#view-waybill")).to_have_text(waybill_no)


def test_log_in_scan_the_label_call_and_deliver_with_the_pickup_code(
        live_server: LiveServer, crew: Crew, filmed: dict[str, Any], handheld: Watched, tmp_path: Path) -> None:
    page = handheld.page
    page.goto(live_server.url + APP)
    expect(page.locator("#login")).to_be_visible()
    assert fits_width(page)
    _shot(page, tmp_path, "1-login")
    _log_in(page, live_server, crew)
    _shot(page, tmp_path, "2-scan")

    page.click("#scan")
    view = page.locator("#view")
    expect(page.locator("#view-waybill")).to_have_text(filmed["waybill_no"], timeout=DECODE_TIMEOUT_MS)
    expect(page.locator("#view-address")).to_have_text(filmed["full_address"])  # full: the courier delivers there
    expect(view).to_contain_text(filmed["waybill_no"])
    expect(page.locator("#camera-box")).to_be_hidden()
    assert page.evaluate("() => document.getElementById('camera').srcObject") is None  # the camera is off
    assert filmed["recipient_phone"] not in (view.text_content() or "")  # masked, as the API answers
    assert fits_width(page)
    _shot(page, tmp_path, "3-view")
    # The decoder really ran here: the worker and its .wasm came from this service.
    assert live_server.url + APP + "decoder.js" in handheld.requests
    assert live_server.url + APP + "zxing_reader.wasm" in handheld.requests

    page.click("#call")
    link = page.locator("#call")
    expect(link).to_have_attribute("href", re.compile(r"^tel:\+86\d+(,\d+)?$"))
    with live_server.services.session_factory() as s:
        binding = s.scalars(select(VnBinding).where(VnBinding.ref == filmed["id"],
                                                    VnBinding.active.is_(True))).one()
    assert binding.x_number in POOL
    expected = "tel:+86" + binding.x_number + ("," + binding.extension if binding.extension else "")
    expect(link).to_have_attribute("href", expected)
    expect(page.locator("#call-number")).to_contain_text(binding.x_number)
    if binding.extension:
        expect(page.locator("#call-number")).to_contain_text(binding.extension)
    _shot(page, tmp_path, "4-call")

    expect(page.locator("#method")).to_have_value("handover")
    page.fill("#pickup-code", pickup_code(live_server, filmed))
    _shot(page, tmp_path, "5-deliver")
    page.click("#deliver")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-outcome", "delivered")
    expect(status).to_contain_text("已签收")
    expect(status).to_contain_text(filmed["waybill_no"])
    _shot(page, tmp_path, "6-status")
    code, shipment = call(live_server, "GET", f"/v1/shipments/{filmed['id']}", headers=crew.merchant)
    assert code == 200 and shipment["status"] == "delivered"

    # The token was never put in a URL or in storage.
    assert all("access_token" not in u and "Bearer" not in u for u in handheld.requests)
    assert page.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]
    assert page.context.cookies() == []
    _only_this_origin(handheld, live_server)
    assert handheld.errors == []


def test_typed_token_and_the_errors_in_words(live_server: LiveServer, crew: Crew, handheld: Watched,
                                            tmp_path: Path) -> None:
    page = handheld.page
    _log_in(page, live_server, crew)
    status = page.locator("#status")

    page.fill("#manual-token", "tok_" + "A" * 22)  # no such label: the same answer as "not yours"
    page.click("#lookup")
    expect(status).to_have_text("未找到或未分配给您")
    expect(status).to_have_attribute("data-outcome", "error:not_found")

    shipment = printed_and_assigned(live_server, crew)
    _look_up(page, shipment["token"], shipment["waybill_no"])
    expect(page.locator("#view-address")).to_have_text(shipment["full_address"])
    _shot(page, tmp_path, "1-view-typed")

    right = pickup_code(live_server, shipment)
    wrong = ("0" if right[0] != "0" else "1") + right[1:]
    page.fill("#pickup-code", wrong)
    page.click("#deliver")
    expect(status).to_have_attribute("data-outcome", re.compile(r"^error:"))
    expect(status).to_contain_text("取件码有误")  # a 422 naming the field pickup_code, in words
    expect(page.locator("#pickup-code")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#view")).to_be_visible()  # still on the parcel
    _shot(page, tmp_path, "2-wrong-code")

    # Locker and station name a partner from the register; the list (or its absence) is said in words.
    page.select_option("#method", "station")
    expect(page.locator("#partner")).to_be_visible()
    expect(page.locator("#pickup-code")).to_be_hidden()
    expect(page.locator("#partner-note")).to_be_visible()  # no partner registered here (or no list): said so
    page.click("#deliver")
    expect(status).to_have_text("请选择合作方")
    expect(page.locator("#partner")).to_have_attribute("aria-invalid", "true")
    page.select_option("#method", "locker")
    expect(page.locator("#locker-id")).to_be_visible()
    _shot(page, tmp_path, "3-locker")
    page.select_option("#method", "handover")

    # The session ends (the token revoked on the server): the next call leads back to the login screen.
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#view")).to_be_hidden()
    assert page.input_value("#password") == ""
    _only_this_origin(handheld, live_server)
    assert [e for e in handheld.errors if "404" not in e and "422" not in e] == []


def test_a_staff_account_that_is_not_a_courier_is_turned_away(live_server: LiveServer, handheld: Watched) -> None:
    from tests.courier_api import make_staff

    sorter = make_staff(live_server.services, "fj_handheld", "sorter")
    page = handheld.page
    page.goto(live_server.url + APP)
    page.fill("#username", sorter.user.username)
    page.fill("#password", sorter.password + "x")
    page.click("#login")
    expect(page.locator("#status")).to_have_text("账号或密码不正确")
    expect(page.locator("#scan")).to_be_hidden()


def test_a_session_that_ends_on_the_server_leads_back_to_the_login(live_server: LiveServer,
                                                                   handheld: Watched) -> None:
    from courier_api.staff import disable_user
    from waybill.permissions import SYSTEM

    own = make_crew(live_server)  # a courier of its own: this one's account is disabled below
    page = handheld.page
    _log_in(page, live_server, own)
    shipment = printed_and_assigned(live_server, own)
    _look_up(page, shipment["token"], shipment["waybill_no"])
    with live_server.services.session_factory() as s:
        disable_user(s, SYSTEM, own.courier.user.username)  # revokes every token the account holds
        s.commit()
    page.click("#call")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#status")).to_have_text("登录已失效，请重新登录")
    expect(page.locator("#view")).to_be_hidden()
    expect(page.locator("#call")).not_to_have_attribute("href", re.compile("tel:"))


def test_a_failed_attempt_is_recorded(live_server: LiveServer, crew: Crew, handheld: Watched,
                                      tmp_path: Path) -> None:
    """Needs POST /v1/courier/shipments/{id}/attempt (the movement branch): the parcel goes delivery_failed."""
    page = handheld.page
    _log_in(page, live_server, crew)
    shipment = printed_and_assigned(live_server, crew)
    _look_up(page, shipment["token"], shipment["waybill_no"])
    page.select_option("#attempt-reason", "not_home")
    _shot(page, tmp_path, "1-attempt")
    page.click("#attempt")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-outcome", "delivery_failed")
    expect(status).to_contain_text("已登记投递失败（收件人不在）")
    _shot(page, tmp_path, "2-attempt-done")
    code, answer = call(live_server, "GET", f"/v1/shipments/{shipment['id']}", headers=crew.merchant)
    assert code == 200 and answer["status"] == "delivery_failed"
    _only_this_origin(handheld, live_server)


def test_a_locker_sign_off_names_a_partner_from_the_register(live_server: LiveServer, crew: Crew,
                                                             handheld: Watched, tmp_path: Path) -> None:
    """Needs the partner register (POST/GET /v1/partners and partner_id in the sign-off: the pickup branch)."""
    from tests.courier_api import make_staff, totp_now

    admin = make_staff(live_server.services, "gl_handheld", "admin")
    code, answer = call(live_server, "POST", "/v1/auth/token", {
        "username": admin.user.username, "password": admin.password, "totp": totp_now(admin.totp_secret or "")})
    assert code == 200, answer
    code, partner = call(live_server, "POST", "/v1/partners", {
        "name": "丰巢科技园1号柜", "kind": "locker", "agreement_ref": "FC-2026-001", "agreement_expires": "2030-12-31"},
        {"Authorization": f"Bearer {answer['access_token']}"})
    assert code == 201, partner

    page = handheld.page
    _log_in(page, live_server, crew)
    shipment = printed_and_assigned(live_server, crew)
    _look_up(page, shipment["token"], shipment["waybill_no"])
    page.select_option("#method", "locker")
    option = page.locator(f'#partner option[value="{partner["id"]}"]')
    expect(option).to_have_text("丰巢科技园1号柜")
    page.select_option("#partner", partner["id"])
    page.fill("#locker-id", "A-17")
    _shot(page, tmp_path, "1-locker")
    page.click("#deliver")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-outcome", "delivered")
    expect(status).to_contain_text("已签收（快递柜）")
    code, answer = call(live_server, "GET", f"/v1/shipments/{shipment['id']}", headers=crew.merchant)
    assert code == 200 and answer["status"] == "delivered"
    _only_this_origin(handheld, live_server)


def test_five_wrong_codes_lock_the_handover_and_the_app_says_so(live_server: LiveServer, crew: Crew,
                                                                handheld: Watched, tmp_path: Path) -> None:
    """Needs the pickup-code lock (409 pickup_locked after 5 wrong codes: the pickup branch)."""
    page = handheld.page
    _log_in(page, live_server, crew)
    shipment = printed_and_assigned(live_server, crew)
    _look_up(page, shipment["token"], shipment["waybill_no"])
    right = pickup_code(live_server, shipment)
    wrong = ("0" if right[0] != "0" else "1") + right[1:]
    deliver = page.locator("#deliver")
    for _ in range(6):
        page.fill("#pickup-code", wrong)
        deliver.click()  # the button stays disabled until the answer is shown
        expect(deliver).to_be_enabled()
    status = page.locator("#status")
    expect(status).to_have_attribute("data-outcome", "error:pickup_locked")
    expect(status).to_contain_text("取件码错误次数过多")
    _shot(page, tmp_path, "1-locked")
