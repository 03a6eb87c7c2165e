"""Numerals of every script count as digits in the address mask and in the release gate (issue 11, item 9).

Chinese numerals are letters to Unicode, so each "no digits" rule has to know them: everyday (一 〇 两),
colloquial (幺 仨), financial (壹 贰 叁, 貳 參 陸), archaic (弌 弍 弎 廿 卅), compatibility ideographs; and the
numbers Unicode does know but NFKC would turn into letters or digits: Roman (Ⅻ ⅻ), circled (①), parenthesised
(⑴ ㈠), full stop (⒈), full-width (１), superscript (¹), other scripts' decimal digits (٣ ४ ๓).
"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from printing.floor import CHINESE_NUMERALS, MAX_SHOWN_NUMERALS, count_chinese_numerals
from waybill.masking import floor_violations, mask_address, mask_name, mask_phone

OK_NAME, OK_PHONE, OK_ADDRESS = "张*", "138******78", "粤海街道****"

CHINESE = "零〇一二三四五六七八九十百千万亿两幺仨壹贰叁肆伍陆柒捌玖拾佰仟貳參陸萬億弌弍弎廿卅卌"
OTHER_SCRIPTS = "ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩⅪⅫⅰⅱⅲⅻ①②⑩⑳⑴⑵⒈⒉㈠㈡㊀㊁¹²³０１２٣٤۵४५६๓๔০১"
NUMERALS = CHINESE + OTHER_SCRIPTS + "0123456789"


def _is_number(ch: str) -> bool:
    return unicodedata.category(ch).startswith("N") or ch in CHINESE_NUMERALS


def test_every_letter_unicode_gives_a_numeric_value_is_a_numeral() -> None:
    """The written-out list is complete for this Python's Unicode: nothing spelling a number is missing."""
    for cp in (*range(0x3000, 0xA000), *range(0xF900, 0xFB00), *range(0x20000, 0x32000)):
        ch = chr(cp)
        if unicodedata.category(ch).startswith("L") and unicodedata.numeric(ch, None) is not None:
            assert ch in CHINESE_NUMERALS, hex(cp)
    assert set("两〇幺") <= set(CHINESE_NUMERALS)


@pytest.mark.parametrize("address", [
    "幺三八幺二三四五六七八路9号",  # 幺, the "one" of read-out phone numbers
    "幺幺幺路1号", "仨仨仨路", "弌弍弎路", "廿卅卌路", "貳參陸路",  # colloquial, archaic, traditional financial
    "萬億兆路", "參拾兩路",  # U+F96B etc.: compatibility ideographs NFKC folds into the traditional forms
    "⑴⑵路", "⒈⒉路", "㈠㈡㈢路", "㊀㊁路", "¹²³路", "४५६路", "๓๔路", "ⅻⅰ路", "１２３路",
])
def test_numerals_of_every_script_never_survive_the_address_mask(address: str) -> None:
    masked = mask_address(address)
    assert masked == "****"
    assert floor_violations(name=OK_NAME, phone=OK_PHONE, address=masked) == []


@pytest.mark.parametrize(("phone", "address"), [
    ("一二三四五六******", OK_ADDRESS),  # a "masked" phone showing six digits, in Chinese numerals
    ("幺三八四******七八", OK_ADDRESS),
    ("壹叁捌肆伍陆******", OK_ADDRESS),
    ("021-******貳參陸", OK_ADDRESS),  # a landline shows at most 2 local digits
    (OK_PHONE, "幺幺幺路****"),
    (OK_PHONE, "貳參陸路****"),
    (OK_PHONE, "廿卅路3号****"),
])
def test_the_gate_counts_numerals_of_every_script_as_digits(phone: str, address: str) -> None:
    assert floor_violations(name=OK_NAME, phone=phone, address=address) != []


def test_two_numerals_in_a_street_name_still_show() -> None:
    assert mask_address("什刹海街3号") == "什刹海街****"
    assert mask_address("廿八都路5号") == "廿八都路****"
    assert mask_address("兆丰路1弄2号") == "兆丰路****"


def test_a_name_shows_at_most_one_numeral() -> None:
    # 伍, 陆, 万 are common surnames: one character may show; a Roman numeral is a number, so it is starred.
    assert mask_name("伍六一") == "伍**"
    assert mask_name("一三八一二三四五六七八") == "一" + "*" * 10
    assert mask_name("Ⅻ三") == "**"


@given(st.text(alphabet=NUMERALS + "张路街道号栋室弄巷abc ", max_size=40))
def test_address_mask_shows_no_number_of_any_script(address: str) -> None:
    masked = mask_address(address)
    assert floor_violations(name=OK_NAME, phone=OK_PHONE, address=masked) == []
    assert not any(unicodedata.category(ch).startswith("N") for ch in masked)
    assert count_chinese_numerals(masked) <= MAX_SHOWN_NUMERALS


@given(st.text(alphabet=NUMERALS + "张欧阳 ", max_size=20))
def test_name_mask_shows_at_most_one_numeral(name: str) -> None:
    masked = mask_name(name)
    if name.strip():
        assert floor_violations(name=masked, phone=OK_PHONE, address=OK_ADDRESS) == []
    assert sum(map(_is_number, masked)) <= 1


@given(st.text(alphabet=NUMERALS + "*-", max_size=20))
def test_a_phone_the_gate_releases_shows_at_most_five_numbers(phone: str) -> None:
    if floor_violations(name=OK_NAME, phone=phone, address=OK_ADDRESS) == []:
        area, sep, local = phone.partition("-")
        shown = local if sep and area.isascii() and area.isdigit() else phone
        assert sum(map(_is_number, shown)) <= 5


@given(st.text(alphabet=NUMERALS + "+- ", max_size=20))
def test_phone_mask_output_passes_the_gate(raw: str) -> None:
    assert floor_violations(name=OK_NAME, phone=mask_phone(raw), address=OK_ADDRESS) == []
