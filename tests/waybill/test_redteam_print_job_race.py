"""Red-team finding, fixed: two attempts of one print job with the same Idempotency-Key at once (PostgreSQL)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.conftest import BACKEND
from tests.waybill.test_labels import SORTER
from waybill import print_jobs


@pytest.mark.skipif(BACKEND != "postgresql", reason="SQLite serialises the two requests (BEGIN IMMEDIATE)")
def test_concurrent_same_key_print_jobs_raise_integrity_error(fresh_env: Any) -> None:
    services = fresh_env().services()
    ids = ["shp_" + "a" * 20, "shp_" + "b" * 20]
    first = services.session_factory()
    print_jobs.open_job(first, SORTER, ids, reprint_reason=None, idempotency_key="retry-me")  # flushed, open
    errors: list[BaseException] = []

    def retry() -> None:  # the client's retry after a timeout, while the first attempt still runs
        with services.session_factory() as s:
            try:
                print_jobs.open_job(s, SORTER, ids, reprint_reason=None, idempotency_key="retry-me")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    t = threading.Thread(target=retry)
    t.start()
    t.join(1.0)
    first.commit()
    first.close()
    t.join(10)
    assert not errors, f"the retry raised {type(errors[0]).__name__}"

