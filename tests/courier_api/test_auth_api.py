"""POST /v1/auth/token and /v1/auth/logout, and staff tokens on other endpoints."""

from __future__ import annotations

import pytest
from flask import jsonify
from sqlalchemy import select

from courier_api import staff
from tests.courier_api import bearer, login, make_staff, totp_now
from waybill.models import AuditEvent
from waybill.permissions import SYSTEM
from waybill.web.auth import authenticate

WRONG = "not-the-password-1"


@pytest.fixture
def staff_client(app):
    """The app plus a test-only route that shows who the bearer token resolves to."""

    def whoami():
        p = authenticate()
        return jsonify({"kind": p.kind, "id": p.id, "role": p.role, "station": p.station})

    app.add_url_rule("/_test/whoami", "test_whoami", whoami)
    return app.test_client()


def _events(services, action=None):
    with services.session_factory() as s:
        stmt = select(AuditEvent).order_by(AuditEvent.seq)
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        return s.execute(stmt).scalars().all()


def _comparable(resp):
    headers = {k: v for k, v in resp.headers.items() if k not in ("X-Request-Id", "Content-Length")}
    return resp.status_code, resp.get_json(), headers


def test_login_and_use_the_token(staff_client, services):
    new = make_staff(services, "c.one", "courier", station="A001")
    r = login(staff_client, new)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "role"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900 and body["role"] == "courier"
    assert r.headers["Cache-Control"] == "no-store"
    me = staff_client.get("/_test/whoami", headers=bearer(body["access_token"]))
    assert me.get_json() == {"kind": "staff", "id": new.user.id, "role": "courier", "station": "A001"}
    # A courier holds no merchant permission: the merchant API refuses the token.
    assert staff_client.get("/v1/shipments", headers=bearer(body["access_token"])).status_code == 403
    login_events = _events(services, "auth.login")
    assert [e.actor for e in login_events] == [f"staff:{new.user.id}"]


def test_mfa_login_requires_code_and_rejects_replay(staff_client, services):
    new = make_staff(services, "adm", "admin")
    for missing in ({}, {"totp": None}):
        r = staff_client.post("/v1/auth/token", json={"username": "adm", "password": new.password, **missing})
        assert r.status_code == 401
    code = totp_now(new.totp_secret)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert login(staff_client, new, totp=wrong).status_code == 401
    ok = login(staff_client, new, totp=code)
    assert ok.status_code == 200 and ok.get_json()["role"] == "admin"
    replay = login(staff_client, new, totp=code)
    assert replay.status_code == 401
    assert replay.get_json()["error"]["code"] == "unauthenticated"


def test_unknown_user_and_wrong_password_answer_identically(staff_client, services):
    make_staff(services, "real", "sorter")
    a = staff_client.post("/v1/auth/token", json={"username": "real", "password": WRONG})
    b = staff_client.post("/v1/auth/token", json={"username": "ghost", "password": WRONG})
    assert a.status_code == 401
    assert _comparable(a) == _comparable(b)
    assert WRONG not in a.get_data(as_text=True)
    failed = _events(services, "auth.failed")
    assert len(failed) == 2 and all(e.outcome == "denied" for e in failed)
    # Audit events never carry the submitted username or password.
    for e in failed:
        text = " ".join(str(v) for v in (e.actor, e.object_id, e.purpose, e.fields))
        assert "ghost" not in text and WRONG not in text


def test_five_failures_do_not_lock_the_account(staff_client, services):
    new = make_staff(services, "lock.me", "dispatcher")
    wrong = [staff_client.post("/v1/auth/token", json={"username": "lock.me", "password": WRONG}) for _ in range(5)]
    assert [r.status_code for r in wrong] == [401] * 5
    # The same client is now backing off for this user (429), another client logs in at once.
    right = {"username": "lock.me", "password": new.password}
    assert staff_client.post("/v1/auth/token", json=right).status_code == 429
    assert staff_client.post("/v1/auth/token", json=right, environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200
    assert _events(services, "auth.locked") == []


def test_disabled_users_token_stops_on_the_next_request(staff_client, services):
    new = make_staff(services, "quits", "courier")
    token = login(staff_client, new).get_json()["access_token"]
    assert staff_client.get("/_test/whoami", headers=bearer(token)).status_code == 200
    with services.session_factory() as s:
        staff.disable_user(s, SYSTEM, "quits")
        s.commit()
    r = staff_client.get("/_test/whoami", headers=bearer(token))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated"
    assert login(staff_client, new).status_code == 401


def test_logout_revokes_the_presented_token_only(staff_client, services, merchant):
    new = make_staff(services, "leaving", "sorter")
    first = login(staff_client, new).get_json()["access_token"]
    second = login(staff_client, new).get_json()["access_token"]
    r = staff_client.post("/v1/auth/logout", headers=bearer(first))
    assert r.status_code == 204
    assert staff_client.get("/_test/whoami", headers=bearer(first)).status_code == 401
    assert staff_client.post("/v1/auth/logout", headers=bearer(first)).status_code == 401
    assert staff_client.get("/_test/whoami", headers=bearer(second)).status_code == 200
    assert staff_client.post("/v1/auth/logout").status_code == 401
    assert staff_client.post("/v1/auth/logout", headers=merchant.headers).status_code == 403
    assert [e.actor for e in _events(services, "auth.logout")] == [f"staff:{new.user.id}"]


@pytest.mark.parametrize("body,field", [
    ({"password": "x"}, "username"),
    ({"username": "a"}, "password"),
    ({"username": "a", "password": 12345678}, "password"),
    ({"username": 5, "password": "x"}, "username"),
    ({"username": "Has Space", "password": "x"}, "username"),
    ({"username": "a", "password": "x", "totp": "12345"}, "totp"),
    ({"username": "a", "password": "x", "totp": 123456}, "totp"),
    ({"username": "a", "password": "x", "remember": True}, "remember"),
    ({"username": "a", "password": "x" * 1025}, "password"),
])
def test_validation_errors_name_the_field(client, body, field):
    r = client.post("/v1/auth/token", json=body)
    assert r.status_code == 422
    err = r.get_json()["error"]
    assert err["code"] == "validation_error" and err["field"] == field
    assert "Has Space" not in err["message"] and "12345" not in err["message"]


def test_non_json_and_non_object_bodies(client):
    assert client.post("/v1/auth/token", data="username=a").status_code == 422
    assert client.post("/v1/auth/token", json=["a", "b"]).status_code == 422


def test_openapi_documents_the_auth_endpoints(client):
    doc = client.get("/openapi.json").get_json()
    token = doc["paths"]["/v1/auth/token"]["post"]
    assert token["security"] == [] and token["tags"] == ["auth"]
    assert {"200", "401", "422", "429"} <= set(token["responses"])
    schema = doc["components"]["schemas"]["TokenRequest"]
    assert set(schema["properties"]) == {"username", "password", "totp"}
    assert schema["additionalProperties"] is False
    assert "/v1/auth/logout" in doc["paths"]
