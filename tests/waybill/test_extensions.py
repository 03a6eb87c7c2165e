"""The courier side plugs in through the ``waybill.extensions`` entry point; waybill never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

from waybill.extensions import TOKEN_RESOLVERS, load_extensions

ROOT = Path(__file__).resolve().parents[2]


def test_courier_extension_is_discovered(app):
    names = [ext.name for ext in load_extensions()]
    assert names == ["courier_api"]
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert {"/v1/auth/token", "/v1/courier/scan", "/v1/privacy/requests"} <= rules
    assert "wbs_" in app.extensions[TOKEN_RESOLVERS]


def test_cli_has_the_extension_commands():
    from waybill.commands.main import main

    assert {"users", "merchants", "print", "phone"} <= set(main.commands)


def _imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_layers_point_one_way():
    # The same rule lint-imports enforces in CI, checked here so a plain `pytest` run sees it too.
    assert not _imports("printing") & {"waybill", "courier_api"}
    assert "courier_api" not in _imports("waybill")
