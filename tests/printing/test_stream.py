"""Streaming: a 1000-label PDF job yields page by page, in order, with fonts embedded once."""

from __future__ import annotations

import re

import pymupdf

import printing
from printing.samples import sample_models


def test_thousand_label_pdf_job_streams_in_order():
    models = list(sample_models(1000, seed=11))
    consumed = 0

    def feed():
        nonlocal consumed
        for m in models:
            consumed += 1
            yield m

    stream = printing.iter_render(feed(), "pdf", "100x150")
    chunks = [next(stream), next(stream)]  # header, first page
    assert consumed <= 2  # lazy: the first page is out before the batch is read
    chunks.extend(stream)
    assert len(chunks) == 1000 + 2  # header, one chunk per page, trailer
    doc = pymupdf.open(stream=b"".join(chunks), filetype="pdf")
    assert doc.page_count == 1000
    for i in (0, 1, 2, 499, 998, 999):
        # Page i is label i: its text holds that label's (unique) waybill number and no neighbour's.
        lines = doc[i].get_text().split("\n")
        assert models[i].waybill_no in lines
        assert all(models[j].waybill_no not in lines for j in (i - 1, i + 1) if 0 <= j < len(models))
    # Fonts: one embedded subset per 256 distinct characters for the whole document, not one per page.
    font_files = sum(1 for x in range(1, doc.xref_length()) if "/FontFile2" in doc.xref_object(x))
    distinct = len(set("".join(page.get_text() for page in (doc[0], doc[500]))))
    assert 1 <= font_files <= 4 and font_files < distinct
    assert all(len(doc[i].get_fonts()) == font_files for i in (0, 999))


def test_zpl_one_format_per_label(masked_model):
    models = [masked_model] * 5
    data = b"".join(printing.iter_render(models, "zpl", "76x130")).decode("utf-8")
    labels = re.findall(r"\^XA\^CI28.*?\^XZ", data, flags=re.S)
    assert len(labels) == 5
    for label in labels:
        assert "^BCN" in label and f"^FD{masked_model.waybill_no}^FS" in label
        assert "^BQN,2," in label and f"^FDMA,{masked_model.token}^FS" in label
    # Glyph mode: every recalled graphic was downloaded before use, each exactly once.
    downloads = re.findall(r"~DG(R:WB[0-9A-F]{6}\.GRF)", data)
    assert len(downloads) == len(set(downloads))
    used = set(re.findall(r"\^XG(R:WB[0-9A-F]{6}\.GRF)", data))
    first_use = {name: data.index("^XG" + name) for name in used}
    assert set(first_use) == set(downloads)
    assert all(data.index("~DG" + n) < pos for n, pos in first_use.items())
    assert data.rstrip().endswith("^XA^IDR:WB*.GRF^FS^XZ")


def test_zpl_resident_font_mode(masked_model, print_config):
    print_config(zpl_text="resident", zpl_font="E:ANMDS.TTF")
    data = printing.render_label(masked_model, "zpl", "100x150").decode("utf-8")
    assert "^CWJ,E:ANMDS.TTF" in data and "~DG" not in data
    assert "^AJN" in data and masked_model.recipient.name in data


def test_png_stream_is_one_file_per_label(masked_model):
    files = list(printing.iter_render([masked_model] * 3, "png", "76x130"))
    assert len(files) == 3 and all(f.startswith(b"\x89PNG") for f in files)


def test_tspl_one_print_per_label(masked_model):
    data = b"".join(printing.iter_render([masked_model] * 3, "tspl", "100x180")).decode("gbk")
    assert data.count("PRINT 1,1") == 3 and data.count("CLS") == 3
    assert 'QRCODE' in data and masked_model.token in data and '"128"' in data
