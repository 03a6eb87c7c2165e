"""Helpers for the label tests: the plaintext the labels must never show, a rasteriser and a decoder.

A module with a unique name (not conftest) so that `from label_helpers import ...` is unambiguous next to
other test packages' conftest files.
"""

from __future__ import annotations

import io

import pymupdf
import zxingcpp
from PIL import Image

# The "plaintext" the service would hold; the label model only ever gets their masks.
PLAINTEXT = {
    "recipient.name": "张三丰",
    "recipient.phone": "13812345678",
    "recipient.address": "科技园路1号3栋502室",
    "sender.name": "欧阳娜娜",
    "sender.phone": "02164321234",
    "sender.address": "漕溪北路88号1201室",
}
TOKEN = "tok_Qm9vYmFyLXRva2VuLTEyOC1iaXRz"


def pdf_pages_as_images(data: bytes, dpi: int = 203) -> list[Image.Image]:
    """Rasterise every page of a PDF at ``dpi`` (what a label printer or a scanner sees)."""
    doc = pymupdf.open(stream=data, filetype="pdf")
    out = []
    for page in doc:
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        out.append(Image.frombytes("L", (pix.width, pix.height), pix.samples))
    return out


def png_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def decode(img: Image.Image) -> list[tuple[str, str]]:
    """Every barcode an independent decoder (zxing-cpp) finds: (format name, text), sorted."""
    return sorted((r.format.name, r.text) for r in zxingcpp.read_barcodes(img.convert("L")))
