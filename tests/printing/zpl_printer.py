"""A ZPL "printer" for tests: renders ZPL jobs to images the way a Zebra printer prints them.

The renderer is Zebrash (an independent, Labelary-faithful ZPL implementation in Go), compiled to WebAssembly
and published on npm as ``zpl-renderer-js``; ``tests/printing/zpl_renderer`` pins it (``package.json`` and
``package-lock.json``) and holds the small Node script that serves render requests over stdin/stdout. One
Node process serves a whole test session (loading the WebAssembly takes a second or two).

``.ci/run`` installs it with ``npm ci``; when ``node_modules`` is missing (a fresh clone running
``python -m pytest``) the first use runs ``npm ci`` itself. Without Node the tests fail, loudly: a printer
test that silently skipped is how a QR that no Zebra could print went unnoticed.

Resident-font mode: a printer running that mode has a CJK TrueType font installed under the configured name
(``E:SIMSUN.TTF``). :meth:`ZplPrinter.install_font` emulates that installation by downloading the label
font (the face, subset to the characters a job uses) with ``~DU`` ahead of the job, which Zebrash stores
like a printer would.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import threading
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont
from PIL import Image

HERE = Path(__file__).parent / "zpl_renderer"
SCRIPT = HERE / "render.mjs"


class ZplRenderError(RuntimeError):
    """The renderer rejected a job (its message says why)."""


def ensure_installed() -> None:
    """``npm ci`` the pinned renderer if it is not there yet (idempotent)."""
    if (HERE / "node_modules" / "zpl-renderer-js" / "package.json").is_file():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the ZPL printer tests need Node.js and npm (see README: tests)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True)


class ZplPrinter:
    """A long-lived renderer process; :meth:`print` turns one ZPL job into one image per label."""

    def __init__(self) -> None:
        ensure_installed()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the ZPL printer tests need Node.js (see README: tests)")
        self._proc = subprocess.Popen([node, str(SCRIPT)], cwd=HERE, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, encoding="utf-8")
        self._lock = threading.Lock()
        self._fonts: dict[tuple[str, str], str] = {}

    def print(self, zpl: bytes | str, width_mm: float, height_mm: float, *, dpmm: int = 8) -> list[Image.Image]:
        """Render ``zpl`` on ``width_mm`` x ``height_mm`` media; one 1-channel image per ``^XA..^XZ`` label."""
        text = zpl.decode("utf-8") if isinstance(zpl, bytes) else zpl
        request = json.dumps({"zpl": text, "width_mm": width_mm, "height_mm": height_mm, "dpmm": dpmm})
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(request + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise ZplRenderError(f"renderer exited (code {self._proc.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise ZplRenderError(answer["error"])
        images = []
        for b64 in answer["pngs"]:
            img = Image.open(io.BytesIO(base64.b64decode(b64)))
            img.load()
            images.append(img.convert("L"))
        return images

    def install_font(self, name: str, font_path: Path, index: int, chars: str) -> str:
        """The ``~DU`` command that stores ``font_path`` (face ``index``, subset to ``chars``) as ``name``."""
        key = (name, chars)
        cached = self._fonts.get(key)
        if cached is None:
            font = TTFont(str(font_path), fontNumber=index)
            options = subset.Options()
            options.notdef_outline = True
            sub = subset.Subsetter(options)
            sub.populate(text=chars)
            sub.subset(font)
            buf = io.BytesIO()
            font.save(buf)
            data = buf.getvalue()
            cached = self._fonts[key] = f"~DU{name},{len(data)},{data.hex().upper()}\n"
        return cached

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
