"""Windowed counting for the write-path alert rules, and the rules that only count (cheap per request).

A :class:`Burst` counts events per key over a moving window (``limits``' moving window through
:class:`waybill.ratelimit.WindowLimiter`, in Redis when ``WAYBILL_REDIS_URL`` is set so every worker and node
counts together, in process otherwise) and says when the count reaches the rule's threshold. While the window
stays full every further event says so too: each fires the rule again, and the store adds it to the open alert's
``count`` (one alert per burst and actor: the dedupe key is ``rule|actor|``). An event costs one counter hit; no
query.

:class:`Watch` is what the domain is handed (``DeliveryDeps.watch``, ``PrivacyDeps.watch``, ``scan_batch(watch=)``;
``None``: rules off): ``missed`` (``not_found_burst``), ``foreign`` (``foreign_station``) and ``read``
(``off_hours``: a clock comparison, no counter).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from limits.storage import Storage
from sqlalchemy.orm import Session

from waybill.alerts import store
from waybill.alerts.settings import AlertSettings
from waybill.models import utcnow
from waybill.permissions import Principal
from waybill.ratelimit import WindowLimiter, limit_storage, memory_storage


class Burst:
    """``count`` events of one key within ``window_s`` seconds: :meth:`hit` answers True from the count-th on."""

    def __init__(self, name: str, count: int, window_s: int, *, storage: Storage) -> None:
        self.count = count
        self.window_s = window_s
        # The threshold-th event is the first the window refuses: it holds count - 1 below the threshold.
        self._window = WindowLimiter(count - 1, window_s, name=f"alert-{name}", storage=storage) if count > 1 else None

    def hit(self, key: str, cost: int = 1) -> bool:
        """Count ``cost`` events of ``key``; True when the window has reached the threshold."""
        if cost <= 0:
            return False
        return self._window is None or self._window.hit(key, cost) is not None


class Distinct:
    """Distinct members per key within a window (``credential_stuffing``: usernames per client).

    A member is counted once per window (a one-slot window per ``key|member`` remembers it); members are kept as
    digests only, so the counters never hold a username.
    """

    def __init__(self, name: str, count: int, window_s: int, *, storage: Storage) -> None:
        self._seen = WindowLimiter(1, window_s, name=f"alert-{name}-seen", storage=storage)
        self._burst = Burst(name, count, window_s, storage=storage)

    def hit(self, key: str, member: str) -> bool:
        """Count ``member`` for ``key``; True when a new member brings ``key`` to the threshold or past it."""
        digest = hashlib.sha256(member.encode()).hexdigest()[:32]
        if self._seen.hit(f"{key}|{digest}") is not None:
            return False  # seen within the window already
        return self._burst.hit(key)


def storage_for(redis_url: str | None) -> Storage:
    """Shared counters when Redis is configured, this process's otherwise."""
    return limit_storage(redis_url)


class Watch:
    """The write-path rules that count: built once per app from the settings (see the module docstring)."""

    def __init__(self, alerts: AlertSettings, *, storage: Storage | None = None) -> None:
        store_ = storage if storage is not None else memory_storage()
        self.alerts = alerts
        self._missed = Burst("not_found_burst", alerts.threshold("not_found_burst", "count"),
                             alerts.threshold("not_found_burst", "window_s"), storage=store_)
        self._foreign = Burst("foreign_station", alerts.threshold("foreign_station", "count"),
                              alerts.threshold("foreign_station", "window_s"), storage=store_)

    def missed(self, session: Session, principal: Principal, n: int = 1) -> bool:
        """``n`` misses (unknown token, id or waybill number) by ``principal``; fires ``not_found_burst`` at the
        threshold. Returns whether it fired."""
        if not self._missed.hit(principal.actor, n):
            return False
        store.fire(session, principal, "not_found_burst",
                   detail=f"misses>={self._missed.count}/{self._missed.window_s}s")
        return True

    def foreign(self, session: Session, principal: Principal, n: int = 1) -> bool:
        """``n`` reaches for another station's shipments; fires ``foreign_station`` at the threshold."""
        if not self._foreign.hit(principal.actor, n):
            return False
        burst = self._foreign
        store.fire(session, principal, "foreign_station",
                   detail=f"station={principal.station or '-'} reaches>={burst.count}/{burst.window_s}s")
        return True

    def read(self, session: Session, principal: Principal, now: datetime | None = None) -> bool:
        """A read of personal data; fires ``off_hours`` outside the principal's station's shift."""
        if not self.alerts.shifts.off_hours(principal.station, now or utcnow()):
            return False
        store.fire(session, principal, "off_hours", detail=f"station={principal.station or '-'}")
        return True
