"""Failed delivery attempts (POST /v1/courier/shipments/{id}/attempt): reassignable, counted, refusals return."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from courier_api import attempts, delivery
from courier_api.deps import delivery_deps
from courier_api.models import Assignment
from tests.conftest import RECIPIENT
from tests.courier_api import make_partner
from tests.courier_api.movement_helpers import events_of, live_tokens, make_crew, make_shipments, status_of
from waybill.models import AuditEvent
from waybill.virtual_numbers.models import VnBinding


@pytest.fixture
def crew(client, services):
    return make_crew(client, services)


def _assign(client, crew, shp, courier="mv_courier"):
    r = client.post("/v1/dispatch/assignments", json={"shipment_id": shp.id, "courier": courier},
                    headers=crew.headers["dispatcher"])
    assert r.status_code == 201, r.get_json()


def _attempt(client, crew, shp, reason="not_home", who="courier"):
    return client.post(f"/v1/courier/shipments/{shp.id}/attempt", json={"reason": reason}, headers=crew.headers[who])


def test_a_failed_attempt_ends_the_assignment_keeps_the_token_and_can_be_assigned_again(client, services, merchant,
                                                                                         crew):
    (shp,) = make_shipments(services, merchant, 1)
    _assign(client, crew, shp)
    call = client.post(f"/v1/courier/shipments/{shp.id}/call", headers=crew.headers["courier"])
    assert call.status_code == 200, call.get_json()
    r = _attempt(client, crew, shp, "not_home")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["id"] == shp.id and body["status"] == "delivery_failed" and body["ended_at"] is None
    assert RECIPIENT["phone"] not in r.get_data(as_text=True)
    with services.session_factory() as s:
        (asg,) = s.scalars(select(Assignment).where(Assignment.shipment_id == shp.id))
        assert asg.ended_at is not None and asg.end_reason == "attempt_failed"
        binding = s.get(VnBinding, asg.binding_id)
        # Released at once, as at a reassignment: the courier who failed no longer reaches the recipient.
        assert binding is not None and binding.released_at is not None
    assert live_tokens(services, shp.id) == 1
    last = events_of(services, shp.id)[-1]
    assert (last.kind, last.previous_status, last.status, last.event) == (
        "status", "out_for_delivery", "delivery_failed", "not_home")
    # The courier no longer holds it: a second attempt, a call or a delivery are refused as not theirs.
    assert _attempt(client, crew, shp).status_code == 404
    assert client.post(f"/v1/courier/shipments/{shp.id}/deliver", json=_station(services),
                       headers=crew.headers["courier"]).status_code == 404
    # Assigned again (another courier), who can call and deliver.
    _assign(client, crew, shp, "mv_courier2")
    assert status_of(services, shp.id) == "out_for_delivery"
    call2 = client.post(f"/v1/courier/shipments/{shp.id}/call", headers=crew.headers["courier2"])
    assert call2.status_code == 200, call2.get_json()
    done = client.post(f"/v1/courier/shipments/{shp.id}/deliver", json=_station(services),
                       headers=crew.headers["courier2"])
    assert done.status_code == 200 and done.get_json()["status"] == "delivered"


def test_the_last_allowed_attempt_sends_the_parcel_back(client, services, merchant, crew):
    (shp,) = make_shipments(services, merchant, 1)
    max_attempts = services.settings.max_delivery_attempts
    assert max_attempts == 3
    for n in range(1, max_attempts + 1):
        _assign(client, crew, shp)
        r = _attempt(client, crew, shp, "address_problem" if n == 2 else "not_home")
        assert r.status_code == 200, r.get_json()
        assert r.get_json()["status"] == ("returning" if n == max_attempts else "delivery_failed")
        with services.session_factory() as s:
            assert attempts.failed_attempts(s, shp.id) == n
    assert [(e.status, e.event) for e in events_of(services, shp.id)[-2:]] == [
        ("delivery_failed", "not_home"), ("returning", "max_attempts")]
    # Going back: no courier can be sent with it any more, but its label still scans at sorting centres.
    again = client.post("/v1/dispatch/assignments", json={"shipment_id": shp.id, "courier": "mv_courier"},
                        headers=crew.headers["dispatcher"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "invalid_status"
    assert live_tokens(services, shp.id) == 1
    # A label torn on the way may be replaced (a new token, the old one revoked).
    reprint = client.post(f"/v1/shipments/{shp.id}/label/reprint", json={"reason": "damaged", "format": "zpl"},
                          headers=crew.headers["sorter"])
    assert reprint.status_code == 200, reprint.get_data(as_text=True)[:200]
    assert live_tokens(services, shp.id) == 1 and status_of(services, shp.id) == "returning"


def test_a_refusal_sends_it_back_at_once(client, services, merchant, crew):
    (shp,) = make_shipments(services, merchant, 1)
    _assign(client, crew, shp)
    r = _attempt(client, crew, shp, "refused")
    assert r.status_code == 200 and r.get_json()["status"] == "returning"
    assert [(e.previous_status, e.status, e.event) for e in events_of(services, shp.id)[-2:]] == [
        ("out_for_delivery", "delivery_failed", "refused"), ("delivery_failed", "returning", "refused")]
    with services.session_factory() as s:
        actions = [(a.action, a.purpose) for a in s.scalars(select(AuditEvent).where(
            AuditEvent.object_id == shp.id, AuditEvent.action.in_(("courier.attempt", "courier.return"))))]
    assert actions == [("courier.attempt", "refused (attempt 1)"), ("courier.return", "refused")]


def test_attempts_on_what_is_not_theirs_or_not_out_for_delivery_are_refused(client, services, merchant, crew):
    unassigned, delivered, other = make_shipments(services, merchant, 3)
    assert _attempt(client, crew, unassigned).status_code == 404  # printed, nobody's
    _assign(client, crew, other)
    r = _attempt(client, crew, other, who="courier2")  # the same station, not theirs
    nobody = client.post("/v1/courier/shipments/shp_01M8SFAT8YYWH11MK71BBNJQ30/attempt", json={"reason": "other"},
                         headers=crew.headers["courier2"])
    assert (r.status_code, r.data) == (nobody.status_code, nobody.data) == (404, nobody.data)
    _assign(client, crew, delivered)
    assert client.post(f"/v1/courier/shipments/{delivered.id}/deliver", json=_station(services),
                       headers=crew.headers["courier"]).status_code == 200
    assert _attempt(client, crew, delivered).status_code == 404  # delivered: no assignment any more
    assert status_of(services, delivered.id) == "delivered"
    bad = _attempt(client, crew, other, "lost")
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "reason"
    assert status_of(services, other.id) == "out_for_delivery"
    with services.session_factory() as s:
        denied = [a.outcome for a in s.scalars(select(AuditEvent).where(
            AuditEvent.action == "courier.attempt", AuditEvent.object_id == other.id))]
    assert denied == ["denied"]


def test_the_domain_checks_the_reason_too(session, services, merchant, crew):
    (shp,) = make_shipments(services, merchant, 1)
    with services.session_factory() as s:
        delivery.assign(s, crew.principals["dispatcher"], shp.id, "mv_courier", provider=services.provider,
                            pickup=delivery_deps(services).pickup)
        s.commit()
    from waybill.errors import ValidationFailed

    with services.session_factory() as s, pytest.raises(ValidationFailed):
        attempts.record_attempt(s, delivery_deps(services), crew.principals["courier"], shp.id, "lost",
                                max_attempts=3)


def test_max_delivery_attempts_is_a_validated_setting():
    from waybill.settings import SettingsError, load_settings

    assert load_settings(environ={"WAYBILL_MAX_DELIVERY_ATTEMPTS": "5"}).max_delivery_attempts == 5
    for bad in ("0", "21", "three"):
        with pytest.raises(SettingsError, match="MAX_DELIVERY_ATTEMPTS"):
            load_settings(environ={"WAYBILL_MAX_DELIVERY_ATTEMPTS": bad})


def _station(services):
    """A station sign-off's body (a registered station partner)."""
    return {"method": "station", "partner_id": make_partner(services)}
