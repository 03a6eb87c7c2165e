"""A misspelt WAYBILL_* variable is named in a warning (with the closest known name), never silently ignored."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.conftest import run
from waybill import logs
from waybill.settings import TEST_VARIABLES, known_variables, load_settings, unknown_variables

SECRET_VALUE = "postgresql+psycopg://waybill:hunter2-do-not-log@db.internal/waybill"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    yield stream
    logs.configure("INFO")


def _records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_misspelt_variable_is_named_with_the_closest_setting_and_never_its_value(tmp_path, log_lines):
    settings = load_settings(environ={"WAYBILL_DATABSE_URL": SECRET_VALUE, "WAYBILL_DATA_DIR": str(tmp_path)})
    assert settings.is_sqlite  # the misspelt URL was indeed ignored
    warnings = [r for r in _records(log_lines) if r["logger"] == "waybill.settings"]
    assert len(warnings) == 1
    (w,) = warnings
    assert w["level"] == "warning"
    assert w["setting"] == "WAYBILL_DATABSE_URL" and w["suggestion"] == "WAYBILL_DATABASE_URL"
    assert "WAYBILL_DATABSE_URL" in w["msg"] and "WAYBILL_DATABASE_URL" in w["msg"]
    assert "hunter2" not in log_lines.getvalue() and "db.internal" not in log_lines.getvalue()


@pytest.mark.parametrize(("given", "closest"), [
    ("WAYBILL_REDIS", "WAYBILL_REDIS_URL"),
    ("WAYBILL_SCAN_PER_MIN", "WAYBILL_SCAN_PER_MINUTE"),
    ("WAYBILL_KEYFILE", "WAYBILL_KEY_FILE"),
    ("WAYBILL_CARRIER", "WAYBILL_CARRIER_NAME"),
    ("WAYBILL_QQQQQQ", None),
])
def test_closest_names(given, closest):
    assert unknown_variables({given: "x"}) == [(given, closest)]


def test_known_settings_test_variables_and_other_variables_are_quiet(tmp_path, log_lines):
    environ = {"WAYBILL_DATA_DIR": str(tmp_path), "WAYBILL_SCAN_PER_MINUTE": "10", "PATH": "/usr/bin",
               "DATABASE_URL": "x", **{name: "1" for name in TEST_VARIABLES}}
    assert unknown_variables(environ) == []
    load_settings(environ=environ)
    assert not [r for r in _records(log_lines) if r["logger"] == "waybill.settings"]


class _Recording(Mapping[str, str]):
    """An environment that remembers which variables were looked up."""

    def __init__(self, data: dict[str, str]) -> None:
        self.data, self.read = data, set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_the_known_names_are_exactly_the_variables_load_settings_reads(tmp_path):
    """Derived from the Settings fields: a field nobody reads, or a variable read without a field, fails here."""
    env = _Recording({"WAYBILL_DATA_DIR": str(tmp_path)})
    load_settings(environ=env)
    read = {k for k in env.read if k.startswith("WAYBILL_")}
    assert read == known_variables() - TEST_VARIABLES


def test_the_cli_warns_on_stderr_and_still_works(cli_env):
    proc = run(["init"], {**cli_env, "WAYBILL_LOG_LEVLE": "DEBUG-secret-value"})
    assert json.loads(proc.stdout)["ok"] is True
    assert "WAYBILL_LOG_LEVLE" in proc.stderr and "WAYBILL_LOG_LEVEL" in proc.stderr
    assert "secret-value" not in proc.stderr + proc.stdout
