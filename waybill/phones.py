"""Parsing and normalisation of Chinese phone numbers (mainland mobiles and landlines).

Every phone number the service stores, indexes (blind index) or masks goes through `normalize_phone` first,
so that one person's number always has exactly one spelling:

- mobile: 11 ASCII digits, ``1[3-9]`` followed by 9 digits, e.g. ``13812345678``;
- landline: ``<area code>-<local number>``, e.g. ``021-64321234``. The area code keeps its trunk ``0`` and is
  ``010``, ``02x`` (3 digits) or ``0[3-9]xx`` (4 digits), as in the national numbering plan; the local number
  has 7 or 8 digits and does not start with ``0`` or ``1``.

Accepted spellings: spaces, dashes, dots and parentheses as separators; full-width characters (NFKC);
a ``+86`` / ``0086`` country code (then a landline is written without its trunk ``0``, although a stray
``0`` or ``(0)`` after the country code is tolerated); a bare ``86`` before an 11-digit mobile.
Everything else (letters, extensions, foreign numbers, wrong lengths) is rejected with `InvalidPhone`, whose
message is a fixed Chinese text that never contains the input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

# The area-code shape is part of the masking floor (a landline's area code may be shown): one definition.
from printing.floor import is_area_code

__all__ = ["CANARY_MOBILE_PREFIX", "MAX_RAW_LENGTH", "InvalidPhone", "Phone", "is_area_code", "is_canary_number",
           "normalize_phone"]

#: Longest raw input looked at; anything longer is rejected before any parsing work.
MAX_RAW_LENGTH = 40

_MESSAGES: dict[str, str] = {
    "empty": "电话号码不能为空",
    "too_long": "电话号码过长",
    "characters": "电话号码含有不允许的字符（不支持分机号）",
    "country": "仅支持中国大陆的手机号码或固定电话号码",
    "format": "电话号码格式不正确，请填写 11 位手机号码或“区号-号码”格式的固定电话",
}

# Separators people put into phone numbers. NFKC already folds full-width forms into these ASCII ones.
_SEPARATORS = frozenset(" \t-.()\u2010\u2012\u2013\u2014\u2015\u2212")
_ASCII_DIGITS = frozenset("0123456789")

_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")

#: Canary shipments' phones (waybill/canaries) come from 1540xxxxxxx: the 154 segment of the national numbering plan
#: has never been allocated to an operator by MIIT (unlike 150-153 and 155-159), so no person holds such a number
#: and no message to one can reach anyone; it is still a well-formed mobile (``1[3-9]`` + 9 digits), so canaries pass
#: the service's own validation like any recipient. The message store never sends to it (waybill/messages/store.py).
#: Check MIIT's current allocations (码号资源) before a deployment relies on it; this is the one place to change it.
CANARY_MOBILE_PREFIX = "1540"
_LANDLINE_RE = re.compile(r"(0(?:10|2[0-9]|[3-9][0-9]{2}))-([2-9][0-9]{6,7})")


class InvalidPhone(ValueError):
    """The text is not a phone number this service accepts.

    The message is chosen from a fixed set of Chinese texts by `reason`, so it can never echo the input
    (error messages end up in logs and API answers, where a phone number must not appear).
    """

    code = "invalid_phone"

    def __init__(self, reason: str = "format") -> None:
        self.reason = reason if reason in _MESSAGES else "format"
        super().__init__(_MESSAGES[self.reason])

    def __str__(self) -> str:
        return _MESSAGES[self.reason]


@dataclass(frozen=True, slots=True)
class Phone:
    """A normalised phone number: `kind` and `number` in the canonical spelling described above."""

    kind: Literal["mobile", "landline"]
    # repr=False: a Phone that ends up in a log line or a traceback must not print the number.
    number: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.number, str):
            raise TypeError("number must be a str")
        if self.kind == "mobile":
            ok = _MOBILE_RE.fullmatch(self.number) is not None
        elif self.kind == "landline":
            ok = _LANDLINE_RE.fullmatch(self.number) is not None
        else:
            ok = False
        if not ok:
            raise InvalidPhone("format")


def is_canary_number(number: str) -> bool:
    """Whether a normalised number is in the canary range (never issued to a person: nothing is sent to it)."""
    return len(number) == 11 and number.startswith(CANARY_MOBILE_PREFIX)


def normalize_phone(raw: str) -> Phone:
    """Parse `raw` into a `Phone`, or raise `InvalidPhone` (never echoing `raw`).

    Raises TypeError when `raw` is not a str.
    """
    if not isinstance(raw, str):
        raise TypeError("phone must be a str")
    if not raw.strip():
        raise InvalidPhone("empty")
    if len(raw) > MAX_RAW_LENGTH:
        raise InvalidPhone("too_long")
    text = unicodedata.normalize("NFKC", raw).strip()
    if len(text) > MAX_RAW_LENGTH:  # NFKC can expand some compatibility characters
        raise InvalidPhone("too_long")

    # "+86 ..." or "(+86) ...": the plus sign may only introduce the country code.
    has_plus = text.startswith(("+", "(+"))
    body = text.replace("+", "", 1) if has_plus else text
    digits, groups = _digits_and_groups(body)

    if has_plus:
        if not digits.startswith("86"):
            raise InvalidPhone("country")
        phone = _parse_national(digits[2:], international=True)
    elif digits.startswith("0086"):
        phone = _parse_national(digits[4:], international=True)
    elif digits.startswith("86") and len(digits) == 13:
        # A bare "86" is only unambiguous in front of a mobile number: nothing else starts with 8.
        national = digits[2:]
        if _MOBILE_RE.fullmatch(national) is None:
            raise InvalidPhone("format")
        phone = Phone("mobile", national)
    else:
        phone = _parse_national(digits, international=False)

    _check_groups(groups, phone)
    return phone


def _digits_and_groups(body: str) -> tuple[str, list[str]]:
    """Return the ASCII digits of `body` and the digits found inside each pair of parentheses.

    Rejects any character that is neither an ASCII digit nor a separator, and unbalanced or nested
    parentheses.
    """
    digits: list[str] = []
    groups: list[str] = []
    current: list[str] | None = None
    for ch in body:
        if ch in _ASCII_DIGITS:
            digits.append(ch)
            if current is not None:
                current.append(ch)
        elif ch == "(":
            if current is not None:
                raise InvalidPhone("format")
            current = []
        elif ch == ")":
            if current is None:
                raise InvalidPhone("format")
            groups.append("".join(current))
            current = None
        elif ch not in _SEPARATORS:
            raise InvalidPhone("characters")
    if current is not None or len(groups) > 2:
        raise InvalidPhone("format")
    return "".join(digits), groups


def _parse_national(national: str, *, international: bool) -> Phone:
    """Classify the national part of a number (after any country code) as mobile or landline."""
    if _MOBILE_RE.fullmatch(national):
        return Phone("mobile", national)
    if national.startswith("0"):
        # With the trunk 0: the normal domestic spelling, or "+86 (0)21 ..." which is tolerated.
        return _parse_landline(national)
    if international:
        # After a country code the trunk 0 is dropped: "+86 21 6432 1234" means 021-64321234.
        return _parse_landline("0" + national)
    raise InvalidPhone("format")


def _parse_landline(digits: str) -> Phone:
    """Split `digits` (starting with the trunk 0) into area code and local number."""
    if digits[1:3] == "10" or digits[1:2] == "2":
        area_len = 3  # 010 (Beijing) and 020-029 are the only 3-digit area codes
    elif digits[1:2] in {"3", "4", "5", "6", "7", "8", "9"}:
        area_len = 4
    else:
        raise InvalidPhone("format")
    area, local = digits[:area_len], digits[area_len:]
    number = f"{area}-{local}"
    if _LANDLINE_RE.fullmatch(number) is None:
        raise InvalidPhone("format")
    return Phone("landline", number)


def _check_groups(groups: list[str], phone: Phone) -> None:
    """Parentheses may only surround the country code, the trunk 0 or the area code.

    Why: "(0213)4567890" states an area code that does not exist; silently re-splitting it as 021 would
    deliver calls to a different subscriber.
    """
    allowed = {"86", "0086"}
    if phone.kind == "landline":
        area = phone.number.split("-", 1)[0]
        allowed |= {"0", area, area[1:]}
    else:
        allowed.add(phone.number[:3])
    for group in groups:
        if group not in allowed:
            raise InvalidPhone("format")
