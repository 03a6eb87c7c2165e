"""Search by phone through the truncated blind index: false positives are filtered out."""

from __future__ import annotations

from tests.conftest import make_merchant, shipment_body


def test_colliding_phones_are_told_apart(fresh_env):
    env = fresh_env(blind_index_bits=16)
    svc = env.services()
    # Find two different phones that share a 16-bit index value (birthday bound: a few hundred tries).
    seen: dict[int, str] = {}
    pair = None
    for n in range(100_000):
        phone = f"139{n:08d}"
        idx = svc.codec.blind_index("phone", phone)
        if idx in seen:
            pair = (seen[idx], phone)
            break
        seen[idx] = phone
    assert pair is not None
    m = make_merchant(svc)
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
