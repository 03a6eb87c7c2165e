"""GET /app/courier/ without a browser: the headers (CSP exactly), every file the page references served with its
type, nothing referenced from another origin (the decoder's .wasm comes from here, never ZXing's default CDN),
the built files are package data, and the page's ids are the contract's. The app in a browser:
tests/browser/test_courier_app.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from courier_api.handheld import ASSETS, PAGE_CSP, PREFIX

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "courier_api" / "handheld" / "static"
FRONTEND = ROOT / "frontend" / "courier-handheld"
CONTRACT_IDS = ("username", "password", "login", "scan", "manual-token", "lookup", "view", "call", "method",
                "partner", "locker-id", "pickup-code", "deliver", "attempt", "status")
# zxing-wasm's built-in default for locating its .wasm (a CDN). It is in the bundle as library code; the
# worker overrides locateFile before the module loads, so it is never used (asserted below and on the wire
# in the browser test).
ZXING_DEFAULT_CDN = re.compile(r"^https://fastly\.jsdelivr\.net/npm/zxing-wasm@[0-9.]+/dist/")
URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9][\w.-]*\.[A-Za-z]{2,}[^\s"'`)<>]*""")


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.refs += [v for k, v in values.items() if k in ("src", "href") and v]
        if values.get("id"):
            self.ids.append(values["id"] or "")


def _parsed() -> _Refs:
    refs = _Refs()
    refs.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    return refs


def test_page_headers_are_strict(client: Any) -> None:
    answer = client.get(PREFIX)
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    csp = answer.headers["Content-Security-Policy"]
    assert csp == PAGE_CSP
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self' 'wasm-unsafe-eval'"  # the decoder's .wasm; never 'unsafe-eval'
    for name, value in directives.items():
        assert "unsafe-inline" not in value and "'unsafe-eval'" not in value and "*" not in value, name
        assert "http" not in value and "data:" not in value and "blob:" not in value, name
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["object-src"] == "'none'" and directives["form-action"] == "'self'"
    assert directives.get("worker-src", "'self'") == "'self'"
    assert "camera=(self)" in answer.headers["Permissions-Policy"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert client.get("/app/courier").status_code in (301, 308)  # the bare path leads to the app


def test_the_page_carries_the_contracts_ids() -> None:
    ids = _parsed().ids
    assert len(ids) == len(set(ids)), "duplicate ids"
    missing = [i for i in CONTRACT_IDS if i not in ids]
    assert missing == []


def test_every_referenced_file_is_served_with_its_type(client: Any) -> None:
    refs = _parsed().refs
    assert sorted(refs) == ["app.css", "app.js", "icon.svg"], refs  # relative: resolved under /app/courier/
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    worker = (STATIC / "decoder.js").read_text(encoding="utf-8")
    # The worker and the .wasm are loaded by the scripts, by these names, relative to the scripts' own URLs.
    assert '"decoder.js"' in script and '"zxing_reader.wasm"' in worker
    wanted = {*refs, "decoder.js", "zxing_reader.wasm"}
    assert wanted == set(ASSETS)
    for name in sorted(wanted):
        answer = client.get(PREFIX + name)
        assert answer.status_code == 200, name
        assert answer.mimetype == ASSETS[name], name
        assert answer.headers["Content-Security-Policy"] == PAGE_CSP, name  # the worker's own policy too
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.get_data() == (STATIC / name).read_bytes(), name
    assert client.get(PREFIX + "zxing_reader.wasm").mimetype == "application/wasm"
    assert (STATIC / "zxing_reader.wasm").read_bytes()[:4] == b"\0asm"


@pytest.mark.parametrize("name", ["index.html", "..%2F__init__.py", "app.js.map", "nope.wasm"])
def test_nothing_else_is_served(client: Any, name: str) -> None:
    answer = client.get(PREFIX + name)
    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"


def test_no_file_references_another_origin() -> None:
    for path in sorted(STATIC.iterdir()):
        if path.suffix == ".wasm":
            continue
        text = path.read_text(encoding="utf-8")
        urls = [u for u in URL.findall(text) if not u.startswith("http://www.w3.org/2000/svg")]
        if path.name == "decoder.js":
            assert len(urls) == 1 and ZXING_DEFAULT_CDN.match(urls[0]), urls
        else:
            assert urls == [], (path.name, urls)
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in index and "<style" not in index
    assert not re.search(r"<[^>]*\s(?:style|on[a-z]+)\s*=", index)  # no inline style or handler


def test_the_decoder_locates_its_wasm_here_before_anything_loads() -> None:
    """The override that keeps zxing-wasm off its CDN default: set at the worker's top level, it sends every
    .wasm request to ``zxing_reader.wasm`` beside the worker's own URL (this service)."""
    source = (FRONTEND / "src" / "decoder-worker.js").read_text(encoding="utf-8")
    assert re.search(r"^setZXingModuleOverrides\(\{\n\s+locateFile: \(path, prefix\) => \(path\.endsWith\(\"\.wasm\"\) "
                     r"\? new URL\(WASM_FILE, self\.location\.href\)\.href : prefix \+ path\),", source, re.M)
    built = (STATIC / "decoder.js").read_text(encoding="utf-8")
    override = re.search(r"locateFile:\((\w+),(\w+)\)=>\1\.endsWith\(\"\.wasm\"\)"
                         r"\?new URL\((\w+),self\.location\.href\)\.href:\2\+\1", built)
    assert override, "the built worker lost its locateFile override"
    assert re.search(rf"\b{override.group(3)}=\"zxing_reader\.wasm\"", built)


def test_no_token_or_personal_data_storage_in_the_script() -> None:
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "localStorage",
                   "sessionStorage", "document.cookie", "eval(", "new Function", "location.hash",
                   "history.pushState"):
        assert banned not in script, banned


