"""Staff login throttling: exponential backoff per (username, client), a failure budget per client, alerts.

No account is ever locked (five wrong passwords used to lock any known user for 15 minutes, renewably: a
weapon). Instead failures slow down only the client that makes them:

- per (username, client): ``free`` failures, then each further failure must wait ``base`` seconds, then
  ``2 * base``, ``4 * base``... up to ``max_s``. Built from ``limits`` moving windows: level ``k`` allows
  ``free + k`` failures in ``base * (2**(k+1) - 1)`` seconds, so the wait before failure ``free + k + 1``
  is ``base * 2**k``. A successful login clears the pair. The same user from another client is unaffected.
- per client, across usernames: ``client_per_minute`` failures a minute (spraying many accounts).
- alerts (``alert.login_failures`` audit events): when a pair starts backing off, when a client spends its
  budget, and when one username fails ``user_alert`` times in ``alert_window_s`` from any clients (the
  distributed form nothing above refuses). Each pattern and key alerts at most once per window: a burst
  writes one alert, not one per failure.

Attempts are checked (:meth:`LoginThrottle.begin`) before the password is; the right password gives back
what its attempt took (:meth:`LoginThrottle.succeeded`), so it never costs budget. Counters are in the
registry's limit store: Redis when ``WAYBILL_REDIS_URL`` is set (every process and node counts together; Redis
down: logins answer ``503``), else each worker process's memory.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from limits.storage import Storage

from waybill.alerts.counters import Distinct
from waybill.ratelimit import CompositeLimiter, WindowLimiter, memory_storage


class LoginLimits(NamedTuple):
    free: int = 5
    base_s: int = 60
    max_s: int = 3600
    client_per_minute: int = 30
    user_alert: int = 20
    alert_window_s: int = 600


def _user_key(username: str) -> str:
    # Usernames stay out of the counters' keys (memory dumps, a later Redis): a digest is enough to count.
    return hashlib.sha256(username.encode()).hexdigest()[:32]


class LoginThrottle:
    """The login throttles and alert detectors of one process (see the module docstring)."""

    def __init__(self, limits: LoginLimits, *, storage: Storage | None = None,
                 stuffing: Distinct | None = None) -> None:
        self._stuffing = stuffing
        store = storage if storage is not None else memory_storage()
        levels: list[WindowLimiter] = []
        k = 0
        while k == 0 or limits.base_s * 2**k <= limits.max_s:
            window = limits.base_s * (2 ** (k + 1) - 1)
            levels.append(WindowLimiter(limits.free + k, window, name=f"login-pair-{k}", storage=store))
            k += 1
        self._levels = levels
        self._pair = CompositeLimiter(*levels)
        self._client = WindowLimiter(limits.client_per_minute, 60, name="login-client", storage=store)
        self._user = WindowLimiter(limits.user_alert, limits.alert_window_s, name="login-user", storage=store)
        self._alerted = WindowLimiter(1, limits.alert_window_s, name="login-alerted", storage=store)

    @staticmethod
    def _pair_key(username: str, client: str) -> str:
        return f"{_user_key(username)}|{client}"

    def begin(self, username: str, client: str) -> float | None:
        """Before the password is checked: seconds this client must wait (for this user or for any), else
        ``None``. Refused attempts are not counted: waiting is the only way on.

        An allowed attempt is counted against the (username, client) pair at once, as if it failed — so
        parallel guesses cannot all pass before the first one fails — and :meth:`succeeded` takes it back.
        """
        wait = self._client.peek(client)
        if wait is not None:
            return wait
        return self._pair.hit(self._pair_key(username, client))

    def failed(self, username: str, client: str) -> list[str]:
        """Count a failed login; return the alert patterns to record now (each at most once per window)."""
        key = self._pair_key(username, client)
        self._client.hit(client)
        user_over = self._user.hit(_user_key(username)) is not None
        patterns: list[tuple[str, str]] = []
        if self._pair.peek(key) is not None:
            patterns.append(("user_client_backoff", client))
        if self._client.peek(client) is not None:
            patterns.append(("client_failures", client))
        if user_over:
            patterns.append(("user_many_clients", _user_key(username)))
        return [name for name, subject in patterns if self._alerted.hit(f"{name}|{subject}") is None]

    def stuffing(self, username: str, client: str) -> bool:
        """Count a failed login's username for ``client``; True when the client has now failed over the
        ``credential_stuffing`` threshold of distinct usernames in the window (and each new one after)."""
        return self._stuffing is not None and self._stuffing.hit(client, username)

    def succeeded(self, username: str, client: str) -> None:
        """The right credentials from this client: its backoff for this user starts over."""
        key = self._pair_key(username, client)
        for level in self._levels:
            level.clear(key)
