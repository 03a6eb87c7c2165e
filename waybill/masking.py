"""Masking of personal data for labels and masked API views (the floor check itself is ``printing.floor``).

The floor (GB/T 41833-2022, see docs in privacy.md): a name hides at least one character, a phone number
hides at least 6 digits, an address hides the unit/room. `MaskPolicy` may hide more than the default, never
less than the floor. Every masking function is pure and total over `str`: odd input (emoji, control
characters, mixed scripts, very long text) never raises and never reveals more than the floor; only a
non-str argument raises TypeError.

Decisions (binding for the label renderer and the API views):

- name: NFC, control/format/private-use/unassigned code points dropped, whitespace runs folded into one
  space. The text is cut into units (a base code point plus its combining marks, variation selectors, emoji
  modifiers, tag characters and ZWJ-joined successors; a regional-indicator pair is one unit). The first unit
  is kept only when it is a letter (otherwise it is starred too, so the output is always printable) and then
  only the letter and at most 2 of its combining marks. A numeral letter (伍, 陆, 万 are common surnames) may
  be that one kept letter: one character can never spell a phone or a house number; a Roman numeral (Ⅻ, a
  number to Unicode) is starred. Every other unit becomes one ``*`` (spaces count),
  capped at `NAME_MAX_STARS` so a very long name still fits the label; a non-empty name always yields at
  least one ``*``.
- phone: mobile keeps `mobile_keep_prefix` + `mobile_keep_suffix` digits (at most 5 in total, so at least
  6 of 11 are hidden). Landline keeps the area code (it names a city, not a subscriber, and is routing
  information) and at most `landline_keep_suffix` trailing digits of the local number, but never so many
  that fewer than 6 local digits are hidden: a 7-digit local number therefore shows at most its last digit.
  Text that is not a phone number is shown as `PHONE_FALLBACK` (stars only).
- address: the street part only; at most the leading street/road/township name is kept, and only when it
  is made of letters (no digit of any script, no building/unit/room word); then a fixed ``****`` so the
  length does not leak.
- ID card: first and last character with a fixed 17 stars between (as in privacy.md), so an old 15-digit
  and an 18-character number look alike.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from printing.floor import MAX_LOCAL_DIGITS as _MAX_LOCAL_DIGITS
from printing.floor import MAX_SHOWN_NUMERALS, UNIT_WORDS, count_chinese_numerals, floor_violations
from printing.floor import MIN_HIDDEN_DIGITS as _MIN_HIDDEN_DIGITS
from printing.floor import MOBILE_DIGITS as _MOBILE_DIGITS
from waybill.phones import InvalidPhone, normalize_phone

__all__ = [
    "ADDRESS_MASK",
    "DEFAULT_POLICY",
    "NAME_MAX_STARS",
    "PHONE_FALLBACK",
    "MaskPolicy",
    "MaskPolicyTooWeak",
    "floor_violations",
    "mask_address",
    "mask_id_card",
    "mask_name",
    "mask_phone",
]

#: Most stars a masked name carries; longer names are cut (the label has room for about a dozen glyphs).
NAME_MAX_STARS = 10
#: Appended to every masked address, whatever its length.
ADDRESS_MASK = "****"
#: Shown for a phone value that is not a valid number: nothing of it is revealed.
PHONE_FALLBACK = "*" * 11
#: Street units that end the kept street name, longest first so 街道 wins over 街.
STREET_UNITS: tuple[str, ...] = ("街道", "大道", "胡同", "镇", "乡", "路", "街", "巷", "弄", "村")
# UNIT_WORDS (building/unit/room words: never kept, flagged by the gate next to a number) and the digit
# counts come from printing.floor, which holds the floor the release gate applies.
#: How far into the street part a street unit is looked for.
STREET_WINDOW = 20

_NAME_MAX_KEPT_MARKS = 2
_ID_STARS = 17

_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_ZWJ = "\u200d"


class MaskPolicyTooWeak(ValueError):
    """A masking policy would reveal more than the floor allows."""

    code = "mask_policy_too_weak"


@dataclass(frozen=True)
class MaskPolicy:
    """How much of each field a masked view keeps. Validated on construction (fail closed)."""

    name_keep_first: int = 1
    mobile_keep_prefix: int = 3
    mobile_keep_suffix: int = 2
    landline_keep_suffix: int = 2
    address_keep_street: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `MaskPolicyTooWeak` when the policy keeps more than the floor.

        - name: at most the first character (a policy holds for every name length, and the common
          two-character Chinese name must hide at least one);
        - mobile: prefix + suffix <= 5, so at least 6 of the 11 digits are hidden;
        - landline: suffix <= 2, so at least 6 digits of an 8-digit local number are hidden (shorter local
          numbers are clamped further by `mask_phone`).
        """
        ints = {
            "name_keep_first": self.name_keep_first,
            "mobile_keep_prefix": self.mobile_keep_prefix,
            "mobile_keep_suffix": self.mobile_keep_suffix,
            "landline_keep_suffix": self.landline_keep_suffix,
        }
        for field_name, value in ints.items():
            if type(value) is not int or value < 0:
                raise MaskPolicyTooWeak(f"脱敏策略字段 {field_name} 必须是非负整数")
        if type(self.address_keep_street) is not bool:
            raise MaskPolicyTooWeak("脱敏策略字段 address_keep_street 必须是布尔值")
        if self.name_keep_first > 1:
            raise MaskPolicyTooWeak("姓名最多保留第一个字")
        if self.mobile_keep_prefix + self.mobile_keep_suffix > _MOBILE_DIGITS - _MIN_HIDDEN_DIGITS:
            raise MaskPolicyTooWeak("手机号码至少需要隐藏 6 位数字")
        if self.landline_keep_suffix > _MAX_LOCAL_DIGITS - _MIN_HIDDEN_DIGITS:
            raise MaskPolicyTooWeak("固定电话号码至少需要隐藏 6 位数字")


