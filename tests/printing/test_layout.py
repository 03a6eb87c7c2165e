"""Text stays inside its slot and its zone: shrink, wrap, then truncate with an ellipsis."""

from __future__ import annotations

import pytest

import printing
from printing.layout import ELLIPSIS, fit_text, layout_label
from printing.templates import TEMPLATES, get_template
from tests.printing.label_helpers import decode, pdf_pages_as_images, png_image


def _assert_inside(lay):
    t = lay.template
    for placed in lay.texts:
        slot = t.slots[placed.slot]
        assert t.zones[slot.zone].contains(slot.box.x, slot.box.y, slot.box.right, slot.box.bottom)
        for line in placed.lines:
            assert slot.box.contains(*line.bbox), (placed.slot, line.text, line.bbox, slot.box)
            assert line.size >= slot.min_size - 1e-9
    bc, qr = lay.barcode, lay.qr
    code = t.zones["code"]
    assert code.contains(bc.x, bc.y, bc.x + bc.symbol.modules * bc.module, bc.y + bc.h)
    side = qr.symbol.size * qr.module
    assert t.zones["qr"].contains(qr.x, qr.y, qr.x + side, qr.y + side)


@pytest.mark.parametrize("size", printing.SIZES)
def test_normal_text_fits_at_preferred_size(masked_model, size):
    lay = layout_label(masked_model, get_template(size))
    _assert_inside(lay)
    assert not any(p.truncated for p in lay.texts)


@pytest.mark.parametrize("size", printing.SIZES)
def test_long_text_stays_in_zone(long_model, size):
    lay = layout_label(long_model, get_template(size))
    _assert_inside(lay)
    by_slot = {p.slot: p for p in lay.texts}
    addr = by_slot["recipient_address"]
    assert addr.truncated and addr.lines[-1].text.endswith(ELLIPSIS)
    assert len(addr.lines) > 1  # wrapped before truncating


@pytest.mark.parametrize("size", printing.SIZES)
def test_long_text_labels_still_scan(long_model, size):
    pdf = printing.render_label(long_model, "pdf", size)
    png = printing.render_label(long_model, "png", size)
    expected = [("Code128", long_model.waybill_no), ("QRCode", long_model.token)]
    assert decode(pdf_pages_as_images(pdf)[0]) == expected
    assert decode(png_image(png)) == expected


def test_medium_text_shrinks_or_wraps_without_truncation():
    slot = TEMPLATES["100x150"].slots["recipient_address"]
    text = "广东省深圳市南山区粤海街道科技园路南山智园" + "****"
    placed = fit_text("recipient_address", slot, text)
    assert not placed.truncated
    assert "".join(line.text for line in placed.lines) == text
    assert placed.lines[0].size <= slot.size


def test_single_line_slot_shrinks_then_truncates():
    slot = TEMPLATES["76x130"].slots["sorting_code"]
    shrunk = fit_text("sorting_code", slot, "755-W12-08-ABCDEFG")
    assert not shrunk.truncated and shrunk.lines[0].size < slot.size
    cut = fit_text("sorting_code", slot, "X" * 200)
    assert cut.truncated and cut.lines[0].text.endswith(ELLIPSIS) and len(cut.lines) == 1
    assert slot.box.contains(*cut.lines[0].bbox)


def test_missing_glyphs_become_question_marks():
    slot = TEMPLATES["100x150"].slots["contents"]
    placed = fit_text("contents", slot, "品类: \U0001F4E6")
    assert placed.lines[0].text == "品类: ?"


def test_png_ink_stays_inside_slots(long_model):
    # Rendered pixels (not just computed boxes): no ink in the gap between slot boxes and zone frames.
    from printing.layout import DOTS_PER_MM

    img = png_image(printing.render_label(long_model, "png", "100x150")).convert("L")
    t = get_template("100x150")
    slot = t.slots["recipient_address"]
    zone = t.zones["recipient"]
    gap = (round(slot.box.x * DOTS_PER_MM), round(slot.box.bottom * DOTS_PER_MM) + 1,
           round(slot.box.right * DOTS_PER_MM), round(zone.bottom * DOTS_PER_MM) - 3)
    assert gap[3] > gap[1]
    assert img.crop(gap).getextrema()[0] == 255
