"""gunicorn's settings for `waybill serve`, in one place (the CLI, the benchmarks and the tests use them)."""

from __future__ import annotations

import os
from typing import Any

# gunicorn's limits on what a client may send before the app sees anything. A request line carries a
# path and a short query (the API has no long URLs); 50 header fields of 8 KiB at most, 32 KiB in all
# (waybill.serving.worker.MAX_HEAD_BYTES).
LIMIT_REQUEST_LINE = 4094
LIMIT_REQUEST_FIELDS = 50
LIMIT_REQUEST_FIELD_SIZE = 8190
# A worker whose main loop has not reported for this long is killed and replaced; with gthread the loop
# never waits on a request, so only a wedged process reaches it.
TIMEOUT_S = 30
GRACEFUL_TIMEOUT_S = 25  # in-flight requests on SIGTERM; below the unit's TimeoutStopSec (30 s)
KEEPALIVE_S = 5  # idle kept-alive connections; a reverse proxy's upstream keepalive_timeout must be shorter
WORKER_CONNECTIONS = 1000  # open connections per worker, slow ones included


def cpu_count() -> int:
    """CPUs this process may run on (a container's or a taskset's share, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """One worker process per CPU: each has its own threads, and none waits on a slow client."""
    return cpu_count()


def gunicorn_options(*, host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """The gunicorn settings `waybill serve` runs with (besides its hooks)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "waybill.serving.worker.Worker",
        "logger_class": "waybill.serving.gunicorn_log.JsonLogger",
        # The app's request log (waybill.request) records every request by its route pattern; gunicorn's access
        # log would repeat it with the raw path. Its error log goes to stderr, as JSON (gunicorn_log).
        "accesslog": None,
        "errorlog": "-",
        "timeout": TIMEOUT_S,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": KEEPALIVE_S,
        "worker_connections": WORKER_CONNECTIONS,
        "limit_request_line": LIMIT_REQUEST_LINE,
        "limit_request_fields": LIMIT_REQUEST_FIELDS,
        "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
        # gunicorn 24+ opens a control socket under $HOME; the service is managed by signals (systemd, docker).
        "control_socket_disable": True,
    }
