"""A real `waybill serve` (or `waybill worker`) subprocess on a given environment, and a small HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.private_services import free_port


def child_env(env_vars: dict[str, str]) -> dict[str, str]:
    """This process's environment without any WAYBILL_ variable, plus ``env_vars``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    env.update(env_vars)
    return env


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    headers: dict[str, str]
    body: Any
    seconds: float
    error: str | None = None


def call(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 15.0) -> Answer:
    """One request on a fresh connection; a transport failure is an answer with ``status`` None."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        sent = {"Content-Type": "application/json", **(headers or {})} if payload is not None else dict(headers or {})
        conn.request(method, path, body=payload, headers=sent)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, parsed, time.monotonic() - started)
    except (OSError, http.client.HTTPException) as exc:
        return Answer(None, {}, None, time.monotonic() - started, type(exc).__name__)
    finally:
        conn.close()


class Serve:
    """`waybill serve --workers N` on a free port; stderr (gunicorn's and the app's JSON log) goes to a file."""

    def __init__(self, env_vars: dict[str, str], log: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "waybill.commands.main", "serve", "--port", str(self.port),
                 "--workers", str(workers)], env=child_env(env_vars), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 90
        while call(self.port, "GET", "/healthz", timeout=2).status != 200:
            assert self.proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
