"""The national masking floor (GB/T 41833-2022), checked on already-masked strings: the release gate's rule.

A name hides at least one character, a phone number at least 6 digits, an address its building/unit/room.
This is the lowest layer's copy of the rule and the only one: :mod:`waybill.masking` builds its policies on
these constants and re-exports :func:`floor_violations`, so the gate and the masking policy cannot drift.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["AREA_CODE_RE", "CHINESE_NUMERALS", "MAX_LOCAL_DIGITS", "MAX_SHOWN_NUMERALS", "MIN_HIDDEN_DIGITS",
           "MOBILE_DIGITS", "UNIT_WORDS", "count_chinese_numerals", "floor_violations", "is_area_code",
           "region_violates"]

MOBILE_DIGITS = 11
MIN_HIDDEN_DIGITS = 6
MAX_LOCAL_DIGITS = 8
#: A Chinese area code with its trunk 0 (010, 02x, 0[3-9]xx).
AREA_CODE_RE = re.compile(r"0(?:10|2[0-9]|[3-9][0-9]{2})")
#: Words that locate a building, unit or room; flagged when next to a number.
UNIT_WORDS: tuple[str, ...] = ("号楼", "单元", "号", "栋", "幢", "室", "层", "楼", "座", "户")

# Chinese numerals are letters to Unicode (category Lo), so they would pass every "no digits" rule: a phone
# written 一三八一二三四五六七八 (or 幺三八..., 壹叁捌..., 弌弍弎...) is still a phone. Every letter Unicode gives a
# numeric value (Unihan's primary, accounting and other numerics: everyday, financial, traditional, archaic
# and compatibility forms) counts, plus 两, which Unicode leaves without a value but which spells 2.
#: Letters that spell a number (一, 〇, 两, 幺, 壹, 貳, 廿, 萬 ...): counted as digits by the mask and the gate. Written
#: out (computing it scans 190k code points at import); tests/waybill/test_masking.py checks it against unicodedata.
CHINESE_NUMERALS = (
    "〇㐅㒃㠪㭍一七万三两九二五亖亿什仟仨伍佰億兆兩八六十千卄卅卌叁参參叄四壱壹幺廾廿"
    "弌弍弎弐拾捌柒漆玖百肆萬貮貳贰阡陆陌陸零參拾兩零六陸什𠀁𠁤𠃢𠄡𠤪𠦃𠦌𠦜𠫪𠫽𠬙𢎐𢦘"
    "𣬛𦉭廾"
)
_CHINESE_NUMERALS = CHINESE_NUMERALS
_NUMERAL_SET = frozenset(CHINESE_NUMERALS)
# At most two Chinese numerals may show (中山一路, 五四大街, 东四十条胡同 are names); three or more can spell a
# number (a house number, a phone written 一三八...).
MAX_SHOWN_NUMERALS = 2
_UNIT_ALT = "|".join(UNIT_WORDS)
_NUMBERED_UNIT_RE = re.compile(
    rf"[0-9０-９{_CHINESE_NUMERALS}]\s*(?:{_UNIT_ALT})|(?:{_UNIT_ALT})\s*[0-9０-９{_CHINESE_NUMERALS}]"
)


def is_area_code(code: str) -> bool:
    """True when ``code`` has the shape of a Chinese area code with its trunk 0 (010, 02x, 0[3-9]xx)."""
    return isinstance(code, str) and AREA_CODE_RE.fullmatch(code) is not None


def _require_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str")
    return value


def _is_number_char(ch: str) -> bool:
    """A number of any script: Unicode category N (0-9, ０-９, ٣, Ⅻ, ①, ⑴, ⒈ ...) or a numeral letter (一, 壹)."""
    return unicodedata.category(ch).startswith("N") or ch in _NUMERAL_SET


def count_chinese_numerals(text: str) -> int:
    """How many characters of ``text`` are numeral letters (`CHINESE_NUMERALS`)."""
    return sum(ch in _NUMERAL_SET for ch in text)


_NOT_DIGITS = str.maketrans("", "", "0123456789")


def _count_numbers(text: str) -> int:
    """How many characters of ``text`` are numbers of any script (category N or a numeral letter)."""
    if text.isascii():  # masked phones are: the only numbers in ASCII are 0-9, counted in C
        return len(text) - len(text.translate(_NOT_DIGITS))
    return sum(map(_is_number_char, text))


def _name_violates(name: str) -> bool:
    if not name or "*" not in name:
        return True
    # At most one visible base character; combining marks attached to it are part of it.
    visible = [ch for ch in name if ch != "*" and unicodedata.category(ch) not in {"Mn", "Mc", "Me"}]
    return len(visible) > 1


def _phone_violates(phone: str) -> bool:
    if phone.count("*") < MIN_HIDDEN_DIGITS:
        return True
    area, sep, local = phone.partition("-")
    if sep and is_area_code(area):
        return _count_numbers(local) > MAX_LOCAL_DIGITS - MIN_HIDDEN_DIGITS
    return _count_numbers(phone) > MOBILE_DIGITS - MIN_HIDDEN_DIGITS


def _address_violates(address: str) -> bool:
    if not address.endswith("*"):
        return True
    if any(unicodedata.category(ch).startswith("N") for ch in address):
        return True
    if count_chinese_numerals(address) > MAX_SHOWN_NUMERALS:
        return True
    return _NUMBERED_UNIT_RE.search(address) is not None


def region_violates(text: str) -> bool:
    """True when a province, city or district name (printed in full) could carry a number: any number of
    Unicode category N, or more than two Chinese numerals (no division's name has more: 二七区)."""
    if not isinstance(text, str):
        return True
    return any(unicodedata.category(ch).startswith("N") for ch in text) or (
        count_chinese_numerals(text) > MAX_SHOWN_NUMERALS)


def floor_violations(*, name: str, phone: str, address: str) -> list[str]:
    """Names of the fields whose already-masked value is not masked to the floor; ``[]`` means release.

    Works on masked strings only (the label renderer calls it right before printing):
    - name: non-empty, at least one ``*``, at most one visible character;
    - phone: at least 6 ``*``; a landline (``<area code>-...``) shows at most 2 local digits, anything else
      at most 5 digits in total;
    - address: ends with ``*``, contains no number of any script (ASCII, full-width, circled, Roman...), at
      most two Chinese numerals (more can spell a number out), and no building/unit/room word next to a
      Chinese numeral.
    Raises TypeError when an argument is not a str.
    """
    checks = (
        ("name", _require_str(name, "name"), _name_violates),
        ("phone", _require_str(phone, "phone"), _phone_violates),
        ("address", _require_str(address, "address"), _address_violates),
    )
    return [field_name for field_name, value, violates in checks if violates(value)]
