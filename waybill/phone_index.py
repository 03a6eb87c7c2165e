"""The phone blind index: how a normalised phone is found without storing it, scoped per merchant and role."""

from __future__ import annotations

from waybill.crypto.vault import FieldCodec


def phone_index(codec: FieldCodec, merchant_id: str, role: str, phone: str) -> int:
    """Blind index of a normalised phone, scoped to one merchant and one role (sender or recipient).

    Search is always within a merchant, so scoping costs nothing and means equal values across merchants
    or between a person's sent and received parcels do not line up in the table.
    """
    return codec.blind_index(f"{role}_phone", f"{merchant_id}|{phone}")
