"""The `waybill` command line, run as a user would (a subprocess with environment variables)."""

from __future__ import annotations

import json
import os
import stat

from sqlalchemy import text

from tests.conftest import PG_URL, run


def test_init_is_idempotent_and_owner_only(cli_env, tmp_path):
    first = json.loads(run(["init"], cli_env).stdout)
    second = json.loads(run(["init"], cli_env).stdout)
    assert first["ok"] and first["key_file_created"] is True
    assert second["ok"] and second["key_file_created"] is False
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "keys.json").stat().st_mode) == 0o600
    if not PG_URL:
        for path in data.glob("waybill.db*"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_merchant_create_audit_verify_and_rotate(cli_env, tmp_path):
    out = json.loads(run(["merchants", "create", "顺路商贸"], cli_env).stdout)
    assert out["merchant_id"].startswith("mch_") and out["api_key"].startswith("wbk_")
    # The key is shown once and stored only hashed.
    if not PG_URL:
        assert out["api_key"].encode() not in (tmp_path / "data" / "waybill.db").read_bytes()
    verify = json.loads(run(["audit", "verify"], cli_env).stdout)
    assert verify["ok"] is True and verify["events"] >= 1
    rotated = json.loads(run(["keys", "rotate"], cli_env).stdout)
    assert rotated["ok"] and rotated["rewrapped_data_keys"] >= 1
    keys = json.loads((tmp_path / "data" / "keys.json").read_text())
    assert keys["primary_master_key"] == rotated["new_master_key"]
    assert len(keys["master_keys"]) == 2
    old = next(k for k in keys["master_keys"] if k != rotated["new_master_key"])
    retired = json.loads(run(["keys", "retire", old], cli_env).stdout)
    assert retired["ok"] and retired["retired"] == [old] and retired["dropped_previous_wrappings"] >= 1
    assert list(json.loads((tmp_path / "data" / "keys.json").read_text())["master_keys"]) == [rotated["new_master_key"]]
    # Nothing left to retire: every unused non-primary key is gone already.
    assert json.loads(run(["keys", "retire"], cli_env).stdout)["retired"] == []
    assert json.loads(run(["audit", "verify"], cli_env).stdout)["ok"]


def test_audit_verify_fails_on_tampering(cli_env):
    run(["merchants", "create", "甲"], cli_env)
    run(["merchants", "create", "乙"], cli_env)
    from waybill.db import make_engine

    url = cli_env.get("WAYBILL_DATABASE_URL") or f"sqlite:///{cli_env['WAYBILL_DATA_DIR']}/waybill.db"
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(text("UPDATE audit_events SET actor = 'system:someone-else' WHERE seq = 1"))
    engine.dispose()
    proc = run(["audit", "verify"], cli_env, check=False)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["first_bad"]["seq"] == 1


def test_production_refuses_to_start_without_keys(tmp_path):
    env = {"WAYBILL_ENV": "production", "WAYBILL_DATA_DIR": str(tmp_path / "prod")}
    proc = run(["init"], env, check=False)
    assert proc.returncode == 2
    assert "WAYBILL_KEY_FILE" in proc.stdout
    env["WAYBILL_KEY_FILE"] = str(tmp_path / "missing.json")
    proc = run(["init"], env, check=False)
    assert proc.returncode == 2 and "key file not found" in proc.stdout
    assert not (tmp_path / "missing.json").exists()  # production never generates keys


def test_key_file_with_loose_permissions_is_refused(cli_env, tmp_path):
    run(["init"], cli_env)
    os.chmod(tmp_path / "data" / "keys.json", 0o644)
    proc = run(["merchants", "create", "x"], cli_env, check=False)
    assert proc.returncode == 2 and "owner only" in proc.stdout
