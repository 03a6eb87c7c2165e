"""Waybill numbers: ``PW`` + 12 random digits + 1 check digit (15 characters, e.g. ``PW4827193650217``).

The 12 digits come from `secrets`, not a sequence: a waybill number must not let anyone enumerate other
shipments (scripts walking waybill numbers were behind real leaks). The number is never a lookup key for
personal data either.

The check digit uses the Damm algorithm (a weakly totally anti-symmetric quasigroup of order 10). It was
chosen over the two usual candidates because it is the only one of them that catches every single-digit
substitution *and* every adjacent transposition: Luhn misses ``09`` <-> ``90`` and ISO 7064 MOD 11-10 misses
20 of the 900 (state, digit pair) combinations. Like them it yields one decimal digit, so the number stays
all-digits after the prefix (Code 128 set C prints digit pairs compactly).
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "PREFIX",
    "RANDOM_DIGITS",
    "WAYBILL_NO_LENGTH",
    "check_digit",
    "is_valid_waybill_no",
    "new_waybill_no",
]

PREFIX = "PW"
RANDOM_DIGITS = 12
WAYBILL_NO_LENGTH = len(PREFIX) + RANDOM_DIGITS + 1

# Damm's operation table (Damm 2004, the totally anti-symmetric quasigroup with a zero diagonal).
_DAMM: tuple[tuple[int, ...], ...] = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
_DIGITS_RE = re.compile(r"[0-9]+")
_WAYBILL_RE = re.compile(rf"{PREFIX}[0-9]{{{RANDOM_DIGITS + 1}}}")


def _interim(digits: str) -> int:
    state = 0
    for ch in digits:
        state = _DAMM[state][ord(ch) - 48]
    return state


def check_digit(digits: str) -> str:
    """The Damm check digit of a non-empty string of ASCII digits; ValueError for anything else."""
    if not isinstance(digits, str) or _DIGITS_RE.fullmatch(digits) is None:
        raise ValueError("校验位只能根据数字计算")
    # With a zero-diagonal table the check digit is the interim digit itself: appending it gives state 0.
    return str(_interim(digits))


def new_waybill_no() -> str:
    """A fresh random waybill number (uniqueness is still enforced by the database)."""
    body = f"{secrets.randbelow(10**RANDOM_DIGITS):0{RANDOM_DIGITS}d}"
    return PREFIX + body + check_digit(body)


def is_valid_waybill_no(s: str) -> bool:
    """True when `s` is exactly ``PW`` + 13 ASCII digits whose last digit is the Damm check digit.

    Strict on purpose (upper-case prefix, no spaces): scanners read exactly what was printed. Non-str
    input answers False.
    """
    if not isinstance(s, str) or _WAYBILL_RE.fullmatch(s) is None:
        return False
    return _interim(s[len(PREFIX) :]) == 0
