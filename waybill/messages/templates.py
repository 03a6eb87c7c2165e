"""The named SMS templates: Chinese text with ``${param}`` placeholders and the parameters each declares.

A template's parameters are part of its definition: rendering with a missing or an extra parameter is a
programming error (:class:`TemplateError`, a ``ValueError``), never the caller's input. Remote providers
(Aliyun) hold their own registered copy of each text under a template code; the code map is a setting,
checked at start-up to cover every template named here.

A rendered text is personal data (it carries codes and says who gets a parcel): it is never logged,
audited or put in an outbox payload.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\$\{([a-z][a-z0-9_]*)\}")
#: Longest parameter value (Aliyun limits a variable to 35 characters in most template kinds).
MAX_PARAM_LENGTH = 35


class TemplateError(ValueError):
    """An unknown template, or parameters that do not match its declaration (a bug in the caller)."""


@dataclass(frozen=True)
class Template:
    """One message kind: its name, its text and the parameters the text uses (exactly these)."""

    name: str
    text: str
    params: frozenset[str]

    def __post_init__(self) -> None:
        used = frozenset(_PLACEHOLDER.findall(self.text))
        if used != self.params:
            raise TemplateError(f"template {self.name}: declared parameters differ from the text's")

    def check(self, params: Mapping[str, str]) -> dict[str, str]:
        """The parameters as plain strings, or :class:`TemplateError` naming the parameter (never its value)."""
        missing = sorted(self.params - set(params))
        extra = sorted(set(params) - self.params)
        if missing or extra:
            raise TemplateError(f"template {self.name}: missing {missing}, unexpected {extra}")
        out: dict[str, str] = {}
        for name in sorted(self.params):
            value = params[name]
            if not isinstance(value, str) or not value or len(value) > MAX_PARAM_LENGTH:
                raise TemplateError(f"template {self.name}: parameter {name} must be 1-{MAX_PARAM_LENGTH} characters")
            if any(unicodedata.category(ch)[0] == "C" for ch in value) or "${" in value:
                raise TemplateError(f"template {self.name}: parameter {name} holds control characters")
            out[name] = value
        return out

    def render(self, params: Mapping[str, str]) -> str:
        """The text with every placeholder replaced (the parameters checked first)."""
        values = self.check(params)
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)


def _t(name: str, text: str, *params: str) -> Template:
    return Template(name, text, frozenset(params))


TEMPLATES: dict[str, Template] = {t.name: t for t in (
    # The self-service page's one-time code (the data subject proves control of the phone on a waybill).
    _t("subject_code", "您的身份验证码为${code}，${minutes}分钟内有效。请勿将验证码告诉任何人，快递员不会向您索要。",
       "code", "minutes"),
    # The 6-digit pickup code for a handover delivery, sent when the parcel goes out for delivery.
    _t("pickup_code", "您尾号${tail}的快递正在派送，取件码${code}。请在收到包裹时告知快递员，勿转告他人。",
       "tail", "code"),
    # An incident affecting this person's data (35273 10.2): what happened is on the page named by ref.
    _t("incident_notice", "我们发现一起可能涉及您个人信息的安全事件（编号${ref}），已采取处置措施。"
       "请警惕冒充快递的电话与短信。详情及建议请联系个人信息保护负责人：${contact}。", "ref", "contact"),
    # A locker or station (a registered partner) holds the parcel for the recipient.
    _t("partner_pickup_notice", "您尾号${tail}的快递已存放于${partner}，取件码${code}，请及时取件。",
       "tail", "partner", "code"),
)}


def get(name: str) -> Template:
    """The template called ``name``; an unknown name is a :class:`TemplateError`."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise TemplateError(f"unknown template {name[:40]!r}") from None


def render(name: str, params: Mapping[str, str]) -> str:
    """Render template ``name`` with ``params`` (exactly its declared parameters)."""
    return get(name).render(params)
