"""Release gate: a label whose name/phone/address is not masked to the floor is refused (by field name)."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

import printing
from printing import UnmaskedField
from printing.floor import region_violates
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


@pytest.mark.parametrize("field", ["province", "city", "district"])
@pytest.mark.parametrize("value", ["一三八一二三四五六七八区", "幺三八区", "138区", "Ⅻ区", "①②区", "１３８市"])
def test_a_region_that_spells_a_number_is_refused(masked_model, field, value):
    """Region names print in full: a phone written as a district (issue 11, item 9) never reaches a label."""
    model = replace(masked_model, recipient=replace(masked_model.recipient, **{field: value}))
    with pytest.raises(UnmaskedField) as exc:
        printing.render_label(model, "pdf", "100x150")
    assert exc.value.field_name == f"recipient.{field}"


def test_every_official_region_name_passes_the_gate():
    path = Path(__file__).resolve().parents[2] / "waybill" / "data" / "regions.csv"
    with path.open(encoding="utf-8") as fh:
        names = {row[key] for row in csv.DictReader(fh) for key in ("province", "city", "district")}
    assert len(names) > 3000
    assert [n for n in names if region_violates(n)] == []


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
