"""No plaintext personal data at rest, in logs, or in error messages."""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess

from sqlalchemy import MetaData, select

from tests.conftest import PG_URL, RECIPIENT, SENDER, make_merchant, shipment_body
from waybill import logs

PLAINTEXT = [RECIPIENT["name"], RECIPIENT["phone"], RECIPIENT["address"], SENDER["name"], SENDER["phone"],
             SENDER["address"], "64321234", "书籍"]
# The masked forms (what labels and merchant views show) of the parties above.
MASKED = ["138******78", "欧***", "粤海街道****", "021-******34", "诸***"]


def _variants(value: str) -> list[bytes]:
    # UTF-8 as stored, JSON's \\u escapes (JSON columns), and UTF-16 forms some dumps use.
    return [value.encode(), json.dumps(value)[1:-1].encode(), value.encode("utf-16-le"),
            value.encode("utf-16-be")]


def _create_some(env, n=20):
    svc = env.services()
    m = make_merchant(svc)
    client = env.app().test_client()
    for i in range(n):
        r = client.post("/v1/shipments", json=shipment_body(f"O-{i}"), headers=m.headers)
        assert r.status_code == 201
    r = client.post("/v1/shipments/batch", headers=m.headers,
                    json={"shipments": [shipment_body(f"B-{i}") for i in range(n)]})
    assert all(x["status"] == "created" for x in r.get_json()["results"])
    return m, client


def _pg_dump(env) -> bytes:
    """pg_dump of our schema (text format: bytea as hex, so also scan hex forms)."""
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    cmd = ["pg_dump", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres",
           "-d", url.database or "test", "-n", env.schema, "--data-only"]
    return subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout


def _raw_storage(env) -> bytes:
    if PG_URL and shutil.which("pg_dump"):
        return _pg_dump(env) + _table_scan(env)
    if PG_URL:
        return _table_scan(env)
    data = b""
    for path in sorted(env.settings.data_dir.glob("waybill.db*")):
        data += path.read_bytes()
    return data


def _table_scan(env) -> bytes:
    """Every column of every table of our schema, as raw bytes or as text."""
    chunks = []
    md = MetaData()
    md.reflect(env.engine)
    with env.engine.connect() as c:
        for table in md.sorted_tables:
            for row in c.execute(select(table)):
                for value in row:
                    chunks.append(bytes(value) if isinstance(value, bytes | memoryview)
                                  else json.dumps(value, ensure_ascii=False, default=str).encode())
    return b"\n".join(chunks)


def test_no_plaintext_in_raw_storage(fresh_env):
    env = fresh_env()
    _create_some(env)
    raw = _raw_storage(env)
    assert len(raw) > 10_000
    # Positive control: the scan does see stored text (the region stays readable on purpose: routing).
    assert any(form in raw for form in _variants("南山区"))
    # The masked snapshot is sealed too: its visible phone digits next to the blind index gave the phone back
    # to whoever holds the index secret.
    for value in PLAINTEXT + MASKED:
        for form in _variants(value) + [value.encode().hex().encode()]:
            assert form not in raw, f"plaintext {value!r} found at rest"


def test_no_plaintext_in_logs_of_a_full_run(fresh_env):
    stream = io.StringIO()
    env = fresh_env(log_level="DEBUG")
    app = env.app()
    logs.configure("DEBUG", stream)
    logging.getLogger("waybill").debug("capture started")
    svc = env.services()
    m = make_merchant(svc)
    c = app.test_client()
    sid = c.post("/v1/shipments", json=shipment_body("L-1"), headers=m.headers).get_json()["id"]
    c.post("/v1/shipments", json=shipment_body("L-1"), headers=m.headers)  # duplicate -> 409
    bad = shipment_body("L-2")
    bad["recipient"]["phone"] = RECIPIENT["phone"] + "9"  # invalid, near the real value
    c.post("/v1/shipments", json=bad, headers=m.headers)
    c.post("/v1/shipments/search", json={"recipient_phone": RECIPIENT["phone"]}, headers=m.headers)
    c.get(f"/v1/shipments/{sid}", headers=m.headers)
    c.post(f"/v1/shipments/{sid}/cancel", headers=m.headers)
    c.post("/v1/shipments/batch", json={"shipments": [shipment_body("L-3"), bad]}, headers=m.headers)
    c.get("/v1/shipments", headers={"Authorization": "Bearer " + RECIPIENT["phone"]})
    out = stream.getvalue()
    assert "capture started" in out and '"path": "/v1/shipments"' in out
    for line in out.splitlines():
        json.loads(line)  # structured: every line is one JSON object
    for value in PLAINTEXT + [RECIPIENT["phone"] + "9"]:
        assert value not in out, f"plaintext {value!r} found in logs"


def test_error_messages_never_echo_input(client, merchant):
    bad = shipment_body()
    bad["recipient"]["phone"] = "138123456789999"
    bad["sender"]["name"] = "诸葛\x00孔明"
    r = client.post("/v1/shipments", json=bad, headers=merchant.headers)
    assert r.status_code == 422
    text = r.get_data(as_text=True)
    assert "138123456789999" not in text and "孔明" not in text
