"""The deployment files, checked as far as a machine without a container engine allows.

``docker compose config`` (or the older ``docker-compose config``) validates compose.yaml without an engine;
``systemd-analyze verify`` checks the unit. Both are skipped, with the reason, only when the tool is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from waybill.settings import known_variables, unknown_variables

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
UNIT = ROOT / "deploy" / "privacy-waybill.service"
WORKER_UNIT = ROOT / "deploy" / "privacy-waybill-worker.service"
ENV_FILE = ROOT / "deploy" / "privacy-waybill.env"
DOCKERFILE = ROOT / "Dockerfile"


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _waybill_variables(environment: dict[str, str] | list[str]) -> dict[str, str]:
    items = environment.items() if isinstance(environment, dict) else (e.split("=", 1) for e in environment)
    return {k: str(v) for k, v in items if k.startswith("WAYBILL_")}


def test_compose_has_the_service_worker_postgres_and_redis_with_known_settings():
    doc = yaml.safe_load(COMPOSE.read_text())
    assert set(doc["services"]) == {"waybill", "worker", "postgres", "redis"}
    worker = doc["services"]["worker"]
    worker_env = _waybill_variables(worker["environment"])
    assert unknown_variables(worker_env) == [] and worker_env["WAYBILL_BROKER_URL"].startswith("redis://")
    assert "waybill worker" in " ".join(worker["command"])
    app = doc["services"]["waybill"]
    env = _waybill_variables(app["environment"])
    assert env["WAYBILL_ENV"] == "production" and env["WAYBILL_KEY_FILE"].startswith("/run/secrets/")
    assert unknown_variables(env) == []
    assert "WAYBILL_DATABASE_URL" in " ".join(app["command"])  # set from the password secret at start
    assert set(app["depends_on"]) == {"postgres", "redis"}
    assert "/readyz" in " ".join(app["healthcheck"]["test"])
    assert _waybill_variables(app["environment"])["WAYBILL_BROKER_URL"] == worker_env["WAYBILL_BROKER_URL"]
    # No password written into the file.
    assert not re.search(r"postgres(ql)?(\+psycopg)?://[^@\s]*:[^$@\s][^@\s]*@", COMPOSE.read_text())


def test_docker_compose_config_accepts_compose_yaml():
    if not shutil.which("docker") and not shutil.which("docker-compose"):
        pytest.skip("the docker CLI is not installed")
    command = _compose_command()
    if command is None:
        pytest.skip("the docker CLI is installed without the compose plugin, and docker-compose is absent")
    proc = subprocess.run([*command, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("unit_file", [UNIT, WORKER_UNIT], ids=lambda p: p.name)
def test_systemd_unit_verifies(tmp_path, unit_file):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    text = unit_file.read_text()
    exec_start = re.search(r"^ExecStart=(\S+)", text, re.M)
    assert exec_start is not None
    # verify checks that the binary exists: point it at this checkout's console script, nothing else changed.
    local = shutil.which("waybill")
    if local is None:
        pytest.skip("the waybill console script is not on PATH")
    unit = tmp_path / unit_file.name
    unit.write_text(text.replace(exec_start.group(1), local))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 after "ignoring" a bad directive: any message about the unit is a failure.
    assert proc.returncode == 0 and unit_file.name not in proc.stdout + proc.stderr, \
        proc.stdout + proc.stderr


def test_unit_and_env_file_name_only_known_settings():
    unit_env = dict(re.findall(r"^Environment=(WAYBILL_[A-Z_]+)=(.*)$", UNIT.read_text(), re.M))
    file_env = dict(re.findall(r"^#? ?(WAYBILL_[A-Z_]+)=(.*)$", ENV_FILE.read_text(), re.M))
    assert unit_env["WAYBILL_ENV"] == "production"
    assert unknown_variables({**unit_env, **file_env}) == []
    assert {"WAYBILL_KEY_FILE", "WAYBILL_DATABASE_URL"} <= set(file_env) <= known_variables()


def test_dockerfile_runs_unprivileged_and_probes_readiness():
    text = DOCKERFILE.read_text()
    assert re.search(r"^USER waybill$", text, re.M)
    assert "/readyz" in text and "HEALTHCHECK" in text
    assert re.search(r'^CMD \["waybill", "serve"', text, re.M)
    assert "keys.json" not in re.sub(r"#.*", "", text).replace("/run/secrets/waybill-keys.json", "")
