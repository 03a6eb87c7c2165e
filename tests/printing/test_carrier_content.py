"""What a carrier prints besides the parties: carrier name, order-number tail, pieces, 集包地, zoned print time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pymupdf
import pytest

import printing
from printing.layout import layout_label, region_text, slot_texts, utc_offset
from printing.samples import sample_model
from printing.templates import get_template


def _pdf_text(model, size="100x150") -> str:
    doc = pymupdf.open(stream=printing.render_label(model, "pdf", size), filetype="pdf")
    return doc[0].get_text()


@pytest.mark.parametrize("size", printing.SIZES)
def test_label_shows_carrier_order_tail_pieces_consolidation_and_zone(size):
    model = replace(sample_model(), pieces=3)
    text = _pdf_text(model, size)
    for expected in ("隐私快递", "订单尾号 A61207", "件数: 3", "集包地 深圳转运中心", "2025-11-11 10:00 UTC+8"):
        assert expected in text, expected


def test_municipality_printed_once():
    assert region_text("上海市", "上海市", "徐汇区") == "上海市徐汇区"
    assert region_text("北京市", "市辖区", "朝阳区") == "北京市朝阳区"
    assert region_text("重庆市", "县", "城口县") == "重庆市城口县"
    assert region_text("天津市", "天津", "和平区") == "天津市和平区"
    assert region_text("广东省", "深圳市", "南山区") == "广东省深圳市南山区"
    # Cities without districts and county-level cities under their province are their own district: once.
    assert region_text("广东省", "东莞市", "东莞市") == "广东省东莞市"
    assert region_text("湖北省", "仙桃市", "仙桃市") == "湖北省仙桃市"
    # A province's city named like a county is still printed (only municipalities lack a city level).
    assert region_text("吉林省", "吉林市", "船营区") == "吉林省吉林市船营区"
    text = _pdf_text(sample_model())
    assert "上海市徐汇区漕溪北路" in text and "上海市上海市" not in text


def test_print_time_carries_its_zone():
    assert utc_offset(datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=8)))) == "UTC+8"
    assert utc_offset(datetime(2025, 1, 1, tzinfo=UTC)) == "UTC"
    assert utc_offset(datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30)))) == "UTC+5:30"
    assert utc_offset(datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=-3)))) == "UTC-3"
    naive = replace(sample_model(), printed_at=datetime(2025, 11, 11, 10, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        printing.render_label(naive, "pdf", "100x150")


@pytest.mark.parametrize("tail", ["1234567", "13812345678", 123456])
def test_gate_refuses_more_than_an_order_tail(tail):
    with pytest.raises(printing.UnmaskedField) as exc:
        printing.render_label(replace(sample_model(), order_tail=tail), "zpl", "100x150")
    assert exc.value.field_name == "order_tail"
    assert str(tail) not in str(exc.value)


@pytest.mark.parametrize("size", printing.SIZES)
def test_absent_extras_print_nothing(size):
    model = replace(sample_model(), carrier="", order_tail=None, consolidation=None)
    lay = layout_label(model, get_template(size))
    placed = {p.slot: p for p in lay.texts}
    assert placed["carrier"].lines == () and placed["order_tail"].lines == ()
    assert placed["consolidation"].lines == ()
    text = _pdf_text(model, size)
    assert "订单尾号" not in text and "集包地" not in text
    for fmt in ("zpl", "tspl", "png"):
        printing.render_label(model, fmt, size)  # renders without the optional lines


@pytest.mark.parametrize("size", printing.SIZES)
def test_order_tail_is_right_aligned_in_the_header(size):
    t = get_template(size)
    lay = layout_label(sample_model(), t)
    tail = next(p for p in lay.texts if p.slot == "order_tail")
    line = tail.lines[0]
    assert abs((line.x + line.width) - t.slots["order_tail"].box.right) < 1e-6
    assert slot_texts(sample_model())["order_tail"] == "订单尾号 A61207"


def test_changing_the_font_drops_every_cache_built_with_the_old_one(print_config):
    """Fitted captions, glyph bitmaps and loaded fonts all follow ``printing.configure`` (face 1 of the
    packaged collection, the monospaced Micro Hei, has other advance widths)."""
    from printing.fonts import resolve_font

    model = sample_model()
    before_zpl = printing.render_label(model, "zpl", "100x150")
    before = layout_label(model, get_template("100x150"))
    print_config(font=f"{resolve_font().path}#1")
    after = layout_label(model, get_template("100x150"))
    tag = {p.slot: p for p in after.texts}["signature_name"].lines[0]
    assert tag.width != {p.slot: p for p in before.texts}["signature_name"].lines[0].width
    assert printing.render_label(model, "zpl", "100x150") != before_zpl
