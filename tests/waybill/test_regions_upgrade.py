"""Migration 0009: regions stored before the divisions check are resolved, and what is not a division goes."""

from __future__ import annotations

import json
from collections.abc import Callable

import pymupdf
from sqlalchemy import select, update

from tests.conftest import Env
from tests.waybill.test_upgrades import _seed, _tables, bare_env  # noqa: F401  (bare_env is a fixture)
from waybill import db
from waybill.services import initialise

ATTACK = {"province": "广东省", "city": "深圳市", "district": "一三八一二三四五六七八区"}
SHORT = {"province": "上海", "city": "市辖区", "district": "徐汇"}


def test_old_regions_get_canonical_names_and_codes_and_non_divisions_are_dropped(
        bare_env: Callable[[], Env]) -> None:  # noqa: F811
    env = bare_env()
    seeded = _seed(env, "0008")
    shipments = _tables(env.engine)["shipments"]
    with env.engine.begin() as conn:  # as revision 0008's code stored them: the text as submitted
        conn.execute(update(shipments).where(shipments.c.id == seeded.plain_id)
                     .values(recipient_region=ATTACK, sender_region=SHORT))
    _keys, engine, _ = initialise(env.settings)
    engine.dispose()
    assert db.check_schema(env.engine).ok
    shipments = _tables(env.engine)["shipments"]  # as the head revision has it (0015 dropped columns)
    with env.engine.connect() as conn:
        sender, recipient = conn.execute(select(shipments.c.sender_region, shipments.c.recipient_region)
                                         .where(shipments.c.id == seeded.plain_id)).one()
        raw = json.dumps([list(r) for r in conn.execute(select(shipments)).all()], default=str,
                         ensure_ascii=False)
    assert recipient == {"province": "广东省", "province_code": "440000", "city": "深圳市", "city_code": "440300",
                         "district": ""}
    assert sender == {"province": "上海市", "city": "上海市", "district": "徐汇区", "province_code": "310000",
                      "city_code": "310100", "district_code": "310104"}
    assert "一三八一二三四五六七八" not in raw
    # The old shipment still reads and prints, without the dropped district.
    client = env.app().test_client()
    r = client.get(f"/v1/shipments/{seeded.plain_id}", headers=seeded.headers)
    assert r.status_code == 200 and r.get_json()["recipient"]["district"] == ""
    label = client.get(f"/v1/shipments/{seeded.plain_id}/label?format=pdf", headers=seeded.headers)
    assert label.status_code == 200
    text = pymupdf.open(stream=label.data, filetype="pdf")[0].get_text()
    assert "广东省深圳市" in text and "上海市徐汇区" in text and "一三八" not in text
