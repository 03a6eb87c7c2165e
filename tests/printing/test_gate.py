"""Release gate: a label whose name/phone/address is not masked to the floor is refused (by field name)."""

from __future__ import annotations

from dataclasses import replace

import pytest

import printing
from printing import UnmaskedField
from tests.printing.label_helpers import PLAINTEXT


@pytest.mark.parametrize("fmt", printing.FORMATS)
@pytest.mark.parametrize("role", ["recipient", "sender"])
@pytest.mark.parametrize("field", ["name", "phone", "address"])
def test_unmasked_field_refused(masked_model, fmt, role, field):
    plain = PLAINTEXT[f"{role}.{field}"]
    party = replace(getattr(masked_model, role), **{field: plain})
    model = replace(masked_model, **{role: party})
    with pytest.raises(UnmaskedField) as exc:
        printing.render_label(model, fmt, "100x150")
    assert exc.value.field_name == f"{role}.{field}"
    assert plain not in str(exc.value) and plain not in repr(exc.value.args)


@pytest.mark.parametrize("bad", [{"phone": "138****5678"}, {"name": "张三"}, {"address": "粤海街道1栋****"},
                                 {"address": "粤海街道科技园路"}])
def test_below_floor_masks_refused(masked_model, bad):
    # Cainiao-style 138****5678 hides only 4 digits: below the floor.
    model = replace(masked_model, recipient=replace(masked_model.recipient, **bad))
    with pytest.raises(UnmaskedField):
        printing.render_label(model, "pdf", "76x130")


def test_stream_refuses_at_the_offending_label(masked_model):
    bad = replace(masked_model, sender=replace(masked_model.sender, phone=PLAINTEXT["sender.phone"]))
    chunks = []
    with pytest.raises(UnmaskedField):
        for chunk in printing.iter_render([masked_model, bad], "zpl", "100x150"):
            chunks.append(chunk)
    assert len(chunks) == 1
    assert not any(PLAINTEXT["sender.phone"].encode() in c for c in chunks)


def test_masked_model_passes(masked_model):
    printing.check_release(masked_model)
