"""Code128 from reportlab's encoder: the same symbols as the hand-written encoder it replaced, and it reads.

The reference is the former encoder, frozen in tests/printing/code128_reference.py. For every waybill-number
shape and for arbitrary printable ASCII the symbol values and the bar geometry must be identical (so label
layout, golden images and the ZPL centring do not move). Digit-heavy strings are where the two may choose
subsets differently: there reportlab's symbol must never be longer, and it must decode to the data.
"""

from __future__ import annotations

import random
import string

import pytest
import zxingcpp
from PIL import Image

from printing.barcodes import QUIET_MODULES, code128, code128_values
from printing.samples import sample_models
from tests.printing import code128_reference as old

PRINTABLE = "".join(map(chr, range(32, 127)))


def _waybill_shapes(n: int, seed: int = 11) -> list[str]:
    """Waybill numbers as this service (PW + 13 digits) and other carriers shape them."""
    rng = random.Random(seed)

    def digits(k: int) -> str:
        return "".join(rng.choice(string.digits) for _ in range(k))

    shapes = (
        lambda: "PW" + digits(13),  # waybill.waybill_no: PW + 12 random digits + Damm check digit
        lambda: "SF" + digits(rng.choice((12, 13))),
        lambda: digits(rng.choice((12, 13, 15))),  # all-numeric (ZTO/YTO/STO style)
        lambda: "YT" + digits(rng.choice((13, 16))),
        lambda: "JD" + digits(rng.choice((11, 13))) + "-" + str(rng.randrange(1, 10)) + "-1-",
        lambda: rng.choice(string.ascii_uppercase) + digits(rng.randrange(1, 20)),
    )
    return [rng.choice(shapes)() for _ in range(n)]


def _printable(n: int, seed: int = 12) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PRINTABLE) for _ in range(rng.randrange(1, 60))) for _ in range(n)]


def _digit_heavy(n: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.digits * 4 + "AB-x /"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(n)]


def _image(data: str, module_px: int = 2) -> Image.Image:
    sym = code128(data)
    width = (sym.modules + 2 * QUIET_MODULES) * module_px
    img = Image.new("L", (width, 60), 255)
    for offset, w in sym.bars:
        x = (QUIET_MODULES + offset) * module_px
        img.paste(0, (x, 5, x + w * module_px, 55))
    return img


def _decode(data: str) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(_image(data), formats=zxingcpp.BarcodeFormat.Code128)]


def _check_ok(values: list[int]) -> bool:
    return values[-1] == (values[0] + sum(k * v for k, v in enumerate(values[1:-1], 1))) % 103


def test_service_waybill_numbers_identical_to_former_encoder():
    """PW + 13 digits (waybill.waybill_no) and even digit runs: the very same symbol values and bars."""
    rng = random.Random(10)
    samples = ([f"PW{rng.randrange(10**13):013d}" for _ in range(3000)] + [m.waybill_no for m in sample_models(500)]
               + [f"SF{rng.randrange(10**12):012d}" for _ in range(500)] + [f"{rng.randrange(10**12):012d}"
                                                                            for _ in range(500)])
    assert len(set(samples)) > 4000
    for data in samples:
        values = code128_values(data)
        assert values == old.code128_values(data), data
        sym = code128(data)
        assert (sym.data, sym.bars, sym.modules) == (data, *old.code128(data)), data


def test_other_waybill_shapes_same_width_as_former_encoder():
    """Any carrier's shape: the same number of symbols, so the same width, module size and ZPL centring.

    With an odd digit run the two put the odd digit in subset B at different ends (``B 7 C 92 90 ...`` vs
    ``C 79 29 ... B 0``): equally long, both valid.
    """
    differ = 0
    for data in _waybill_shapes(3000):
        values, before = code128_values(data), old.code128_values(data)
        assert len(values) == len(before), data
        assert code128(data).modules == old.code128(data)[1], data
        assert _check_ok(values), data
        differ += values != before
    assert differ > 0  # the sample does contain odd digit runs


def test_arbitrary_printable_ascii_identical_to_former_encoder():
    samples = _printable(3000) + list(PRINTABLE) + [PRINTABLE, PRINTABLE[::-1]]
    for data in samples:
        assert code128_values(data) == old.code128_values(data), data
        sym = code128(data)
        assert (sym.bars, sym.modules) == old.code128(data), data


def test_digit_heavy_strings_never_longer_and_valid():
    differ = 0
    for data in _digit_heavy(3000):
        values, before = code128_values(data), old.code128_values(data)
        assert len(values) <= len(before), data
        assert values[0] in (104, 105) and _check_ok(values), data
        assert code128(data).modules == 11 * len(values) + 13
        differ += values != before
    # Both encoders are valid; they pick subsets differently for some digit runs (odd runs, runs between
    # letters). The test would not notice if this set stopped exercising that: keep it doing so.
    assert differ > 100


@pytest.mark.parametrize("kind", ["waybill", "printable", "digits"])
def test_symbols_decode(kind):
    samples = {"waybill": _waybill_shapes(300, seed=21), "printable": _printable(300, seed=22),
               "digits": _digit_heavy(300, seed=23)}[kind]
    for data in samples:
        assert _decode(data) == [data]


def test_edges_and_refusals():
    for data in ["0", "00", "000", "0000", "1" * 80, "a", "PW", " ", "~", "0" * 80 + "a", "1" * 79, "a12345b"]:
        assert len(code128_values(data)) == len(old.code128_values(data)), data
        assert _decode(data) == [data]
    assert code128_values("0") == old.code128_values("0") == [104, 16, 17]  # start B, "0", check (104 + 16) % 103
    assert code128_values("1234") == old.code128_values("1234") == [105, 12, 34, 82]
    assert code128("PW4827193650217").modules == 145
    for bad in ["", "中文", "tab\there", "\x7f", "é", "\xf1"]:
        with pytest.raises(ValueError):
            code128_values(bad)
        with pytest.raises(ValueError):
            code128(bad)
