"""Barcode geometry shared by every renderer: a fast Code128 encoder and a QR matrix as dark runs.

Both produce module-level geometry only; the renderers scale it (to points, dots) and draw it in one go
(one PDF path, one Pillow pass). ZPL/TSPL printers encode the symbols themselves from the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import segno

from . import qr

# Code128 symbol patterns (bar, space, bar, ... widths in modules) for values 0..106; 106 is STOP.
_PATTERNS = (
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212", "221213",
    "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221", "223211", "221132",
    "221231", "213212", "223112", "312131", "311222", "321122", "321221", "312212", "322112", "322211",
    "212123", "212321", "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
    "231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121", "313121", "211331",
    "231131", "213113", "213311", "213131", "311123", "311321", "331121", "312113", "312311", "332111",
    "314111", "221411", "431111", "111224", "111422", "121124", "121421", "141122", "141221", "112214",
    "112412", "122114", "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
    "111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
    "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311", "113141",
    "114131", "311141", "411131", "211412", "211214", "211232", "2331112",
)
_START_B, _START_C, _CODE_B, _CODE_C, _STOP = 104, 105, 100, 99, 106
_DIGITS = re.compile(r"\d+")
QUIET_MODULES = 10  # Code128 quiet zone on each side
QR_QUIET_MODULES = 4  # QR quiet zone on each side
# Fixed QR mask: segno's mask scoring is ~80% of QR time (2.9 ms vs 0.5 ms per symbol). Any of the 8 masks
# is valid per ISO/IEC 18004; scoring only avoids unlucky patterns, which random tokens do not produce in
# practice (the test suite decodes every rendered QR with an independent decoder).
QR_MASK = 0
QR_ERROR = "m"


def code128_values(data: str) -> list[int]:
    """Encode printable ASCII ``data`` into Code128 symbol values (start, data, check), subsets B and C.

    Digit runs of 4+ (at the start or end) or 6+ (in the middle) use subset C, two digits per symbol.
    """
    if not data or any(not (32 <= ord(c) <= 126) for c in data):
        raise ValueError("Code128 data must be non-empty printable ASCII")
    runs = {m.start(): m.end() for m in _DIGITS.finditer(data)}
    values: list[int] = []
    cur = None
    i, n = 0, len(data)
    while i < n:
        end = runs.get(i)
        if end is not None:
            length = end - i
            edge = i == 0 or end == n
            if length >= (4 if edge else 6) or (length == n and length % 2 == 0):
                if length % 2:  # odd run: the first digit goes in subset B
                    if cur is None:
                        values.append(_START_B)
                    elif cur != "B":
                        values.append(_CODE_B)
                    values.append(ord(data[i]) - 32)
                    cur = "B"
                    i += 1
                values.append(_START_C if cur is None else _CODE_C)
                cur = "C"
                values.extend(int(data[j:j + 2]) for j in range(i, end, 2))
                i = end
                continue
        if cur != "B":
            values.append(_START_B if cur is None else _CODE_B)
            cur = "B"
        values.append(ord(data[i]) - 32)
        i += 1
    check = (values[0] + sum(k * v for k, v in enumerate(values[1:], 1))) % 103
    values.append(check)
    return values


@dataclass(frozen=True, slots=True)
class Code128Bars:
    """Bars of a Code128 symbol in modules: ``bars`` are (offset, width); ``modules`` excludes quiet zones."""

    data: str
    bars: tuple[tuple[int, int], ...]
    modules: int


def code128(data: str) -> Code128Bars:
    """Encode ``data`` and return its bar geometry (without quiet zones)."""
    widths = "".join(_PATTERNS[v] for v in code128_values(data)) + _PATTERNS[_STOP]
    bars = []
    x = 0
    for k, ch in enumerate(widths):
        w = ord(ch) - 48
        if not k & 1:
            bars.append((x, w))
        x += w
    return Code128Bars(data, tuple(bars), x)


@dataclass(frozen=True, slots=True)
class QRMatrix:
    """A QR symbol as horizontal dark runs: (row, first column, length), in modules, without quiet zone."""

    data: str
    size: int
    runs: tuple[tuple[int, int, int], ...]


_DARK_RUN = re.compile(rb"\x01+")


def qr_matrix(data: str) -> QRMatrix:
    """Compute the QR matrix of ``data``: numeric/alphanumeric/byte mode, error level M or boosted, mask 0.

    :mod:`printing.qr` encodes what labels carry (ASCII, up to version 10) ~20x faster than segno, with the
    same mode, version, level and mask, so the same symbol (see that module on segno's one padding quirk);
    anything else falls back to segno.
    """
    sym = qr.encode(data, QR_ERROR.upper(), QR_MASK)
    if sym is not None:
        return QRMatrix(data, sym.size, qr.dark_runs(sym))
    code = segno.make(data, error=QR_ERROR, micro=False, mask=QR_MASK)
    runs = []
    for r, row in enumerate(code.matrix):
        for m in _DARK_RUN.finditer(bytes(row)):
            runs.append((r, m.start(), m.end() - m.start()))
    return QRMatrix(data, len(code.matrix), tuple(runs))
