"""API surface: formats, sizes, errors, fonts."""

from __future__ import annotations

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
