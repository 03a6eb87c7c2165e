"""gunicorn's error and access logs as JSON lines, with nothing a client wrote in them.

gunicorn formats client text into its messages (a rejected request line is quoted verbatim, an
error names the request URI). Its lines go through :class:`waybill.logs.JsonFormatter` here, after
:func:`scrub` removes what a client controls: quoted text, query strings and long digit runs (a
phone number in a path). Numbers gunicorn passes as arguments (process ids, counts) are its own and
kept. The access log, when enabled, records method, status and the scrubbed path only.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from gunicorn import glogging

from waybill.logs import JsonFormatter

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_QUERY = re.compile(r"\?\S*")
# Seven or more digits: every Chinese mobile (11) and landline (7-8) number, but not a port or an address.
_DIGITS = re.compile(r"\d{7,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def scrub(text: str) -> str:
    """``text`` without quoted parts, query strings, long digit runs and control characters."""
    text = _QUOTED.sub("'…'", text)
    text = _QUERY.sub("?…", text)
    text = _DIGITS.sub("…", text)
    return _CONTROL.sub("", text)


def _safe_arg(value: object) -> object:
    if isinstance(value, bool | int | float):  # gunicorn's own numbers: pids, worker counts, signals
        return value
    return scrub(str(value))


class ScrubbingJsonFormatter(JsonFormatter):
    """The project's JSON formatter for gunicorn's records: the message is formatted, then scrubbed.

    (The project formatter emits only the template of a record that has arguments; gunicorn's
    templates are mostly ``%s``, so its arguments are formatted here, each one scrubbed.)
    """

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, str):
            template = record.msg if record.args else scrub(record.msg)
        else:
            template = scrub(str(record.msg))
        args = record.args
        if isinstance(args, tuple) and args:
            try:
                message = template % tuple(_safe_arg(a) for a in args)
            except (TypeError, ValueError):
                message = template
        elif isinstance(args, dict) and args:
            message = template  # a mapping (the access-log atoms) is never spelled out
        else:
            message = template
        clean = logging.makeLogRecord({**record.__dict__, "msg": message, "args": None})
        return super().format(clean)


class JsonLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's ``logger_class``: its handlers (stderr, files, syslog) keep, their format becomes JSON."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = ScrubbingJsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        """One JSON line per request gunicorn answered: method, scrubbed path, status, duration."""
        if not self.access_log_enabled:
            return
        status = getattr(resp, "status_code", None) or str(getattr(resp, "status", "") or "").split(" ")[0]
        path = scrub(str(environ.get("PATH_INFO") or getattr(req, "path", "") or ""))
        method = str(environ.get("REQUEST_METHOD") or getattr(req, "method", "") or "")
        self.access_log.info("access", extra={
            "method": scrub(method)[:16], "path": path[:200], "status": _int_or_none(status),
            "duration_ms": round(request_time.total_seconds() * 1000, 2),
        })


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
