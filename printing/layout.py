"""Format-independent layout: turns a :class:`LabelModel` and a :class:`Template` into placed geometry.

All coordinates are millimetres from the top-left corner. Text is measured with the embedded font's own
advance widths, so every renderer (PDF, PNG, ZPL) places the same lines at the same positions. Fitting rule
for a text slot, in order: the preferred size on one line; shrink (down to ``min_size``) and wrap (up to
``max_lines`` and the slot height); if it still does not fit at the minimum size, the last line is cut and
ends with ``…`` (U+2026) and the placed text is marked ``truncated``. Text never leaves its slot.
Characters the font lacks are replaced by ``?`` (never a tofu box).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple, cast

from .barcodes import QR_QUIET_MODULES, QUIET_MODULES, Code128Bars, QRMatrix, code128, qr_matrix
from .config import on_change
from .fonts import FontMetrics, metrics
from .model import LabelModel
from .templates import Box, Template, TextSlot

DOTS_PER_MM = 203 / 25.4  # thermal printers: 203 dpi; geometry of barcodes snaps to this dot grid
LINE_GAP = 1.15  # line pitch in em for wrapped text
ELLIPSIS = "\u2026"
SHRINK = 0.92  # size step when shrinking


class PlacedLine(NamedTuple):
    """One line of text: left ``x`` and ``baseline`` in mm, em ``size`` in mm, advance ``width`` in mm."""

    text: str
    x: float
    baseline: float
    size: float
    width: float
    ascent: float  # mm above the baseline
    descent: float  # mm below the baseline

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) in mm."""
        return (self.x, self.baseline - self.ascent, self.x + self.width, self.baseline + self.descent)


class PlacedText(NamedTuple):
    """A filled text slot (tuples: cheap to build, and layout runs for every label)."""

    slot: str
    zone: str
    box: Box
    lines: tuple[PlacedLine, ...]
    truncated: bool


@dataclass(frozen=True, slots=True)
class PlacedBarcode:
    """Code128 placed on the dot grid: left/top/height in mm, ``module`` width in mm and in dots."""

    x: float
    y: float
    h: float
    module: float
    module_dots: int
    symbol: Code128Bars


@dataclass(frozen=True, slots=True)
class PlacedQR:
    """QR placed on the dot grid (quiet zone inside the QR box): symbol origin and module size in mm/dots."""

    x: float
    y: float
    module: float
    module_dots: int
    symbol: QRMatrix


@dataclass(frozen=True, slots=True)
class LabelLayout:
    """Everything a renderer draws for one label."""

    template: Template
    waybill_no: str  # barcode data, for printer languages that encode the symbol themselves
    token: str  # QR data, likewise
    texts: tuple[PlacedText, ...]
    barcode: PlacedBarcode | None  # None when the printer draws the symbols itself (ZPL, TSPL)
    qr: PlacedQR | None


def _clean(text: str, m: FontMetrics) -> str:
    text = " ".join(text.split())  # newlines/tabs would break single-line slots
    if m.has_glyphs(text):
        return text
    chars = m.chars
    return "".join(c if c in chars else "?" for c in text)


def _wrap(text: str, m: FontMetrics, max_w: float, limit: int) -> list[str]:
    """Greedy character wrap into lines of at most ``max_w`` em; stops after ``limit`` lines."""
    lines: list[str] = []
    start = 0
    acc = 0.0
    width = m.width
    for i, c in enumerate(text):
        cw = width(c)
        if acc + cw > max_w and i > start:
            lines.append(text[start:i].rstrip())
            if len(lines) >= limit:
                return lines
            start = i + 1 if c == " " else i
            acc = 0.0 if c == " " else cw
        else:
            acc += cw
    if start < len(text):
        lines.append(text[start:])
    return lines


def _lines_that_fit(slot: TextSlot, size: float, m: FontMetrics) -> int:
    # first line needs ascent+descent, every further line one pitch
    room = slot.box.h / size - (m.ascent + m.descent)
    if room < 0:
        return 0
    return min(slot.max_lines, int(room / LINE_GAP + 1e-9) + 1)


def _ellipsize(line: str, m: FontMetrics, max_w: float) -> str:
    budget = max_w - m.width(ELLIPSIS)
    while line and m.width(line) > budget:
        line = line[:-1]
    return line.rstrip() + ELLIPSIS


def _indent(slot: TextSlot, spare: float) -> float:
    """Offset of a line from the slot's left edge, given the room the line leaves (mm)."""
    if slot.align == "center":
        return spare / 2
    return spare if slot.align == "right" else 0.0


