"""The label model: everything a privacy waybill shows, and nothing else.

The model holds only *masked* personal fields (see ``shared/design/privacy.md``); the renderers never see
plaintext names, phone numbers or addresses, and :func:`printing.gate.check_release` refuses a model whose
fields are not masked to the floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class MaskedParty:
    """A sender or recipient as printed: every field already masked by ``waybill.masking``.

    ``province``, ``city`` and ``district`` are printed in full (they are not personal at that granularity);
    ``address`` is the masked street part, e.g. ``粤海街道****``.
    """

    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str


@dataclass(frozen=True, slots=True)
class LabelModel:
    """One waybill label.

    ``token`` is the QR payload (an opaque token, never a lookup key for personal data); ``category`` is the
    only contents description allowed on the label (``None`` prints nothing); ``printed_at`` is shown as the
    print time with its UTC offset, so it must be timezone-aware, and is passed in (not read from the clock)
    so that output is reproducible.

    What a carrier prints besides: ``carrier`` (the carrier's name, in the label's header; empty prints
    nothing), ``order_tail`` (the last characters of the merchant's order number, at most
    :data:`ORDER_TAIL_MAX`, so a packer can match parcel and order; ``None`` prints nothing), ``pieces``
    (piece count) and ``consolidation`` (集包地: where the parcel's bag is consolidated, from the routing data).
    """

    waybill_no: str
    sorting_code: str
    recipient: MaskedParty
    sender: MaskedParty
    token: str
    weight_g: int
    service: str
    category: str | None
    printed_at: datetime
    carrier: str = ""
    order_tail: str | None = None
    pieces: int = 1
    consolidation: str | None = None


ORDER_TAIL_MAX = 6  # characters of the merchant order number a label may show
