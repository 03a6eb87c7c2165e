"""The hand-written Code128 encoder printing/barcodes.py used before reportlab's, frozen as a test reference.

Kept verbatim (but for returning bars and width as a tuple) so the tests can check that reportlab's encoder
gives the same symbols, hence the same label geometry and ZPL centring, for every waybill-number shape.
"""

from __future__ import annotations

import re

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


def code128(data: str) -> tuple[tuple[tuple[int, int], ...], int]:
    """Bars (offset, width) and width in modules, without quiet zones."""
    widths = "".join(_PATTERNS[v] for v in code128_values(data)) + _PATTERNS[_STOP]
    bars = []
    x = 0
    for k, ch in enumerate(widths):
        w = ord(ch) - 48
        if not k & 1:
            bars.append((x, w))
        x += w
    return tuple(bars), x
