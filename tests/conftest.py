"""Shared fixtures.

The database is SQLite by default and PostgreSQL when ``WAYBILL_TEST_DATABASE_URL`` is set; on
PostgreSQL every database a test run makes is a schema of its own (dropped afterwards), so runs
never see each other's rows. The schema is always built by the Alembic migrations.

Most tests run inside one outer transaction per test that is rolled back at the end; the app's
own commits become savepoint releases (Warehouse's pattern). Tests that need real commits (raw
storage scans, the CLI, rotation, concurrency) ask for ``fresh_env`` instead.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

import courier_api.staff as _staff
from waybill import db
from waybill.merchants import create_merchant
from waybill.permissions import SYSTEM
from waybill.services import Services, build, initialise
from waybill.settings import Settings, load_settings
from waybill.web.app import create_app

PG_URL = os.environ.get("WAYBILL_TEST_DATABASE_URL")
BACKEND = "postgresql" if PG_URL else "sqlite"

# Staff passwords: production's argon2id parameters (courier_api.staff.PRODUCTION_HASHER) cost about 0.16 s per
# hash and again per verify, and the suite makes and logs in thousands of staff users. In this process the same
# code path hashes with the smallest parameters; tests/courier_api/test_password_hasher.py checks production's.
# (Servers the tests start in subprocesses keep production's and re-hash at the first login, as after an upgrade.)
_staff.HASHER = PasswordHasher(type=Type.ID, time_cost=1, memory_cost=8, parallelism=1)


def pytest_report_header(config: Any) -> str:
    return f"waybill test database: {BACKEND}"


@dataclass
class Env:
    """An initialised, isolated installation: settings (data dir, key file, URL) and its engine."""

    settings: Settings
    engine: Engine
    schema: str | None = None

    def services(self, **kwargs: Any) -> Services:
        return build(self.settings, engine=self.engine, **kwargs)

    def app(self, **kwargs: Any) -> Any:
        return create_app(self.settings, services_override=self.services(**kwargs))


def _new_env(tmp: Path, **overrides: Any) -> Env:
    schema = None
    if PG_URL:
        schema = "wbtest_" + secrets.token_hex(5)
        admin = db.make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{(tmp / 'waybill.db').as_posix()}"
    values = {"data_dir": tmp, "database_url": url, "env": "test", "merchant_rate_per_s": 1e5,
              "merchant_burst": 10**6, "auth_failure_burst": 10**6, "log_level": "INFO",
              # Personal data may be read at any hour here: an outcome must not depend on the time of day the
              # suite runs at (the off_hours rule is tested with shifts of its own).
              "alert_off_hours_shifts": "default=00:00-24:00"}
    values.update(overrides)
    settings = load_settings(environ={}, **values)
    _keys, engine, _ = initialise(settings)
    return Env(settings, engine, schema)


def _drop(env: Env) -> None:
    env.engine.dispose()
    if env.schema and PG_URL:
        admin = db.make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{env.schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def base_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    env = _new_env(tmp_path_factory.mktemp("base"))
    yield env
    _drop(env)


@pytest.fixture
def fresh_env(tmp_path: Path) -> Iterator[Callable[..., Env]]:
    """Factory for an isolated installation whose commits are real."""
    made: list[Env] = []

    def make(**overrides: Any) -> Env:
        env = _new_env(tmp_path / f"env{len(made)}", **overrides)
        made.append(env)
        return env

    yield make
    for env in made:
        _drop(env)


@pytest.fixture
def connection(base_env: Env) -> Iterator[Connection]:
    conn = base_env.engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False,
                        autoflush=False)


@pytest.fixture
def services(base_env: Env, session_factory: sessionmaker[Session]) -> Services:
    return base_env.services(session_factory=session_factory)


@pytest.fixture
def session(services: Services) -> Iterator[Session]:
    with services.session_factory() as s:
        yield s


@pytest.fixture
def app(base_env: Env, services: Services) -> Any:
    return create_app(base_env.settings, services_override=services)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@dataclass
class MerchantCreds:
    id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_merchant(services: Services, name: str = "测试商户") -> MerchantCreds:
    with services.session_factory() as s:
        new = create_merchant(s, SYSTEM, name, api_key_secret=services.keys.secret("api_key"))
        s.commit()
    return MerchantCreds(new.merchant_id, new.api_key)


@pytest.fixture
def merchant(services: Services) -> MerchantCreds:
    return make_merchant(services, "商户甲")


@pytest.fixture
def other_merchant(services: Services) -> MerchantCreds:
    return make_merchant(services, "商户乙")


# Plaintext personal data used across tests; the privacy tests search every output for these.
RECIPIENT = {"name": "欧阳娜娜", "phone": "13812345678", "province": "广东省", "city": "深圳市",
             "district": "南山区", "address": "粤海街道科技园路1号3栋502室"}
SENDER = {"name": "诸葛孔明", "phone": "021-64321234", "province": "上海市", "city": "上海市",
          "district": "徐汇区", "address": "漕溪北路88号5楼501室"}


def shipment_body(order_id: str = "ORD-1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"merchant_order_id": order_id, "sender": dict(SENDER), "recipient": dict(RECIPIENT),
                            "parcel": {"weight_g": 1500, "description": "书籍"}}
    body.update(changes)
    return body


# --- the command line, run as a user would: a subprocess with environment variables --------------------


def run(args, env_vars, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYBILL_")}
    env.update(env_vars)
    proc = subprocess.run([sys.executable, "-m", "waybill.commands.main", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def cli_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A data dir, plus (on PostgreSQL) a schema of its own."""
    env = {"WAYBILL_DATA_DIR": str(tmp_path / "data")}
    schema = None
    if PG_URL:
        import secrets

        from waybill.db import make_engine

        schema = "wbcli_" + secrets.token_hex(4)
        admin = make_engine(PG_URL)
        with admin.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{schema}"'))
        env["WAYBILL_DATABASE_URL"] = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    yield env
    if schema:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


