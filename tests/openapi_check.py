"""Check served JSON answers against the app's own /openapi.json, so the document cannot drift from the wire.

:class:`AnswerRecorder` hooks an app (before its first request) and keeps every JSON answer it serves;
:func:`check_answer` validates one against the schema the document gives for its route, method and status.
The check is stricter than the document on one point: an object may carry only the properties its schema
lists (the document leaves objects open, since the contract welcomes extra fields; the *document* must still
show them), and timestamps must be ISO 8601 UTC with ``Z``, as ``waybill.schemas.iso_utc`` writes them.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema
from flask import Flask, Response, request

_PARAM = re.compile(r"<(?:[a-z_]+:)?([a-zA-Z_]+)>")
_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _utc_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _UTC.match(value):
        raise ValueError(f"{value!r} is not an ISO 8601 UTC timestamp ending in Z")
    datetime.fromisoformat(value)
    return True


@dataclass(frozen=True)
class Answer:
    rule: str  # the Flask rule, e.g. /v1/shipments/<shipment_id>
    path: str  # as the document writes it, e.g. /v1/shipments/{shipment_id}
    method: str  # lower case
    status: int
    body: Any


class AnswerRecorder:
    """Keeps every JSON answer an app serves (streamed bodies are left alone)."""

    def __init__(self, app: Flask) -> None:
        self.answers: list[Answer] = []
        app.after_request(self._keep)

    def _keep(self, response: Response) -> Response:
        if request.url_rule is None or response.is_streamed or response.mimetype != "application/json":
            return response
        rule = request.url_rule.rule
        self.answers.append(Answer(rule, _PARAM.sub(r"{\1}", rule), request.method.lower(), response.status_code,
                                   response.get_json()))
        return response


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to unlisted ones."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any] | None:
    """The JSON schema the document gives for one answer, or ``None`` when the answer is not documented."""
    responses = doc["paths"].get(path, {}).get(method, {}).get("responses", {})
    content = responses.get(str(status), {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    return schema if isinstance(schema, dict) else None


def check_answer(doc: dict[str, Any], answer: Answer) -> None:
    """Raise ``AssertionError`` unless the answer is documented and its body matches the documented schema."""
    schema = response_schema(doc, answer.path, answer.method, answer.status)
    assert schema is not None, f"{answer.method.upper()} {answer.path} answered {answer.status}, undocumented"
    # The refs ("#/components/schemas/...") resolve against the root, which carries the document's components.
    root = {**copy.deepcopy(schema), "components": _closed(doc["components"])}
    validator = jsonschema.Draft202012Validator(root, format_checker=FORMATS)
    errors = sorted(validator.iter_errors(answer.body), key=lambda e: list(e.absolute_path))
    assert not errors, (f"{answer.method.upper()} {answer.path} {answer.status}: "
                        + "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"
                                    for e in errors[:5]))


def documented_json_routes(app: Flask, doc: dict[str, Any]) -> set[tuple[str, str, int]]:
    """(path, method, status) of every route in the app's url_map whose success answer has a JSON schema."""
    out: set[tuple[str, str, int]] = set()
    for rule in app.url_map.iter_rules():
        path = _PARAM.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = doc["paths"].get(path, {}).get(method.lower())
            if op is None:
                continue
            for status, spec in op["responses"].items():
                if int(status) < 400 and "application/json" in spec.get("content", {}):
                    out.add((path, method.lower(), int(status)))
    return out
