"""Labels through the API and the domain: first print, reprint, print jobs, token lifecycle."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import RECIPIENT, SENDER, shipment_body
from tests.printing.label_helpers import decode, pdf_pages_as_images, png_image
from waybill import labels, print_jobs
from waybill.errors import InvalidStatusTransition, NotFound, ValidationFailed
from waybill.models import AuditEvent, QrToken, Shipment
from waybill.permissions import Principal

SORTER = Principal(kind="staff", id="usr_sorter", role="sorter", station="755")
PLAINTEXT = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["phone"],
             SENDER["address"]]


def create(client, merchant, order="L-1"):
    r = client.post("/v1/shipments", json=shipment_body(order), headers=merchant.headers)
    assert r.status_code == 201
    return r.get_json()


def qr_and_barcode(pdf: bytes) -> dict[str, str]:
    (page,) = pdf_pages_as_images(pdf)
    return {fmt: text for fmt, text in decode(page)}


def tokens_of(services, sid):
    with services.session_factory() as s:
        return s.execute(select(QrToken).where(QrToken.shipment_id == sid).order_by(QrToken.issued_at)).scalars().all()


def test_first_print_by_merchant_scans_and_sets_printed(client, merchant, services):
    shp = create(client, merchant)
    r = client.get(f"/v1/shipments/{shp['id']}/label?format=pdf&size=100x150", headers=merchant.headers)
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    codes = qr_and_barcode(r.data)
    qr = next(v for k, v in codes.items() if "QR" in k.upper())
    code128 = next(v for k, v in codes.items() if "128" in k)
    assert code128 == shp["waybill_no"]
    assert len(qr) >= 26  # >= 128 bits in base32
    with services.session_factory() as s:
        assert labels.resolve_token(s, services.keys.secret("qr_token"), qr).id == shp["id"]
        assert s.get(Shipment, shp["id"]).status == "printed"
    # The token is stored only as a keyed hash.
    (tok,) = tokens_of(services, shp["id"])
    assert qr.encode() not in bytes(tok.token_hash) and len(tok.token_hash) == 32
    assert client.get(f"/v1/shipments/{shp['id']}", headers=merchant.headers).get_json()["status"] == "printed"


def test_label_bytes_hold_no_plaintext(client, merchant):
    for i, fmt in enumerate(("pdf", "png", "zpl")):
        shp = create(client, merchant, f"P-{i}")
        r = client.get(f"/v1/shipments/{shp['id']}/label?format={fmt}", headers=merchant.headers)
        assert r.status_code == 200
        for value in PLAINTEXT:
            for form in (value.encode(), value.encode("utf-16-be"), value.encode("utf-16-be").hex().encode()):
                assert form not in r.data, (fmt, value)
        if fmt == "png":
            assert any(shp["waybill_no"] == text for _, text in decode(png_image(r.data)))


def test_printing_again_reuses_the_live_token_and_bad_input_burns_nothing(client, merchant, services):
    shp = create(client, merchant)
    bad = client.get(f"/v1/shipments/{shp['id']}/label?format=bmp", headers=merchant.headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "format"
    assert tokens_of(services, shp["id"]) == []
    first = client.get(f"/v1/shipments/{shp['id']}/label", headers=merchant.headers)
    again = client.get(f"/v1/shipments/{shp['id']}/label", headers=merchant.headers)
    assert first.status_code == again.status_code == 200
    qr = [next(v for k, v in qr_and_barcode(r.data).items() if "QR" in k.upper()) for r in (first, again)]
    assert qr[0] == qr[1]  # GET is idempotent: same label, same token
    assert len(tokens_of(services, shp["id"])) == 1
    with services.session_factory() as s:
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.object_id == shp["id"])
                            .order_by(AuditEvent.seq)).scalars().all()
    assert actions[-2:] == ["label.print", "label.print_again"]


def test_reprint_revokes_old_token_records_reason_and_is_capped(client, merchant, services):
    shp = create(client, merchant)
    first = qr_and_barcode(client.get(f"/v1/shipments/{shp['id']}/label", headers=merchant.headers).data)
    key = services.keys.secret("qr_token")
    seen = [next(v for k, v in first.items() if "QR" in k.upper())]
    reasons = ["damaged", "lost", "printer_jam", "misprint"][:services.settings.reprint_max]
    for reason in reasons:
        r = client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": reason},
                        headers=merchant.headers)
        assert r.status_code == 200, r.get_json()
        codes = qr_and_barcode(r.data)
        seen.append(next(v for k, v in codes.items() if "QR" in k.upper()))
    assert len(set(seen)) == len(seen)
    with services.session_factory() as s:
        assert all(labels.resolve_token(s, key, t) is None for t in seen[:-1])
        assert labels.resolve_token(s, key, seen[-1]).id == shp["id"]
        events = s.execute(select(AuditEvent).where(AuditEvent.action == "label.reprint",
                                                    AuditEvent.object_id == shp["id"])
                           .order_by(AuditEvent.seq)).scalars().all()
    assert [e.purpose for e in events] == reasons
    assert all(e.actor == f"merchant:{merchant.id}" for e in events)
    over = client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": "damaged"},
                       headers=merchant.headers)
    assert over.status_code == 409 and over.get_json()["error"]["code"] == "reprint_limit_reached"
    free_text = client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": "收件人13812345678要求"},
                            headers=merchant.headers)
    assert free_text.status_code == 422 and free_text.get_json()["error"]["field"] == "reason"
    missing_reason = client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={}, headers=merchant.headers)
    assert missing_reason.status_code == 422 and missing_reason.get_json()["error"]["field"] == "reason"


def test_foreign_and_unknown_label_are_the_same_404(client, merchant, other_merchant):
    shp = create(client, merchant)
    a = client.get(f"/v1/shipments/{shp['id']}/label", headers=other_merchant.headers)
    b = client.get("/v1/shipments/shp_01M84W6YCHMGSJGX88D78TFZGM/label", headers=other_merchant.headers)
    c = client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": "damaged"},
                    headers=other_merchant.headers)
    assert a.status_code == b.status_code == c.status_code == 404
    assert a.data == b.data == c.data


def test_cancel_revokes_the_token_and_blocks_printing(client, merchant, services):
    shp = create(client, merchant)
    codes = qr_and_barcode(client.get(f"/v1/shipments/{shp['id']}/label", headers=merchant.headers).data)
    qr = next(v for k, v in codes.items() if "QR" in k.upper())
    assert client.post(f"/v1/shipments/{shp['id']}/cancel", headers=merchant.headers).status_code == 200
    with services.session_factory() as s:
        assert labels.resolve_token(s, services.keys.secret("qr_token"), qr) is None
    r = client.post(f"/v1/shipments/{shp['id']}/label/reprint", json={"reason": "damaged"}, headers=merchant.headers)
    assert r.status_code == 409


def test_print_job_domain_order_conflicts_and_reprints(client, merchant, services):
    ids = [create(client, merchant, f"J-{i}")["id"] for i in range(4)]
    deps = services.label_deps
    with services.session_factory() as s:
        models = print_jobs.issue_print_job(s, deps, SORTER, ids[:3])
        s.commit()
    assert [m.waybill_no for m in models] == [
        client.get(f"/v1/shipments/{i}", headers=merchant.headers).get_json()["waybill_no"] for i in ids[:3]]
    with services.session_factory() as s:
        again = print_jobs.issue_print_job(s, deps, SORTER, [ids[3], ids[1]])
        s.commit()
    assert again[1].token == models[1].token  # printed before: the live token again
    assert len(tokens_of(services, ids[1])) == 1
    with services.session_factory() as s:
        reprinted = print_jobs.issue_print_job(s, deps, SORTER, [ids[3], ids[1]], reprint_reason="misprint")
        s.commit()
    assert reprinted[1].token != models[1].token
    assert len(tokens_of(services, ids[1])) == 2
    with services.session_factory() as s:
        with pytest.raises(NotFound):
            print_jobs.issue_print_job(s, deps, SORTER, ["shp_01M84W6YCHMGSJGX88D78TFZGM", ids[0]])
        with pytest.raises(ValidationFailed):
            print_jobs.issue_print_job(s, deps, SORTER, [ids[0], ids[0]])


def test_other_staff_roles_cannot_print(client, merchant, services):
    shp = create(client, merchant)
    courier = Principal(kind="staff", id="usr_c", role="courier", station="755")
    with services.session_factory() as s:
        from waybill.errors import PermissionDenied

        with pytest.raises(PermissionDenied):
            labels.issue_label(s, services.label_deps, courier, shp["id"])
        dispatcher_like = Principal(kind="staff", id="usr_x", role="sorter", station="755")
        assert labels.issue_label(s, services.label_deps, dispatcher_like, shp["id"]).model.token


def test_unprintable_status(client, merchant, services):
    shp = create(client, merchant)
    with services.session_factory() as s:
        s.get(Shipment, shp["id"]).status = "delivered"
        s.commit()
    with services.session_factory() as s, pytest.raises(InvalidStatusTransition):
        labels.issue_label(s, services.label_deps, SORTER, shp["id"])


# --- through HTTP with a logged-in sorter --------------------------------------------------------------


def _sorter_headers(client, services, name="sorter1"):
    from tests.courier_api import bearer, login, make_staff

    r = login(client, make_staff(services, name, "sorter"))
    assert r.status_code == 200, r.get_json()
    return bearer(r.get_json()["access_token"])


def test_print_job_api_streams_every_label_in_order(client, merchant, services):
    ids = [create(client, merchant, f"H-{i}")["id"] for i in range(5)]
    waybills = [client.get(f"/v1/shipments/{i}", headers=merchant.headers).get_json()["waybill_no"] for i in ids]
    headers = _sorter_headers(client, services)
    r = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "pdf", "size": "76x130"}, headers=headers)
    assert r.status_code == 200 and r.mimetype == "application/pdf"
    assert r.headers["X-Label-Count"] == "5"
    pages = pdf_pages_as_images(r.data)
    assert len(pages) == 5
    key = services.keys.secret("qr_token")
    for page, sid, wb in zip(pages, ids, waybills, strict=True):
        codes = dict(decode(page))
        assert next(v for k, v in codes.items() if "128" in k) == wb
        qr = next(v for k, v in codes.items() if "QR" in k.upper())
        with services.session_factory() as s:
            assert labels.resolve_token(s, key, qr).id == sid
    for sid in ids:
        assert client.get(f"/v1/shipments/{sid}", headers=merchant.headers).get_json()["status"] == "printed"
    # A second job prints the same live tokens; a reprint reason code issues new ones.
    again = client.post("/v1/print-jobs", json={"shipment_ids": ids[:2], "format": "zpl"}, headers=headers)
    assert again.status_code == 200 and again.data.count(b"^BQN") == 2
    zpl = client.post("/v1/print-jobs", json={"shipment_ids": ids[:2], "format": "zpl", "reprint_reason": "misprint"},
                      headers=headers)
    assert zpl.status_code == 200 and zpl.mimetype == "application/zpl" and zpl.data.count(b"^BQN") == 2
    assert len(tokens_of(services, ids[0])) == 2


def test_print_job_validation_and_roles(client, merchant, services):
    sid = create(client, merchant)["id"]
    headers = _sorter_headers(client, services)
    assert client.post("/v1/print-jobs", json={"shipment_ids": []}, headers=headers).status_code == 422
    bad = client.post("/v1/print-jobs", json={"shipment_ids": [sid], "format": "png"}, headers=headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "format"
    unknown = client.post("/v1/print-jobs", json={"shipment_ids": ["shp_01M84W6YCHMGSJGX88D78TFZGM"]},
                          headers=headers)
    assert unknown.status_code == 404
    # Merchants may not run print jobs; a sorter may print any merchant's label once.
    assert client.post("/v1/print-jobs", json={"shipment_ids": [sid]}, headers=merchant.headers).status_code == 403
    assert client.get(f"/v1/shipments/{sid}/label?format=zpl", headers=headers).status_code == 200
    from tests.courier_api import bearer, login, make_staff

    courier = login(client, make_staff(services, "courier9", "courier")).get_json()["access_token"]
    assert client.get(f"/v1/shipments/{sid}/label", headers=bearer(courier)).status_code == 403


def test_print_job_failing_mid_stream_is_logged_and_audited(client, merchant, services, monkeypatch):
    import printing as printing_pkg

    ids = [create(client, merchant, f"F-{i}")["id"] for i in range(3)]
    headers = _sorter_headers(client, services, "sorter-f")
    real = printing_pkg.iter_render

    def broken(models, fmt, size):
        stream = real(models, fmt, size)
        yield next(stream)
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(printing_pkg, "iter_render", broken)
    r = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl"}, headers=headers)
    assert r.status_code == 200
    with pytest.raises(RuntimeError):
        r.get_data()
    with services.session_factory() as s:
        failed = s.execute(select(AuditEvent).where(AuditEvent.action == "print_job.failed")).scalars().all()
    assert len(failed) == 1 and failed[0].outcome == "error"
    monkeypatch.setattr(printing_pkg, "iter_render", real)
    # The retry prints the same live tokens, costing no reprint.
    retry = client.post("/v1/print-jobs", json={"shipment_ids": ids, "format": "zpl"}, headers=headers)
    assert retry.status_code == 200 and retry.data.count(b"^BQN") == 3
    assert all(len(tokens_of(services, i)) == 1 for i in ids)


def test_big_print_job_commits_chunk_by_chunk_before_streaming(fresh_env):
    """Each chunk's tokens are committed before its labels are yielded (rendered, sent); a job cut off in a
    later chunk keeps the earlier chunks' tokens, and a retry prints those same tokens again."""
    from tests.conftest import make_merchant
    from waybill.errors import InvalidStatusTransition as Invalid
    from waybill.web.app import create_app

    env = fresh_env()
    svc = env.services()
    client = create_app(env.settings, services_override=svc).test_client()
    merchant = make_merchant(svc)
    ids = [create(client, merchant, f"CH-{i}")["id"] for i in range(5)]
    deps = svc.label_deps
    stream = print_jobs.issue_in_chunks(svc.session_factory, deps, SORTER, ids, chunk=2)
    first = [next(stream), next(stream)]
    assert len(tokens_of(svc, ids[0])) == 1 and len(tokens_of(svc, ids[1])) == 1  # committed, seen elsewhere
    assert tokens_of(svc, ids[2]) == []  # the next chunk is not issued yet
    # The parcel in the second chunk is cancelled while the first chunk prints: that chunk fails.
    assert client.post(f"/v1/shipments/{ids[3]}/cancel", headers=merchant.headers).status_code == 200
    with pytest.raises(Invalid):
        next(stream)
    assert tokens_of(svc, ids[2]) == []  # the failed chunk rolled back as a whole
    retry = list(print_jobs.issue_in_chunks(svc.session_factory, deps, SORTER, ids[:2], chunk=2))
    assert [m.token for m in retry] == [m.token for m in first]
    assert len(tokens_of(svc, ids[0])) == 1  # no reprint, no second token


def test_head_on_a_label_issues_nothing(client, merchant, services):
    """HEAD is a safe method: it must not issue a QR token or mark the shipment printed."""
    shp = create(client, merchant, "HEAD-1")
    r = client.head(f"/v1/shipments/{shp['id']}/label", headers=merchant.headers)
    assert r.status_code == 405 and "GET" in r.headers.get("Allow", "")
    assert tokens_of(services, shp["id"]) == []
    assert client.get(f"/v1/shipments/{shp['id']}", headers=merchant.headers).get_json()["status"] == "created"


def test_every_answer_carries_the_security_headers(client, merchant):
    for r in (client.get("/healthz"), client.get("/v1/shipments/nope", headers=merchant.headers),
              client.get("/openapi.json")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
