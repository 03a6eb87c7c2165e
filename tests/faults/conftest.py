"""Fault tests: the service against PostgreSQL and Redis instances of their own (tests/private_services.py), which
they stop, restart and kill while real `waybill serve` and `waybill worker` processes are under load.

They are slow (a cluster per module, subprocesses, outages of seconds), so they run once: in CI's PostgreSQL pass
(``WAYBILL_TEST_DATABASE_URL`` set), or wherever ``WAYBILL_TEST_FAULTS=1`` asks for them; otherwise they are
skipped, saying so (the browser tests' rule, tests/browser/conftest.py). The shared services are never touched.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import PG_URL

ENABLED = bool(PG_URL) or os.environ.get("WAYBILL_TEST_FAULTS") == "1"
SKIP_REASON = ("fault tests run in the PostgreSQL pass only: set WAYBILL_TEST_DATABASE_URL "
               "(or WAYBILL_TEST_FAULTS=1 on SQLite)")


@pytest.fixture(scope="session", autouse=True)
def _faults_switch() -> None:
    if not ENABLED:
        pytest.skip(SKIP_REASON)
