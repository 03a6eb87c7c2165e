"""The database's connection errors map to 503 in one table (waybill/web/errors.py DEPENDENCY_TABLE); the command
line exits 3 on them. Fast, on both databases: the dead database is a PostgreSQL URL on a port nothing listens on.
(A real restart under load: tests/faults/test_database_restart.py.)"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from tests.conftest import Env, run, shipment_body
from tests.private_services import free_port
from waybill.db import make_engine, make_session_factory
from waybill.web.app import create_app
from waybill.web.errors import dependency_failure


def _dead_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"


def test_requests_against_an_unreachable_database_answer_503_with_retry_after(base_env: Env) -> None:
    dead = make_engine(_dead_url())
    try:
        app = create_app(base_env.settings,
                         services_override=base_env.services(session_factory=make_session_factory(dead)))
        client = app.test_client()
        answer = client.post("/v1/shipments", json=shipment_body("DEAD-1"),
                             headers={"Authorization": "Bearer wb_live_nothing"})
        assert answer.status_code == 503, answer.get_json()
        assert int(answer.headers["Retry-After"]) >= 1
        error: dict[str, Any] = answer.get_json()["error"]
        assert error["code"] == "database_unavailable" and error["message"] == "数据库暂时不可用，请稍后重试"
        assert client.get("/healthz").status_code == 200  # liveness never asks the database
    finally:
        dead.dispose()


def test_a_server_that_accepts_and_never_answers_costs_the_connect_timeout_not_a_hung_thread(base_env: Env) -> None:
    """A half-dead host (the TCP handshake done by its kernel, PostgreSQL never answering): without
    ``connect_timeout`` the request would wait for the kernel's TCP timeout, minutes, holding a server thread."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accepted, never answered
    dead = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/nothing")
    answers: list[Any] = []
    try:
        app = create_app(base_env.settings,
                         services_override=base_env.services(session_factory=make_session_factory(dead)))

        def ask() -> None:
            answers.append(app.test_client().get("/v1/shipments", headers={"Authorization": "Bearer wb_live_x"}))

        worker = threading.Thread(target=ask, daemon=True)
        worker.start()
        worker.join(60)  # a bound against hanging, not a speed claim (connect_timeout is 3 s)
        assert not worker.is_alive(), "the request hung on a silent database server"
        assert answers[0].status_code == 503 and answers[0].get_json()["error"]["code"] == "database_unavailable"
    finally:
        dead.dispose()
        silent.close()


def test_only_connection_failures_are_503_other_database_errors_stay_bugs() -> None:
    dead = make_engine(_dead_url())
    try:
        with dead.connect() as c:
            c.execute(text("SELECT 1"))
    except OperationalError as exc:
        row = dependency_failure(exc)
        assert row is not None and row[1] == "database_unavailable"
    else:
        raise AssertionError("a connection to a closed port succeeded")
    finally:
        dead.dispose()
    assert dependency_failure(IntegrityError("INSERT", {}, Exception("duplicate key"))) is None
    assert dependency_failure(ValueError("x")) is None


def test_a_command_facing_a_dead_database_exits_3_with_one_json_line(tmp_path: Path) -> None:
    proc = run(["init"], {"WAYBILL_DATA_DIR": str(tmp_path / "data"), "WAYBILL_DATABASE_URL": _dead_url()},
               check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["error"]["code"] == "database_unavailable"
    assert "OperationalError" in doc["error"]["message"]
    assert "Traceback" not in proc.stderr
