"""Tests for waybill.masking: the default masks, policy validation, totality and the release gate."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waybill.masking import (
    ADDRESS_MASK,
    DEFAULT_POLICY,
    NAME_MAX_STARS,
    PHONE_FALLBACK,
    MaskPolicy,
    MaskPolicyTooWeak,
    floor_violations,
    mask_address,
    mask_id_card,
    mask_name,
    mask_phone,
)

OK_NAME, OK_PHONE, OK_ADDRESS = "张*", "138******78", "粤海街道****"


def visible(text: str) -> int:
    """Letters and numbers outside the stars: what a reader could learn."""
    return sum(1 for ch in text if unicodedata.category(ch)[0] in "LN")


# ------------------------------------------------------------------------------ privacy.md, verbatim


@pytest.mark.parametrize(("name", "masked"), [("张三", "张*"), ("欧阳娜娜", "欧***"), ("Li Lei", "L*****")])
def test_name_examples(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_one_character_name_becomes_a_star() -> None:
    assert mask_name("李") == "*"
    assert mask_name("A") == "*"


def test_phone_examples() -> None:
    assert mask_phone("13812345678") == "138******78"
    assert mask_phone("021-64321234") == "021-******34"


def test_address_example() -> None:
    street = mask_address("粤海街道科技园路1号3栋502室")
    assert street == "粤海街道****"
    # Province, city and district are separate fields, printed in full next to the masked street.
    assert "广东省" + "深圳市" + "南山区" + street == "广东省深圳市南山区粤海街道****"


def test_id_card_example() -> None:
    assert mask_id_card("11010519491231002X") == "1*****************X"
    assert mask_id_card("11010519491231002x") == "1*****************X"


# --------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("", ""),
        ("   ", "*"),
        ("\x00\u200b", "*"),
        ("  张三  ", "张*"),
        ("张\u3000三", "张**"),  # an ideographic space counts as a hidden character
        ("Li  \t Lei", "L*****"),  # whitespace runs fold into one space
        ("阿沛·阿旺晋美", "阿******"),
        ("e\u0301mile", "\u00e9****"),  # NFC composes é, kept whole
        ("q\u0303rst", "q\u0303***"),  # an uncomposable mark stays with its letter
        ("👨\u200d👩\u200d👧", "*"),  # one emoji unit: nothing visible
        ("👨\u200d👩\u200d👧张三", "***"),  # a non-letter first unit is starred too
        ("👍🏽张", "**"),  # skin-tone modifier belongs to the emoji
        ("🇨🇳🇺🇸", "**"),  # two flags
        ("*三", "**"),
        ("\u202e张三", "张*"),  # bidi override dropped
        ("张" + "三" * 100, "张" + "*" * NAME_MAX_STARS),
    ],
)
def test_name_edge_cases(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_zalgo_first_letter_keeps_at_most_two_marks() -> None:
    masked = mask_name("q" + "\u0301\u0302\u0303\u0304" + "oe")  # q has no precomposed accented forms
    assert masked == "q\u0301\u0302**"


def test_name_policy_can_hide_everything() -> None:
    policy = MaskPolicy(name_keep_first=0)
    assert mask_name("张三", policy) == "**"
    assert mask_name("Li Lei", policy) == "******"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=50) | st.text(min_size=1000, max_size=3000), st.sampled_from([0, 1]))
def test_name_mask_never_reveals_more_than_first_letter(name: str, keep: int) -> None:
    policy = MaskPolicy(name_keep_first=keep)
    out = mask_name(name, policy)
    if not name:
        assert out == ""
        return
    assert "*" in out
    assert visible(out) <= keep
    assert 1 <= out.count("*") <= NAME_MAX_STARS
    head = out.rstrip("*")
    assert "*" not in head  # every hidden unit is a star, kept text only at the front
    assert not head or unicodedata.category(head[0]).startswith("L")
    assert floor_violations(name=out, phone=OK_PHONE, address=OK_ADDRESS) == []


# -------------------------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("010-62345678", "010-******78"),
        ("0755-86001234", "0755-******34"),
        ("0755-2345678", "0755-******8"),  # 7-digit local: the last digit only, 6 hidden
        ("+86 138 1234 5678", "138******78"),  # raw spellings are normalised first
        ("", PHONE_FALLBACK),
        ("138****5678", PHONE_FALLBACK),
        ("not a phone 13812345678", PHONE_FALLBACK),
    ],
)
def test_phone_masks(number: str, masked: str) -> None:
    assert mask_phone(number) == masked


def test_tighter_phone_policy_is_honoured() -> None:
    policy = MaskPolicy(mobile_keep_prefix=0, mobile_keep_suffix=0, landline_keep_suffix=0)
    assert mask_phone("13812345678", policy) == "*" * 11
    assert mask_phone("021-64321234", policy) == "021-********"
    assert mask_phone("13812345678", MaskPolicy(mobile_keep_prefix=3, mobile_keep_suffix=0)) == "138********"
    assert mask_phone("13812345678", MaskPolicy(mobile_keep_prefix=0, mobile_keep_suffix=4)) == "*******5678"


mobiles = st.builds(
    lambda second, rest: f"1{second}{rest}", st.sampled_from("3456789"),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
)
area_codes = st.sampled_from(["010", "020", "021", "029", "0311", "0571", "0755", "0898", "0991"])
local_numbers = st.builds(
    lambda first, rest: first + rest, st.sampled_from("23456789"),
    st.text(alphabet="0123456789", min_size=6, max_size=7),
)
landlines = st.builds(lambda a, b: f"{a}-{b}", area_codes, local_numbers)
phone_policies = st.builds(
    lambda p, s, ls: MaskPolicy(
        mobile_keep_prefix=p, mobile_keep_suffix=min(s, 5 - p), landline_keep_suffix=ls
    ),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 2),
)


@settings(max_examples=200, deadline=None)
@given(mobiles, phone_policies)
def test_mobile_mask_hides_six_digits(number: str, policy: MaskPolicy) -> None:
    out = mask_phone(number, policy)
    assert len(out) == 11
    assert out.count("*") >= 6
    assert sum(ch.isdigit() for ch in out) <= 5
    p, s = policy.mobile_keep_prefix, policy.mobile_keep_suffix
    assert out == number[:p] + "*" * (11 - p - s) + (number[11 - s :] if s else "")
    assert floor_violations(name=OK_NAME, phone=out, address=OK_ADDRESS) == []


@settings(max_examples=200, deadline=None)
@given(landlines, phone_policies)
def test_landline_mask_keeps_area_code_and_hides_six_local_digits(number: str, policy: MaskPolicy) -> None:
    out = mask_phone(number, policy)
    area, local = number.split("-")
    out_area, out_local = out.split("-")
    assert out_area == area
    assert out_local.count("*") >= 6
    assert sum(ch.isdigit() for ch in out_local) <= min(2, len(local) - 6)
    assert local.endswith(out_local.lstrip("*"))
    assert floor_violations(name=OK_NAME, phone=out, address=OK_ADDRESS) == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="0123456789-+() ", max_size=20))
def test_phone_mask_is_total(text: str) -> None:
    out = mask_phone(text)
    assert floor_violations(name=OK_NAME, phone=out, address=OK_ADDRESS) == []


# ------------------------------------------------------------------------------------------- address


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("科技园路1号3栋502室", "科技园路****"),
        ("深南大道6008号", "深南大道****"),
        ("中山三路33号", "中山三路****"),  # Chinese numerals inside a road name are public
        ("南锣鼓巷胡同8号", "南锣鼓巷****"),
        ("长乐路123弄4号", "长乐路****"),
        ("西丽镇中山路8号", "西丽镇****"),
        ("东四十条胡同", "东四十条胡同****"),
        ("123弄4号", "****"),  # the kept prefix would contain a number
        ("１２３弄", "****"),  # full-width digits too
        ("Ⅲ号路", "****"),
        ("3栋路", "****"),
        ("A座科技路", "****"),  # a building word in the prefix
        ("三号楼路", "****"),
        ("幸福小区3栋502室", "****"),  # no street unit at all
        ("Keji Road 1", "****"),
        ("路1号", "****"),  # a street unit with no name before it
        ("一二三四五六七八九十一二三四五六七八九十路", "****"),  # street unit beyond the 20-char window
        ("科 技 园 路 1 号", "科技园路****"),
        ("", "****"),
        ("\x00\x01", "****"),
    ],
)
def test_address_masks(address: str, masked: str) -> None:
    assert mask_address(address) == masked


def test_address_policy_can_hide_the_street() -> None:
    assert mask_address("粤海街道科技园路1号", MaskPolicy(address_keep_street=False)) == "****"


address_text = st.text(
    alphabet=st.sampled_from(list("路街道镇乡村巷弄胡同大号栋幢室层楼单元座户一二三十百零〇科技园中山粤海0123456789０５９ⅢA-#"))
    | st.characters(),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(address_text | st.text(min_size=500, max_size=3000))
def test_address_mask_never_shows_numbers_or_units(address: str) -> None:
    out = mask_address(address)
    assert out.endswith(ADDRESS_MASK)
    assert not any(unicodedata.category(ch).startswith("N") for ch in out)
    assert len(out) <= 20 + len(ADDRESS_MASK)
    assert floor_violations(name=OK_NAME, phone=OK_PHONE, address=out) == []


# ------------------------------------------------------------------------------------------- ID card


@pytest.mark.parametrize(
    ("id_no", "masked"),
    [
        ("110105194912310021", "1*****************1"),
        ("110105491231002", "1*****************2"),  # 15-digit: same width as 18
        ("１１０１０５１９４９１２３１００２Ｘ", "1*****************X"),
        ("", "*" * 19),
        ("12", "*" * 19),
        ("1101051949123100XX", "*" * 19),
        ("张三", "*" * 19),
    ],
)
def test_id_card_masks(id_no: str, masked: str) -> None:
    assert mask_id_card(id_no) == masked


# -------------------------------------------------------------------------------------------- policy


def test_default_policy_is_the_documented_one() -> None:
    expected = MaskPolicy(
        name_keep_first=1,
        mobile_keep_prefix=3,
        mobile_keep_suffix=2,
        landline_keep_suffix=2,
        address_keep_street=True,
    )
    assert expected == DEFAULT_POLICY
    DEFAULT_POLICY.validate()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name_keep_first": 2},
        {"mobile_keep_prefix": 4},
        {"mobile_keep_prefix": 3, "mobile_keep_suffix": 3},
        {"mobile_keep_prefix": 0, "mobile_keep_suffix": 6},
        {"landline_keep_suffix": 3},
        {"landline_keep_suffix": 4},  # Cainiao-style 138****1234 would need this much
        {"name_keep_first": -1},
        {"mobile_keep_suffix": -1},
        {"name_keep_first": True},
        {"mobile_keep_prefix": 1.5},
        {"address_keep_street": "yes"},
    ],
)
def test_weaker_or_malformed_policies_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(MaskPolicyTooWeak):
        MaskPolicy(**kwargs)  # type: ignore[arg-type]


def test_validate_catches_a_policy_altered_after_construction() -> None:
    policy = MaskPolicy()
    object.__setattr__(policy, "mobile_keep_suffix", 4)
    with pytest.raises(MaskPolicyTooWeak):
        policy.validate()
    assert mask_phone("13812345678", policy) == PHONE_FALLBACK  # masking fails closed too


# -------------------------------------------------------------------------------------------- gate


def test_gate_accepts_default_masks() -> None:
    assert floor_violations(name="张*", phone="138******78", address="粤海街道****") == []
    assert floor_violations(name="*", phone="021-******34", address="****") == []
    assert floor_violations(name="L*****", phone="0755-******8", address="中山三路****") == []


@pytest.mark.parametrize(
    ("name", "phone", "address", "bad"),
    [
        ("张三", OK_PHONE, OK_ADDRESS, ["name"]),
        ("", OK_PHONE, OK_ADDRESS, ["name"]),
        ("张三*", OK_PHONE, OK_ADDRESS, ["name"]),
        (OK_NAME, "13812345678", OK_ADDRESS, ["phone"]),
        (OK_NAME, "138****5678", OK_ADDRESS, ["phone"]),  # hides only 4 digits
        (OK_NAME, "1381*****78", OK_ADDRESS, ["phone"]),  # 6 digits shown
        (OK_NAME, "021-*****234", OK_ADDRESS, ["phone"]),
        (OK_NAME, "021-64321234", OK_ADDRESS, ["phone"]),
        (OK_NAME, "0213-*****234", OK_ADDRESS, ["phone"]),
        (OK_NAME, "１３８******７８９", OK_ADDRESS, ["phone"]),  # full-width digits count
        (OK_NAME, OK_PHONE, "科技园路1号****", ["address"]),
        (OK_NAME, OK_PHONE, "科技园路５号****", ["address"]),
        (OK_NAME, OK_PHONE, "三栋****", ["address"]),
        (OK_NAME, OK_PHONE, "五号楼****", ["address"]),
        (OK_NAME, OK_PHONE, "粤海街道", ["address"]),
        (OK_NAME, OK_PHONE, "", ["address"]),
        ("张三", "13812345678", "科技园路1号3栋502室", ["name", "phone", "address"]),
    ],
)
def test_gate_flags_unmasked_fields(name: str, phone: str, address: str, bad: list[str]) -> None:
    assert floor_violations(name=name, phone=phone, address=address) == bad


def test_non_str_is_a_type_error() -> None:
    for call in (
        lambda: mask_name(None),  # type: ignore[arg-type]
        lambda: mask_phone(13812345678),  # type: ignore[arg-type]
        lambda: mask_address(b"road"),  # type: ignore[arg-type]
        lambda: mask_id_card(1),  # type: ignore[arg-type]
        lambda: floor_violations(name=None, phone=OK_PHONE, address=OK_ADDRESS),  # type: ignore[arg-type]
    ):
        with pytest.raises(TypeError):
            call()


# Numerals of every script: Chinese (everyday and financial), Roman, circled, full-width, Arabic-Indic.
NUMERAL_ALPHABET = "零〇一二三四五六七八九十百千两壹贰叁肆伍陆柒捌玖拾佰仟ⅠⅡⅢⅣⅫⅰⅱ①②⑳０１２٣٤0123456789"


@pytest.mark.parametrize("address", [
    "张三一三八一二三四五六七八路9号",  # a phone spelt in Chinese numerals as a "street name"
    "一三张八一张二三张四路1号",  # the same, split up
    "ⅫⅠ路3号",  # Roman numerals, which NFKC would fold into the letters XII
    "壹叁捌路1号",  # financial numerals
    "①②③路",
])
def test_numbers_in_any_script_never_survive_the_address_mask(address: str) -> None:
    masked = mask_address(address)
    assert masked == "****"
    assert floor_violations(name=OK_NAME, phone=OK_PHONE, address=masked) == []


@pytest.mark.parametrize(("address", "masked"), [
    ("中山一路88号", "中山一路****"), ("五四大街1号", "五四大街****"), ("东四十条胡同3号", "东四十条胡同****")])
def test_street_names_with_a_numeral_or_two_are_kept(address: str, masked: str) -> None:
    assert mask_address(address) == masked


def test_the_gate_refuses_numbers_spelt_in_letters() -> None:
    for bad in ("张三一三八一二三四五六七八路****", "Ⅻ路****", "壹叁捌路****"):
        assert floor_violations(name=OK_NAME, phone=OK_PHONE, address=bad) == ["address"]


@given(st.text(alphabet=NUMERAL_ALPHABET + "张路街道号栋室abc ", max_size=40))
def test_address_mask_shows_no_number_of_any_script(address: str) -> None:
    masked = mask_address(address)
    assert floor_violations(name=OK_NAME, phone=OK_PHONE, address=masked) == []
    assert not any(unicodedata.category(ch).startswith("N") for ch in masked)
    assert sum(ch in "零〇一二三四五六七八九十百千两壹贰叁肆伍陆柒捌玖拾佰仟" for ch in masked) <= 2
