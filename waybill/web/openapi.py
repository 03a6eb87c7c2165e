"""OpenAPI 3.1 from the same pydantic models that validate requests and serialise answers.

Views declare their contract with :func:`operation`; :func:`build_document` walks the app's URL
map, so an endpoint cannot exist without appearing in the document. Views answer JSON through
:func:`respond`, which refuses any model or status other than the ones their route documents, so
what is served is what the document describes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, Response, current_app, jsonify, request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from waybill.schemas import ErrorOut
from waybill.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__waybill_openapi__"
# A query parameter's schema: a JSON type name, a JSON schema, or a function of the settings giving one (a bound
# that is a setting, e.g. the page size maximum).
QuerySchema = str | dict[str, Any] | Callable[[Settings], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    summary: str
    tags: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    also: tuple[int, ...] = ()  # other statuses answering the same response model (e.g. readiness: 503)
    security: str | None = "bearer"
    query: tuple[tuple[str, QuerySchema, str], ...] = ()  # (name, schema, description)
    headers: tuple[tuple[str, str], ...] = ()  # (name, description)
    errors: tuple[int, ...] = ()
    content_types: tuple[str, ...] = ("application/json",)
    extra_models: tuple[type[BaseModel], ...] = field(default_factory=tuple)


def operation(**kwargs: Any) -> Callable[[F], F]:
    op = Operation(**kwargs)

    def deco(fn: F) -> F:
        setattr(fn, _ATTR, op)
        return fn

    return deco


def documented(view: Callable[..., Any] | None) -> Operation | None:
    """The operation a view function declares, if any."""
    op = getattr(view, _ATTR, None)
    return op if isinstance(op, Operation) else None


def respond(model: type[BaseModel], value: object, status: int | None = None) -> Response:
    """A JSON success answer: ``value`` validated by ``model`` and dumped as JSON, as the document shows it.

    ``value`` may be an instance of ``model``, a mapping or an object with the model's attributes
    (a dataclass, an ORM row). ``model`` and ``status`` must be the ones the current route documents:
    anything else is a bug (the answer would drift from /openapi.json) and raises.
    """
    op = documented(current_app.view_functions.get(request.endpoint or ""))
    if op is None or op.response is not model:
        raise RuntimeError(f"{request.endpoint} does not document {model.__name__} as its response")
    status = op.status if status is None else status
    if status != op.status and status not in op.also:
        raise RuntimeError(f"{request.endpoint} does not document status {status}")
    body = model.model_validate(value, from_attributes=True).model_dump(mode="json")
    resp = jsonify(body)
    resp.status_code = status
    return resp


_PARAM = re.compile(r"<(?:[a-z_]+:)?([a-zA-Z_]+)>")
RATE_LIMIT_HEADERS: dict[str, Any] = {
    name: {"description": text, "required": False, "schema": {"type": "integer"}} for name, text in (
        ("X-RateLimit-Limit", "Merchant callers: units per window of the merchant's budget"),
        ("X-RateLimit-Remaining", "Merchant callers: units left in the window after this request"),
        ("X-RateLimit-Reset", "Merchant callers: Unix time (s) when the oldest unit counted ages out"))}


def query_schema(schema: QuerySchema, settings: Settings) -> dict[str, Any]:
    """The JSON schema of one query parameter as the document shows it."""
    if isinstance(schema, str):
        return {"type": schema}
    if isinstance(schema, dict):
        return schema
    return schema(settings)


def build_document(app: Flask) -> dict[str, Any]:
    from waybill.web.context import EXTENSION_KEY

    settings: Settings = app.extensions[EXTENSION_KEY].settings
    ops: list[tuple[str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        op = documented(app.view_functions.get(rule.endpoint))
        if op is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops.append((_PARAM.sub(r"{\1}", rule.rule), method.lower(), op))
    models: set[type[BaseModel]] = {ErrorOut}
    for _, _, op in ops:
        models.update(m for m in (op.body, op.response, *op.extra_models) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema([(m, "validation") for m in ordered],
                                    ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for path, method, op in sorted(ops, key=lambda t: (t[0], t[1])):
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{([a-zA-Z_]+)}", path)
        ]
        params += [{"name": n, "in": "query", "required": False, "schema": query_schema(t, settings),
                    "description": d} for n, t, d in op.query]
        params += [{"name": n, "in": "header", "required": False, "schema": {"type": "string"},
                    "description": d} for n, d in op.headers]
        ok: dict[str, Any] = {"description": "OK"}
        if op.response is not None:
            ok["content"] = {"application/json": {"schema": ref(op.response)}}
            # A JSON answer that can also be had as a file (e.g. a report's ?format=pdf).
            ok["content"].update({ct: {"schema": {"type": "string", "format": "binary"}}
                                  for ct in op.content_types if ct != "application/json"})
        elif op.content_types != ("application/json",):
            ok["content"] = {ct: {"schema": {"type": "string", "format": "binary"}} for ct in op.content_types}
        responses: dict[str, Any] = {str(code): ok for code in (op.status, *op.also)}
        error_codes = set(op.errors) | {422} if op.body else set(op.errors)
        if op.security:
            # 503: the database is down or restarting (waybill/web/errors.py DEPENDENCY_TABLE), with Retry-After.
            error_codes |= {401, 403, 429, 503}
        if 429 in error_codes and "503" not in responses:
            # A limited route needs its limit's store: with Redis configured and unreachable, 503 limits_unavailable.
            error_codes.add(503)
        for code in sorted(error_codes):
            responses[str(code)] = {"description": "Error",
                                    "content": {"application/json": {"schema": ref(ErrorOut)}}}
        if op.security:
            # Merchant callers: every answer (429 included) carries the budget.
            for status, answer in list(responses.items()):
                responses[status] = {**answer, "headers": RATE_LIMIT_HEADERS}
        entry: dict[str, Any] = {"summary": op.summary, "operationId": f"{method}_{path}",
                                 "tags": list(op.tags), "parameters": params, "responses": responses}
        if op.body is not None:
            entry["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": ref(op.body)}}}
        entry["security"] = [{op.security: []}] if op.security else []
        paths.setdefault(path, {})[method] = entry
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "privacy-waybill", "version": "1.0.0",
                 "description": "隐私面单服务：加密存储、脱敏面单、受审计的快递员访问。"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Merchant API key or staff access token"}},
        },
    }
