"""GET /v1/audit/verify walks the chain outside the request's transaction (issue 11, items 8 and 19)."""

from __future__ import annotations

from sqlalchemy import text

from tests.courier_api import bearer, login, make_staff
from tests.waybill.test_audit import OBJECT, _audited_write, _writer, write_events
from waybill.audit import logcheck
from waybill.audit.chain import shard_of
from waybill.permissions import SYSTEM
from waybill.web.app import create_app


def test_writers_commit_while_the_endpoint_walks_the_chain(fresh_env, monkeypatch):
    """Before: on SQLite the request's transaction (write lock taken at authentication) spanned the walk, so
    the writer below gave up ("database is locked", a 500); on PostgreSQL the write made it report "events
    missing at the end"."""
    env = fresh_env()
    svc = write_events(env, 7)
    client = create_app(env.settings, services_override=svc).test_client()
    auditor = bearer(login(client, make_staff(svc, "aud_verify", "auditor")).get_json()["access_token"])
    engine, writer = _writer(env)
    real, writes = logcheck.verify, []

    def walk_with_writes(source, key, **kwargs):
        def between(last_seq):
            writes.append(last_seq)
            _audited_write(writer, last_seq)
        return real(source, key, **{**kwargs, "batch": 2, "after_chunk": between})

    # The endpoint walks through the checkpoint check (waybill/audit/logcheck.py), which calls the walk.
    monkeypatch.setattr(logcheck, "verify", walk_with_writes)
    r = client.get("/v1/audit/verify", headers=auditor)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["ok"] is True and body["first_bad"] is None and body["events"] == body["head_seq"]
    assert len(writes) >= 4  # a write committed between every two chunks
    monkeypatch.setattr(logcheck, "verify", real)
    again = client.get("/v1/audit/verify", headers=auditor).get_json()
    # Everything since is in the chain: the writes, the first verify's own event and the logins' events.
    assert again["ok"] is True and again["head_seq"] >= body["head_seq"] + len(writes) + 1
    engine.dispose()


def test_verify_answers_each_shard_and_names_the_bad_one(fresh_env):
    env = fresh_env(audit_shards=16)
    svc = write_events(env, 5)
    client = create_app(env.settings, services_override=svc).test_client()
    auditor = bearer(login(client, make_staff(svc, "aud_shards", "auditor")).get_json()["access_token"])
    body = client.get("/v1/audit/verify", headers=auditor).get_json()
    assert body["ok"] is True and len(body["shards"]) >= 2
    assert {tuple(sorted(s)) for s in body["shards"]} == {
        ("events", "first_bad", "from_seq", "head_seq", "ok", "shard")}
    assert sum(s["events"] for s in body["shards"]) == body["events"] == body["head_seq"]
    k = shard_of(OBJECT, SYSTEM.actor, 16)
    with env.engine.begin() as c:
        c.execute(text("UPDATE audit_events SET outcome = 'denied' WHERE shard = :k AND shard_seq = 2"), {"k": k})
    body = client.get("/v1/audit/verify", headers=auditor).get_json()
    assert body["ok"] is False and body["first_bad"] == {"shard": k, "seq": 2, "reason": "content altered"}
    bad = [s for s in body["shards"] if not s["ok"]]
    assert [s["shard"] for s in bad] == [k] and bad[0]["first_bad"] == body["first_bad"]


def test_an_auditor_has_a_bounded_number_of_walks_in_flight(fresh_env):
    """Each verify reads the whole log (and may start a walker process per CPU): beyond the heavy-request number in
    flight an auditor's next one is refused at once with 429, not queued."""
    env = fresh_env(heavy_concurrency_per_merchant=1)
    svc = write_events(env, 3)
    client = create_app(env.settings, services_override=svc).test_client()
    made = make_staff(svc, "aud_busy", "auditor")
    auditor = bearer(login(client, made).get_json()["access_token"])
    release = svc.heavy_requests.try_acquire(f"staff:{made.user.id}")  # a walk of this auditor in flight
    assert release is not None
    r = client.get("/v1/audit/verify", headers=auditor)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.get_json()
    release()
    assert client.get("/v1/audit/verify", headers=auditor).status_code == 200
