"""Merchant API key lifecycle (issue 11, item 13): list, rotate with a grace period, revoke, disable; audited,
with no key material in listings or audit events."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from tests.conftest import PG_URL, make_merchant, run
from waybill import merchants
from waybill.errors import AuthenticationFailed, Conflict, NotFound
from waybill.models import ApiKey, AuditEvent, utcnow
from waybill.permissions import SYSTEM
from waybill.services import build
from waybill.settings import load_settings

DAY = timedelta(hours=24)


def _secret(services):
    return services.keys.secret("api_key")


def _auth(services, raw, now=None):
    with services.session_factory() as s:
        principal = merchants.authenticate(s, raw, api_key_secret=_secret(services), now=now)
        s.commit()
    return principal


def _rotate(services, merchant_id, *, grace=DAY, now=None, mode="live"):
    with services.session_factory() as s:
        done = merchants.rotate_keys(s, SYSTEM, merchant_id, api_key_secret=_secret(services), grace=grace,
                                     now=now, mode=mode)
        s.commit()
    return done


def _bearer(raw):
    return {"Authorization": f"Bearer {raw}"}


def test_rotation_keeps_the_old_key_for_the_grace_period_then_stops_it(services):
    m = make_merchant(services)
    t0 = utcnow()
    done = _rotate(services, m.id, now=t0)
    assert done.api_key.startswith("wbk_") and done.api_key != m.api_key
    assert done.expiring == [m.api_key.split("_")[1]] and done.old_keys_expire_at == t0 + DAY
    # Within the grace period both keys work; at its end the old one stops, the new one goes on.
    assert _auth(services, m.api_key, now=t0 + DAY - timedelta(seconds=1)).id == m.id
    assert _auth(services, done.api_key, now=t0 + DAY - timedelta(seconds=1)).id == m.id
    with pytest.raises(AuthenticationFailed):
        _auth(services, m.api_key, now=t0 + DAY)
    assert _auth(services, done.api_key, now=t0 + 10 * DAY).id == m.id


def test_a_second_rotation_never_lengthens_an_old_keys_grace(services):
    m = make_merchant(services)
    t0 = utcnow()
    first = _rotate(services, m.id, now=t0)
    second = _rotate(services, m.id, now=t0 + timedelta(hours=20))
    assert set(second.expiring) == {m.api_key.split("_")[1], first.key_id}
    with pytest.raises(AuthenticationFailed):
        _auth(services, m.api_key, now=t0 + DAY)  # still the first rotation's end, not 20 h later
    assert _auth(services, first.api_key, now=t0 + DAY).id == m.id
    assert _auth(services, second.api_key, now=t0 + 3 * DAY).id == m.id


def test_rotation_with_zero_grace_stops_the_old_key_at_once(services, client):
    m = make_merchant(services)
    done = _rotate(services, m.id, grace=timedelta(0))
    assert client.get("/v1/shipments", headers=m.headers).status_code == 401
    assert client.get("/v1/shipments", headers=_bearer(done.api_key)).status_code == 200


def test_revoking_one_key_stops_it_on_the_next_request(services, client):
    m = make_merchant(services)
    done = _rotate(services, m.id)
    assert client.get("/v1/shipments", headers=m.headers).status_code == 200
    with services.session_factory() as s:
        assert merchants.revoke_keys(s, SYSTEM, m.id, m.api_key.split("_")[1]) == [m.api_key.split("_")[1]]
        s.commit()
    r = client.get("/v1/shipments", headers=m.headers)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthenticated"
    assert client.get("/v1/shipments", headers=_bearer(done.api_key)).status_code == 200
    with services.session_factory() as s:  # revoking again revokes nothing more
        assert merchants.revoke_keys(s, SYSTEM, m.id, m.api_key.split("_")[1]) == []


def test_revoking_without_a_key_id_stops_every_key_and_rotation_issues_a_new_one(services, client):
    m = make_merchant(services)
    done = _rotate(services, m.id)
    with services.session_factory() as s:
        assert len(merchants.revoke_keys(s, SYSTEM, m.id)) == 2
        s.commit()
    for raw in (m.api_key, done.api_key):
        assert client.get("/v1/shipments", headers=_bearer(raw)).status_code == 401
    fresh = _rotate(services, m.id)
    assert fresh.expiring == []
    assert client.get("/v1/shipments", headers=_bearer(fresh.api_key)).status_code == 200


def test_another_merchants_key_and_unknown_merchants_are_not_found(services):
    a, b = make_merchant(services, "甲"), make_merchant(services, "乙")
    with services.session_factory() as s:
        with pytest.raises(NotFound) as err:
            merchants.revoke_keys(s, SYSTEM, a.id, b.api_key.split("_")[1])
        assert err.value.field == "key"
        for call in (lambda: merchants.list_keys(s, "mch_nope"), lambda: merchants.revoke_keys(s, SYSTEM, "x"),
                     lambda: merchants.disable_merchant(s, SYSTEM, "mch_nope")):
            with pytest.raises(NotFound):
                call()
    assert _auth(services, b.api_key).id == b.id


def test_disabling_a_merchant_stops_every_key_at_once(services, client):
    m = make_merchant(services)
    done = _rotate(services, m.id)
    test_key = _rotate(services, m.id, mode="test")
    for raw in (m.api_key, done.api_key, test_key.api_key):
        assert client.get("/v1/shipments", headers=_bearer(raw)).status_code == 200
    with services.session_factory() as s:
        disabled = merchants.disable_merchant(s, SYSTEM, m.id)
        s.commit()
    assert disabled.disabled and disabled.disabled_at is not None
    for raw in (m.api_key, done.api_key, test_key.api_key):
        assert client.get("/v1/shipments", headers=_bearer(raw)).status_code == 401
    with services.session_factory() as s, pytest.raises(Conflict):
        merchants.rotate_keys(s, SYSTEM, m.id, api_key_secret=_secret(services), grace=DAY)


def test_listing_shows_states_and_last_use_but_never_key_material(services, client):
    m = make_merchant(services)
    t0 = utcnow()
    done = _rotate(services, m.id, now=t0)
    assert client.get("/v1/shipments", headers=_bearer(done.api_key)).status_code == 200
    with services.session_factory() as s:
        listed = merchants.list_keys(s, m.id, now=t0 + timedelta(hours=1))
        later = merchants.list_keys(s, m.id, now=t0 + 2 * DAY)
        hashes = [bytes(h) for h in s.execute(select(ApiKey.key_hash).where(ApiKey.merchant_id == m.id)).scalars()]
    by_id = {k.key_id: k for k in listed.keys}
    assert by_id[m.api_key.split("_")[1]].status == "expiring"
    assert by_id[done.key_id].status == "active" and by_id[done.key_id].last_used_at is not None
    assert {k.key_id: k.status for k in later.keys}[m.api_key.split("_")[1]] == "expired"
    shown = repr(listed)
    for raw in (m.api_key, done.api_key):
        assert raw.split("_", 2)[2] not in shown
    assert all(h.hex() not in shown and repr(h) not in shown for h in hashes)


def test_last_use_is_recorded_at_most_once_a_minute(services):
    m = make_merchant(services)
    t0 = utcnow()
    _auth(services, m.api_key, now=t0)
    _auth(services, m.api_key, now=t0 + timedelta(seconds=30))
    with services.session_factory() as s:
        assert s.get(ApiKey, m.api_key.split("_")[1]).last_used_at == t0
    _auth(services, m.api_key, now=t0 + timedelta(seconds=61))
    with services.session_factory() as s:
        assert s.get(ApiKey, m.api_key.split("_")[1]).last_used_at == t0 + timedelta(seconds=61)


def test_lifecycle_actions_are_audited_without_key_material(services):
    m = make_merchant(services)
    done = _rotate(services, m.id)
    with services.session_factory() as s:
        merchants.revoke_keys(s, SYSTEM, m.id, done.key_id)
        merchants.disable_merchant(s, SYSTEM, m.id)
        s.commit()
    with services.session_factory() as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.action.like("merchant.%"))).scalars().all()
    actions = [e.action for e in events if e.object_id in (m.id, done.key_id, m.api_key.split("_")[1])]
    assert actions == ["merchant.create", "merchant.key_rotate", "merchant.key_expire", "merchant.key_revoke",
                       "merchant.disable"]
    dump = " ".join(f"{e.object_id} {e.purpose} {e.fields}" for e in events)
    for raw in (m.api_key, done.api_key):
        assert raw.split("_", 2)[2] not in dump


# -- command line -----------------------------------------------------------------------------------------
def _cli_services(env_vars):
    return build(load_settings(environ=env_vars))


def test_cli_list_rotate_revoke_disable(cli_env):
    created = json.loads(run(["merchants", "create", "商户丙"], cli_env).stdout)
    mid, first = created["merchant_id"], created["api_key"]
    listed = json.loads(run(["merchants", "keys", "list", mid], cli_env).stdout)
    assert [k["status"] for k in listed["keys"]] == ["active"] and listed["disabled"] is False
    assert first.split("_", 2)[2] not in json.dumps(listed)

    rotated = json.loads(run(["merchants", "keys", "rotate", mid], cli_env).stdout)
    assert rotated["api_key"].startswith("wbk_") and rotated["grace_hours"] == 24
    assert rotated["expiring"] == [first.split("_")[1]]
    listed = json.loads(run(["merchants", "keys", "list", mid], cli_env).stdout)
    assert {k["key_id"]: k["status"] for k in listed["keys"]} == {first.split("_")[1]: "expiring",
                                                                  rotated["key_id"]: "active"}
    assert rotated["api_key"].split("_", 2)[2] not in json.dumps(listed)  # shown once, by rotate only

    svc = _cli_services(cli_env)
    try:
        assert _auth(svc, first).id == mid and _auth(svc, rotated["api_key"]).id == mid
        revoked = json.loads(run(["merchants", "keys", "revoke", mid, "--key", first.split("_")[1]], cli_env).stdout)
        assert revoked["revoked"] == [first.split("_")[1]]
        with pytest.raises(AuthenticationFailed):
            _auth(svc, first)
        # Zero grace from the setting: the previous key stops with the rotation.
        quick = json.loads(run(["merchants", "keys", "rotate", mid], cli_env
                               | {"WAYBILL_KEY_ROTATION_GRACE_HOURS": "0"}).stdout)
        with pytest.raises(AuthenticationFailed):
            _auth(svc, rotated["api_key"])
        assert _auth(svc, quick["api_key"]).id == mid
        disabled = json.loads(run(["merchants", "disable", mid], cli_env).stdout)
        assert disabled["ok"] and disabled["disabled"] is True and disabled["disabled_at"]
        with pytest.raises(AuthenticationFailed):
            _auth(svc, quick["api_key"])
    finally:
        svc.engine.dispose()

    refused = run(["merchants", "keys", "rotate", mid], cli_env, check=False)
    assert refused.returncode == 1 and json.loads(refused.stdout)["error"]["code"] == "conflict"
    for args, field in ((["merchants", "keys", "list", "mch_nope"], "merchant_id"),
                        (["merchants", "keys", "revoke", mid, "--key", "0" * 16], "key"),
                        (["merchants", "disable", "mch_nope"], "merchant_id")):
        proc = run(args, cli_env, check=False)
        assert proc.returncode == 1
        err = json.loads(proc.stdout)["error"]
        assert err["code"] == "not_found" and err["field"] == field
    verify = json.loads(run(["audit", "verify"], cli_env).stdout)
    assert verify["ok"] is True


@pytest.mark.skipif(not PG_URL, reason="row locks: PostgreSQL (SQLite has one writer for the whole file)")
def test_last_use_bookkeeping_never_waits_for_another_request(fresh_env):
    # One key serves all of a merchant's concurrent requests: a request holding the key row (its own
    # last-use update, uncommitted) must not make the next one wait for it.
    env = fresh_env()
    svc = env.services()
    m = make_merchant(svc)
    t0 = utcnow()
    with svc.session_factory() as first, svc.session_factory() as second:
        merchants.authenticate(first, m.api_key, api_key_secret=_secret(svc), now=t0)  # locks the row
        second.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait would fail, not hang
        principal = merchants.authenticate(second, m.api_key, api_key_secret=_secret(svc),
                                           now=t0 + timedelta(minutes=5))
        assert principal.id == m.id
        second.commit()
        first.commit()
    with svc.session_factory() as s:
        assert s.get(ApiKey, m.api_key.split("_")[1]).last_used_at == t0
