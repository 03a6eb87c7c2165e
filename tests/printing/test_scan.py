"""Labels read like a scanner reads them: Code128 = waybill number, QR = token and nothing else."""

from __future__ import annotations

from dataclasses import replace

import pytest

import printing
from printing.barcodes import code128, code128_values
from printing.samples import sample_models
from tests.printing.label_helpers import decode, pdf_pages_as_images, png_image


@pytest.mark.parametrize("size", printing.SIZES)
@pytest.mark.parametrize("fmt", ["pdf", "png"])
def test_barcode_and_qr_decode(masked_model, fmt, size):
    data = printing.render_label(masked_model, fmt, size)
    img = pdf_pages_as_images(data)[0] if fmt == "pdf" else png_image(data)
    assert img.size[0] == round(int(size.split("x")[0]) * 203 / 25.4) or fmt == "pdf"
    assert decode(img) == [("Code128", masked_model.waybill_no), ("QRCode", masked_model.token)]


def test_many_tokens_and_numbers_decode():
    # Fixed QR mask: check a spread of random tokens and waybill numbers still read back.
    models = list(sample_models(12, seed=3))
    for data, model in zip(printing.iter_render(models, "png", "76x130"), models, strict=True):
        assert decode(png_image(data)) == [("Code128", model.waybill_no), ("QRCode", model.token)]


@pytest.mark.parametrize("value", ["PW4827193650217", "SF1234567890123", "773012345678901", "A1", "12",
                                   "AB-12/cd 9", "YT7512345678901234"])
def test_code128_variants_decode(masked_model, value):
    png = printing.render_label(replace(masked_model, waybill_no=value), "png", "100x150")
    assert ("Code128", value) in decode(png_image(png))


def test_code128_encoder_known_values():
    assert code128_values("1234") == [105, 12, 34, 82]  # start C, check 82
    assert code128_values("AB12")[0] == 104
    assert code128("PW4827193650217").modules == 145
    with pytest.raises(ValueError):
        code128_values("中文")
