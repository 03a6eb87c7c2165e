"""A fast pure-Python QR Code encoder (ISO/IEC 18004) for short label payloads: versions 1-10, one segment.

Chosen like segno does: numeric, alphanumeric or byte mode (ASCII) for the whole string; the smallest version
that fits at the requested level, then the highest level that still fits it (``boost_error``); a fixed mask.
Anything else (non-ASCII text, more than version 10 holds): :func:`encode` returns ``None``. Padding follows
ISO 7.4.10 (pad bits only up to a codeword boundary, then 0xEC/0x11); segno 1.6 adds a 0x00 codeword when the
stream is already byte-aligned after the terminator, so symbols differ from segno's only then (and never
for 32-character tokens, whose stream is not aligned or fills the symbol).

Cached per version/level/mask: the function-pattern template (incl. format/version information, remainder
bits), one module gather that combines block interleaving with the placement zig-zag, and the mask as an
int. Per payload: the bit stream as an int, Reed-Solomon with a precomputed generator-multiple table (shift
and XOR on ints), one XOR for the mask, one C-level ``itemgetter`` gather that places every module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from operator import itemgetter

MAX_VERSION = 10
ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
LEVELS = "LMQH"  # ascending error-correction strength
_LEVEL_BITS = {"L": 1, "M": 0, "Q": 3, "H": 2}  # format-information encoding of the level
_MODE_NUMERIC, _MODE_ALNUM, _MODE_BYTE = 1, 2, 4  # mode indicators

# ISO/IEC 18004:2015 Table 9, versions 1-10, levels L, M, Q, H: (EC codewords per block, blocks of k data
# codewords, k, blocks of k + 1 data codewords).
_EC_TABLE = (
    ((7, 1, 19, 0), (10, 1, 16, 0), (13, 1, 13, 0), (17, 1, 9, 0)),
    ((10, 1, 34, 0), (16, 1, 28, 0), (22, 1, 22, 0), (28, 1, 16, 0)),
    ((15, 1, 55, 0), (26, 1, 44, 0), (18, 2, 17, 0), (22, 2, 13, 0)),
    ((20, 1, 80, 0), (18, 2, 32, 0), (26, 2, 24, 0), (16, 4, 9, 0)),
    ((26, 1, 108, 0), (24, 2, 43, 0), (18, 2, 15, 2), (22, 2, 11, 2)),
    ((18, 2, 68, 0), (16, 4, 27, 0), (24, 4, 19, 0), (28, 4, 15, 0)),
    ((20, 2, 78, 0), (18, 4, 31, 0), (18, 2, 14, 4), (26, 4, 13, 1)),
    ((24, 2, 97, 0), (22, 2, 38, 2), (22, 4, 18, 2), (26, 4, 14, 2)),
    ((30, 2, 116, 0), (22, 3, 36, 2), (20, 4, 16, 4), (24, 4, 12, 4)),
    ((18, 2, 68, 2), (26, 4, 43, 1), (24, 6, 19, 2), (28, 6, 15, 2)),
)
# Alignment pattern centre coordinates per version (ISO/IEC 18004:2015 Annex E).
_ALIGNMENT = ((), (), (6, 18), (6, 22), (6, 26), (6, 30), (6, 34), (6, 22, 38), (6, 24, 42), (6, 26, 46),
              (6, 28, 50))
_MASKS: tuple[Callable[[int, int], bool], ...] = (
    lambda i, j: (i + j) % 2 == 0,
    lambda i, j: i % 2 == 0,
    lambda i, j: j % 3 == 0,
    lambda i, j: (i + j) % 3 == 0,
    lambda i, j: (i // 2 + j // 3) % 2 == 0,
    lambda i, j: (i * j) % 2 + (i * j) % 3 == 0,
    lambda i, j: ((i * j) % 2 + (i * j) % 3) % 2 == 0,
    lambda i, j: ((i + j) % 2 + (i * j) % 3) % 2 == 0,
)

# GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D): antilog (doubled: no modulo) and log.
_EXP = [1] * 512
for _i in range(1, 512):
    _EXP[_i] = _EXP[_i - 1] << 1 ^ (0x11D if _EXP[_i - 1] & 0x80 else 0)
_LOG = [0] * 256
for _i in range(255):
    _LOG[_EXP[_i]] = _i
del _i


def gf_mul(a: int, b: int) -> int:
    """Product of ``a`` and ``b`` in GF(256)."""
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def generator_poly(n: int) -> list[int]:
    """Reed-Solomon generator (x - a^0)...(x - a^(n-1)) as coefficients, highest degree first (monic)."""
    g = [1]
    for i in range(n):
        r = _EXP[i]
        g = [a ^ gf_mul(b, r) for a, b in zip(g + [0], [0] + g, strict=True)]
    return g


@cache
def _rs_table(n: int) -> tuple[int, ...]:
    # f * (g1..gn) for every byte f, packed big-endian into an int: one LFSR step is then shift/mask/XOR.
    coeffs = generator_poly(n)[1:]
    return tuple(int.from_bytes(bytes(gf_mul(f, c) for c in coeffs), "big") for f in range(256))


def rs_remainder(data: bytes, n: int) -> int:
    """The ``n`` Reed-Solomon EC codewords of one block ``data``, as a big-endian int."""
    table, shift, keep = _rs_table(n), 8 * (n - 1), (1 << 8 * n) - 1
    rem = 0
    for b in data:
        rem = ((rem << 8) & keep) ^ table[(rem >> shift) ^ b]
    return rem


def _bch(value: int, poly: int, poly_bits: int) -> int:
    # remainder of value * x^(deg poly) divided by poly, appended to value (format/version information)
    deg = poly_bits - 1
    rem = value << deg
    for bit in range(rem.bit_length() - 1, deg - 1, -1):
        if rem >> bit & 1:
            rem ^= poly << (bit - deg)
    return value << deg | rem


def format_bits(level: str, mask: int) -> int:
    """The 15-bit format information (BCH(15,5), XOR 0x5412) for ``level`` and ``mask``."""
    return _bch(_LEVEL_BITS[level] << 3 | mask, 0x537, 11) ^ 0x5412


def version_bits(version: int) -> int:
    """The 18-bit version information (BCH(18,6)), versions 7 and up."""
    return _bch(version, 0x1F25, 13)


def symbol_size(version: int) -> int:
    """Modules per side of a QR Code ``version``."""
    return 17 + 4 * version


def ec_blocks(version: int, level: str) -> tuple[int, list[int]]:
    """EC codewords per block and the data codewords of each block of ``version`` at ``level``."""
    ec, n1, k, n2 = _EC_TABLE[version - 1][LEVELS.index(level)]
    return ec, [k] * n1 + [k + 1] * n2


def data_codewords(version: int, level: str) -> int:
    """Data codewords of ``version`` at ``level``."""
    return sum(ec_blocks(version, level)[1])


def _cci_bits(mode: int, version: int) -> int:
    # character count indicator length, versions 1-9 and 10-26
    return {_MODE_NUMERIC: (10, 12), _MODE_ALNUM: (9, 11), _MODE_BYTE: (8, 16)}[mode][version >= 10]


def _payload_bits(mode: int, n: int) -> int:
    if mode == _MODE_NUMERIC:
        return 10 * (n // 3) + (0, 4, 7)[n % 3]
    if mode == _MODE_ALNUM:
        return 11 * (n // 2) + 6 * (n % 2)
    return 8 * n


@dataclass(frozen=True, slots=True)
class _Plan:
    """What depends only on (mode, length, level): version, boosted level, header, padding tail."""

    version: int
    level: str
    header: int  # mode indicator and character count, as an int
    payload_bits: int
    tail_bits: int  # terminator + padding bits + pad codewords
    tail: int  # their value
    n_data: int


@cache
def _plan(mode: int, n: int, level: str, boost: bool) -> _Plan | None:
    # smallest version for the data at ``level``, boosted level, header and padding; None if beyond v10
    pbits = _payload_bits(mode, n)
    for version in range(1, MAX_VERSION + 1):
        cci = _cci_bits(mode, version)
        if n >= 1 << cci:
            continue
        bits = 4 + cci + pbits
        if data_codewords(version, level) * 8 < bits:
            continue
        if boost:  # like segno's boost_error: raise the level while the data still fits this version
            for better in LEVELS[LEVELS.index(level) + 1:]:
                if data_codewords(version, better) * 8 < bits:
                    break
                level = better
        cap = data_codewords(version, level) * 8
        term = min(4, cap - bits)
        pad = -(bits + term) % 8
        n_pad = (cap - bits - term - pad) // 8
        pad_cw = (b"\xec\x11" * n_pad)[:n_pad]
        return _Plan(version, level, mode << cci | n, pbits, term + pad + 8 * n_pad,
                     int.from_bytes(pad_cw, "big"), cap // 8)
    return None


@dataclass(frozen=True, slots=True)
class _Layout:
    """Per (version, level, mask): RS block slices, module gather and the mask in raw bit order."""

    size: int
    blocks: tuple[tuple[int, int], ...]  # (start, length) of each data block in the data codewords
    ec_len: int
    n_bits: int  # data + EC codewords, in bits
    mask: int  # XOR mask over the raw (non-interleaved) bit string
    template: str  # every module as '0'/'1', rows separated by '\n'
    gather: Callable[[str], tuple[str, ...]]  # itemgetter: each module of the symbol from raw bits + template


def function_modules(version: int) -> tuple[list[list[int]], list[list[bool]]]:
    """Function patterns of ``version`` (finders, separators, timing, alignment, dark module) and the
    function/reserved map (those plus format and version information areas)."""
    size = symbol_size(version)
    m = [[0] * size for _ in range(size)]
    fn = [[False] * size for _ in range(size)]

    def put(r: int, c: int, dark: bool) -> None:
        m[r][c] = int(dark)
        fn[r][c] = True

    for i in range(size):  # timing patterns (finders overwrite their ends)
        put(6, i, i % 2 == 0)
        put(i, 6, i % 2 == 0)
    for cr, cc in ((3, 3), (3, size - 4), (size - 4, 3)):  # finders with separators
        for dr in range(-4, 5):
            for dc in range(-4, 5):
                r, c = cr + dr, cc + dc
                if 0 <= r < size and 0 <= c < size:
                    put(r, c, max(abs(dr), abs(dc)) not in (2, 4))
    pos = _ALIGNMENT[version]
    last = len(pos) - 1
    for a, ar in enumerate(pos):
        for b, ac in enumerate(pos):
            if (a, b) in ((0, 0), (0, last), (last, 0)):  # these would overlap a finder
                continue
            for dr in range(-2, 3):
                for dc in range(-2, 3):
                    put(ar + dr, ac + dc, max(abs(dr), abs(dc)) != 1)
    for i in range(9):  # format information areas (values written per level/mask)
        put(8, i, m[8][i] == 1)
        put(i, 8, m[i][8] == 1)
    for i in range(8):
        put(8, size - 1 - i, False)
        put(size - 1 - i, 8, False)
    put(size - 8, 8, True)  # dark module
    if version >= 7:
        bits = version_bits(version)
        for i in range(18):
            dark = bool(bits >> i & 1)
            put(i // 3, size - 11 + i % 3, dark)
            put(size - 11 + i % 3, i // 3, dark)
    return m, fn


def placement_order(version: int) -> list[tuple[int, int]]:
    """(row, column) of every non-function module in codeword placement order (two-column zig-zag)."""
    size = symbol_size(version)
    fn = function_modules(version)[1]
    order: list[tuple[int, int]] = []
    right = size - 1
    while right >= 1:
        if right == 6:  # skip the vertical timing column
            right = 5
        upward = (right + 1) & 2 == 0
        for vert in range(size):
            r = size - 1 - vert if upward else vert
            for c in (right, right - 1):
                if not fn[r][c]:
                    order.append((r, c))
        right -= 2
    return order


@cache
def _layout(version: int, level: str, mask: int) -> _Layout:
    # everything per version/level/mask that does not depend on the data
    size = symbol_size(version)
    ec_len, lengths = ec_blocks(version, level)
    blocks = []
    n_data = 0
    for k in lengths:
        blocks.append((n_data, k))
        n_data += k
    # Final (interleaved) codeword sequence as indices into raw = data codewords + EC blocks concatenated.
    final = [s + i for i in range(max(k for _, k in blocks)) for s, k in blocks if i < k]
    final += [n_data + b * ec_len + i for i in range(ec_len) for b in range(len(blocks))]
    n_bits = 8 * len(final)
    order = placement_order(version)
    is_dark = _MASKS[mask]
    m, _ = function_modules(version)
    fmt = format_bits(level, mask)
    for i in range(15):  # format information, both copies (bit 0 is the least significant)
        dark = fmt >> i & 1
        r, c = (i, 8) if i < 6 else (i + 1, 8) if i < 8 else (8, 14 - i) if i > 8 else (8, 7)
        m[r][c] = dark
        if i < 8:
            m[8][size - 1 - i] = dark
        else:
            m[size - 15 + i][8] = dark
    src: dict[tuple[int, int], int] = {}  # (row, col) -> raw bit index
    mask_int = 0
    for k, (r, c) in enumerate(order):
        if k < n_bits:
            raw = final[k // 8] * 8 + k % 8
            src[(r, c)] = raw
            if is_dark(r, c):
                mask_int |= 1 << (n_bits - 1 - raw)
        else:  # remainder bits: zero, masked
            m[r][c] = int(is_dark(r, c))
    template = "".join("".join(map(str, row)) + "\n" for row in m)
    width = size + 1
    picks: list[int] = []
    for r in range(size):
        for c in range(width):
            pick = src.get((r, c))
            picks.append(pick if pick is not None else n_bits + r * width + c)
    return _Layout(size, tuple(blocks), ec_len, n_bits, mask_int, template, itemgetter(*picks))


_ALNUM_PAIRS = {a + b: ALPHANUMERIC.index(a) * 45 + ALPHANUMERIC.index(b) for a in ALPHANUMERIC for b in ALPHANUMERIC}


def _mode(data: str) -> int | None:
    # segno's choice for a single segment: numeric, then alphanumeric, then byte (kanji needs non-ASCII)
    if not data.isascii():
        return None
    if data.isdigit():
        return _MODE_NUMERIC
    if data and not data.strip(ALPHANUMERIC):
        return _MODE_ALNUM
    return _MODE_BYTE


def _payload(mode: int, data: str) -> int:
    if mode == _MODE_BYTE:
        return int.from_bytes(data.encode("ascii"), "big")
    acc = 0
    n = len(data)
    if mode == _MODE_ALNUM:
        pairs = _ALNUM_PAIRS
        for i in range(0, n - 1, 2):
            acc = acc << 11 | pairs[data[i:i + 2]]
        if n % 2:
            acc = acc << 6 | ALPHANUMERIC.index(data[-1])
        return acc
    for i in range(0, n, 3):
        chunk = data[i:i + 3]
        acc = acc << (3 * len(chunk) + 1) | int(chunk)
    return acc


@dataclass(frozen=True, slots=True)
class Symbol:
    """An encoded QR symbol: ``modules`` holds ``size`` rows of '0'/'1' (1 = dark), each ending in '\\n'."""

    version: int
    level: str
    mask: int
    size: int
    modules: str

    def matrix(self) -> list[list[int]]:
        """Rows of 0/1 ints."""
        return [[int(ch) for ch in row] for row in self.modules.splitlines()]


def encode(data: str, level: str = "M", mask: int = 0, *, boost: bool = True) -> Symbol | None:
    """Encode ``data`` at ``level`` (raised while it fits the version if ``boost``) with the fixed ``mask``.

    Returns ``None`` when the fast path does not cover ``data`` (non-ASCII, or larger than version 10).
    """
    mode = _mode(data)
    if mode is None:
        return None
    plan = _plan(mode, len(data), level, boost)
    if plan is None:
        return None
    acc = ((plan.header << plan.payload_bits | _payload(mode, data)) << plan.tail_bits) | plan.tail
    return _finish(acc, plan.n_data, plan.version, plan.level, mask)


def from_codewords(data_cw: bytes, version: int, level: str, mask: int = 0) -> Symbol:
    """The symbol for ready-made data codewords (all of them, padding included): EC, placement, masking."""
    if len(data_cw) != data_codewords(version, level):
        raise ValueError(f"version {version}-{level} needs {data_codewords(version, level)} data codewords")
    return _finish(int.from_bytes(data_cw, "big"), len(data_cw), version, level, mask)


def _finish(acc: int, n_data: int, version: int, level: str, mask: int) -> Symbol:
    # acc: the data codewords as one int; appends the EC blocks, masks and places every module
    lay = _layout(version, level, mask)
    cw = acc.to_bytes(n_data, "big")
    ec_len = lay.ec_len
    for start, k in lay.blocks:
        acc = acc << 8 * ec_len | rs_remainder(cw[start:start + k], ec_len)
    bits = format(acc ^ lay.mask, "b").zfill(lay.n_bits)
    return Symbol(version, level, mask, lay.size, "".join(lay.gather(bits + lay.template)))


_DARK_RUN = re.compile("1+")


class _RunTable(dict[tuple[int, int], tuple[int, int, int]]):
    """(start, end) of a dark run in ``Symbol.modules`` -> (row, column, length), filled on first use.

    Runs are then looked up at C level (``map``) instead of built by Python code: that took longer than
    encoding. The tuples are immutable, so symbols share them; at most size * size * (size + 1) / 2 entries.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.width = size + 1  # the '\n' ending each row: no run crosses rows

    def __missing__(self, span: tuple[int, int]) -> tuple[int, int, int]:
        s, e = span
        run = self[span] = (s // self.width, s % self.width, e - s)
        return run


_RUN_TABLES: dict[int, _RunTable] = {}


def dark_runs(symbol: Symbol) -> tuple[tuple[int, int, int], ...]:
    """Horizontal dark runs of ``symbol``: (row, first column, length), row by row, left to right."""
    table = _RUN_TABLES.get(symbol.size)
    if table is None:
        table = _RUN_TABLES[symbol.size] = _RunTable(symbol.size)
    return tuple(map(table.__getitem__, map(re.Match.span, _DARK_RUN.finditer(symbol.modules))))
