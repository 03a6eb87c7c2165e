"""Helpers of the last-mile tests (pickup codes, partners): a printed shipment, its assignment, a raw-output search."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from tests.conftest import shipment_body
from tests.printing.label_helpers import decode, pdf_pages_as_images
from waybill.models import Base
from waybill.services import Services

STATION = "755-W012"  # the test recipient (深圳市南山区) is delivered from here


def printed(client: Any, merchant: Any, sorter: dict[str, str], order: str = "LM-1",
            **changes: Any) -> tuple[dict[str, Any], str]:
    """A shipment created and printed; (shipment JSON, the QR token on its label)."""
    r = client.post("/v1/shipments", json=shipment_body(order, **changes), headers=merchant.headers)
    assert r.status_code == 201, r.get_json()
    shp: dict[str, Any] = r.get_json()
    r = client.post("/v1/print-jobs", json={"shipment_ids": [shp["id"]], "format": "pdf"}, headers=sorter)
    assert r.status_code == 200
    (page,) = pdf_pages_as_images(r.data)
    qr = next(text for fmt, text in decode(page) if "QR" in fmt.upper())
    return shp, qr


def assign(client: Any, dispatcher: dict[str, str], shipment_id: str, courier: str = "lm_courier") -> Any:
    return client.post("/v1/dispatch/assignments", json={"shipment_id": shipment_id, "courier": courier},
                       headers=dispatcher)


def deliver(client: Any, courier: dict[str, str], shipment_id: str, **body: Any) -> Any:
    return client.post(f"/v1/courier/shipments/{shipment_id}/deliver", json=body, headers=courier)


def database_dump(services: Services) -> str:
    """Every text, binary and JSON value of every table, as one string (bytes as latin-1: a plaintext code in a
    blob shows up as its digits)."""
    parts: list[str] = []
    with services.session_factory() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                for value in row:
                    if isinstance(value, str):
                        parts.append(value)
                    elif isinstance(value, bytes | bytearray | memoryview):
                        parts.append(bytes(value).decode("latin-1"))
                    elif isinstance(value, dict | list):
                        parts.append(json.dumps(value, ensure_ascii=False))
    return "\n".join(parts)
