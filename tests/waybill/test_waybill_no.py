"""Tests for waybill.waybill_no: random numbers with a Damm check digit."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waybill.waybill_no import WAYBILL_NO_LENGTH, check_digit, is_valid_waybill_no, new_waybill_no

digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=20)


def test_known_damm_values() -> None:
    # Published Damm example: 572 -> 4; a number followed by its check digit checks to 0.
    assert check_digit("572") == "4"
    assert check_digit("5724") == "0"
    assert check_digit("0") == "0"


def test_new_numbers_have_the_format_and_validate() -> None:
    numbers = [new_waybill_no() for _ in range(300)]
    for number in numbers:
        assert len(number) == WAYBILL_NO_LENGTH == 15
        assert re.fullmatch(r"PW[0-9]{13}", number)
        assert is_valid_waybill_no(number)
        assert number[-1] == check_digit(number[2:-1])


def test_new_numbers_are_random_not_sequential() -> None:
    bodies = sorted(int(new_waybill_no()[2:-1]) for _ in range(300))
    assert len(set(bodies)) == 300
    gaps = [b - a for a, b in zip(bodies, bodies[1:], strict=False)]
    # 300 uniform draws from 10**12 values: consecutive numbers would be astronomically unlikely.
    assert min(gaps) > 1
    assert bodies[-1] - bodies[0] > 10**11


@pytest.mark.parametrize(
    "value",
    [
        "",
        "PW",
        "PW12345678901",
        "PW12345678901234",  # 16 characters
        "pw" + "123456789012" + check_digit("123456789012"),  # lower-case prefix
        " PW" + "123456789012" + check_digit("123456789012"),
        "PW" + "123456789012" + check_digit("123456789012") + "\n",
        "PX" + "123456789012" + check_digit("123456789012"),
        "PW" + "１２３４５６７８９０１２" + check_digit("123456789012"),  # full-width digits
        "PW12345678901A",
        None,
        123456789012345,
    ],
)
def test_malformed_numbers_are_invalid(value: object) -> None:
    assert is_valid_waybill_no(value) is False  # type: ignore[arg-type]


def test_wrong_check_digit_is_invalid() -> None:
    body = "123456789012"
    good = check_digit(body)
    for digit in "0123456789":
        assert is_valid_waybill_no("PW" + body + digit) is (digit == good)


@pytest.mark.parametrize("value", ["", "12a", "１２", "-1", " 12", None])
def test_check_digit_rejects_non_digits(value: object) -> None:
    with pytest.raises(ValueError):
        check_digit(value)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(digit_strings, st.data())
def test_every_single_substitution_is_detected(digits: str, data: st.DataObject) -> None:
    full = digits + check_digit(digits)
    i = data.draw(st.integers(0, len(full) - 1))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != full[i]]))
    changed = full[:i] + new + full[i + 1 :]
    assert check_digit(changed[:-1]) != changed[-1]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=2, max_size=20), st.data())
def test_every_adjacent_transposition_is_detected(digits: str, data: st.DataObject) -> None:
    full = digits + check_digit(digits)
    i = data.draw(st.integers(0, len(full) - 2))
    if full[i] == full[i + 1]:
        # Make the pair differ so the example is never vacuous.
        full = full[:i] + str((int(full[i]) + 1) % 10) + full[i + 1 :]
        full = full[:-1] + check_digit(full[:-1])
        if full[i] == full[i + 1]:
            return
    swapped = full[:i] + full[i + 1] + full[i] + full[i + 2 :]
    assert check_digit(swapped[:-1]) != swapped[-1]


def test_all_adjacent_transpositions_exhaustively() -> None:
    # Every pair a != b after every possible prefix state (reached through one leading digit).
    for lead in "0123456789":
        for a in "0123456789":
            for b in "0123456789":
                if a == b:
                    continue
                for tail in ("", "7", "41"):
                    original = lead + a + b + tail
                    swapped = lead + b + a + tail
                    assert check_digit(original) != check_digit(swapped)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_waybill_numbers_reject_substitutions_and_transpositions(data: st.DataObject) -> None:
    number = new_waybill_no()
    i = data.draw(st.integers(2, len(number) - 1))
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]))
    assert not is_valid_waybill_no(number[:i] + new + number[i + 1 :])
    j = data.draw(st.integers(2, len(number) - 2))
    if number[j] != number[j + 1]:
        assert not is_valid_waybill_no(number[:j] + number[j + 1] + number[j] + number[j + 2 :])
