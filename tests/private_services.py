"""PostgreSQL and Redis instances of a test's own, on free ports, for fault tests that stop and restart them.

The shared services (.ci/run's PostgreSQL on 5432, Redis on 6379) are never stopped by a test: a fault test
starts a private cluster (``initdb`` + ``pg_ctl`` in a temporary directory) or a private ``redis-server`` and
breaks that one. Run as root (CI, containers), PostgreSQL refuses to start: its commands then run as the
``postgres`` system user (``runuser``), in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on ``127.0.0.1:port`` (trust authentication, user ``postgres``)."""

    def __init__(self) -> None:
        missing = [tool for tool in ("initdb", "pg_ctl") if shutil.which(tool) is None]
        if missing:
            pytest.fail(f"fault tests need PostgreSQL's {', '.join(missing)} in PATH", pytrace=False)
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
        # Not under pytest's tmp_path (0700, root's): the postgres user must own this directory.
        self.root = Path(tempfile.mkdtemp(prefix="waybill-pg-"))
        if self._as:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.data = self.root / "data"
        self.port = free_port()
        self._pg(["initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, args: list[str], timeout: float = 60) -> None:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stdout}{proc.stderr}")

    def start(self) -> None:
        # fsync off: a test cluster, its durability is not what is tested (a crash is, by a stop -m immediate).
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._pg(["pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                  "start"])

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are terminated (what a restart or a failover does to them); ``immediate``: a crash."""
        self._pg(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.close()


class PrivateRedis:
    """A ``redis-server`` of the test's own on ``127.0.0.1:port``, no persistence."""

    def __init__(self, workdir: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("fault tests need redis-server in PATH", pytrace=False)
        self._binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        """Start it (again, on the same port: an empty Redis, as after a crash without persistence)."""
        where = ["--dir", str(self.workdir)] if self.workdir is not None else []
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--daemonize", "no", *where],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
