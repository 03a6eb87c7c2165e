"""Release gate: no label leaves the renderer unless its personal fields are masked to the floor.

The floor itself is defined once, in :mod:`printing.floor` (the masking policies of ``waybill.masking`` are
built on it); this module only applies it to both parties of a :class:`~printing.model.LabelModel`.
"""

from __future__ import annotations

from .errors import UnmaskedField
from .floor import floor_violations, region_violates
from .model import ORDER_TAIL_MAX, LabelModel, MaskedParty

# (name, phone, address) -> offending field names, in the masking module's order (empty: may be printed).
# floor_violations is a pure function of the three masked strings, so its verdict can be memoised: in a batch
# the sender repeats on every label. Bounded: cleared when full (a batch refills it with what repeats).
_VERDICTS: dict[tuple[str, str, str], tuple[str, ...]] = {}
_VERDICTS_MAX = 8192


def _violations(name: str, phone: str, address: str) -> tuple[str, ...]:
    """The (memoised) verdict of :func:`printing.floor.floor_violations` for one party's masked fields."""
    key = (name, phone, address)
    bad = _VERDICTS.get(key)
    if bad is None:
        bad = tuple(floor_violations(name=name, phone=phone, address=address))
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        _VERDICTS[key] = bad
    return bad


# Region names are a few thousand official names: their verdicts are memoised the same way.
_REGION_VERDICTS: dict[str, bool] = {}


def _region_violates(text: str) -> bool:
    bad = _REGION_VERDICTS.get(text)
    if bad is None:
        bad = region_violates(text)
        if len(_REGION_VERDICTS) >= _VERDICTS_MAX:
            _REGION_VERDICTS.clear()
        _REGION_VERDICTS[text] = bad
    return bad


def _check_party(role: str, party: MaskedParty) -> None:
    name, phone, address = party.name, party.phone, party.address
    # Type check first (and every time): a memo hit must never stand in for a field that is not a string.
    if not (isinstance(name, str) and isinstance(phone, str) and isinstance(address, str)):
        for field in ("name", "phone", "address"):
            if not isinstance(getattr(party, field), str):
                raise UnmaskedField(f"{role}.{field}")
    bad = _violations(name, phone, address)
    if bad:
        # Report the first offending field; the list is ordered by the masking module.
        raise UnmaskedField(f"{role}.{bad[0]}")
    # Region names print in full: the service stores only official names, and none of them spells a number, so
    # one that does (a phone written as a district) is refused here too.
    for field in ("province", "city", "district"):
        value = getattr(party, field)
        if not isinstance(value, str) or _region_violates(value):
            raise UnmaskedField(f"{role}.{field}")


def check_release(model: LabelModel) -> None:
    """Raise :class:`UnmaskedField` (naming the field, never its value) unless the model may be printed."""
    _check_party("recipient", model.recipient)
    _check_party("sender", model.sender)
    tail = model.order_tail
    # The order number is the merchant's, but merchants do put phone numbers in it: a label shows only its
    # tail (the service also drops a phone-shaped one before it gets here).
    if tail is not None and not (isinstance(tail, str) and len(tail) <= ORDER_TAIL_MAX):
        raise UnmaskedField("order_tail")
    if model.printed_at.tzinfo is None or model.printed_at.utcoffset() is None:
        raise ValueError("printed_at must be timezone-aware (the label prints its UTC offset)")
