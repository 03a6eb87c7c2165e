"""ZPL labels as a Zebra printer prints them: rendered by Zebrash, read back by zxing-cpp.

Structural checks of the ZPL text could not see that the firmware draws an ``^FO``-positioned ``^BQ`` below
its origin by the ``^BY`` height in force (the QR ran off every label). These tests print every size, as a
single label and as a print job, in both Chinese text modes, and then read the labels the way a sorting
centre scanner and a courier's phone do: the Code128 must read as the waybill number, the QR as the token,
and each symbol must sit where the template (and therefore the PDF/PNG label) puts it.
"""

from __future__ import annotations

import os
import re

import pytest
import zxingcpp
from PIL import Image, ImageChops, ImageDraw, ImageFilter

import printing
from printing.fonts import resolve_font
from printing.layout import DOTS_PER_MM
from printing.samples import sample_model, sample_models
from printing.templates import get_template
from tests.printing.label_helpers import PLAINTEXT, png_image
from tests.printing.test_golden import GOLDEN, TOLERANCE
from tests.printing.zpl_printer import ZplPrinter

MODES = ("glyphs", "resident")
POSITION_TOLERANCE_DOTS = 3  # ZPL vs our own raster: rounding of centring, nothing more


@pytest.fixture(scope="session")
def zpl_printer():
    printer = ZplPrinter()
    yield printer
    printer.close()


@pytest.fixture
def text_mode(request, print_config):
    print_config(zpl_text=request.param)
    return request.param


def _media(size: str) -> tuple[int, int]:
    w, h = (int(v) for v in size.split("x"))
    return w, h


def _print(printer: ZplPrinter, job: bytes, size: str, mode: str) -> list[Image.Image]:
    """Print ``job``; in resident mode on a printer that has the configured CJK font installed."""
    text = job.decode("utf-8")
    if mode == "resident":
        from printing.config import current

        chars = "".join(sorted(set("".join(re.findall(r"\^FD(.*?)\^FS", text)))))
        spec = resolve_font()
        text = printer.install_font(current().zpl_font, spec.path, spec.index, chars) + text
    return printer.print(text, *_media(size))


def _symbols(img: Image.Image) -> dict[str, zxingcpp.Barcode]:
    found = {r.format.name: r for r in zxingcpp.read_barcodes(img)}
    return found


def _box(result: zxingcpp.Barcode) -> tuple[int, int, int, int]:
    p = result.position
    xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
    ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
    return min(xs), min(ys), max(xs), max(ys)


def _assert_reads(img: Image.Image, size: str, waybill_no: str, token: str) -> None:
    results = sorted((r.format.name, r.text) for r in zxingcpp.read_barcodes(img))
    assert results == [("Code128", waybill_no), ("QRCode", token)]
    w, h = _media(size)
    assert img.size == (round(w * 8), round(h * 8))
    # The QR lies inside its zone, quiet zone included (nothing cut off at the label's edge).
    t = get_template(size)
    x0, y0, x1, y1 = _box(_symbols(img)["QRCode"])
    zone = t.zones["qr"]
    assert zone.x * DOTS_PER_MM <= x0 and x1 <= zone.right * DOTS_PER_MM
    assert zone.y * DOTS_PER_MM <= y0 and y1 <= zone.bottom * DOTS_PER_MM


@pytest.mark.parametrize("text_mode", MODES, indirect=True)
@pytest.mark.parametrize("size", printing.SIZES)
def test_single_label_prints_both_symbols(zpl_printer, text_mode, size):
    model = sample_model()
    labels = _print(zpl_printer, printing.render_label(model, "zpl", size), size, text_mode)
    assert len(labels) == 1
    _assert_reads(labels[0], size, model.waybill_no, model.token)


@pytest.mark.parametrize("text_mode", MODES, indirect=True)
@pytest.mark.parametrize("size", printing.SIZES)
def test_print_job_prints_every_label(zpl_printer, text_mode, size):
    models = list(sample_models(6, seed=11))
    job = b"".join(printing.iter_render(models, "zpl", size))
    labels = _print(zpl_printer, job, size, text_mode)
    # The job's closing format (deleting downloaded glyphs) prints nothing.
    assert len(labels) == len(models)
    for img, model in zip(labels, models, strict=True):
        _assert_reads(img, size, model.waybill_no, model.token)


@pytest.mark.parametrize("size", printing.SIZES)
def test_symbols_sit_where_the_template_puts_them(zpl_printer, size):
    """The printer's symbols land where our own raster (PNG, same layout as the PDF) draws them."""
    model = sample_model()
    printed = _print(zpl_printer, printing.render_label(model, "zpl", size), size, "glyphs")[0]
    ours = png_image(printing.render_label(model, "png", size)).convert("L")
    got, want = _symbols(printed), _symbols(ours)
    for fmt in ("Code128", "QRCode"):
        for a, b in zip(_box(got[fmt]), _box(want[fmt]), strict=True):
            assert abs(a - b) <= POSITION_TOLERANCE_DOTS, (fmt, _box(got[fmt]), _box(want[fmt]))


