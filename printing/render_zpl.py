"""ZPL II renderer for Zebra-compatible printers (raw jobs, e.g. to TCP port 9100).

Code128 (``^BC``, automatic subsets) and QR (``^BQN``) are encoded by the printer itself; the renderer sends
only the data. Chinese text needs a choice, made explicit here (``text_mode``, or ``PrintConfig.zpl_text``):

``"glyphs"`` (default, robust)
    Text is sent as bitmaps, so it prints the same on every ZPL II printer whether or not a CJK font is
    installed. Each distinct glyph (character at a pixel size) is rasterised with Pillow from the label font
    once per job, downloaded once with ``~DG`` (to ``R:WBxxxxxx.GRF``, before the first label that needs it)
    and placed with ``^XG``; the job ends by deleting those graphics (``^IDR:WB*.GRF``). Jobs stay small
    and generation stays fast, unlike one ``^GF`` bitmap per text field per label.
``"resident"``
    Text is sent as UTF-8 (``^CI28``) in a printer-resident TrueType font mapped with ``^CW`` (font path from
    ``font`` or ``PrintConfig.zpl_font``, default ``E:SIMSUN.TTF``). Smallest and fastest, but the font must be
    installed on every printer; a missing font prints nothing or boxes, which the service cannot detect.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

from PIL import Image, ImageDraw

from .barcodes import QR_QUIET_MODULES, QUIET_MODULES, code128
from .config import ZPL_TEXT_MODES, current, on_change
from .fonts import metrics, pil_font
from .layout import DOTS_PER_MM, LabelLayout, PlacedLine, PlacedText
from .templates import Template

MEDIA_TYPE = "application/zpl"
TEXT_MODES = ZPL_TEXT_MODES
FRAME_DOTS = 2
_RUN = 3  # characters per memoised run of a glyph line
_RUNS_MAX = 8192  # memoised runs per text row of a job
_MEMO_MAX = 2048  # emitted placed texts per generation of a job's memo
_SEEN_MAX = 16384  # first lines of placed texts met once in a job (memo admission)
# Byte-mode capacity of QR versions 1..10 at error level M: enough to size ^BQ's magnification.
_QR_CAPACITY_M = (14, 26, 42, 62, 84, 106, 122, 152, 180, 213)


def _d(mm: float) -> int:
    return round(mm * DOTS_PER_MM)


def _fd(text: str) -> str:
    """A ``^FD`` field, hex-escaped with ``^FH`` when the data holds ZPL control characters."""
    if "^" in text or "~" in text or "\\" in text:
        text = text.replace("\\", "\\5C").replace("^", "\\5E").replace("~", "\\7E")
        return f"^FH\\^FD{text}^FS"
    return f"^FD{text}^FS"


_STATIC: dict[str, str] = {}


def _static(template: Template) -> str:
    """Per-template format prefix: media size and zone frames (identical for every label)."""
    cached = _STATIC.get(template.size)
    if cached is not None:
        return cached
    parts = [f"^XA^CI28^PW{_d(template.width)}^LL{_d(template.height)}^LH0,0"]
    for z in template.zones.values():
        parts.append(f"^FO{_d(z.x)},{_d(z.y)}^GB{_d(z.w)},{_d(z.h)},{FRAME_DOTS}^FS")
    cached = _STATIC[template.size] = "".join(parts)
    return cached


def _symbols(lay: LabelLayout, waybill_no: str, token: str) -> str:
    """Code128 and QR fields; their geometry depends only on the template, the shape of the waybill number
    (which characters are digits: that decides Code128's subsets, hence its width) and the token length."""
    key = (lay.template.size, waybill_no.translate(_DIGIT_SHAPE), len(token))
    heads = _SYMBOL_HEADS.get(key)
    if heads is None:
        heads = _SYMBOL_HEADS[key] = _symbol_heads(lay.template, waybill_no, len(token))
    return f"{heads[0]}{_fd(waybill_no)}{heads[1]}{_fd('MA,' + token)}"


_SYMBOL_HEADS: dict[tuple[str, str, int], tuple[str, str]] = {}
_DIGIT_SHAPE = str.maketrans("0123456789", "0000000000")
QR_BY_HEIGHT = 10  # the ^BY height set right before ^BQ (ZPL's minimum and power-on default)


def _symbol_heads(t: Template, waybill_no: str, n_token: int) -> tuple[str, str]:
    """The ``^BC`` and ``^BQ`` commands (up to their ``^FD``) for this number's shape and token length."""
    box = t.barcode
    avail = int(box.w * DOTS_PER_MM)
    # Module size and position from the width of our own encoding, exactly as the PDF/PNG labels lay it out:
    # its subsets B and C are what the printer's automatic mode picks for waybill numbers (the printed-label
    # tests check the printer's symbol against our raster). Data our encoder refuses is sized by an upper
    # bound (all subset B), so it still fits.
    modules = code128(waybill_no).modules if _code128_ok(waybill_no) else 11 * (len(waybill_no) + 2) + 13
    dots = max(1, min(t.barcode_module_max_dots, avail // (modules + 2 * QUIET_MODULES)))
    x = _d(box.x) + max(0, (avail - modules * dots) // 2)
    h = int(box.h * DOTS_PER_MM)
    bc = f"^FO{x},{_d(box.y)}^BY{dots},3,{h}^BCN,{h},N,N,N,A"
    q = t.qr
    version = next((v for v, cap in enumerate(_QR_CAPACITY_M, 1) if n_token <= cap), 10)
    size = 17 + 4 * version
    side = int(min(q.w, q.h) * DOTS_PER_MM)
    mag = max(1, min(10, side // (size + 2 * QR_QUIET_MODULES)))
    qx = _d(q.x) + (int(q.w * DOTS_PER_MM) - size * mag) // 2
    qy = _d(q.y) + (int(q.h * DOTS_PER_MM) - size * mag) // 2
    # Zebra firmware draws an ^FO-positioned ^BQ that many dots *below* the origin as the ^BY bar-code
    # height in force (Labelary and Zebrash render it so too): with the Code128's ^BY the QR dropped by
    # ~115 dots and ran off the label. ^BY persists across fields (and formats), so the QR gets its own
    # ^BY with a known height and its origin is raised by exactly that much.
    return bc, f"^BY{dots},3,{QR_BY_HEIGHT}^FO{qx},{qy - QR_BY_HEIGHT}^BQN,2,{mag}"


def _code128_ok(data: str) -> bool:
    return bool(data) and all(32 <= ord(c) <= 126 for c in data)


@lru_cache(maxsize=20000)
def _glyph_hex(ch: str, px: int) -> tuple[int, int, int, str] | None:
    """Rasterise one glyph cell: (top offset from baseline, width, row bytes, hex); None if blank."""
    font = pil_font(px)
    m = metrics()
    w = max(1, round(m.width(ch) * px))
    asc, desc = round(m.ascent * px), round(m.descent * px)
    img = Image.new("1", (w, asc + desc), 0)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "1"
    draw.text((0, asc), ch, font=font, fill=1, anchor="ls")
    if img.getbbox() is None:
        return None
    return asc, w, (w + 7) // 8, img.tobytes().hex().upper()


on_change(_glyph_hex.cache_clear)  # bitmaps of the previous font


class _GlyphJob:
    """Per-job registry of downloaded glyph graphics, and the text-to-``^XG`` emitter.

    Graphic names are numbered in order of first use within the job (blank glyphs take a number too), so
    they are per job; everything derived from them (the per-line fragment tables) lives here as well.
    """

    def __init__(self) -> None:
        self.names: dict[tuple[str, int], str] = {}
        self.pending: list[str] = []
        # em size (mm) -> baseline (mm) -> that row's cell table; sizes and baselines recur across labels.
        self._rows: dict[float, dict[float, _Cells]] = {}
        self._faces: dict[float, _Face] = {}

    def _cells(self, size: float, baseline: float) -> _Cells:
        face = self._faces.get(size)
        if face is None:
            face = self._faces[size] = _Face(self, size)
        y = round(baseline * DOTS_PER_MM) - face.ascent
        return _Cells(face, f",{y}^XG")

    def _name(self, ch: str, px: int) -> str:
        key = (ch, px)
        name = self.names.get(key)
        if name is None:
            g = _glyph_hex(ch, px)
            name = self.names[key] = "" if g is None else f"R:WB{len(self.names):06X}.GRF"
            if g is not None:
                self.pending.append(f"~DG{name},{len(g[3]) // 2},{g[2]},{g[3]}\n")
        return name

    def line(self, line: PlacedLine) -> str:
        """``^FO..^XG`` per visible character of ``line``; blank glyphs only advance the pen."""
        rows = self._rows.get(line.size)
        if rows is None:
            rows = self._rows[line.size] = {}
        cells = rows.get(line.baseline)
        if cells is None:
            cells = rows[line.baseline] = self._cells(line.size, line.baseline)
        # Lines are drawn in short runs of characters, memoised per (run, pen position): the variable parts
        # of a batch's lines (digits of waybill numbers, phones, weights) sit at recurring positions because
        # the surrounding glyphs have the same widths. The pen position is carried in float exactly as a
        # per-character `x += width(ch) * scale` loop would carry it, so the bytes do not depend on the runs.
        x = line.x * DOTS_PER_MM
        text = line.text
        runs = cells.runs
        out: list[str] = []
        add = out.append
        for i in range(0, len(text), _RUN):
            key = (text[i:i + _RUN], x)
            hit = runs.get(key)
            if hit is None:
                hit = cells.run(*key)
                if len(runs) >= _RUNS_MAX:
                    runs.clear()
                runs[key] = hit
            cmds, x = hit
            add(cmds)
        return "".join(out)


class _Face:
    """One em size within a job: pixel size, scale (dots per em), ascent in dots."""

    __slots__ = ("job", "px", "scale", "ascent")

    def __init__(self, job: _GlyphJob, size: float) -> None:
        self.job = job
        self.px = max(1, round(size * DOTS_PER_MM))
        self.scale = size * DOTS_PER_MM
        self.ascent = round(metrics().ascent * self.px)


class _Cells(dict[str, tuple[str, float]]):
    """char -> (``"{top}{graphic},1,1^FS"`` or ``""`` for a blank glyph, advance in dots) for one face and row.

    Filled on first use of a character, which is also when the glyph gets its job-wide name (and download),
    so names keep the order of first use.
    """

    __slots__ = ("face", "top", "runs")

    def __init__(self, face: _Face, top: str) -> None:
        super().__init__()
        self.face = face
        self.top = top
        self.runs: dict[tuple[str, float], tuple[str, float]] = {}  # (run, pen x) -> (commands, pen x after)

    def __missing__(self, ch: str) -> tuple[str, float]:
        face = self.face
        name = face.job._name(ch, face.px)
        cell = self[ch] = (f"{self.top}{name},1,1^FS" if name else "", metrics().width(ch) * face.scale)
        return cell

    def run(self, text: str, x: float) -> tuple[str, float]:
        """Commands for ``text`` with the pen at ``x`` (dots), and the pen position after it."""
        out: list[str] = []
        add = out.append
        for tail, adv in map(self.__getitem__, text):
            if tail:
                add(f"^FO{round(x)}{tail}")
            x += adv
        return "".join(out), x


def _resident_text(placed: PlacedText, template: Template) -> str:
    """One ``^A`` field per line in the printer's font. Centred and right-aligned slots go in a one-line
    field block (``^FB``) as wide as the slot, so the printer aligns each line with its own font's advance
    widths: a resident font is not the layout's font, and its lines come out a little narrower or wider."""
    align = _FB_ALIGN.get(template.slots[placed.slot].align) if placed.slot in template.slots else None
    out = []
    for line in placed.lines:
        h = max(1, round(line.size * DOTS_PER_MM))
        top = round((line.baseline - line.ascent) * DOTS_PER_MM)
        if align is None:
            out.append(f"^FO{round(line.x * DOTS_PER_MM)},{top}^AJN,{h},{h}{_fd(line.text)}")
        else:
            box = placed.box
            out.append(f"^FO{_d(box.x)},{top}^AJN,{h},{h}^FB{_d(box.w)},1,0,{align}{_fd(line.text)}")
    return "".join(out)


_FB_ALIGN = {"center": "C", "right": "R"}


def iter_zpl(layouts: Iterable[LabelLayout], template: Template, *, text_mode: str | None = None,
             font: str | None = None) -> Iterator[bytes]:
    """One ``^XA..^XZ`` format per label, in order; glyph downloads precede the first label using them."""
    mode = text_mode or current().zpl_text
    if mode not in TEXT_MODES:
        raise ValueError(f"ZPL text mode must be one of {TEXT_MODES}")
    static = _static(template)
    if mode == "resident":
        font = font or current().zpl_font
        static += f"^CWJ,{font}"
    glyphs = _GlyphJob() if mode == "glyphs" else None
    if glyphs is not None:
        line = glyphs.line

        def emit(placed: PlacedText) -> str:
            return "".join([line(one) for one in placed.lines])
    else:
        def emit(placed: PlacedText) -> str:
            return _resident_text(placed, template)
    # Emitted commands per placed text. The layout memoises repeated texts (sender, captions, service
    # line), so the same PlacedText object comes back; keyed by id() with the object kept alive in the
    # entry (and checked with `is`), so an id can never be reused for different text. Two generations:
    # when the young one fills up it becomes the old one, and entries still in use are promoted back, so
    # the repeating texts are never emitted again. Admission on a text's second sighting (`seen` holds
    # strings, which the garbage collector does not track): one-off texts (waybill number, recipient line)
    # are emitted and dropped instead of being kept alive as collector work.
    memo: dict[int, tuple[object, str]] = {}
    old: dict[int, tuple[object, str]] = {}
    seen: set[str] = set()
    for lay in layouts:
        parts = [static, _symbols(lay, lay.waybill_no, lay.token)]
        add = parts.append
        for placed in lay.texts:
            key = id(placed)
            hit = memo.get(key)
            if hit is None or hit[0] is not placed:
                hit = old.get(key)
                if hit is None or hit[0] is not placed:
                    cmds = emit(placed)
                    first = placed.lines[0].text if placed.lines else ""
                    if first not in seen:
                        if len(seen) >= _SEEN_MAX:
                            seen.clear()
                        seen.add(first)
                        add(cmds)
                        continue
                    hit = (placed, cmds)
                if len(memo) >= _MEMO_MAX:
                    old, memo = memo, {}
                memo[key] = hit
            add(hit[1])
        parts.append("^XZ\n")
        body = "".join(parts)
        if glyphs is not None and glyphs.pending:
            body = "".join(glyphs.pending) + body
            glyphs.pending.clear()
        yield body.encode("utf-8")
    if glyphs is not None and glyphs.names:
        yield b"^XA^IDR:WB*.GRF^FS^XZ\n"
