"""Release gate: no label leaves the renderer unless its personal fields are masked to the floor.

The floor itself is defined once, in ``waybill.masking.floor_violations`` (shared with the masking policy
checks); this module only applies it to both parties of a :class:`~printing.model.LabelModel`.
"""

from __future__ import annotations

from functools import lru_cache

from .errors import UnmaskedField
from .model import LabelModel


@lru_cache(maxsize=4096)
def _violations(name: str, phone: str, address: str) -> tuple[str, ...]:
    # floor_violations is a pure function of masked strings, so its verdict can be memoised: in a batch the
    # sender repeats on every label. Imported lazily so that `import printing` needs no database setup.
    from waybill.masking import floor_violations

    return tuple(floor_violations(name=name, phone=phone, address=address))


def check_release(model: LabelModel) -> None:
    """Raise :class:`UnmaskedField` (naming the field, never its value) unless the model may be printed."""
    for role in ("recipient", "sender"):
        party = getattr(model, role)
        for field in ("name", "phone", "address"):
            if not isinstance(getattr(party, field), str):
                raise UnmaskedField(f"{role}.{field}")
        bad = _violations(party.name, party.phone, party.address)
        if bad:
            # Report the first offending field; the list is ordered by the masking module.
            raise UnmaskedField(f"{role}.{bad[0]}")
