"""The fast QR encoder (printing.qr): decodes with zxing-cpp, equals qrcode and segno module for module."""

from __future__ import annotations

import base64
import random

import pytest
import qrcode
import qrcode.constants
import segno
import zxingcpp
from PIL import Image
from qrcode.util import QRData

from printing import qr
from printing.barcodes import QR_ERROR, QR_MASK, QR_QUIET_MODULES, qr_matrix
from printing.samples import sample_models
from tests.printing.label_helpers import TOKEN

BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
PRINTABLE = "".join(map(chr, range(32, 127)))


def _tokens(n: int, seed: int = 1) -> list[str]:
    # shaped like waybill.labels.new_token(): base32 of 20 random bytes, no padding
    rng = random.Random(seed)
    return [base64.b32encode(rng.randbytes(20)).decode().rstrip("=") for _ in range(n)]


def _random_strings(n: int, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    alphabets = (BASE32, URLSAFE, "0123456789", qr.ALPHANUMERIC, PRINTABLE)
    return ["".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.randrange(1, 150))) for _ in range(n)]


def _image(matrix: list[list[int]], scale: int = 4) -> Image.Image:
    """The matrix as a grayscale image with a 4-module quiet zone, ``scale`` pixels per module."""
    q = QR_QUIET_MODULES
    side = len(matrix) + 2 * q
    img = Image.new("L", (side, side), 255)
    img.putdata([0 if 0 <= r - q < len(matrix) and 0 <= c - q < len(matrix) and matrix[r - q][c - q] else 255
                 for r in range(side) for c in range(side)])
    return img.resize((side * scale, side * scale), Image.Resampling.NEAREST)


def _decode(matrix: list[list[int]]) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(_image(matrix), formats=zxingcpp.BarcodeFormat.QRCode)]


def _runs_to_matrix(size: int, runs: tuple[tuple[int, int, int], ...]) -> list[list[int]]:
    m = [[0] * size for _ in range(size)]
    for r, c, n in runs:
        m[r][c:c + n] = [1] * n
    return m


def _segno(data: str, sym: qr.Symbol) -> list[list[int]]:
    ref = segno.make_qr(data, error=sym.level, version=sym.version, mask=sym.mask, boost_error=False)
    return [list(row) for row in ref.matrix]


def _segno_aligned(data: str, level: str = QR_ERROR.upper(), boost: bool = True) -> bool:
    # segno 1.6 adds a 0x00 codeword when the stream is byte-aligned after the terminator and room is left
    # (ISO/IEC 18004 7.4.10 asks for 0xEC/0x11 pad codewords there): such symbols may differ from segno's.
    mode = qr._mode(data)
    plan = qr._plan(mode, len(data), level, boost)
    bits = 4 + qr._cci_bits(mode, plan.version) + plan.payload_bits
    cap = 8 * plan.n_data
    end = bits + min(4, cap - bits)  # after the terminator
    return end % 8 == 0 and end < cap


def test_base32_tokens_decode():
    """Several thousand label tokens: the matrix barcodes.qr_matrix returns decodes to exactly the token."""
    for token in _tokens(3000):
        sym = qr_matrix(token)
        assert _decode(_runs_to_matrix(sym.size, sym.runs)) == [token]


@pytest.mark.parametrize("data", [TOKEN, "tok_x", "https://example.com/t?id=42&x=y", "a", " ", "0", "",
                                  "0123456789" * 7, "lowercase plus CAPS 123 !#~", PRINTABLE, "x" * 213])
def test_other_strings_decode_and_match_segno(data):
    sym = qr.encode(data, QR_ERROR.upper(), QR_MASK)
    assert sym is not None
    if data:  # zxing-cpp reports no symbol for empty content
        assert _decode(sym.matrix()) == [data]
    if not _segno_aligned(data):
        assert sym.matrix() == _segno(data, sym)


def test_urlsafe_and_random_strings_decode():
    for data in [t[:32] for t in (base64.urlsafe_b64encode(random.Random(i).randbytes(24)).decode()
                                  for i in range(300))] + _random_strings(300):
        assert _decode(qr.encode(data, "M", QR_MASK).matrix()) == [data]


def test_equals_segno_module_for_module():
    """Same mode, version, (boosted) level and mask as before, so the same symbol as segno makes."""
    samples = _tokens(300, seed=3) + [m.token for m in sample_models(200)] + _random_strings(600, seed=4)
    for data in samples:
        sym = qr.encode(data, QR_ERROR.upper(), QR_MASK)
        ref = segno.make(data, error=QR_ERROR, micro=False, mask=QR_MASK)  # what barcodes.py used to call
        assert (sym.version, sym.level.lower()) == (ref.version, ref.error.lower())
        if not _segno_aligned(data):
            assert sym.matrix() == [list(row) for row in ref.matrix], data
            assert sym.matrix() == _segno(data, sym)
        else:  # the same but for padding: with segno's codewords our EC/placement/format give its matrix
            fixed = qr.from_codewords(_segno_data_codewords(data, sym), sym.version, sym.level, sym.mask)
            assert fixed.matrix() == [list(row) for row in ref.matrix], data