@pytest.mark.parametrize("size", printing.SIZES)
def test_glyph_text_prints_like_our_raster(zpl_printer, size):
    """Downloaded glyphs (``~DG`` + ``^XG``) print where the layout puts the text: outside the two symbols
    (the printer encodes those itself, with its own QR mask), the printed label and our PNG share their ink."""
    model = sample_model()
    printed = _print(zpl_printer, printing.render_label(model, "zpl", size), size, "glyphs")[0]
    ours = png_image(printing.render_label(model, "png", size)).convert("L").crop((0, 0, *printed.size))
    t = get_template(size)
    blank = ImageDraw.Draw
    inks = []
    for img in (printed, ours):
        ink = img.point(lambda v: 255 if v < 128 else 0).convert("1")
        for box in (t.barcode, t.qr):
            blank(ink).rectangle([box.x * DOTS_PER_MM, box.y * DOTS_PER_MM, box.right * DOTS_PER_MM,
                                  box.bottom * DOTS_PER_MM], fill=0)
        inks.append(ink)
    # Each label's ink lies within 3 dots (0.4 mm) of the other's: Pillow's hinted advances drift from the
    # layout's (which the glyph placement follows) by up to that much at the end of a long line; a
    # shifted, missing or extra block of text fails this.
    for a, b in ((inks[0], inks[1]), (inks[1], inks[0])):
        near = b.convert("L").filter(ImageFilter.MaxFilter(7)).convert("1")
        stray = ImageChops.logical_and(a, ImageChops.invert(near)).histogram()[-1]
        assert stray / a.histogram()[-1] < 0.01, (stray, a.histogram()[-1])


def test_printed_labels_hold_no_plaintext(zpl_printer, print_config):
    """What reaches the printer decodes to masked data only (the symbols carry number and token)."""
    model = sample_model()
    for mode in MODES:
        print_config(zpl_text=mode)
        job = printing.render_label(model, "zpl", "100x150")
        for value in PLAINTEXT.values():
            assert value.encode() not in job
        for img in _print(zpl_printer, job, "100x150", mode):
            for r in zxingcpp.read_barcodes(img):
                assert all(value not in r.text for value in PLAINTEXT.values())


@pytest.mark.parametrize("text_mode", MODES, indirect=True)
@pytest.mark.parametrize("size", printing.SIZES)
def test_printed_label_matches_golden(zpl_printer, text_mode, size):
    """The label as the emulated Zebra prints it, per size and text mode: a visual regression net (same
    tolerance and regeneration switch as the PNG goldens)."""
    model = sample_model()
    printed = _print(zpl_printer, printing.render_label(model, "zpl", size), size, text_mode)[0]
    path = GOLDEN / f"zpl_{text_mode}_{size}.png"
    if os.environ.get("WAYBILL_UPDATE_GOLDEN") == "1":
        printed.convert("1").save(path, optimize=True)
    assert path.exists(), f"missing golden {path.name}: run with WAYBILL_UPDATE_GOLDEN=1"
    want = Image.open(path).convert("L")
    assert printed.size == want.size
    diff = ImageChops.difference(printed.point(lambda v: 255 if v >= 128 else 0),
                                 want.point(lambda v: 255 if v >= 128 else 0))
    assert diff.histogram()[255] / (printed.size[0] * printed.size[1]) < TOLERANCE


@pytest.mark.parametrize("size", printing.SIZES)
def test_resident_font_with_other_metrics_keeps_alignment(zpl_printer, print_config, size):
    """A printer's resident font is not the layout's: here the monospaced face of the same family stands in
    (wider Latin glyphs). Centred and right-aligned slots are field blocks, so the printer aligns them with
    its own metrics: the order tail still ends at its slot's right edge, the sorting code stays centred."""
    print_config(zpl_text="resident")
    from printing.config import current

    model = sample_model()
    text = printing.render_label(model, "zpl", size).decode()
    chars = "".join(sorted(set("".join(re.findall(r"\^FD(.*?)\^FS", text)))))
    spec = resolve_font()
    install = zpl_printer.install_font(current().zpl_font, spec.path, 1, chars)  # face 1: Micro Hei Mono
    img = zpl_printer.print(install + text, *_media(size))[0]
    t = get_template(size)

    def ink(box) -> tuple[int, int, int, int]:
        crop = img.crop((round(box.x * DOTS_PER_MM) + 3, round(box.y * DOTS_PER_MM),
                         round(box.right * DOTS_PER_MM), round(box.bottom * DOTS_PER_MM)))
        found = crop.point(lambda v: 255 if v < 128 else 0).getbbox()
        assert found is not None
        return found

    tail = t.slots["order_tail"].box
    x0, _, x1, _ = ink(tail)
    assert abs((x1 + round(tail.x * DOTS_PER_MM) + 3) - tail.right * DOTS_PER_MM) <= 4
    code = t.slots["sorting_code"].box
    x0, _, x1, _ = ink(code)
    left, right = x0 + 3, code.w * DOTS_PER_MM - x1
    assert abs(left - right) <= 6, (left, right)
