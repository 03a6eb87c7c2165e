"""Phone numbers of people never appear in plaintext: not in any table, not in the CLI's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select

from tests.virtual_numbers.conftest import LANDLINE, X1, X2, A, B, C
from waybill.models import Base, utcnow
from waybill.virtual_numbers import BuiltinProvider, CallReceipt, add_numbers
from waybill.virtual_numbers.builtin import DEVELOPMENT_POOL

# Spellings a leak could take: canonical, digits only, with the country code.
SECRETS = [A, B, C, LANDLINE, LANDLINE.replace("-", ""), "8613811112222", "8613933334444"]

# Until `phone` is wired into waybill/commands/main.py, attach it the way the lead will (register(main)).
_ENTRY = ("from waybill.commands.main import main\nfrom waybill.commands.phone import register\n"
          "if 'phone' not in main.commands:\n    register(main)\nmain()\n")


def _leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return [s for s in SECRETS if s.encode() in data or s.encode("utf-16-le") in data]


def test_no_table_holds_a_plaintext_phone_number(fresh_env):
    env = fresh_env()
    svc = env.services()
    provider = BuiltinProvider.from_services(svc)
    now = utcnow()
    with svc.session_factory() as s:
        add_numbers(s, [X1, X2])
        axb = provider.bind_axb(s, A, B, ttl=timedelta(hours=1), ref="shp_1")
        axe = provider.bind_axe(s, A, LANDLINE, ttl=timedelta(hours=1), ref="shp_2")
        assert provider.route_call(s, A, axb.x_number, None, call_id="c1", at=now).callee == B
        assert provider.route_call(s, LANDLINE, axe.x_number, None, call_id="c2", at=now).callee == A
        provider.route_call(s, C, axb.x_number, None, call_id="c3", at=now)
        provider.record_receipt(s, CallReceipt(call_id="c1", x_number=axb.x_number, started_at=now, duration_s=30,
                                               caller=A))
        provider.record_receipt(s, CallReceipt(call_id="c4", x_number=axb.x_number, started_at=now, duration_s=0,
                                               caller=C, routed=False))
        provider.release(s, axb.id, at=now + timedelta(minutes=10))
        s.commit()

    scanned = 0
    with env.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        blob = bytes(value)
                    else:
                        blob = json.dumps(value, default=str, ensure_ascii=False).encode()
                    assert not _leaks(blob), f"plaintext phone number in {table.name}"
                    scanned += 1
    assert scanned > 50
    if env.settings.is_sqlite:  # the raw file too (WAL included), not only what SQL returns
        for path in env.settings.data_dir.glob("waybill.db*"):
            assert not _leaks(path.read_bytes()), path.name


def _phone(args: list[str], env_vars: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    env.update(env_vars)
    proc = subprocess.run([sys.executable, "-c", _ENTRY, "phone", *args], capture_output=True, text=True, env=env,
                          timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_fresh_development_install_can_bind_at_once(cli_env):
    """Regression: a fresh install had an empty pool, so every call answered 503 until someone seeded it."""
    bound = json.loads(_phone(["bind", "--a", A, "--b", B, "--ref", "shp_1", "--mode", "axe"], cli_env).stdout)
    assert bound["ok"] and bound["virtual_number"] in DEVELOPMENT_POOL and len(bound["extension"]) == 4


def test_cli_routes_a_call_without_printing_the_callee(cli_env):
    outputs: list[str] = []

    def phone(*args: str, check: bool = True) -> dict:
        proc = _phone(list(args), cli_env, check=check)
        outputs.append(proc.stdout + proc.stderr)
        return json.loads(proc.stdout)

    # A fresh development install starts with the development pool; these two come on top.
    assert phone("add-numbers", X1, X2) == {"ok": True, "added": 2, "pool_size": 2 + len(DEVELOPMENT_POOL)}
    bound = phone("bind", "--a", A, "--b", B, "--ref", "shp_1")
    assert bound["ok"] and bound["virtual_number"] in (X1, X2, *DEVELOPMENT_POOL) and bound["extension"] is None
    x = bound["virtual_number"]

    routed = phone("dial", "--from", A, "--to", x)
    assert routed == {"routed": True, "binding_id": bound["binding_id"], "x_number": x, "extension": None,
                      "callee": "139******44", "call_id": routed["call_id"]}
    back = phone("dial", "--from", B, "--to", x)
    assert back["routed"] and back["callee"] == "138******22"
    assert phone("dial", "--from", C, "--to", x) == {"routed": False, "reason": "out_of_session"}

    axe = phone("bind", "--a", A, "--b", LANDLINE, "--ref", "shp_2", "--mode", "axe")
    ext = axe["extension"]
    assert len(ext) == 4
    assert phone("dial", "--from", A, "--to", axe["virtual_number"])["routed"] is False
    via_ext = phone("dial", "--from", A, "--to", axe["virtual_number"], "--ext", ext)
    assert via_ext["routed"] and via_ext["callee"] == "021-******34"

    released = phone("release", bound["binding_id"])
    assert released["ok"] and released["scheduled"] is False
    assert phone("dial", "--from", A, "--to", x) == {"routed": False, "reason": "out_of_session"}

    bad = _phone(["dial", "--from", "12345", "--to", x], cli_env, check=False)
    assert json.loads(bad.stdout) == {"routed": False, "reason": "out_of_session"}
    invalid = _phone(["bind", "--a", A, "--b", "999", "--ref", "r"], cli_env, check=False)
    assert invalid.returncode == 2 and json.loads(invalid.stdout)["error"]["code"] == "invalid_phone"
    outputs.append(invalid.stdout + invalid.stderr)

    for out in outputs:
        assert not _leaks(out), out
