"""Architecture: one place commits. No module of the service calls ``.commit()`` or ``.rollback()`` but the
unit of work (waybill/uow.py), as Warehouse bans stray flushes with an AST rule."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {ROOT / "waybill" / "uow.py"}


def test_nothing_commits_outside_the_unit_of_work():
    offenders = []
    for package in ("waybill", "courier_api", "printing"):
        for path in (ROOT / package).rglob("*.py"):
            if path in ALLOWED:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in {"commit", "rollback"}):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()")
    assert offenders == []
