"""Schemathesis against the whole /openapi.json: generated requests, each answer checked against the document.

Every operation the document lists (new endpoints included, with no change here) is called with requests
schemathesis generates from its parameters and body schema, valid and invalid, as a caller holding the
permission the route requires (the merchant, or a staff user of a role that has it; see ``requires`` in
waybill/web/auth.py). Each answer must not be a 5xx, must have a status the operation documents, the
documented content type, and a body matching the documented schema. Bounded: a few examples per
operation (``WAYBILL_FUZZ_EXAMPLES``, default 15), so the file runs in about a minute.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Env, _drop, _new_env, make_merchant, shipment_body
from tests.courier_api import bearer, login, make_staff
from tests.courier_api.subjects_helpers import direct_token
from waybill.permissions import ROLE_PERMISSIONS, STAFF_ROLES
from waybill.web.auth import required_permission

EXAMPLES = int(os.environ.get("WAYBILL_FUZZ_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
_PARAM = re.compile(r"<(?:[a-z_]+:)?([a-zA-Z_]+)>")


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    env = _new_env(tmp_path_factory.mktemp("fuzz"))
    yield env
    _drop(env)


@pytest.fixture(scope="module")
def fuzz_app(fuzz_env: Env) -> Any:
    return fuzz_env.app()


@pytest.fixture(scope="module")
def role_headers(fuzz_env: Env, fuzz_app: Any) -> dict[str, dict[str, str]]:
    """Authorization headers for the merchant and one staff user of every staff role."""
    from waybill.web.context import EXTENSION_KEY

    services = fuzz_app.extensions[EXTENSION_KEY]
    headers = {"merchant": make_merchant(services, "模糊测试商户").headers}
    client = fuzz_app.test_client()
    for role in STAFF_ROLES:
        new = make_staff(services, f"fuzz_{role}", role)
        answer = login(client, new)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        headers[role] = bearer(answer.get_json()["access_token"])
    # A data subject: the recipient of one shipment (a session made by the domain: no SMS to read here).
    made = client.post("/v1/shipments", json=shipment_body("FUZZ-SUBJECT"), headers=headers["merchant"])
    assert made.status_code == 201, made.get_data(as_text=True)
    headers["subject"] = direct_token(services, made.get_json()["id"], "recipient")
    return headers


def _role_for(app: Any, path: str, method: str) -> str | None:
    """The role to call an operation as: one whose permissions include what the route requires."""
    for rule in app.url_map.iter_rules():
        if _PARAM.sub(r"{\1}", rule.rule) == path and method.upper() in (rule.methods or set()):
            needed = required_permission(app.view_functions.get(rule.endpoint))
            if needed is None:
                return None
            return next(role for role, perms in ROLE_PERMISSIONS.items() if needed in perms)
    return None


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        if headers:  # schemathesis fills in a random bearer token from the security scheme: use the role's
            case.headers = {**(case.headers or {}), **headers}
        case.call_and_validate(checks=CHECKS)

    run()


def test_every_operation_answers_as_documented(fuzz_app: Any, role_headers: dict[str, dict[str, str]]) -> None:
    """(One test for the whole document: the operations come from the served /openapi.json.)"""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        role = _role_for(fuzz_app, operation.path, operation.method)
        try:
            _fuzz(operation, role_headers[role] if role else {})
        except Exception as exc:  # every operation is run; the failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)


_SAMPLE = {"shipment_id": "shp_" + "0" * 26, "request_id": "pdr_" + "0" * 26, "token": "t" * 20,
           "webhook_id": "whk_" + "0" * 26}


def test_every_path_answers_other_methods_with_405_and_the_documented_allow(fuzz_app: Any) -> None:
    """OPTIONS (no automatic answer) and unlisted methods: 405, and Allow names what the document lists."""
    client = fuzz_app.test_client()
    doc = client.get("/openapi.json").get_json()
    for path, ops in doc["paths"].items():
        url = re.sub(r"{([a-zA-Z_]+)}", lambda m: _SAMPLE.get(m.group(1), "x"), path)
        documented = {m.upper() for m in ops}
        for method in sorted({"OPTIONS", "PUT", "PATCH", "DELETE", "GET", "POST"} - documented):
            answer = client.open(url, method=method)
            assert answer.status_code == 405, (method, path, answer.status_code)
            allow = {m.strip() for m in answer.headers["Allow"].split(",")} - {"HEAD"}
            assert allow == documented, (method, path, allow)
            assert answer.get_json()["error"]["code"] == "method_not_allowed"


def test_query_parameters_are_bounded_in_the_document(fuzz_app: Any) -> None:
    """Integers carry their bounds, and the label's format and size their lists, as the views enforce them."""
    doc = fuzz_app.test_client().get("/openapi.json").get_json()
    params = [(path, p) for path, ops in doc["paths"].items() for op in ops.values() for p in op["parameters"]
              if p["in"] == "query"]
    assert params
    for path, p in params:
        if p["schema"].get("type") == "integer":
            assert {"minimum", "maximum"} <= set(p["schema"]), (path, p)
    label = {p["name"]: p["schema"] for p in doc["paths"]["/v1/shipments/{shipment_id}/label"]["get"]["parameters"]}
    assert label["format"]["enum"] == ["pdf", "png", "zpl"] and "76x130" in label["size"]["enum"]


def test_batch_answers_with_odd_items_match_their_schema(fuzz_app: Any, role_headers: Any) -> None:
    from tests.openapi_check import Answer, check_answer

    client = fuzz_app.test_client()
    doc = client.get("/openapi.json").get_json()
    answer = client.post("/v1/shipments/batch", headers=role_headers["merchant"],
                         json={"shipments": [{"x": 1}, 5, None, [], "s", {"merchant_order_id": 7}]})
    assert answer.status_code == 200
    check_answer(doc, Answer("/v1/shipments/batch", "/v1/shipments/batch", "post", 200, answer.get_json()))
    assert [r["status"] for r in answer.get_json()["results"]] == ["error"] * 6
