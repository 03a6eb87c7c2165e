"""Print jobs issued set-based (waybill/print_jobs.py): the job row, Idempotency-Key retries, per-shipment audit,
labels rebuilt when a shipment changed between the job's check and its chunk."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from tests.conftest import shipment_body
from tests.waybill.test_labels import SORTER, _sorter_headers, create, tokens_of
from waybill import labels, print_jobs
from waybill.models import AuditEvent, PrintJob, QrToken, Shipment, TrackingEvent


def _job(services: Any, job_id: str) -> PrintJob:
    with services.session_factory() as s:
        job = s.get(PrintJob, job_id)
        assert job is not None
        s.expunge(job)
        return job


def test_job_row_progress_and_one_audit_event_per_label(client: Any, merchant: Any, services: Any) -> None:
    ids = [create(client, merchant, f"PJ-{i}")["id"] for i in range(7)]
    headers = _sorter_headers(client, services, "sorter-pj")
    r = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl"}, headers=headers)
    assert r.status_code == 200 and r.data.count(b"^BQN") == 7
    job = _job(services, r.headers["X-Print-Job-Id"])
    assert (job.total, job.issued, job.attempts, job.finished_at is not None) == (7, 7, 1, True)
    assert job.idempotency_key is None
    with services.session_factory() as s:
        # The per-shipment trail stays queryable: one label.print event per shipment, with its object id.
        per = dict(s.execute(select(AuditEvent.object_id, func.count()).where(
            AuditEvent.action == "label.print", AuditEvent.object_id.in_(ids)).group_by(AuditEvent.object_id)).all())
        assert per == dict.fromkeys(ids, 1)
        moved = s.scalar(select(func.count()).select_from(TrackingEvent).where(
            TrackingEvent.shipment_id.in_(ids), TrackingEvent.status == "printed"))
        assert moved == 7
        assert set(s.scalars(select(Shipment.status).where(Shipment.id.in_(ids)))) == {"printed"}
        assert all(t.print_job_id == job.id for t in s.scalars(select(QrToken).where(QrToken.shipment_id.in_(ids))))
    # The auditor's listing shows them too.
    from tests.courier_api import bearer, login, make_staff

    auditor = bearer(login(client, make_staff(services, "auditor-pj", "auditor")).get_json()["access_token"])
    listed = client.get("/v1/audit/events?action=label.print&limit=100", headers=auditor)
    assert listed.status_code == 200, listed.get_json()
    assert {e["object_id"] for e in listed.get_json()["items"]} >= set(ids)


def test_reprint_job_retried_with_its_key_reissues_nothing(client: Any, merchant: Any, services: Any) -> None:
    ids = [create(client, merchant, f"PR-{i}")["id"] for i in range(3)]
    headers = _sorter_headers(client, services, "sorter-pr")
    first_print = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl"}, headers=headers)
    assert first_print.status_code == 200
    body = {"shipment_ids": ids, "format": "zpl", "reprint_reason": "printer_jam"}
    keyed = {**headers, "Idempotency-Key": "jam-2026-12-02-a"}
    first = client.post("/v1/print-jobs", json=body, headers=keyed)
    assert first.status_code == 200
    assert all(len(tokens_of(services, sid)) == 2 for sid in ids)  # one reprint each
    again = client.post("/v1/print-jobs", json=body, headers=keyed)  # the connection dropped: the same job again
    assert again.status_code == 200 and again.headers["X-Print-Job-Id"] == first.headers["X-Print-Job-Id"]
    assert again.data.count(b"^BQN") == 3
    assert all(len(tokens_of(services, sid)) == 2 for sid in ids)  # nothing reissued, no reprint counted
    live = [t for sid in ids for t in tokens_of(services, sid) if t.revoked_at is None]
    assert len(live) == 3 and all(t.is_reprint and t.print_job_id == first.headers["X-Print-Job-Id"] for t in live)
    assert _job(services, first.headers["X-Print-Job-Id"]).attempts == 2
    # Without the key, a reprint job is a new reprint.
    assert client.post("/v1/print-jobs", json=body, headers=headers).status_code == 200
    assert all(len(tokens_of(services, sid)) == 3 for sid in ids)


def test_idempotency_key_for_another_job_or_malformed_is_refused(client: Any, merchant: Any, services: Any) -> None:
    ids = [create(client, merchant, f"PK-{i}")["id"] for i in range(2)]
    headers = _sorter_headers(client, services, "sorter-pk")
    keyed = {**headers, "Idempotency-Key": "job-1"}
    assert client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl"}, headers=keyed).status_code == 200
    other = client.post("/v1/print-jobs", json={"shipment_ids": ids[:1], "format": "zpl"}, headers=keyed)
    assert other.status_code == 409 and other.get_json()["error"]["field"] == "Idempotency-Key"
    bad = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl"},
                      headers={**headers, "Idempotency-Key": "含中文"})
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "Idempotency-Key"
    assert all(len(tokens_of(services, sid)) == 1 for sid in ids)


def test_a_shipment_changed_after_the_check_prints_as_it_is_now(fresh_env: Any) -> None:
    from tests.conftest import make_merchant
    from waybill.web.app import create_app

    env = fresh_env()
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc)
    ids = [client.post("/v1/shipments", json=shipment_body(f"CHG-{i}"), headers=merchant.headers).get_json()["id"]
           for i in range(3)]
    deps = svc.label_deps
    with svc.session_factory() as s:
        plan = print_jobs.plan_print_job(s, deps, SORTER, ids)
        s.rollback()
    with svc.session_factory() as s:  # re-weighed between the check and the chunk
        row = s.get(Shipment, ids[1])
        assert row is not None
        row.weight_g = 4321
        s.commit()
    models = list(print_jobs.issue_in_chunks(svc.session_factory, deps, SORTER, ids, plan=plan))
    assert [m.weight_g for m in models] == [plan.models[ids[0]].weight_g, 4321, plan.models[ids[2]].weight_g]
    assert all(m.token != print_jobs.PLACEHOLDER_TOKEN for m in models)
    with svc.session_factory() as s:
        key = svc.keys.secret("qr_token")
        assert [labels.resolve_token(s, key, m.token).id for m in models] == ids  # type: ignore[union-attr]
