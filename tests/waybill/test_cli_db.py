"""`waybill db current|upgrade|history|check`, run as an operator would (a subprocess, environment variables)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from sqlalchemy import text

from tests.conftest import PG_URL, RECIPIENT, SENDER
from tests.conftest import run as _untyped_run
from waybill import db

SCRIPTS = db.script_directory()
REVISIONS = [s.revision for s in reversed(list(SCRIPTS.walk_revisions("base", "heads")))]
HEAD = REVISIONS[-1]


def run(args: list[str], env_vars: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = _untyped_run(args, env_vars, check)  # type: ignore[no-untyped-call]
    return proc


def _json(args: list[str], env: dict[str, str], code: int = 0) -> dict[str, Any]:
    proc = run(args, env, check=False)
    assert proc.returncode == code, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # one JSON object per command
    doc: dict[str, Any] = json.loads(lines[0])
    return doc


def _url(env: dict[str, str]) -> str:
    return env.get("WAYBILL_DATABASE_URL") or f"sqlite:///{env['WAYBILL_DATA_DIR']}/waybill.db"


def test_history_lists_every_revision_base_to_head(cli_env: dict[str, str]) -> None:
    doc = _json(["db", "history"], cli_env)
    assert doc["ok"] is True and doc["head"] == HEAD
    assert [r["revision"] for r in doc["revisions"]] == REVISIONS
    assert doc["revisions"][0]["down_revision"] is None
    assert all(r["down_revision"] == prev["revision"] for prev, r in zip(doc["revisions"], doc["revisions"][1:],
                                                                          strict=False))
    assert [r["head"] for r in doc["revisions"]].count(True) == 1 and doc["revisions"][-1]["head"]
    assert all(r["message"] for r in doc["revisions"])


def test_current_upgrade_and_check_step_by_step(cli_env: dict[str, str]) -> None:
    if not PG_URL:  # read-only commands do not make an empty database at a mistyped location
        missing = _json(["db", "current"], cli_env, code=2)
        assert missing["error"]["code"] == "no_database"
        assert _json(["db", "check"], cli_env, code=2)["error"]["code"] == "no_database"
    first = REVISIONS[0]
    up = _json(["db", "upgrade", first], cli_env)
    assert up == {"ok": True, "from": [], "to": [first]}
    assert _json(["db", "current"], cli_env) == {"ok": True, "current": [first], "head": HEAD, "up_to_date": False}
    behind = _json(["db", "check"], cli_env, code=1)
    assert behind["ok"] is False and behind["error"]["code"] == "not_at_head" and behind["current"] == [first]
    assert behind["differences"]  # the tables later revisions add

    up = _json(["db", "upgrade"], cli_env)
    assert up == {"ok": True, "from": [first], "to": [HEAD]}
    assert _json(["db", "current"], cli_env)["up_to_date"] is True
    assert _json(["db", "check"], cli_env) == {"ok": True, "current": [HEAD], "head": HEAD, "differences": []}
    bad = _json(["db", "upgrade", "no-such-revision"], cli_env, code=2)
    assert bad["error"]["code"] == "migration_error"


def test_check_names_the_drift_and_no_personal_data(cli_env: dict[str, str]) -> None:
    run(["init"], cli_env)
    created = run(["merchants", "create", "查验商户"], cli_env)
    assert json.loads(created.stdout)["merchant_id"]
    engine = db.make_engine(_url(cli_env))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE shipments DROP COLUMN consolidation"))
        conn.execute(text("ALTER TABLE merchants ADD COLUMN note VARCHAR(40)"))
    engine.dispose()
    proc = run(["db", "check"], cli_env, check=False)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["error"]["code"] == "schema_mismatch" and doc["current"] == [HEAD]
    assert sorted((d["op"], d["table"], d["column"]) for d in doc["differences"]) == [
        ("add_column", "shipments", "consolidation"), ("remove_column", "merchants", "note")]
    for value in [*RECIPIENT.values(), *SENDER.values(), "查验商户"]:
        assert value not in proc.stdout
    # `db upgrade` at head runs the same check: no "ok" for a drifted schema.
    assert _json(["db", "upgrade"], cli_env, code=1)["error"]["code"] == "schema_mismatch"


def test_db_commands_are_registered_with_the_cli() -> None:
    from waybill.commands.main import main

    group = main.commands["db"]
    assert sorted(group.commands) == ["check", "current", "history", "partitions", "upgrade"]  # type: ignore[attr-defined]


def test_partitions_are_made_ahead_and_listed(cli_env: dict[str, str]) -> None:
    """`waybill db partitions`: the months ahead on PostgreSQL (made already by the upgrade), nothing on SQLite."""
    from waybill import partitions
    from waybill.models import utcnow

    _json(["db", "upgrade"], cli_env)
    doc = _json(["db", "partitions", "--months", "5"], cli_env)
    if not PG_URL:
        assert doc == {"ok": True, "partitioned": False, "created": [], "tables": {}}
        return
    last = partitions.add_months(partitions.month_start(utcnow()), 5)
    # The upgrade made three months ahead; --months 5 adds the fourth and fifth, of both tables.
    assert {partitions.month_name("audit_events", last), partitions.month_name("tracking_events", last)} \
        <= set(doc["created"])
    names = [p["name"] for p in doc["tables"]["audit_events"]]
    assert names[-1] == "audit_events_pdefault" and doc["tables"]["audit_events"][-1]["from"] is None
    assert _json(["db", "partitions", "--months", "5"], cli_env)["created"] == []  # made once
    assert _json(["db", "check"], cli_env)["ok"] is True
    assert run(["db", "partitions", "--months", "-1"], cli_env, check=False).returncode == 2
