"""API surface: formats, sizes, errors, fonts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import printing
from printing import FontMissing, UnsupportedFormat, UnsupportedSize
from printing.fonts import ENV_VAR, resolve_font


def test_unknown_format_and_size(masked_model):
    with pytest.raises(UnsupportedFormat) as exc:
        printing.render_label(masked_model, "docx", "100x150")
    assert isinstance(exc.value, ValueError)
    with pytest.raises(UnsupportedSize) as exc2:
        printing.render_label(masked_model, "pdf", "A4")
    assert isinstance(exc2.value, ValueError)
    with pytest.raises(UnsupportedFormat):
        printing.iter_render([], "bmp", "100x150")  # raised eagerly, before streaming


def test_formats_and_media_types():
    assert set(printing.FORMATS) >= {"pdf", "png", "zpl"}
    assert printing.MEDIA_TYPES["pdf"] == "application/pdf"
    assert printing.MEDIA_TYPES["zpl"] == "application/zpl"
    assert printing.SIZES == ("100x150", "100x180", "76x130")


def test_font_override_must_exist(print_config, tmp_path):
    print_config(font=str(tmp_path / "nope.ttf"))
    with pytest.raises(FontMissing) as exc:
        resolve_font()
    assert ENV_VAR in str(exc.value)  # the message names the setting to fix
    assert "fonts-wqy-microhei" in str(exc.value) or "paperang-p2-fonts-cjk" in str(exc.value)


def test_font_override_is_used(print_config):
    default = resolve_font()
    print_config(font=f"{default.path}#0")
    assert resolve_font() == default


def test_no_font_anywhere_is_a_clear_error(monkeypatch, print_config):
    import printing.fonts as fonts

    print_config(font=None)
    monkeypatch.setattr(fonts, "_package_font", lambda: None)
    monkeypatch.setattr(fonts, "_SYSTEM_FONTS", ())
    with pytest.raises(FontMissing, match="install"):
        resolve_font()


DEBIAN_WQY_MICROHEI_SHA256 = "2420e8078af796b19a3f6ef13de527a1a91c1e7171eea115926c614ced1009b3"  # 0.2.0-beta-3.1


def test_bundled_font_is_the_default_verified_and_licensed(print_config):
    import hashlib

    import printing.fonts as fonts

    print_config(font=None)
    spec = resolve_font()
    assert spec == fonts.FontSpec(fonts.BUNDLED_FONT, 0)
    assert spec.path.parent == Path(printing.__file__).resolve().parent / "data"
    assert hashlib.sha256(spec.path.read_bytes()).hexdigest() == fonts.BUNDLED_FONT_SHA256 == \
        DEBIAN_WQY_MICROHEI_SHA256
    licence = (spec.path.parent / "wqy-microhei.LICENSE-Apache-2.0.txt").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "font exception" in (spec.path.parent / "wqy-microhei.COPYRIGHT").read_text().lower()
    assert "GNU GENERAL PUBLIC LICENSE" in (spec.path.parent / "wqy-microhei.LICENSE-GPL-3.txt").read_text()
    assert DEBIAN_WQY_MICROHEI_SHA256 in (spec.path.parent / "README.md").read_text()


@pytest.fixture
def fresh_fonts():
    """Drop cached font state after the test (it may have cached a monkeypatched bundled font)."""
    import printing.fonts as fonts

    fonts.forget_fonts()
    yield
    fonts.forget_fonts()


def test_altered_bundled_font_is_refused(monkeypatch, print_config, tmp_path, fresh_fonts):
    import printing.fonts as fonts

    altered = bytearray(fonts.BUNDLED_FONT.read_bytes())
    altered[len(altered) // 2] ^= 0x01  # one bit: still parses, but is not the font we ship
    (tmp_path / "wqy-microhei.ttc").write_bytes(altered)
    monkeypatch.setattr(fonts, "BUNDLED_FONT", tmp_path / "wqy-microhei.ttc")
    monkeypatch.setattr(fonts, "_SYSTEM_FONTS", (str(tmp_path / "wqy-microhei.ttc"),))
    print_config(font=None)
    fonts.forget_fonts()
    with pytest.raises(FontMissing, match="SHA-256") as exc:
        resolve_font()
    assert fonts.BUNDLED_FONT_SHA256 in str(exc.value)
    with pytest.raises(FontMissing, match="SHA-256"):
        printing.check_fonts()


def test_absent_bundled_font_falls_back_to_system_locations(monkeypatch, print_config, tmp_path, fresh_fonts):
    import printing.fonts as fonts

    system = tmp_path / "wqy-microhei.ttc"
    system.write_bytes(b"")  # resolution only looks for the file; loading it is another test's business
    monkeypatch.setattr(fonts, "BUNDLED_FONT", tmp_path / "absent.ttc")
    monkeypatch.setattr(fonts, "_SYSTEM_FONTS", (str(system),))
    print_config(font=None)
    fonts.forget_fonts()
    assert resolve_font() == fonts.FontSpec(system, 0)


@pytest.mark.skipif(bool(os.environ.get("WAYBILL_TEST_DATABASE_URL")),
                    reason="the wheel is built once, in the SQLite pass: building it writes build/ in the source tree, "
                           "and .ci/run runs the two passes side by side")
def test_wheel_ships_the_font_and_its_licence(tmp_path):
    """``pip wheel .`` (what a release builds) carries the font, byte for byte, and its licence files."""
    import hashlib
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    # With build isolation, as a release build runs (pip fetches the build backend pyproject.toml asks for).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(root)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("privacy_waybill-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert hashlib.sha256(zf.read("printing/data/wqy-microhei.ttc")).hexdigest() == DEBIAN_WQY_MICROHEI_SHA256
        assert {"printing/data/wqy-microhei.LICENSE-Apache-2.0.txt", "printing/data/wqy-microhei.LICENSE-GPL-3.txt",
                "printing/data/wqy-microhei.COPYRIGHT", "printing/data/README.md"} <= names
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "paperang" not in metadata and "Requires-Dist: pyotp" in metadata


def test_pdf_is_deterministic(masked_model):
    a = printing.render_label(masked_model, "pdf", "100x150")
    assert a == printing.render_label(masked_model, "pdf", "100x150")
    assert a.startswith(b"%PDF-1.4") and a.rstrip().endswith(b"%%EOF")


def test_pdf_page_size(masked_model):
    import pymupdf

    for size in printing.SIZES:
        w, h = (int(v) for v in size.split("x"))
        page = pymupdf.open(stream=printing.render_label(masked_model, "pdf", size), filetype="pdf")[0]
        assert page.rect.width == pytest.approx(w * 72 / 25.4, abs=0.01)
        assert page.rect.height == pytest.approx(h * 72 / 25.4, abs=0.01)
