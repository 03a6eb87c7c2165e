"""A streaming PDF writer: pages go out as soon as they are drawn; fonts are embedded once, at the end.

Why not ``reportlab.pdfgen.canvas``: its ``PDFDocument`` keeps every page object until ``save()``, so memory
grows with the batch. Here each page (page dictionary + compressed content stream) is serialised and handed
to the caller immediately; the document keeps only object offsets (a few bytes per page). Object numbers
for the catalog, the page tree and the shared resource dictionary are reserved up front so pages can point
at them before they are written (PDF allows objects in any file order; the xref table maps them).

reportlab still does the font work: TrueType parsing, subsetting (``TTFontFile.makeSubset``: only the
glyphs used in the document, one embedded subset font per 256 characters) and the C accelerated number
formatting. Text is encoded into single-byte subset codes; a ToUnicode CMap per subset keeps the text
extractable (and searchable for the privacy tests).
"""

from __future__ import annotations

import threading
import zlib
from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING

from reportlab.pdfbase.ttfonts import SUBSETN, makeToUnicodeCMap

if TYPE_CHECKING:
    from reportlab.pdfbase.ttfonts import TTFont

_CATALOG, _PAGES, _RESOURCES, _INFO = 1, 2, 3, 4
_FIRST_FREE = 5
_subset_lock = threading.Lock()  # TTFontFile.makeSubset seeks in shared state: one document at a time