@pytest.mark.parametrize("level", qr.LEVELS)
@pytest.mark.parametrize("mask", range(8))
def test_every_level_and_mask_matches_segno(level, mask):
    rng = random.Random(mask * 4 + qr.LEVELS.index(level))
    for _ in range(15):
        data = "".join(rng.choice(rng.choice((BASE32, URLSAFE))) for _ in range(rng.randrange(1, 120)))
        sym = qr.encode(data, level, mask, boost=False)
        if sym is None:  # beyond version 10 at this level
            continue
        assert sym.level == level and sym.mask == mask
        if not _segno_aligned(data, level, boost=False):
            assert sym.matrix() == _segno(data, sym)
        data_cw = _segno_data_codewords(data, sym)
        assert qr.from_codewords(data_cw, sym.version, level, mask).matrix() == _segno(data, sym)


def _segno_data_codewords(data: str, sym: qr.Symbol) -> bytes:
    # the data codewords segno writes (with its 0x00 quirk, see _segno_aligned): our EC/placement/masks/format
    # on them must give segno's matrix, whatever the padding
    mode = qr._mode(data)
    plan = qr._plan(mode, len(data), sym.level, False)
    assert plan.version == sym.version
    bits = 4 + qr._cci_bits(mode, sym.version) + plan.payload_bits
    cap = 8 * plan.n_data
    n = bits + min(4, cap - bits)
    acc = (plan.header << plan.payload_bits | qr._payload(mode, data)) << (n - bits)
    pad = 8 - n % 8  # segno: 8 zero bits when already aligned
    acc <<= pad
    cw = acc.to_bytes((n + pad) // 8, "big") + b"\xec\x11" * plan.n_data
    return cw[:plan.n_data]


def test_iso_annex_i_example():
    """ISO/IEC 18004:2015 Annex I: "01234567" as 1-M, data and EC codewords as printed in the standard."""
    data_cw = bytes.fromhex("10200c566180ec11ec11ec11ec11ec11")
    assert qr.encode("01234567", "M", 0, boost=False).version == 1
    assert qr.rs_remainder(data_cw, 10).to_bytes(10, "big") == bytes.fromhex("a524d4c1ed36c7872c55")
    sym = qr.encode("01234567", "M", 2, boost=False)
    assert sym.matrix() == qr.from_codewords(data_cw, 1, "M", 2).matrix()
    assert _decode(sym.matrix()) == ["01234567"]


def test_padding_is_iso_conformant():
    """A byte-aligned stream gets 0xEC/0x11 right after it (no zero codeword) and still decodes."""
    # "a" in byte mode: 0100 00000001 01100001 0000 -> 40 16 10, then pad codewords (1-H: 9 data codewords)
    sym = qr.encode("a", "M", 0)
    assert (sym.version, sym.level) == (1, "H")
    want = qr.from_codewords(bytes.fromhex("401610ec11ec11ec11"), 1, "H", 0)
    assert sym.matrix() == want.matrix()
    assert _decode(sym.matrix()) == ["a"]


def test_format_and_version_information():
    # ISO/IEC 18004:2015 Table C.1 and D.1 samples
    assert qr.format_bits("M", 5) == 0b100000011001110
    assert qr.format_bits("L", 0) == 0b111011111000100
    assert qr.version_bits(7) == 0x07C94
    assert qr.version_bits(10) == 0x0A4D3


@pytest.mark.parametrize(("mode_chars", "max_len"), [
    # (alphabet, longest string per version 1..10 at level M without boost): ISO/IEC 18004 Table 7
    ("0123456789", (34, 63, 101, 149, 202, 255, 293, 365, 432, 513)),
    (BASE32, (20, 38, 61, 90, 122, 154, 178, 221, 262, 311)),
    ("abc", (14, 26, 42, 62, 84, 106, 122, 152, 180, 213)),
])
def test_version_boundaries(mode_chars, max_len):
    for version, n in enumerate(max_len, 1):
        fits = (mode_chars * n)[:n]
        sym = qr.encode(fits, "M", 0, boost=False)
        assert (sym.version, sym.level) == (version, "M")
        if version < 10:
            assert qr.encode(fits + mode_chars[0], "M", 0, boost=False).version == version + 1
        if n % 5 == 0:
            assert _decode(sym.matrix()) == [fits]
    assert qr.encode((mode_chars * 600)[: max_len[-1] + 1], "M", 0) is None  # beyond version 10


def test_label_tokens_pick_expected_versions():
    assert (qr.encode(_tokens(1)[0]).version, qr.encode(_tokens(1)[0]).level) == (2, "M")
    assert (qr.encode(TOKEN).version, qr.encode(TOKEN).level) == (3, "Q")  # byte mode, boosted like segno


def test_fallback_to_segno():
    for data in ("größe", "漢字", "x" * 400):
        assert qr.encode(data) is None
        sym = qr_matrix(data)
        ref = segno.make(data, error=QR_ERROR, micro=False, mask=QR_MASK)
        assert _runs_to_matrix(sym.size, sym.runs) == [list(row) for row in ref.matrix]


def test_dark_runs_match_matrix():
    for data in _tokens(50, seed=9) + [TOKEN]:
        sym = qr.encode(data)
        assert _runs_to_matrix(sym.size, qr.dark_runs(sym)) == sym.matrix()
        for r, c, n in qr.dark_runs(sym):
            assert c + n <= sym.size and (c + n == sym.size or sym.matrix()[r][c + n] == 0)


# -- module for module against two independent encoders: qrcode and segno ---------------------------------
# Over every token shape the service prints: waybill.labels.derive_token (32 base32 characters),
# printing.samples (token_urlsafe(24): 32 URL-safe characters), the fixture token, and every length 1..120 of
# the URL-safe and base32 alphabets. Same version, level and mask (QR_MASK) as ours, one segment.
_QRCODE_LEVELS = {"L": qrcode.constants.ERROR_CORRECT_L, "M": qrcode.constants.ERROR_CORRECT_M,
                  "Q": qrcode.constants.ERROR_CORRECT_Q, "H": qrcode.constants.ERROR_CORRECT_H}


def _qrcode(data: str, version: int | None, level: str, mask: int) -> tuple[int, list[list[int]]]:
    """qrcode's symbol: (version, matrix). ``version=None`` lets qrcode pick the smallest that fits."""
    code = qrcode.QRCode(version=version, error_correction=_QRCODE_LEVELS[level], box_size=1, border=0,
                         mask_pattern=mask)
    code.add_data(QRData(data.encode("ascii")), optimize=0)  # one segment, mode chosen by qrcode
    code.make(fit=version is None)
    return code.version, [[int(m) for m in row] for row in code.modules]


def _service_tokens() -> list[str]:
    return _tokens(2000, seed=31) + [m.token for m in sample_models(1000, seed=32)] + [TOKEN]


def _every_length(per_length: int = 8) -> list[str]:
    rng = random.Random(33)
    return ["".join(rng.choice(alphabet) for _ in range(n))
            for n in range(1, 121) for alphabet in (URLSAFE, BASE32) for _ in range(per_length)]


def test_token_shapes_are_what_the_service_issues():
    tokens = _service_tokens()
    assert len(set(tokens)) == len(tokens) == 3001
    assert {len(t) for t in tokens[:2000]} == {32} and set("".join(tokens[:2000])) <= set(BASE32)
    assert {len(t) for t in tokens[2000:3000]} == {32} and set("".join(tokens[2000:3000])) <= set(URLSAFE)
    lengths = _every_length()
    assert {len(s) for s in lengths} == set(range(1, 121))


@pytest.mark.parametrize("kind", ["service_tokens", "every_length"])
def test_label_symbols_equal_qrcode_and_segno(kind):
    """What qr_matrix prints (level M, boosted like segno.make, mask QR_MASK) equals both references."""
    samples = _service_tokens() if kind == "service_tokens" else _every_length()
    aligned = 0
    for data in samples:
        sym = qr.encode(data, QR_ERROR.upper(), QR_MASK)
        assert sym is not None and sym.mask == QR_MASK
        ref = segno.make(data, error=QR_ERROR, micro=False, mask=QR_MASK)
        assert (sym.version, sym.level) == (ref.version, ref.error.upper()), data
        mine = sym.matrix()
        assert _qrcode(data, sym.version, sym.level, sym.mask) == (sym.version, mine), data
        printed = qr_matrix(data)
        assert _runs_to_matrix(printed.size, printed.runs) == mine, data
        if _segno_aligned(data):  # segno's 0x00 pad codeword (see _segno_aligned): its codewords, our placement
            aligned += 1
            fixed = qr.from_codewords(_segno_data_codewords(data, sym), sym.version, sym.level, sym.mask)
            assert fixed.matrix() == [list(row) for row in ref.matrix], data
        else:
            assert mine == [list(row) for row in ref.matrix], data
    if kind == "service_tokens":
        assert aligned == 0  # 32-character tokens never hit segno's padding quirk (qr module docstring)


@pytest.mark.parametrize("kind", ["service_tokens", "every_length"])
def test_level_m_symbols_equal_qrcode_and_segno(kind):
    """Strictly level M (no boost): same smallest version as qrcode picks, same matrix as both."""
    samples = _service_tokens()[::6] if kind == "service_tokens" else _every_length(per_length=4)
    for data in samples:
        sym = qr.encode(data, "M", QR_MASK, boost=False)
        assert sym is not None and sym.level == "M"
        version, matrix = _qrcode(data, None, "M", QR_MASK)
        assert (sym.version, sym.matrix()) == (version, matrix), data
        if not _segno_aligned(data, "M", boost=False):
            assert sym.matrix() == _segno(data, sym), data