DEFAULT_POLICY = MaskPolicy()


def _require_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str")
    return value


# ---------------------------------------------------------------------------------------------- names


def _clean_name(name: str) -> str:
    """NFC, drop invisible/unassigned code points, fold whitespace runs into one space, strip."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", name):
        if ch.isspace() or unicodedata.category(ch) in {"Zl", "Zp"}:
            out.append(" ")
        elif ch == _ZWJ or unicodedata.category(ch) not in _DROPPED_CATEGORIES or _is_tag(ch):
            # ZWJ and tag characters are format characters but belong to emoji sequences (kept as one unit).
            out.append(ch)
    return " ".join("".join(out).split())


def _is_tag(ch: str) -> bool:
    return "\U000e0020" <= ch <= "\U000e007f"


def _is_extender(ch: str) -> bool:
    """True for code points that belong to the preceding unit rather than starting a new one."""
    return (
        unicodedata.category(ch) in {"Mn", "Mc", "Me"}
        or ch == _ZWJ
        or "\U0001f3fb" <= ch <= "\U0001f3ff"  # emoji skin-tone modifiers
        or _is_tag(ch)
    )


def _is_regional_indicator(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def _units(text: str) -> list[str]:
    """Cut `text` into grapheme-like units (see the module docstring)."""
    units: list[str] = []
    glue = False  # the previous code point was a ZWJ: the next one joins the same unit
    for ch in text:
        joins_pair = (
            units
            and _is_regional_indicator(ch)
            and len(units[-1]) == 1
            and _is_regional_indicator(units[-1])
        )
        if units and (glue or _is_extender(ch) or joins_pair):
            units[-1] += ch
        else:
            units.append(ch)
        glue = ch == _ZWJ
    return units


def _kept_first(unit: str) -> str:
    """The printable part of a first unit that may be shown: a letter and at most 2 combining marks."""
    if not unicodedata.category(unit[0]).startswith("L"):
        return ""
    marks = ""
    for ch in unit[1:]:
        if unicodedata.category(ch) not in {"Mn", "Mc", "Me"} or len(marks) >= _NAME_MAX_KEPT_MARKS:
            break
        marks += ch
    return unit[0] + marks


def mask_name(name: str, policy: MaskPolicy = DEFAULT_POLICY) -> str:
    """Mask a person's name: keep at most the first letter, one ``*`` per other character (capped).

    ``张三`` -> ``张*``, ``欧阳娜娜`` -> ``欧***``, ``Li Lei`` -> ``L*****``, ``李`` -> ``*``;
    the empty string stays empty (there is nothing to hide; the release gate rejects it).
    """
    _require_str(name, "name")
    if not name:
        return ""
    units = _units(_clean_name(name))
    if not units:  # nothing visible at all (only control or format characters): still one star
        return "*"
    kept = _kept_first(units[0]) if policy.name_keep_first >= 1 and len(units) >= 2 else ""
    hidden = len(units) - 1 if kept else len(units)
    return kept + "*" * max(1, min(hidden, NAME_MAX_STARS))


# --------------------------------------------------------------------------------------------- phones


def mask_phone(number: str, policy: MaskPolicy = DEFAULT_POLICY) -> str:
    """Mask a normalised phone number (``Phone.number``).

    ``13812345678`` -> ``138******78``, ``021-64321234`` -> ``021-******34``. Raw spellings are normalised
    first; anything that is not a phone number becomes `PHONE_FALLBACK`.
    """
    _require_str(number, "number")
    try:
        phone = normalize_phone(number)
    except InvalidPhone:
        return PHONE_FALLBACK
    digits = phone.number
    if phone.kind == "mobile":
        prefix, suffix = policy.mobile_keep_prefix, policy.mobile_keep_suffix
        if min(prefix, suffix) < 0 or prefix + suffix > _MOBILE_DIGITS - _MIN_HIDDEN_DIGITS:
            # Only reachable with a policy object altered after validation: fail closed.
            return PHONE_FALLBACK
        tail = digits[_MOBILE_DIGITS - suffix :] if suffix else ""
        return digits[:prefix] + "*" * (_MOBILE_DIGITS - prefix - suffix) + tail
    area, local = digits.split("-", 1)
    suffix = max(0, min(policy.landline_keep_suffix, len(local) - _MIN_HIDDEN_DIGITS))
    tail = local[len(local) - suffix :] if suffix else ""
    return f"{area}-" + "*" * (len(local) - suffix) + tail


# -------------------------------------------------------------------------------------------- address


def _street_name(text: str) -> str:
    """The leading street/road/township name of `text` (up to its first street unit), or ``""``."""
    window = text[:STREET_WINDOW]
    for i in range(1, len(window)):
        for unit in STREET_UNITS:
            if window.startswith(unit, i) and i + len(unit) <= STREET_WINDOW:
                return window[: i + len(unit)]
    return ""


def _keepable(prefix: str) -> bool:
    """Only letters may be kept, and no building/unit/room word: a number of any script is dropped, and so is
    a street name with more than two Chinese numerals (a number spelt out in letters)."""
    if not prefix or any(word in prefix for word in UNIT_WORDS):
        return False
    if count_chinese_numerals(prefix) > MAX_SHOWN_NUMERALS:
        return False
    return all(unicodedata.category(ch).startswith("L") for ch in prefix)


def mask_address(address: str, policy: MaskPolicy = DEFAULT_POLICY) -> str:
    """Mask the street part of an address: at most the leading street name, then ``****``.

    ``粤海街道科技园路1号3栋502室`` -> ``粤海街道****``, ``科技园路1号3栋502室`` -> ``科技园路****``,
    anything without a recognisable street name in its first 20 characters -> ``****``.
    """
    _require_str(address, "address")
    if not policy.address_keep_street:
        return ADDRESS_MASK
    # Numbers of every script become a digit first: NFKC would fold Roman numerals (Ⅻ) into Latin letters
    # (XII), which would then pass for a street name. Then NFKC folds full-width digits and letters, so they are
    # recognised as such; whitespace is irrelevant.
    numbered = "".join("0" if unicodedata.category(ch).startswith("N") else ch for ch in address[: STREET_WINDOW * 4])
    text = "".join(
        ch
        for ch in unicodedata.normalize("NFKC", numbered)
        if not ch.isspace() and unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )
    prefix = _street_name(text)
    return (prefix if _keepable(prefix) else "") + ADDRESS_MASK


# -------------------------------------------------------------------------------------------- ID card


def mask_id_card(id_no: str) -> str:
    """Mask a resident ID card number: first and last character, 17 stars between.

    ``11010519491231002X`` -> ``1*****************X``. Anything that is not 15 digits or 17 digits plus a
    digit or X is shown as stars only (19 of them, the same width).
    """
    _require_str(id_no, "id_no")
    text = "".join(unicodedata.normalize("NFKC", id_no).split()).upper()
    if re.fullmatch(r"[0-9]{15}|[0-9]{17}[0-9X]", text) is None:
        return "*" * (_ID_STARS + 2)
    return text[0] + "*" * _ID_STARS + text[-1]
