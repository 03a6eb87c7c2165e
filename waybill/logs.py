"""Structured (JSON-lines) logging that cannot carry personal data by construction.

Only whitelisted ``extra`` keys are emitted, exception *messages* are dropped (database errors
quote parameters), and the request log records the path without its query string.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

SAFE_KEYS = ("request_id", "method", "path", "status", "duration_ms", "actor", "role", "error_type",
             "endpoint", "events", "count", "merchant_id", "command", "setting", "suggestion", "check",
             "mode_before", "mode_after", "object_id", "alert_id", "rule", "severity")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage() if not record.args else record.msg,
        }
        for key in SAFE_KEYS:
            if key in record.__dict__:
                doc[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _exc, tb = record.exc_info
            # Type and stack only: an exception's text may quote the values it failed on.
            doc["error_type"] = exc_type.__name__
            doc["stack"] = [f"{f.filename}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)]
        return json.dumps(doc, ensure_ascii=False)


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    root = logging.getLogger("waybill")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        if getattr(handler, "_waybill", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._waybill = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # werkzeug's access log prints full URLs with query strings; ours replaces it.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
