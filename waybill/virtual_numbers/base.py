"""The virtual-number provider interface, its value types and its named exceptions.

A provider hands out a virtual number X that connects two parties A and B without either learning the
other's real number:

- **AXB**: A calls X and reaches B; B calls X and reaches A.
- **AXE** (X plus a 4-digit extension): A calls X and enters the extension E to reach B; B calls X back
  (the extension is not needed then) and reaches A.

Rules every provider keeps (see ``privacy.md``, "Virtual numbers"): two live bindings on one X never share
an endpoint, so a call to X from a bound number has exactly one destination; an expired or released
binding never routes (the call is out of session).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from waybill.errors import Conflict, DomainError, NotFound

Mode = Literal["axb", "axe"]
Outcome = Literal["routed", "out_of_session"]


class VirtualNumberError(DomainError):
    """Base of every virtual-number failure. Messages never contain a phone number.

    Subclasses also derive from the matching generic domain error where there is one (BindConflict is a
    Conflict, OutOfSession a NotFound) so the web layer's error table maps them without new entries.
    """

    default_message = "隐私号服务暂不可用"


class NoAvailableNumber(VirtualNumberError):
    """The pool has no X number on which both endpoints are free (Aliyun ``isv.NO_AVAILABLE_NUMBER``)."""

    default_message = "暂无可用的隐私号码"


class BindConflict(VirtualNumberError, Conflict):
    """The binding conflicts with a live one: the same ``ref`` with other parties (Aliyun ``isv.BIND_CONFLICT``)."""

    default_message = "隐私号绑定冲突"


class OutOfSession(VirtualNumberError, NotFound):
    """A call or an operation refers to no live binding (unknown, expired or released)."""

    default_message = "隐私号绑定不存在或已失效"


class ProviderError(VirtualNumberError):
    """A remote provider refused the request or could not be reached; ``code`` is its error code."""

    def __init__(self, message: str | None = None, *, code: str = "unknown", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class Binding:
    """A live binding as the caller sees it: what to show the courier, never the parties' numbers."""

    id: str
    x_number: str
    extension: str | None
    expires_at: datetime
    mode: Mode
    ref: str


@dataclass(frozen=True)
class CallRoute:
    """Where a call to X goes.

    ``callee`` is the real number of the other endpoint: a telephony switch needs it to connect the call,
    so it exists in memory only, is hidden from ``repr`` and must never be printed, logged or stored.
    """

    routed: bool
    call_id: str
    x_number: str
    extension: str | None = None
    binding_id: str | None = None
    callee: str | None = field(default=None, repr=False)
    reason: str | None = None  # why a call was not routed, e.g. "out_of_session"


@dataclass(frozen=True)
class CallReceipt:
    """A call-detail record pushed by the telephony side after a call ended (possibly more than once).

    ``caller`` is the caller's real number (in memory only, hidden from ``repr``); it is stored as a keyed
    hash. ``provider_ref`` is the provider's own binding id (Aliyun ``sub_id``), used when ``binding_id``
    is not known. ``duration_s`` is the talk time (0 when the call was not answered).
    """

    call_id: str
    x_number: str
    started_at: datetime
    duration_s: int
    caller: str | None = field(default=None, repr=False)
    binding_id: str | None = None
    provider_ref: str | None = None
    release_cause: int | None = None
    # False when the provider refused to connect the call (e.g. the caller is not a party of the binding).
    routed: bool = True


@runtime_checkable
class VirtualNumberProvider(Protocol):
    """What the service needs from a virtual-number provider (built-in pool or a cloud adapter).

    Every method takes the caller's session, flushes and never commits: the caller owns the transaction.
    Phone numbers are given in any spelling :func:`waybill.phones.normalize_phone` accepts.
    """

    def bind_axb(self, session: Session, a: str, b: str, *, ttl: timedelta, ref: str) -> Binding:
        """Bind A and B to an X number for ``ttl``. Raises NoAvailableNumber or BindConflict."""
        ...

    def bind_axe(self, session: Session, a: str, b: str, *, ttl: timedelta, ref: str) -> Binding:
        """Like :meth:`bind_axb`, plus a 4-digit extension A enters after dialling X."""
        ...

    def release(self, session: Session, binding_id: str, *, at: datetime | None = None) -> None:
        """Release a binding now, or (``at`` given) let it expire at ``at``: a grace period for call-backs.

        Never extends a binding. Raises OutOfSession for an unknown binding; releasing twice is harmless.
        """
        ...

    def route_call(self, session: Session, caller: str, x: str, extension: str | None, *, call_id: str,
                   at: datetime) -> CallRoute:
        """Decide where a call from ``caller`` to X (with an optional extension) goes, and log it."""
        ...

    def record_receipt(self, session: Session, receipt: CallReceipt) -> bool:
        """Store a call receipt; idempotent by ``call_id``: a duplicate changes nothing and returns False."""
        ...


def check_ttl(ttl: timedelta) -> None:
    """Reject non-positive lifetimes (a binding that is born expired is a programming error)."""
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
