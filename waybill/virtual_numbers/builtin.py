"""The built-in provider (embedded default): its own pool of X numbers and persistent bindings.

Allocation is optimistic and the database has the last word: a free X is chosen by query, the binding is
inserted in a savepoint, and the partial unique indexes reject anything that a concurrent allocation made
invalid meanwhile; the allocator then tries another X, a bounded number of times.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from waybill.crypto.vault import FieldCodec
from waybill.keyfile import KeyMaterial
from waybill.models import utcnow
from waybill.virtual_numbers.base import Binding, Mode, NoAvailableNumber
from waybill.virtual_numbers.models import VnBinding, VnBindingEndpoint, VnNumber
from waybill.virtual_numbers.store import StoredProvider, derive_endpoint_key, normalise, to_binding


class HasCodecAndKeys(Protocol):
    """What :meth:`BuiltinProvider.from_services` needs of a service container (no import of it: it builds us)."""

    codec: FieldCodec
    keys: KeyMaterial

EXTENSION_DIGITS = 4
_EXTENSIONS = 10**EXTENSION_DIGITS


def add_numbers(session: Session, numbers: Iterable[str]) -> int:
    """Add X numbers to the pool (normalised; already present ones are skipped). Returns how many were new.

    X numbers are the provider's own, not personal data, so they are stored as they are.
    """
    wanted = {normalise(n) for n in numbers}
    if not wanted:
        return 0
    present = set(session.scalars(select(VnNumber.x_number).where(VnNumber.x_number.in_(wanted))))
    new = sorted(wanted - present)
    if new:
        now = utcnow()
        session.execute(insert(VnNumber), [{"x_number": n, "enabled": True, "added_at": now} for n in new])
        session.flush()
    return len(new)


#: The pool a fresh development installation starts with, so that calls work before anyone seeds one. The
#: built-in provider connects nothing on a real telephone network (calls are simulated with `waybill phone`),
#: so these are placeholders; production never gets them (see :func:`development_pool_problem`).
DEVELOPMENT_POOL = tuple(f"1709999{i:04d}" for i in range(20))


def seed_development_pool(session: Session) -> int:
    """Give an empty built-in pool the development numbers; a pool with any number is left alone."""
    if session.scalar(select(func.count()).select_from(VnNumber)):
        return 0
    return add_numbers(session, DEVELOPMENT_POOL)


def development_pool_problem(session: Session) -> str | None:
    """What is wrong with the built-in pool for production: empty, or still holding development numbers."""
    if pool_size(session) == 0:
        return "empty"
    if session.scalar(select(func.count()).select_from(VnNumber).where(
            VnNumber.enabled.is_(True), VnNumber.x_number.in_(DEVELOPMENT_POOL))):
        return "development_numbers"
    return None


def pool_size(session: Session) -> int:
    """How many enabled X numbers the pool has."""
    return int(session.scalar(select(func.count()).select_from(VnNumber).where(VnNumber.enabled.is_(True))) or 0)


class BuiltinProvider(StoredProvider):
    """AXB and AXE bindings on the built-in pool (see :class:`~waybill.virtual_numbers.base.VirtualNumberProvider`)."""

    name = "builtin"

    def __init__(self, codec: FieldCodec, endpoint_key: bytes, *, clock: Callable[[], datetime] = utcnow,
                 max_attempts: int = 8) -> None:
        super().__init__(codec, endpoint_key, clock=clock)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts

    @classmethod
    def from_services(cls, services: HasCodecAndKeys, **kwargs: Any) -> BuiltinProvider:
        """The provider wired to a service container's codec and key file."""
        return cls(services.codec, derive_endpoint_key(services.keys), **kwargs)

    def _allocate(self, session: Session, mode: Mode, a_number: str, b_number: str, ha: bytes, hb: bytes, *,
                  ttl: timedelta, ref: str, now: datetime) -> Binding:
        """Pick a free X from the pool (and a free extension); the unique indexes settle races."""
        tried: set[str] = set()
        for _attempt in range(self.max_attempts):
            x_number = self._free_number(session, mode, ha, hb, tried)
            if x_number is None:
                break
            extension = self._free_extension(session, x_number) if mode == "axe" else None
            if mode == "axe" and extension is None:
                tried.add(x_number)  # every extension of this X is taken
                continue
            try:
                row = self.insert_binding(session, mode=mode, x_number=x_number, extension=extension, a=a_number,
                                          b=b_number, ref=ref, now=now, expires_at=now + ttl)
            except IntegrityError:
                # A concurrent allocation took an endpoint or extension on this X, or bound the same ref.
                existing = self.existing_for_ref(session, ref, mode, ha, hb, now)
                if existing is not None:
                    return existing
                tried.add(x_number)
                continue
            return to_binding(row)
        raise NoAvailableNumber()

    def _free_number(self, session: Session, mode: Mode, ha: bytes, hb: bytes, tried: set[str]) -> str | None:
        """A random enabled X on which the binding can go (random spreads concurrent allocations).

        AXB: neither endpoint is live on X at all (each reaches its peer by X alone). AXE: neither endpoint
        is live on X by X alone; A's other AXE bindings on X do not count, since each has its own
        extension. So one courier's AXE bindings reuse the pool's numbers: a 4-number pool serves a
        courier's 5th and 50th recipient, while each recipient still reaches exactly one courier per X.
        """
        busy = select(VnBindingEndpoint.x_number).where(VnBindingEndpoint.active.is_(True),
                                                        VnBindingEndpoint.endpoint_hash.in_((ha, hb)))
        if mode == "axe":
            busy = busy.where(VnBindingEndpoint.slot == "")
        query = select(VnNumber.x_number).where(VnNumber.enabled.is_(True), VnNumber.x_number.not_in(busy))
        if tried:
            query = query.where(VnNumber.x_number.not_in(tried))
        return session.scalars(query.order_by(func.random()).limit(1)).first()

    def _free_extension(self, session: Session, x_number: str) -> str | None:
        """A random extension not live on ``x_number``; None when all are taken."""
        used = set(session.scalars(select(VnBinding.extension).where(
            VnBinding.x_number == x_number, VnBinding.active.is_(True), VnBinding.extension.is_not(None))))
        if len(used) >= _EXTENSIONS:
            return None
        for _ in range(32):  # random probing first: cheap while the X is far from full
            candidate = f"{secrets.randbelow(_EXTENSIONS):0{EXTENSION_DIGITS}d}"
            if candidate not in used:
                return candidate
        free = [f"{i:0{EXTENSION_DIGITS}d}" for i in range(_EXTENSIONS) if f"{i:0{EXTENSION_DIGITS}d}" not in used]
        return secrets.choice(free)
