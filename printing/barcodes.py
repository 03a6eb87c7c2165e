"""Barcode geometry shared by every renderer: Code128 bars (reportlab's encoder) and a QR matrix as dark runs.

Both produce module-level geometry only; the renderers scale it (to points, dots) and draw it in one go
(one PDF path, one Pillow pass). ZPL/TSPL printers encode the symbols themselves from the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from typing import Any, cast

import segno

from . import qr

_STOP = 106  # Code128 stop symbol value
QUIET_MODULES = 10  # Code128 quiet zone on each side
QR_QUIET_MODULES = 4  # QR quiet zone on each side
# Fixed QR mask: segno's mask scoring is ~80% of QR time (2.9 ms vs 0.5 ms per symbol). Any of the 8 masks
# is valid per ISO/IEC 18004; scoring only avoids unlucky patterns, which random tokens do not produce in
# practice (the test suite decodes every rendered QR with an independent decoder).
QR_MASK = 0
QR_ERROR = "m"


@cache
def _widths() -> tuple[type[Any], tuple[bytes, ...]]:
    """reportlab's Code128 widget class, and its bar/space pattern of every symbol value as module widths.

    reportlab writes a pattern as letters: upper case a bar, lower case a space, the letter's rank its width
    (``"BaBbBb"`` is 2 1 2 2 2 2); turned into bytes of widths once, so :func:`code128` is C-level joins.
    """
    from reportlab.graphics.barcode.code128 import Code128  # ~0.17 s to import: on first use, not at start-up

    probe = Code128("0", quiet=0)
    widths = []
    for value in range(_STOP + 1):
        probe.encoded = [value]
        widths.append(bytes(ord(ch.lower()) - 96 for ch in probe.decompose()))
    return cast("type[Any]", Code128), tuple(widths)


def _encoded(data: str) -> list[int]:
    """reportlab's symbol values for ``data``: start, data (subsets B and C), check, stop."""
    if not data or any(not (32 <= ord(c) <= 126) for c in data):
        raise ValueError("Code128 data must be non-empty printable ASCII")
    symbol = _widths()[0](data, quiet=0)
    symbol.validate()  # printable ASCII passes unchanged (reportlab only drops characters above 127)
    return cast("list[int]", symbol.encode())


def code128_values(data: str) -> list[int]:
    """Encode printable ASCII ``data`` into Code128 symbol values (start, data, check; no stop).

    The encoder is reportlab's (:class:`reportlab.graphics.barcode.code128.Code128`): subset B, with digit
    pairs in subset C wherever that saves symbols (for waybill numbers, ``PW`` + 13 digits, exactly what the
    former hand-written encoder and the printers' automatic mode produce: ``B P W 4 C 82 71 ...``).
    """
    return _encoded(data)[:-1]


@dataclass(frozen=True, slots=True)
class Code128Bars:
    """Bars of a Code128 symbol in modules: ``bars`` are (offset, width); ``modules`` excludes quiet zones."""

    data: str
    bars: tuple[tuple[int, int], ...]
    modules: int


def code128(data: str) -> Code128Bars:
    """Encode ``data`` and return its bar geometry (without quiet zones)."""
    patterns = _widths()[1]
    widths = b"".join([patterns[v] for v in _encoded(data)])  # bar, space, bar, ... (stop ends with a bar)
    edges = list(accumulate(widths, initial=0))
    return Code128Bars(data, tuple(zip(edges[::2], widths[::2], strict=False)), edges[-1])


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