def fit_text(name: str, slot: TextSlot, text: str, m: FontMetrics | None = None) -> PlacedText:
    """Place ``text`` inside ``slot`` following the module's fitting rule (an empty text places no line)."""
    m = m or metrics()
    text = _clean(text, m)
    if not text:
        return PlacedText(name, slot.zone, slot.box, (), False)
    box = slot.box
    em_w = m.width(text)
    size = slot.size
    truncated = False
    if em_w * size <= box.w or (em_w * slot.min_size <= box.w
                                 and (slot.max_lines == 1 or em_w * size * 0.75 <= box.w)):
        # One line, at the preferred size or the largest size between minimum and preferred that fits.
        size = min(size, box.w / em_w * 0.999) if em_w else size
        asc, desc = m.ascent * size, m.descent * size
        w = em_w * size
        x = box.x + _indent(slot, box.w - w)
        top = box.y + ((box.h - asc - desc) / 2 if slot.valign == "middle" else 0.0)
        return PlacedText(name, slot.zone, box, (PlacedLine(text, x, top + asc, size, w, asc, desc),), False)
    else:
        lines = []
        while True:
            n = _lines_that_fit(slot, size, m)
            if n >= 1:
                lines = _wrap(text, m, box.w / size, n + 1)
                if len(lines) <= n:
                    break
            if size <= slot.min_size:
                size = slot.min_size
                n = max(1, _lines_that_fit(slot, size, m))
                lines = _wrap(text, m, box.w / size, n + 1)
                if len(lines) > n:
                    lines = lines[:n]
                    lines[-1] = _ellipsize(lines[-1], m, box.w / size)
                    truncated = True
                break
            size = max(slot.min_size, size * SHRINK)
    asc, desc = m.ascent * size, m.descent * size
    pitch = size * LINE_GAP
    block = asc + desc + pitch * (len(lines) - 1)
    top = box.y + ((box.h - block) / 2 if slot.valign == "middle" else 0.0)
    placed = []
    for i, line in enumerate(lines):
        w = m.width(line) * size
        x = box.x + _indent(slot, box.w - w)
        placed.append(PlacedLine(line, x, top + asc + i * pitch, size, w, asc, desc))
    return PlacedText(name, slot.zone, box, tuple(placed), truncated)


# Model-filled slots, in the order _slot_values returns their texts.
_VALUE_SLOTS = ("waybill_no", "sorting_code", "recipient_line", "recipient_address", "sender_line",
                "sender_address", "contents", "service", "carrier", "order_tail", "consolidation")
# The four municipalities have no city level of their own: 上海市徐汇区, not 上海市上海市徐汇区.
_MUNICIPAL_CITIES = frozenset({"", "市辖区", "县"})


def slot_texts(model: LabelModel) -> dict[str, str]:
    """The text of every model-filled slot (captions come from the template)."""
    return dict(zip(_VALUE_SLOTS, _slot_values(model), strict=True))


def _slot_values(model: LabelModel) -> tuple[str, ...]:
    # A tuple in _VALUE_SLOTS order: layout_label indexes it through a per-template plan (no dict per label).
    r, s = model.recipient, model.sender
    weight = f"{model.weight_g / 1000:.2f}kg"
    contents = f"重量: {weight}   件数: {model.pieces}"
    if model.category:
        contents = f"品类: {model.category}   {contents}"
    service = _service_line(model.service, model.printed_at)
    return (
        model.waybill_no,
        model.sorting_code,
        f"{_short(r.name)}  {r.phone}",
        f"{region_text(r.province, r.city, r.district)}{r.address}",
        f"{_short(s.name)}  {s.phone}",
        f"{region_text(s.province, s.city, s.district)}{s.address}",
        contents,
        service,
        model.carrier,
        f"订单尾号 {model.order_tail}" if model.order_tail else "",
        f"集包地 {model.consolidation}" if model.consolidation else "",
    )


@lru_cache(maxsize=4096)
def region_text(province: str, city: str, district: str) -> str:
    """Province, city and district as a label prints them, a municipality once (``上海市徐汇区``), and a city
    that is its own county-level unit once (``广东省东莞市``, ``湖北省仙桃市``)."""
    if district == city:
        district = ""
    if city.removesuffix("市") == province.removesuffix("市") or (
            province.endswith("市") and city in _MUNICIPAL_CITIES):
        city = ""
    return f"{province}{city}{district}"


def _short(name: str, limit: int = 10) -> str:
    # A masked name is its first character and stars; cap absurd lengths so the phone stays readable.
    return name if len(name) <= limit else name[: limit - 1] + ELLIPSIS


@lru_cache(maxsize=1024)
def _service_line(service: str, printed_at: datetime) -> str:
    # strftime is slow and a batch is printed within the same minute or so
    return f"服务: {service}   打印: {printed_at:%Y-%m-%d %H:%M} {utc_offset(printed_at)}"