def test_the_built_files_are_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["courier_api"]
    files = sorted(p.relative_to(ROOT / "courier_api").as_posix() for p in STATIC.iterdir())
    assert {f.rsplit("/", 1)[1] for f in files} == {"index.html", *ASSETS}
    assert all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns) for f in files), files
    packaged = resources.files("courier_api.handheld") / "static"
    for name in ("index.html", *ASSETS):
        assert (packaged / name).read_bytes() == (STATIC / name).read_bytes(), name


def test_the_lock_file_pins_what_the_build_used() -> None:
    import json

    lock = json.loads((FRONTEND / "package-lock.json").read_text())
    packages = lock["packages"]
    detector = packages["node_modules/barcode-detector"]
    zxing = packages["node_modules/zxing-wasm"]
    assert detector["dependencies"]["zxing-wasm"] == zxing["version"]
    assert zxing["integrity"].startswith("sha512-") and detector["integrity"].startswith("sha512-")
    built = (STATIC / "decoder.js").read_text(encoding="utf-8")
    assert f"zxing-wasm@{zxing['version']}/" in built  # the glue in the bundle is that version's


def test_the_committed_build_matches_its_sources() -> None:
    """The files the build copies are the sources' (a stale build would be caught); the bundles are rebuilt with
    ``npm ci && npm run build`` in frontend/courier-handheld/, which needs Node.js and so is not run here."""
    for name in ("index.html", "app.css", "icon.svg"):
        assert (STATIC / name).read_bytes() == (FRONTEND / "src" / name).read_bytes(), name
    script = (STATIC / "app.js").read_text(encoding="utf-8")
    for text in ("未找到或未分配给您", "/v1/courier/scan", "/v1/partners?kind=", "tel:+86", "/attempt"):
        assert text in script, text


@pytest.mark.parametrize(("number", "extension", "href"), [
    ("17000000101", "6823", "tel:+8617000000101,6823"),  # the built-in pool's spelling
    ("17000000101", None, "tel:+8617000000101"),  # no extension: no pause either
    ("+8617000000101", "12", "tel:+8617000000101,12"),
    ("8617000000101", "12", "tel:+8617000000101,12"),
    ("0086 170 0000 0101", "12", "tel:+8617000000101,12"),
    ("021-64321234", "7", "tel:+862164321234,7"),  # a landline X number: the trunk 0 is not dialled after +86
])
def test_the_dial_string(number: str, extension: str | None, href: str, tmp_path: Path) -> None:
    """The app's own telHref (frontend/courier-handheld/src/tel.js, bundled into app.js), run by Node.js (which
    the suite needs anyway for the ZPL emulator)."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    assert node, "Node.js is needed on the PATH (README: the two commands)"
    script = (f"import {{ telHref }} from {json.dumps((FRONTEND / 'src' / 'tel.js').as_uri())};\n"
              f"process.stdout.write(telHref({json.dumps(number)}, {json.dumps(extension)}));\n")
    entry = tmp_path / "dial.mjs"
    entry.write_text(script, encoding="utf-8")
    out = subprocess.run([node, str(entry)], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == href


def test_no_test_plaintext_is_in_the_built_files() -> None:
    """The app is a shell: no personal data of any kind is baked into what it serves."""
    from tests.conftest import RECIPIENT, SENDER

    texts = {p.name: p.read_bytes() for p in STATIC.iterdir()}
    for party in (RECIPIENT, SENDER):
        for key in ("name", "phone", "address"):
            value = party[key].encode()
            assert not [name for name, data in texts.items() if value in data], (key, party[key])
