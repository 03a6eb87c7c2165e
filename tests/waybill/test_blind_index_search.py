"""Search by phone through the truncated blind index: false positives are filtered out."""

from __future__ import annotations

from tests.conftest import make_merchant, shipment_body
from waybill.phone_index import phone_index


def test_colliding_phones_are_told_apart(fresh_env):
    env = fresh_env(blind_index_bits=16)
    svc = env.services()
    m = make_merchant(svc)
    # Find two different phones that share a 16-bit index value (birthday bound: a few hundred tries).
    seen: dict[int, str] = {}
    pair = None
    for n in range(100_000):
        phone = f"139{n:08d}"
        idx = phone_index(svc.codec, m.id, "recipient", phone)
        if idx in seen:
            pair = (seen[idx], phone)
            break
        seen[idx] = phone
    assert pair is not None
    client = env.app().test_client()
    ids = {}
    for i, phone in enumerate(pair):
        body = shipment_body(f"C-{i}")
        body["recipient"]["phone"] = phone
        r = client.post("/v1/shipments", json=body, headers=m.headers)
        assert r.status_code == 201
        ids[phone] = r.get_json()["id"]
    for phone in pair:
        r = client.post("/v1/shipments/search", json={"recipient_phone": phone}, headers=m.headers)
        assert r.status_code == 200
        assert [x["id"] for x in r.get_json()["items"]] == [ids[phone]]
    # Both rows really do share the index value: the filtering above was exercised.
    from sqlalchemy import select

    from waybill.models import Shipment

    with svc.session_factory() as s:
        values = set(s.execute(select(Shipment.recipient_phone_bidx)).scalars())
    assert len(values) == 1


def test_index_values_do_not_link_merchants_or_roles(client, merchant, other_merchant, services):
    from sqlalchemy import select

    from waybill.models import Shipment

    body = shipment_body("LINK-1")
    body["sender"]["phone"] = body["recipient"]["phone"]  # the same person sends and receives
    for m in (merchant, other_merchant):
        assert client.post("/v1/shipments", json=body, headers=m.headers).status_code == 201
    with services.session_factory() as s:
        rows = s.execute(select(Shipment.sender_phone_bidx, Shipment.recipient_phone_bidx)).all()
    values = [v for row in rows for v in row]
    assert len(values) == 4 and len(set(values)) == 4
