"""Golden images per size (fixed token and print time): a visual regression net with a small tolerance.

Regenerate deliberately with ``WAYBILL_UPDATE_GOLDEN=1 pytest tests/printing/test_golden.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import ImageChops

import printing
from printing.samples import sample_model
from tests.printing.label_helpers import png_image

GOLDEN = Path(__file__).parent / "golden"
TOLERANCE = 0.005  # fraction of differing pixels (font rasteriser versions differ slightly)


@pytest.mark.parametrize("size", printing.SIZES)
def test_png_matches_golden(size):
    data = printing.render_label(sample_model(), "png", size)
    path = GOLDEN / f"label_{size}.png"
    if os.environ.get("WAYBILL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    assert path.exists(), f"missing golden {path.name}: run with WAYBILL_UPDATE_GOLDEN=1"
    got, want = png_image(data).convert("L"), png_image(path.read_bytes()).convert("L")
    assert got.size == want.size
    diff = ImageChops.difference(got, want).point(lambda v: 255 if v else 0)
    differing = diff.histogram()[255]
    assert differing / (got.size[0] * got.size[1]) < TOLERANCE