class StreamingPDF:
    """Writes one PDF document incrementally. Use :meth:`begin`, :meth:`page` per page, :meth:`end`.

    Each method returns the bytes to append to the output, in order.
    """

    def __init__(self, font: TTFont, width_pt: float, height_pt: float, *, compress: bool = True,
                 title: str = "Waybill labels") -> None:
        self._font = font  # reportlab TTFont, registered once per process (printing.fonts.pdf_font)
        self._face = font.face
        self._c2g = font.face.charToGlyph
        self._compress = compress
        self._w, self._h = width_pt, height_pt
        self._title = title
        self._pos = 0
        self._offsets = array("Q", [0] * _FIRST_FREE)  # object number -> file offset
        self._pages: array[int] = array("L")  # page object numbers, in order
        self._codes: dict[int, tuple[int, int]] = {}  # unicode -> (subset, code)
        self._subsets: list[list[int]] = [[0]]  # code 0 is .notdef in every subset

    # -- text encoding ---------------------------------------------------------------------------------

    def encode(self, text: str) -> list[tuple[int, bytes]]:
        """Split ``text`` into runs of (subset index, single-byte codes), assigning codes on first use."""
        codes = self._codes
        out: list[tuple[int, bytes]] = []
        cur_set = -1
        cur = bytearray()
        for ch in text:
            cp = ord(ch)
            sc = codes.get(cp)
            if sc is None:
                sc = self._assign(cp)
            if sc[0] != cur_set:
                if cur:
                    out.append((cur_set, bytes(cur)))
                cur_set, cur = sc[0], bytearray()
            cur.append(sc[1])
        if cur:
            out.append((cur_set, bytes(cur)))
        return out

    def _assign(self, cp: int) -> tuple[int, int]:
        if cp not in self._c2g:
            cp = 0x3F  # '?': never tofu (the layout already replaced unknown characters)
            if cp in self._codes:
                return self._codes[cp]
        subsets = self._subsets
        if len(subsets[-1]) >= 256:
            subsets.append([0])
        subset = subsets[-1]
        sc = (len(subsets) - 1, len(subset))
        subset.append(cp)
        self._codes[cp] = sc
        return sc

    # -- objects -------------------------------------------------------------------------------------

    def _obj(self, num: int, body: bytes) -> bytes:
        if num >= len(self._offsets):
            self._offsets.extend([0] * (num + 1 - len(self._offsets)))
        self._offsets[num] = self._pos
        data = b"%d 0 obj\n%s\nendobj\n" % (num, body)
        self._pos += len(data)
        return data

    def _stream(self, num: int, content: bytes, extra: bytes = b"") -> bytes:
        if self._compress:
            content = zlib.compress(content, 6)
            extra += b"/Filter/FlateDecode"
        return self._obj(num, b"<</Length %d%s>>stream\n%s\nendstream" % (len(content), extra, content))

    def _new(self) -> int:
        num = len(self._offsets)
        self._offsets.append(0)
        return num

    def begin(self) -> bytes:
        """The file header."""
        data = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        self._pos += len(data)
        return data

    def page(self, content: bytes) -> bytes:
        """Serialise one page whose content stream is ``content``; return the bytes written."""
        cnum = self._new()
        out = self._stream(cnum, content)
        pnum = self._new()
        self._pages.append(pnum)
        out += self._obj(pnum, b"<</Type/Page/Parent %d 0 R/Resources %d 0 R/Contents %d 0 R>>"
                         % (_PAGES, _RESOURCES, cnum))
        return out

    def _font_objects(self) -> Iterator[bytes]:
        face = self._face
        base = face.name + face.subfontNameX
        flags = (face.flags & ~32) | 4  # symbolic: codes are subset positions, not a standard encoding
        fonts = []
        for n, subset in enumerate(self._subsets):
            name = SUBSETN(n) + b"+" + base
            with _subset_lock:
                ttf = face.makeSubset(subset)
            ffile = self._new()
            yield self._stream(ffile, ttf, b"/Length1 %d" % len(ttf))
            desc = self._new()
            yield self._obj(desc, (
                b"<</Type/FontDescriptor/FontName/%s/Flags %d/FontBBox[%s]/ItalicAngle %d/Ascent %d"
                b"/Descent %d/CapHeight %d/StemV %d/MissingWidth %d/FontFile2 %d 0 R>>"
                % (name, flags, " ".join(str(int(v)) for v in face.bbox).encode(), int(face.italicAngle),
                   int(face.ascent), int(face.descent), int(face.capHeight), int(face.stemV),
                   int(face.defaultWidth), ffile)))
            cmap = self._new()
            yield self._stream(cmap, makeToUnicodeCMap(name.decode("latin-1"), subset).encode("latin-1"))
            widths = " ".join(str(int(face.getCharWidth(c))) for c in subset).encode()
            fnum = self._new()
            yield self._obj(fnum, (
                b"<</Type/Font/Subtype/TrueType/BaseFont/%s/FirstChar 0/LastChar %d/Widths[%s]"
                b"/FontDescriptor %d 0 R/ToUnicode %d 0 R>>" % (name, len(subset) - 1, widths, desc, cmap)))
            fonts.append(b"/F%d %d 0 R" % (n, fnum))
        yield self._obj(_RESOURCES, b"<</ProcSet[/PDF/Text]/Font<<%s>>>>" % b"".join(fonts))

    def end(self) -> Iterator[bytes]:
        """Fonts (subsets of every glyph used), page tree, catalog, info, xref and trailer."""
        yield from self._font_objects()
        kids = b" 0 R ".join(b"%d" % p for p in self._pages) + (b" 0 R" if self._pages else b"")
        yield self._obj(_PAGES, b"<</Type/Pages/Count %d/MediaBox[0 0 %.3f %.3f]/Kids[%s]>>"
                        % (len(self._pages), self._w, self._h, kids))
        yield self._obj(_CATALOG, b"<</Type/Catalog/Pages %d 0 R>>" % _PAGES)
        # Metadata: generic on purpose; nothing about the parcels or the people in them.
        title = self._title.encode("ascii", "replace")
        yield self._obj(_INFO, b"<</Producer(privacy-waybill)/Title(%s)>>" % title)
        count = len(self._offsets)
        xref = [b"xref\n0 %d\n0000000000 65535 f \n" % count]
        xref.extend(b"%010d 00000 n \n" % off for off in self._offsets[1:])
        xref.append(b"trailer\n<</Size %d/Root %d 0 R/Info %d 0 R>>\nstartxref\n%d\n%%%%EOF\n"
                    % (count, _CATALOG, _INFO, self._pos))
        yield b"".join(xref)
