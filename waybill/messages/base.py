"""The message (SMS) provider interface, the message handed to it, and the named errors.

A provider delivers one rendered message to one mobile number. The built-in provider "delivers" by keeping
the encrypted text (it is the encrypted outbox development tooling reads back); the Aliyun adapter sends it
through Dysmsapi ``SendSms``. Everything around delivery (the stored row, the outbox task, erasing the text
once it is delivered) is the same for both: see :mod:`waybill.messages.store`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from waybill.errors import DomainError, RateLimited, ValidationFailed


class MessageError(DomainError):
    """Base of every message failure. Messages never contain a phone number or a message text."""

    default_message = "短信服务暂不可用"


class InvalidPhone(MessageError, ValidationFailed):
    """Not a phone number at all (or the provider says it is not a valid mobile: ``isv.MOBILE_NUMBER_ILLEGAL``)."""

    default_message = "手机号码格式不正确"


class NotMobile(InvalidPhone):
    """A landline: no SMS can reach it (the caller offers another route, e.g. the complaint line)."""

    default_message = "该号码为固定电话，无法接收短信"


class Throttled(MessageError, RateLimited):
    """Too many messages to one number (locally, or Aliyun ``isv.BUSINESS_LIMIT_CONTROL``); try again later.

    A :class:`~waybill.errors.RateLimited`: a request path that meets it answers ``429`` with ``Retry-After``.
    """

    default_message = "发送过于频繁，请稍后再试"

    def __init__(self, retry_after: float = 60.0, message: str | None = None) -> None:
        super().__init__(retry_after, message)


class ProviderError(MessageError):
    """A remote provider refused the message or could not be reached; ``code`` is its error code.

    ``retryable`` says whether trying again can help (a network failure, a provider outage) or not (a bad
    signature, a template the provider does not know): the outbox retries only the former.
    """

    def __init__(self, message: str | None = None, *, code: str = "unknown", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class OutgoingMessage:
    """One message as a provider gets it. ``phone``, ``params`` and ``text`` are personal data: kept out of
    ``repr`` (a traceback or a log line must not show them), in memory only while it is delivered."""

    id: str
    template: str
    phone: str = field(repr=False)
    params: dict[str, str] = field(repr=False)
    text: str = field(repr=False)


@dataclass(frozen=True)
class Delivery:
    """What a provider reports back: its own id for the message (Aliyun ``BizId``) and whether the stored
    text is to be kept (the built-in provider's outbox) or erased now that it has been delivered."""

    provider_ref: str | None
    keep_text: bool


@runtime_checkable
class MessageProvider(Protocol):
    """What the service needs from an SMS provider (built-in outbox or a cloud adapter)."""

    name: str

    def deliver(self, message: OutgoingMessage) -> Delivery:
        """Deliver one message; raises :class:`Throttled`, :class:`InvalidPhone` or :class:`ProviderError`.

        Called from the ``messages.send`` task, outside any lock the caller cares about; it may be called
        more than once for one message id (tasks run at least once), so a provider that can deduplicate
        (Aliyun ``OutId``) is given the id.
        """
        ...
