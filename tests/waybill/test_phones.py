"""Tests for waybill.phones: normalisation of Chinese mobile and landline numbers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waybill.phones import MAX_RAW_LENGTH, InvalidPhone, Phone, is_area_code, normalize_phone

FIXED_MESSAGES = {str(InvalidPhone(r)) for r in ("empty", "too_long", "characters", "country", "format")}
MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")
LANDLINE_RE = re.compile(r"0(?:10|2[0-9]|[3-9][0-9]{2})-[2-9][0-9]{6,7}")


@pytest.mark.parametrize(
    ("raw", "kind", "number"),
    [
        ("13812345678", "mobile", "13812345678"),
        ("138 1234 5678", "mobile", "13812345678"),
        ("138-1234-5678", "mobile", "13812345678"),
        ("138.1234.5678", "mobile", "13812345678"),
        ("  13812345678  ", "mobile", "13812345678"),
        ("+86 138 1234 5678", "mobile", "13812345678"),
        ("+8613812345678", "mobile", "13812345678"),
        ("(+86) 138-1234-5678", "mobile", "13812345678"),
        ("0086 13812345678", "mobile", "13812345678"),
        ("8613812345678", "mobile", "13812345678"),
        ("86 139 0000 1111", "mobile", "13900001111"),
        ("１３８１２３４５６７８", "mobile", "13812345678"),
        ("＋８６　１３８　１２３４　５６７８", "mobile", "13812345678"),
        ("19912345678", "mobile", "19912345678"),
        ("021-64321234", "landline", "021-64321234"),
        ("+86 21 6432 1234", "landline", "021-64321234"),
        ("+86 (0)21 6432 1234", "landline", "021-64321234"),
        ("0086 21 64321234", "landline", "021-64321234"),
        ("(021)64321234", "landline", "021-64321234"),
        ("(021) 6432-1234", "landline", "021-64321234"),
        ("（０２１）６４３２１２３４", "landline", "021-64321234"),
        ("021 6432 1234", "landline", "021-64321234"),
        ("02164321234", "landline", "021-64321234"),
        ("021.6432.1234", "landline", "021-64321234"),
        ("010-62345678", "landline", "010-62345678"),
        ("01062345678", "landline", "010-62345678"),
        ("+86 10 6234 5678", "landline", "010-62345678"),
        ("0755-86001234", "landline", "0755-86001234"),
        ("075586001234", "landline", "0755-86001234"),
        ("(0755)86001234", "landline", "0755-86001234"),
        ("0755-2345678", "landline", "0755-2345678"),
        ("07552345678", "landline", "0755-2345678"),
        ("029-8765432", "landline", "029-8765432"),
        ("0898 6688 7766", "landline", "0898-66887766"),
        ("0571\u201388776655", "landline", "0571-88776655"),  # en dash
        ("0571－88776655", "landline", "0571-88776655"),  # full-width hyphen
    ],
)
def test_valid_forms_normalise(raw: str, kind: str, number: str) -> None:
    phone = normalize_phone(raw)
    assert phone == Phone(kind, number)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "12812345678",  # 12x is not a mobile prefix
        "23812345678",
        "013812345678",  # trunk 0 before a mobile
        "138-1234-567a",
        "abc",
        "tel:13812345678",
        "138 1234 5678 转 123",
        "021-64321234-123",  # extension
        "021-64321234 ext 12",
        "021-64321234#12",
        "021-0432123",  # local number starting with 0
        "021-1432123",  # local number starting with 1
        "021-643212",  # local number too short
        "021-643212345",  # local number too long
        "011-62345678",  # 011 is not an area code
        "01-62345678",
        "0-62345678",
        "64321234",  # no area code
        "(0213)4567890",  # parentheses around a non-existent area code
        "(021(6432)1234",
        "021)64321234",
        "(021)(0)(86)64321234",
        "+1 415 555 1234",
        "+44 20 7946 0958",
        "+86",
        "+",
        "++8613812345678",
        "138+12345678",
        "0086",
        "86 21 6432 1234",  # a bare 86 only introduces mobiles
        "١٣٨١٢٣٤٥٦٧٨",  # Arabic-Indic digits are not accepted
        "一三八一二三四五六七八",
        "1" * 41,
        "1381234567" + " " * 31 + "8",  # more than 40 characters before normalising
        "138\n12345678",
        "138\x0012345678",
    ],
)
def test_invalid_forms_are_rejected_without_echo(raw: str) -> None:
    with pytest.raises(InvalidPhone) as info:
        normalize_phone(raw)
    message = str(info.value)
    assert message in FIXED_MESSAGES
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 3:
        assert digits not in message


def test_messages_are_chinese_and_fixed() -> None:
    assert len(FIXED_MESSAGES) == 5
    for message in FIXED_MESSAGES:
        assert re.search(r"[\u4e00-\u9fff]", message)
    assert str(InvalidPhone("13812345678")) == str(InvalidPhone("format"))  # unknown reason: no echo
    assert isinstance(InvalidPhone(), ValueError)


def test_too_long_input_is_rejected_before_parsing() -> None:
    with pytest.raises(InvalidPhone) as info:
        normalize_phone("1" * (MAX_RAW_LENGTH + 1))
    assert info.value.reason == "too_long"
    assert normalize_phone(" " * 29 + "13812345678").number == "13812345678"  # exactly 40


def test_non_str_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        normalize_phone(13812345678)  # type: ignore[arg-type]


def test_phone_validates_and_hides_number_in_repr() -> None:
    phone = normalize_phone("13812345678")
    assert "13812345678" not in repr(phone)
    assert "mobile" in repr(phone)
    for kind, number in [("mobile", "12345678901"), ("landline", "02164321234"), ("fax", "13812345678")]:
        with pytest.raises(InvalidPhone):
            Phone(kind, number)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        phone.number = "13900000000"  # type: ignore[misc]


def test_is_area_code() -> None:
    assert all(is_area_code(c) for c in ("010", "020", "029", "0311", "0755", "0898"))
    assert not any(is_area_code(c) for c in ("011", "01", "0", "755", "02", "0210", "０２１"))


mobiles = st.builds(
    lambda second, rest: f"1{second}{rest}",
    st.sampled_from("3456789"),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
)
area_codes = st.one_of(
    st.just("010"),
    st.builds(lambda d: f"02{d}", st.sampled_from("0123456789")),
    st.builds(lambda a, b: f"0{a}{b}", st.sampled_from("3456789"), st.text(alphabet="0123456789", min_size=2,
                                                                           max_size=2)),
)
locals_ = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("23456789"),
    st.text(alphabet="0123456789", min_size=6, max_size=7),
)
landlines = st.builds(lambda area, local: f"{area}-{local}", area_codes, locals_)


@settings(max_examples=150, deadline=None)
@given(mobiles, st.sampled_from(["", "+86 ", "0086", "86", "+86-"]), st.sampled_from(["", " ", "-", "."]))
def test_generated_mobiles_roundtrip(number: str, prefix: str, sep: str) -> None:
    raw = prefix + sep.join([number[:3], number[3:7], number[7:]])
    assert normalize_phone(raw) == Phone("mobile", number)


@settings(max_examples=150, deadline=None)
@given(landlines, st.booleans(), st.sampled_from(["", " ", "-"]))
def test_generated_landlines_roundtrip(number: str, international: bool, sep: str) -> None:
    area, local = number.split("-")
    raw = f"+86 {area[1:]} {local}" if international else f"{area}{sep}{local}"
    phone = normalize_phone(raw)
    assert phone == Phone("landline", number)
    assert normalize_phone(phone.number) == phone  # the normal form is a fixed point


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="0123456789 -+()８６", max_size=20))
def test_any_text_gives_a_normal_form_or_a_fixed_message(raw: str) -> None:
    try:
        phone = normalize_phone(raw)
    except InvalidPhone as exc:
        assert str(exc) in FIXED_MESSAGES
    else:
        pattern = MOBILE_RE if phone.kind == "mobile" else LANDLINE_RE
        assert pattern.fullmatch(phone.number)
