"""/my/ in a phone-sized chromium: self-contained (nothing from another origin), strict CSP, no console errors,
no horizontal scrolling at 360 px, the landline notice with the complaint contact, errors next to their field."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.browser.flow import create_shipment, fits_width, read_code, sign_in, verify
from tests.browser.live import LiveServer, Watched
from tests.conftest import SENDER
from waybill.waybill_no import new_waybill_no

CSP_PARTS = ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'")


def _local_only(requests: list[str], server: LiveServer) -> list[str]:
    """The requests that went anywhere but the live server (nothing may)."""
    here = urlsplit(server.url).netloc
    return [u for u in requests if urlsplit(u).netloc != here]


def test_page_is_self_contained_strict_and_fits_a_phone(live_server: LiveServer, phone: Watched) -> None:
    page = phone.page
    answer = page.goto(live_server.url + "/my/")
    assert answer is not None and answer.status == 200
    headers = answer.headers
    csp = headers["content-security-policy"]
    assert all(part in csp for part in CSP_PARTS), csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    # No inline script or style in the document itself (the CSP would block them; none should be there).
    assert page.locator("script:not([src])").count() == 0 and page.locator("style").count() == 0
    assert page.locator("[style]").count() == 0
    page.wait_for_load_state("networkidle")
    assert page.is_visible("#waybill_no") and page.is_visible("#phone") and page.is_visible("#send-code")
    notice = page.text_content("#landline-notice") or ""
    assert "固定电话" in notice
    assert page.text_content("#complaint-contact") == live_server.env.settings.complaint_contact
    assert fits_width(page)
    # The same holds with the data shown (longest content of the page): go through the whole flow.
    shipment = create_shipment(live_server)
    page.fill("#waybill_no", shipment["waybill_no"])
    page.fill("#phone", shipment["recipient_phone"])
    page.click("#send-code")
    page.wait_for_selector("#code", state="visible")
    assert fits_width(page)
    verify(page, read_code(live_server, shipment["recipient_phone"]))
    page.wait_for_selector("#access-log li")
    assert fits_width(page)
    assert _local_only(phone.requests, live_server) == []
    assert not [u for u in phone.requests if "/my/" not in u and "/v1/subject/" not in u], phone.requests
    assert phone.errors == []
    # The policy is in force, not just sent: a script added without a file is refused (and reported).
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
                  " document.body.append(s); }")
    assert page.evaluate("() => window.injected") is None
    assert any("Content Security Policy" in e for e in phone.errors), phone.errors


def test_a_landline_gets_the_code_step_and_the_complaint_line(live_server: LiveServer, phone: Watched) -> None:
    """The sender's phone is a landline: the same answer as for a mobile (no oracle), no SMS, and the page
    points to the complaint line, which stays in view on every step."""
    shipment = create_shipment(live_server)
    page = phone.page
    page.goto(live_server.url + "/my/")
    page.fill("#waybill_no", shipment["waybill_no"])
    page.fill("#phone", SENDER["phone"])
    page.click("#send-code")
    page.wait_for_selector("#code", state="visible")
    assert page.is_visible("#landline-notice") and page.is_visible("#complaint-contact")
    assert "固定电话" in (page.text_content("#message") or "")


def test_asset_answers_carry_the_page_headers_and_unknown_names_are_404(live_server: LiveServer,
                                                                       phone: Watched) -> None:
    request = phone.page.context.request
    for name, kind in (("my.js", "text/javascript"), ("my.css", "text/css"), ("icon.svg", "image/svg+xml")):
        answer = request.get(f"{live_server.url}/my/assets/{name}")
        assert answer.status == 200 and answer.headers["content-type"].startswith(kind)
        assert answer.headers["x-content-type-options"] == "nosniff"
    for name in ("index.html", "..%2Fsubject_page.py", "nothing.js"):
        answer = request.get(f"{live_server.url}/my/assets/{name}")
        assert answer.status == 404 and answer.json()["error"]["code"] == "not_found"


def _chinese(text: str | None) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text or "")


def test_errors_show_in_chinese_next_to_their_field(live_server: LiveServer, phone: Watched) -> None:
    page: Any = phone.page
    page.goto(live_server.url + "/my/")
    page.click("#send-code")
    assert page.is_visible("#waybill_no-error") and "运单号" in (page.text_content("#waybill_no-error") or "")
    assert page.get_attribute("#waybill_no", "aria-invalid") == "true"
    page.fill("#waybill_no", new_waybill_no())
    page.fill("#phone", "12")  # not a phone number: the service names the field, the page shows it there
    page.click("#send-code")
    page.wait_for_selector("#phone-error", state="visible")
    assert _chinese(page.text_content("#phone-error"))
    assert page.is_hidden("#waybill_no-error") and page.get_attribute("#waybill_no", "aria-invalid") is None
    assert page.is_visible("#step-start") and page.is_hidden("#step-code")

    shipment = create_shipment(live_server)  # a wrong code: 401 invalid_code, shown at the code
    page.fill("#waybill_no", shipment["waybill_no"])
    page.fill("#phone", shipment["recipient_phone"])
    page.click("#send-code")
    page.wait_for_selector("#code", state="visible")
    real = read_code(live_server, shipment["recipient_phone"])
    page.fill("#code", f"{(int(real) + 1) % 10**6:06d}")
    page.click("#verify")
    page.wait_for_selector("#code-error", state="visible")
    assert "验证码错误" in (page.text_content("#code-error") or "")
    page.fill("#code", "12a")  # checked before anything is sent
    page.click("#verify")
    assert "6 位数字" in (page.text_content("#code-error") or "")


def test_request_errors_point_at_the_field_and_the_form_follows_the_type(live_server: LiveServer,
                                                                         phone: Watched) -> None:
    page: Any = phone.page
    sign_in(page, live_server)
    assert page.is_visible("#changes")  # a correction by default: the fields to change are shown
    page.click("#request-submit")  # nothing to change: refused before sending
    assert "至少填写一项" in (page.text_content("#changes-error") or "")
    page.fill("#change-phone", "123")  # the service refuses the new phone and names changes.phone
    page.click("#request-submit")
    page.wait_for_selector("#changes-error", state="visible")
    page.wait_for_function("() => document.querySelector('#change-phone').getAttribute('aria-invalid') === 'true'")
    assert _chinese(page.text_content("#changes-error"))
    assert page.is_hidden("#request-status") and page.locator("#requests li").count() == 0
    page.select_option("#request-type", "complaint")
    assert page.is_hidden("#changes") and "投诉" in (page.text_content("#type-help") or "")
    page.click("#request-submit")  # a complaint needs its text
    assert page.is_visible("#request-text-error")
    page.fill("#request-text", "快递员未按约定时间派送")
    page.click("#request-submit")
    page.wait_for_selector("#request-status", state="visible")
    assert page.text_content("#request-kind") == "投诉"
    assert page.get_attribute("#request-state", "data-status") == "received"


def test_a_session_the_service_no_longer_accepts_returns_to_the_start(live_server: LiveServer,
                                                                       phone: Watched) -> None:
    page: Any = phone.page
    page.goto(live_server.url + "/my/")
    page.evaluate("""() => sessionStorage.setItem('waybill.my.session', JSON.stringify({token: 'sub_' + 'x'.repeat(40),
        party: 'recipient', waybill_no: 'PW000000000000', expires_at: Date.now() + 60000}))""")
    page.reload()
    page.wait_for_selector("#step-start", state="visible")
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('验证已过期')")
    assert page.is_hidden("#step-data")
    assert page.evaluate("() => sessionStorage.getItem('waybill.my.session')") is None


def test_too_many_challenges_show_the_wait_and_hold_the_button(live_server: LiveServer, phone: Watched) -> None:
    page: Any = phone.page
    page.goto(live_server.url + "/my/")
    shipment = create_shipment(live_server)
    limit = live_server.env.settings.subject_challenges_per_phone_per_hour
    for _ in range(limit):
        page.fill("#waybill_no", shipment["waybill_no"])
        page.fill("#phone", shipment["recipient_phone"])
        page.click("#send-code")
        page.wait_for_selector("#code", state="visible")
        page.click("#restart")
    page.click("#send-code")  # the fields keep their values
    page.wait_for_selector("#send-code-error", state="visible")
    text = page.text_content("#send-code-error") or ""
    assert "频繁" in text and ("分钟" in text or "秒" in text), text
    assert page.is_disabled("#send-code") and "后可重试" in (page.text_content("#send-code") or "")
