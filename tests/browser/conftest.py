"""Browser tests: the real app on a free localhost port, driven by Debian's chromium through Playwright.

They are slow, so they run once: in CI's PostgreSQL pass (``WAYBILL_TEST_DATABASE_URL`` set), or wherever
``WAYBILL_TEST_BROWSER=1`` asks for them. Otherwise they are skipped, saying so. When they are asked for, a
missing browser FAILS them: CI must never pass by skipping. No browser is ever downloaded: Playwright drives
the system's ``/usr/bin/chromium`` (``apt-get install chromium``; ``.ci/run`` installs it when missing).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.browser.live import LiveServer, Watched
from tests.conftest import PG_URL, _drop, _new_env
from waybill.tasks import start_in_process

CHROMIUM = Path("/usr/bin/chromium")
ENABLED = bool(PG_URL) or os.environ.get("WAYBILL_TEST_BROWSER") == "1"
SKIP_REASON = ("browser tests run in the PostgreSQL pass only: set WAYBILL_TEST_DATABASE_URL "
               "(or WAYBILL_TEST_BROWSER=1 on SQLite)")
# Playwright must never fetch a browser build of its own, whatever imports it.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")


@pytest.fixture(scope="session", autouse=True)
def _browser_switch() -> None:
    if not ENABLED:
        pytest.skip(SKIP_REASON)
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"browser tests are switched on but {CHROMIUM} is missing: install Debian's chromium "
                    "(DEBIAN_FRONTEND=noninteractive apt-get install -y chromium); no browser is downloaded",
                    pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("browser tests are switched on but the playwright package is missing: "
                    "pip install -e '.[dev]'", pytrace=False)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = _new_env(tmp_path_factory.mktemp("live"))
    svc = env.services()
    from waybill.web.app import create_app

    app = create_app(env.settings, services_override=svc)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    runner = start_in_process(svc)
    try:
        yield LiveServer(env, f"http://127.0.0.1:{server.server_port}", svc)
    finally:
        if runner is not None:
            runner.stop()
        server.shutdown()
        thread.join(10)
        _drop(env)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright starts chromium with --no-sandbox by default (chromium_sandbox=False): needed as root in CI.
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield b
        b.close()


@pytest.fixture
def phone(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 360, "height": 640}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True, locale="zh-CN", service_workers="block")
    page = context.new_page()
    watched = Watched(page)
    page.on("request", lambda r: watched.requests.append(r.url))
    page.on("console", lambda m: watched.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: watched.errors.append(f"page error: {e}"))
    page.set_default_timeout(10_000)
    yield watched
    context.close()
