"""No plaintext personal data anywhere in any output: label pixels aside, bytes, text layer, metadata."""

from __future__ import annotations

import zlib

import pymupdf
import pytest

import printing
from tests.printing.label_helpers import PLAINTEXT, png_image


def _forms(value: str) -> list[bytes]:
    """Byte forms a value could take inside a PDF, a PNG or printer commands."""
    u16 = value.encode("utf-16-be")
    forms = [value.encode("utf-8"), u16, u16.hex().encode(), u16.hex().upper().encode(),
             value.encode("utf-16-le"), value.encode("unicode_escape")]
    try:
        gbk = value.encode("gbk")
        forms += [gbk, gbk.hex().encode(), gbk.hex().upper().encode()]
    except UnicodeEncodeError:
        pass
    # Each character as PDF ToUnicode-style hex, run together (<5F20><4E09><4E30>).
    forms.append("".join(f"<{ord(c):04X}>" for c in value).encode())
    return forms


def _assert_clean(blob: bytes, where: str) -> None:
    for field, value in PLAINTEXT.items():
        for form in _forms(value):
            assert form not in blob, f"plaintext {field} found in {where}"


def _pdf_streams(data: bytes) -> bytes:
    doc = pymupdf.open(stream=data, filetype="pdf")
    out = []
    for xref in range(1, doc.xref_length()):
        out.append(doc.xref_object(xref).encode("utf-8", "replace"))
        if doc.xref_is_stream(xref):
            out.append(doc.xref_stream(xref) or b"")
    return b"\n".join(out)


@pytest.mark.parametrize("size", printing.SIZES)
def test_pdf_has_no_plaintext(masked_model, size):
    data = printing.render_label(masked_model, "pdf", size)
    _assert_clean(data, "PDF bytes")
    _assert_clean(_pdf_streams(data), "PDF decompressed objects")
    doc = pymupdf.open(stream=data, filetype="pdf")
    text = "".join(page.get_text() for page in doc)
    for value in PLAINTEXT.values():
        assert value not in text
    assert masked_model.recipient.phone in text  # the text layer is there, and masked
    meta = " ".join(str(v) for v in doc.metadata.values())
    for value in PLAINTEXT.values():
        assert value not in meta
    assert "张" not in meta and "138" not in meta


def test_pdf_text_layer_via_pypdf(masked_model):
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(printing.render_label(masked_model, "pdf", "100x150")))
    text = reader.pages[0].extract_text()
    assert masked_model.waybill_no in text
    for value in PLAINTEXT.values():
        assert value not in text
    assert all(v is None or "张" not in str(v) for v in (reader.metadata or {}).values())


@pytest.mark.parametrize("size", printing.SIZES)
def test_png_has_no_plaintext(masked_model, size):
    data = printing.render_label(masked_model, "png", size)
    _assert_clean(data, "PNG bytes")
    # Also the decompressed pixel data and every text chunk.
    img = png_image(data)
    assert not any(k.lower() not in ("dpi",) for k in img.info), img.info
    idat = b""
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    _assert_clean(zlib.decompress(idat), "PNG pixels")


@pytest.mark.parametrize("mode", ["glyphs", "resident"])
@pytest.mark.parametrize("size", printing.SIZES)
def test_zpl_has_no_plaintext(masked_model, size, mode, print_config):
    print_config(zpl_text=mode)
    data = printing.render_label(masked_model, "zpl", size)
    _assert_clean(data, f"ZPL ({mode})")
    if mode == "resident":
        assert masked_model.recipient.phone.encode() in data


def test_tspl_has_no_plaintext(masked_model):
    data = printing.render_label(masked_model, "tspl", "100x150")
    _assert_clean(data, "TSPL")
    assert masked_model.recipient.name.encode("gbk") in data
