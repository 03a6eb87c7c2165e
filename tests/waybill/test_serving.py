"""`waybill serve` under attack from raw sockets: slow clients, malformed requests, what leaks out.

The server is the real one, ``waybill serve`` started as a subprocess; its stderr (gunicorn's and the
app's log lines) is captured in a file and searched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import PG_URL, run, shipment_body
from waybill.db import make_engine
from waybill.serving.gunicorn_log import scrub
from waybill.serving.worker import request_end

PHONE = "13812345678"


@dataclass
class Served:
    port: int
    log: Path
    api_key: str
    proc: subprocess.Popen[bytes]

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text(encoding="utf-8").splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`waybill serve` with one worker (4 threads on SQLite, 2 on PostgreSQL) and a merchant, for the module."""
    tmp_path = tmp_path_factory.mktemp("serve")
    cli_env = {"WAYBILL_DATA_DIR": str(tmp_path / "data")}
    schema = None
    if PG_URL:
        schema = "wbserve_" + secrets.token_hex(4)
        admin = make_engine(PG_URL)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        cli_env["WAYBILL_DATABASE_URL"] = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    api_key = json.loads(run(["merchants", "create", "慢客户测试"], cli_env).stdout)["api_key"]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    env.update(cli_env)
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "waybill.commands.main", "serve", "--port", str(port),
                                 "--workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(
                        b"HTTP/1.1 200"):
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield Served(port, log, api_key, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if schema:
            with admin.begin() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def _exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Send ``raw`` and read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        return _read_all(s)


def _read_all(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def _headers(answer: bytes) -> dict[str, str]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


# -- item 5: slow clients cost a socket, not a thread -----------------------------------------------------


def test_slow_clients_holding_every_thread_do_not_starve_healthz(served: Served) -> None:
    """Eight connections dripping their headers a byte at a time (twice the worker's threads)."""
    slow = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        slow.append(s)
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            for s in slow:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
            time.sleep(0.3)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        time.sleep(1.5)  # every slow request has started; before the fix each held a thread from here on
        answer = _exchange(served.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                           timeout=20)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.endswith(b'{"ok":true}\n')
        # A request still not complete at its deadline (10 s for the head) is answered 408 and closed.
        late = _read_all(slow[0])
        assert late.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in late, late
    finally:
        stop.set()
        dripper.join()
        for s in slow:
            s.close()


def test_a_body_sent_slowly_in_pieces_arrives_whole(served: Served) -> None:
    body = json.dumps(shipment_body("ORD-SLOW")).encode()
    head = (f"POST /v1/shipments HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {served.api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    raw = head + body
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as s:
        for i in range(0, len(raw), len(raw) // 5 + 1):
            s.sendall(raw[i:i + len(raw) // 5 + 1])
            time.sleep(0.2)
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 201"), answer
    assert PHONE not in answer.decode("utf-8", "replace")


def test_pipelined_and_kept_alive_requests_are_all_answered(served: Served) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as s:
        s.sendall(one + one)  # two at once: the second waits in the parser's read-ahead
        time.sleep(0.5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answers = _read_all(s)
    assert answers.count(b"HTTP/1.1 200") == 3, answers


# -- item 14: gunicorn's own answers and log lines --------------------------------------------------------

MALFORMED = [
    f"GET /v1/{PHONE} HTTP/1.1\x01\r\nHost: t\r\n\r\n".encode(),  # a bad request line
    f"GET /v1/{PHONE}{'9' * 5000} HTTP/1.1\r\nHost: t\r\n\r\n".encode(),  # longer than the limit (414)
    f"GET /v1/x HTTP/1.1\r\nHost: t\r\nX-{PHONE}\x01: 1\r\n\r\n".encode(),  # a bad header name
    f"GET /v1/{PHONE} HTTP/1.1\r\nHost: t\r\nX-A: {'1' * 40000}\r\n\r\n".encode(),  # a head over 32 KiB (431)
    f"BAD{PHONE} /v1/x HTTP/1.1\r\nHost: t\r\n\r\n".encode(),  # a bad method
]


@pytest.mark.parametrize("raw", MALFORMED, ids=["line", "long-line", "header-name", "huge-head", "method"])
def test_a_malformed_request_gets_a_short_json_error_that_echoes_nothing(served: Served, raw: bytes) -> None:
    before = len(served.lines())
    answer = _exchange(served.port, raw)
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer
    headers = _headers(answer)
    assert headers["content-type"] == "application/json" and "server" not in headers
    assert headers["x-content-type-options"] == "nosniff"
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert set(body["error"]) == {"code", "message", "field"}
    assert PHONE.encode() not in answer and b"<html" not in answer.lower()
    time.sleep(0.3)  # the log line is written after the answer
    lines = served.lines()
    assert all(json.loads(line) for line in lines)  # every line gunicorn and the app wrote is JSON
    assert not any(PHONE in line for line in lines)
    assert any(json.loads(line).get("status") == status for line in lines[before:])  # the refusal is logged


def test_no_answer_names_the_server(served: Served) -> None:
    answer = _exchange(served.port, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and "server" not in _headers(answer)
    assert b"gunicorn" not in answer.lower()
    assert all(json.loads(line) for line in served.lines())  # start-up lines included


# -- the pieces, directly ----------------------------------------------------------------------------------


_HEAD = b"POST / HTTP/1.1\r\nHost: t\r\n"


@pytest.mark.parametrize(("raw", "whole"), [
    (b"GET / HTTP/1.1\r\nHost: t\r\n", None),
    (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"),
    (_HEAD + b"Content-Length: 4\r\n\r\nab", None),
    (_HEAD + b"Content-Length: 4\r\n\r\nabcdGET", _HEAD + b"Content-Length: 4\r\n\r\nabcd"),
    # over the limit: not waited for (the app refuses it)
    (_HEAD + b"Content-Length: 99999\r\n\r\nab", _HEAD + b"Content-Length: 99999\r\n\r\n"),
    # ambiguous: left to the parser to refuse
    (_HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n",
     _HEAD + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    (_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", None),
    (_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET",
     _HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
])
def test_request_end_waits_for_a_whole_request(raw: bytes, whole: bytes | None) -> None:
    end = request_end(raw, 1024)
    assert (None if end is None else raw[:end]) == whole


def test_scrub_removes_what_a_client_wrote() -> None:
    text = scrub(f"Invalid request line: 'GET /v1/{PHONE}' from /x?phone={PHONE} ip=10.0.0.1:8080\x01")
    assert PHONE not in text and "\x01" not in text and "ip=10.0.0.1:8080" in text
    assert scrub(f"/v1/shipments/{PHONE}/label") == "/v1/shipments/…/label"


def test_gunicorns_access_log_when_enabled_is_json_without_the_raw_path(capsys: pytest.CaptureFixture[str]) -> None:
    """`waybill serve` leaves it off (the app logs requests by route); switched on, it still leaks nothing."""
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from waybill.serving.gunicorn_log import JsonLogger

    cfg = Config()
    cfg.set("accesslog", "-")
    logger = JsonLogger(cfg)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/v1/shipments/{PHONE}", "QUERY_STRING": f"phone={PHONE}",
               "RAW_URI": f"/v1/shipments/{PHONE}?phone={PHONE}"}
    logger.access(SimpleNamespace(status="404 NOT FOUND", status_code=404),
                  SimpleNamespace(path=environ["PATH_INFO"], method="GET"), environ, timedelta(milliseconds=3))
    logger.warning(f"Invalid request from ip=10.0.0.1: Invalid HTTP request line: 'GET /v1/{PHONE} HTTP/1.1'")
    out = capsys.readouterr()
    lines = [json.loads(line) for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(lines) == 2 and PHONE not in out.out + out.err
    assert lines[0]["path"] == "/v1/shipments/…" and lines[0]["status"] == 404
    assert "ip=10.0.0.1" in lines[1]["msg"]