def utc_offset(at: datetime) -> str:
    """The zone of a print time as printed: ``UTC+8``, ``UTC+5:30``, ``UTC``."""
    offset = at.utcoffset()
    if offset is None:
        raise ValueError("printed_at must be timezone-aware (the label prints its UTC offset)")
    minutes = round(offset.total_seconds() / 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def place_barcode(t: Template, data: str) -> PlacedBarcode:
    """Centre the Code128 of ``data`` in the template's barcode box, modules snapped to whole dots."""
    sym = code128(data)
    box = t.barcode
    avail = int(box.w * DOTS_PER_MM)
    dots = min(t.barcode_module_max_dots, avail // (sym.modules + 2 * QUIET_MODULES))
    if dots < 1:
        raise ValueError("waybill number too long for this label's barcode zone")
    width_dots = sym.modules * dots
    left = round(box.x * DOTS_PER_MM) + (avail - width_dots) // 2
    top = round(box.y * DOTS_PER_MM)
    return PlacedBarcode(left / DOTS_PER_MM, top / DOTS_PER_MM, int(box.h * DOTS_PER_MM) / DOTS_PER_MM,
                         dots / DOTS_PER_MM, dots, sym)


def _place_qr(t: Template, data: str) -> PlacedQR:
    sym = qr_matrix(data)
    box = t.qr
    side = int(min(box.w, box.h) * DOTS_PER_MM)
    dots = side // (sym.size + 2 * QR_QUIET_MODULES)
    if dots < 2:
        raise ValueError("QR token too long for this label's QR zone")
    span = sym.size * dots
    left = round(box.x * DOTS_PER_MM) + (int(box.w * DOTS_PER_MM) - span) // 2
    top = round(box.y * DOTS_PER_MM) + (int(box.h * DOTS_PER_MM) - span) // 2
    return PlacedQR(left / DOTS_PER_MM, top / DOTS_PER_MM, dots / DOTS_PER_MM, dots, sym)


_FIT_CACHE_MAX = 4096  # fitted texts kept per template slot
_SEEN_MAX = 8192  # texts remembered per template slot as met once


class _Fill(NamedTuple):
    """A model-filled slot of a template: where it goes, where its text comes from, and its memo."""

    position: int  # index into LabelLayout.texts (template slot order)
    name: str
    slot: TextSlot
    value: int  # index into _slot_values
    cache: dict[str, PlacedText]  # text -> fitted text, for this slot of this template
    seen: set[str]  # texts met once in this slot (admission to `cache` on the second sighting)


class _Plan(NamedTuple):
    """A template prepared once: fixed captions already placed (laid out once per process), and the fills."""

    skeleton: list[PlacedText | None]  # None where a model-filled slot goes; copied for every label
    fills: tuple[_Fill, ...]


_PLANS: dict[str, _Plan] = {}
on_change(_PLANS.clear)  # captions and fit caches were measured with the previous font


def _plan(template: Template) -> _Plan:
    """The template's slots in drawing order, with captions fitted and value indices resolved (memoised)."""
    plan = _PLANS.get(template.size)
    if plan is None:
        m = metrics()
        skeleton: list[PlacedText | None] = []
        fills = []
        for pos, (name, slot) in enumerate(template.slots.items()):
            if slot.text is not None:
                skeleton.append(fit_text(name, slot, slot.text, m))
            else:
                skeleton.append(None)
                fills.append(_Fill(pos, name, slot, _VALUE_SLOTS.index(name), {}, set()))
        plan = _PLANS[template.size] = _Plan(skeleton, tuple(fills))
    return plan


def layout_label(model: LabelModel, template: Template, *, symbols: bool = True) -> LabelLayout:
    """Lay out one label (the caller has already passed it through the release gate).

    ``symbols=False`` skips barcode/QR geometry for printer languages that encode the symbols themselves.
    """
    values = _slot_values(model)
    skeleton, fills = _plan(template)
    texts = skeleton.copy()  # every None is replaced below: the plan has a fill for each
    for pos, name, slot, index, cache, seen in fills:
        # Batches repeat many slot texts (sender, service line, sorting code): memoise fitted text, but only
        # from a text's second sighting. One-off texts (waybill number, recipient line) then never pile up
        # in the cache: kept there they would be garbage-collector work (three tracked tuples each) for
        # nothing, while `seen` holds only strings, which the collector does not track.
        value = values[index]
        placed = cache.get(value)
        if placed is None:
            placed = fit_text(name, slot, value)
            if value in seen:
                if len(cache) >= _FIT_CACHE_MAX:
                    cache.clear()
                cache[value] = placed
            else:
                if len(seen) >= _SEEN_MAX:
                    seen.clear()
                seen.add(value)
        texts[pos] = placed
    placed_texts = cast(tuple[PlacedText, ...], tuple(texts))
    if not symbols:
        return LabelLayout(template, model.waybill_no, model.token, placed_texts, None, None)
    return LabelLayout(template, model.waybill_no, model.token, placed_texts,
                       place_barcode(template, model.waybill_no), _place_qr(template, model.token))
