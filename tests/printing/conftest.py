"""Fixtures for the label-rendering tests: the masked sample label and an over-long one."""

from __future__ import annotations

from dataclasses import replace

import pytest

import printing
from printing import LabelModel, MaskedParty, PrintConfig
from printing.samples import PRINTED_AT
from tests.printing.label_helpers import TOKEN


@pytest.fixture
def print_config():
    """Set the process's printing configuration for one test (``print_config(zpl_text="resident")``);
    the previous one comes back afterwards."""
    from printing.config import current

    before = current()

    def set_config(**changes: object) -> None:
        printing.configure(PrintConfig(**{**{f: getattr(before, f) for f in PrintConfig.__slots__}, **changes}))

    yield set_config
    printing.configure(before)


@pytest.fixture
def masked_model() -> LabelModel:
    """Masks of label_helpers.PLAINTEXT (as waybill.masking makes them), fixed token and print time."""
    recipient = MaskedParty("张**", "138******78", "广东省", "深圳市", "南山区", "粤海街道科技园路****")
    sender = MaskedParty("欧***", "021-******34", "上海市", "上海市", "徐汇区", "漕溪北路****")
    return LabelModel("PW4827193650217", "755-W12-08", recipient, sender, TOKEN, 1250, "标准快递", "服装",
                      PRINTED_AT)


@pytest.fixture
def long_model(masked_model: LabelModel) -> LabelModel:
    """Names and addresses far too long for any zone."""
    r = replace(masked_model.recipient, name="司" + "*" * 60,
                address="新疆维吾尔自治区伊犁哈萨克自治州霍尔果斯市经济开发区" * 8 + "****")
    s = replace(masked_model.sender, name="欧" + "*" * 40,
                address="内蒙古自治区呼和浩特市赛罕区" * 5 + "****")
    return replace(masked_model, recipient=r, sender=s, category="超长品类名称" * 10, service="次日达" * 20)
