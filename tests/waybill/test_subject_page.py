"""GET /my/ without a browser: headers, the complaint contact (escaped), the assets, the setting, and that the
page's files are package data (a pip install has them). The page in a browser: tests/browser/."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from waybill.settings import SettingsError, load_settings
from waybill.web.subject_page import ASSETS

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = ROOT / "waybill" / "web" / "my"


def test_page_headers_are_strict(client: Any) -> None:
    answer = client.get("/my/")
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    csp = answer.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    html = answer.get_data(as_text=True)
    for needed in ("waybill_no", "phone", "send-code", "code", "verify", "data", "access-log", "request-type",
                   "request-submit", "request-status", "landline-notice", "complaint-contact"):
        assert f'id="{needed}"' in html, needed


def test_the_complaint_contact_is_a_setting_and_is_escaped(base_env: Any) -> None:
    from waybill.services import build
    from waybill.web.app import create_app

    contact = "投诉电话 021-12345678 & privacy@carrier.cn"
    settings = load_settings(environ={}, data_dir=base_env.settings.data_dir,
                             database_url=base_env.settings.database_url, env="test", complaint_contact=contact)
    app = create_app(settings, services_override=build(settings, engine=base_env.engine))
    html = app.test_client().get("/my/").get_data(as_text=True)
    assert '<p id="complaint-contact" class="contact">投诉电话 021-12345678 &amp; privacy@carrier.cn</p>' in html


@pytest.mark.parametrize("value", ["<script>x</script>", "热线\n400", "长" * 121])
def test_a_bad_complaint_contact_stops_the_start(value: str) -> None:
    with pytest.raises(SettingsError, match="WAYBILL_COMPLAINT_CONTACT"):
        load_settings({"WAYBILL_COMPLAINT_CONTACT": value})


def test_production_warns_about_the_placeholder_contact(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    base = {"WAYBILL_ENV": "production", "WAYBILL_KEY_FILE": str(tmp_path / "keys.json")}
    with caplog.at_level("WARNING", logger="waybill.settings"):
        load_settings(base)
    assert any("WAYBILL_COMPLAINT_CONTACT" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="waybill.settings"):
        load_settings({**base, "WAYBILL_COMPLAINT_CONTACT": "投诉热线 95000"})
    assert not any("WAYBILL_COMPLAINT_CONTACT" in r.getMessage() for r in caplog.records)


def test_assets_are_served_and_nothing_else(client: Any) -> None:
    for name, mimetype in ASSETS.items():
        answer = client.get(f"/my/assets/{name}")
        assert answer.status_code == 200 and answer.mimetype == mimetype
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert answer.get_data() == (PAGE_DIR / name).read_bytes()
    for name in ("index.html", "..%2F..%2Fsettings.py", "my.js.map"):
        answer = client.get(f"/my/assets/{name}")
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"


def test_every_page_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["waybill"]
    files = sorted(p.relative_to(ROOT / "waybill").as_posix() for p in PAGE_DIR.iterdir())
    assert files and {"index.html", *ASSETS} == {f.rsplit("/", 1)[1] for f in files}
    assert all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), files


def test_the_page_loads_nothing_from_elsewhere_and_never_writes_markup() -> None:
    """Static checks on the files themselves (the browser tests watch the wire too)."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in PAGE_DIR.iterdir()}
    for name, text in texts.items():
        urls = re.findall(r"(?:https?:)?//(?!www\.w3\.org/2000/svg\b)[\w.-]+", text)  # the SVG namespace is a name
        assert urls == [], (name, urls)
    script = texts["my.js"]
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "localStorage",
                   "document.cookie", "eval(", "new Function"):
        assert banned not in script, banned
    assert "<script>" not in texts["index.html"] and "<style" not in texts["index.html"]
    assert not re.search(r"<[^>]*\s(?:style|on[a-z]+)\s*=", texts["index.html"])  # no inline style or handler
