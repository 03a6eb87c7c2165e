"""/my/ end to end on a 360x640 screen: a recipient proves the phone with the SMS code, sees their data and the
access log, files a correction, follows it; a privacy officer rejects it and the page shows the reason."""

from __future__ import annotations

from tests.browser.flow import call, create_shipment, officer_headers, read_code, verify
from tests.browser.live import LiveServer, Watched

REASON = "运单信息与核实结果一致，无需更正"


def test_recipient_sees_data_files_a_correction_and_sees_it_rejected(live_server: LiveServer,
                                                                     phone: Watched) -> None:
    shipment = create_shipment(live_server)
    page = phone.page
    page.goto(live_server.url + "/my/")
    page.fill("#waybill_no", shipment["waybill_no"])
    page.fill("#phone", shipment["recipient_phone"])
    page.click("#send-code")
    page.wait_for_selector("#code", state="visible")
    verify(page, read_code(live_server, shipment["recipient_phone"]))

    data = page.locator("#data")
    data.get_by_text(shipment["recipient_name"], exact=True).wait_for()  # the full name, not the masked one
    assert shipment["recipient_address"] in (data.text_content() or "")
    assert shipment["recipient_phone"] in (data.text_content() or "")
    assert "收件人" in (page.text_content("#party") or "")
    page.wait_for_selector("#access-log li")
    assert page.locator("#access-log li").count() >= 1

    page.select_option("#request-type", "correct")
    page.fill("#change-address", "粤海街道科技园路2号1栋101室")
    page.fill("#request-text", "门牌号写错了")
    page.click("#request-submit")
    state = page.locator("#request-state")
    state.wait_for()
    assert state.get_attribute("data-status") == "received"
    assert (state.text_content() or "").startswith("已受理")
    request_id = page.text_content("#request-id") or ""
    assert request_id and page.locator("#requests li").count() == 1
    stored = page.evaluate("() => Object.keys(sessionStorage).map(k => [k, sessionStorage.getItem(k)])")
    assert any(request_id in value for _, value in stored)
    assert page.evaluate("() => localStorage.length") == 0 and page.context.cookies() == []

    status, answer = call(live_server, "POST", f"/v1/privacy/subject-requests/{request_id}/decision",
                          {"decision": "reject", "reason": REASON}, officer_headers(live_server))
    assert status == 200, answer
    page.click("#request-refresh")
    page.wait_for_function("() => document.querySelector('#request-state').dataset.status === 'rejected'")
    assert page.text_content("#request-reason") == REASON
    assert page.is_visible("#request-complaint")  # a refusal names the complaint route

    # A reload in the same tab keeps the session (sessionStorage) and follows the same request.
    page.reload()
    page.wait_for_function("() => document.querySelector('#request-state').dataset.status === 'rejected'")
    page.click("#logout")
    assert page.is_visible("#step-start")
    assert page.evaluate("() => sessionStorage.getItem('waybill.my.session')") is None
    assert phone.errors == []
