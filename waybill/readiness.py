"""Readiness checks behind ``GET /readyz``: the database, the key store and Redis (when configured).

Each check is a real round trip with a short timeout and reports only whether it passed and, if not, the
type of the failure or a fixed reason: never a secret, a key, a connection string or an exception's text
(a driver's message may quote the URL with its password).
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from waybill import db, keyfile
from waybill.crypto.aead import CryptoError
from waybill.crypto.keystore import KeyStore, KeyStoreError, LocalKeyStore
from waybill.crypto.kms import MasterKeys
from waybill.crypto.subject_keys import active_key_id, day_of
from waybill.models import utcnow
from waybill.settings import Settings

log = logging.getLogger("waybill.readiness")
TIMEOUT_S = 2.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True} if self.ok else {"ok": False, "error": self.error}


class Readiness:
    """The checks of one process; their clients (a small engine, a Redis client) are made on first use."""

    def __init__(self, settings: Settings, keys: keyfile.KeyMaterial, *, database_url: str | None = None,
                 redis_url: str | None = None, keystore: KeyStore | None = None,
                 master_keys: MasterKeys | None = None) -> None:
        self._settings = settings
        self._keys = keys
        self._keystore = keystore
        self._master_keys = master_keys
        self._database_url = database_url or settings.database_url
        self._redis_url = redis_url if redis_url is not None else settings.redis_url
        self._engine: Engine | None = None
        self._redis: Any = None
        self._lock = threading.Lock()

    def _db_engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                if self._database_url.startswith("sqlite"):
                    # A plain BEGIN: the probe never waits for (or takes) the write lock a request may hold.
                    self._engine = db.make_engine(self._database_url, write_lock=False)
                else:
                    # Its own one-connection pool with a connect timeout: a probe never queues behind requests.
                    self._engine = db.make_engine(self._database_url, pool_size=1, max_overflow=1,
                                                  pool_timeout=TIMEOUT_S,
                                                  connect_args={"connect_timeout": int(TIMEOUT_S)})
            return self._engine

    def check_database(self) -> CheckResult:
        with self._db_engine().connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SET LOCAL statement_timeout = {int(TIMEOUT_S * 1000)}"))
            ok = conn.execute(text("SELECT 1")).scalar_one() == 1
        return CheckResult(ok, None if ok else "unexpected_answer")

    def check_key_store(self) -> CheckResult:
        # The material this process holds, and the file still there, readable, well-formed and owner-only.
        if not self._keys.master_keys or self._keys.primary_master_key not in self._keys.master_keys:
            return CheckResult(False, "key_material_not_loaded")
        try:
            on_disk = keyfile.load(self._settings.key_file)
        except keyfile.KeyFileError:
            return CheckResult(False, "key_file_unreadable")
        # The per-purpose secrets never change in place; different ones mean another installation's file.
        for purpose in keyfile.PURPOSES:
            if not hmac.compare_digest(on_disk.secret(purpose), self._keys.secret(purpose)):
                return CheckResult(False, "key_file_replaced")
        # The period-key store: today's key made or read (every new shipment needs it), so a store the process
        # cannot write (a read-only directory, a full disk) fails readiness instead of every create.
        # A fresh local store each probe (it re-reads and may write the file); a shared one is the service's own.
        store = (self._keystore if self._keystore is not None and self._settings.key_provider == "vault"
                 else LocalKeyStore(self._settings.period_key_file))
        try:
            store.ensure(active_key_id(day_of(utcnow())))
        except (OSError, KeyStoreError, CryptoError):
            return CheckResult(False, "period_key_store_unusable")
        # A KMS: its transit key answers (the primary is read from it, not from a cache).
        if self._master_keys is not None and self._settings.key_provider == "vault":
            try:
                self._master_keys.primary()
            except CryptoError:
                return CheckResult(False, "kms_unavailable")
        return CheckResult(True)

    def check_redis(self) -> CheckResult:
        if not self._redis_url:
            return CheckResult(False, "not_configured")
        with self._lock:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(self._redis_url, socket_timeout=TIMEOUT_S / 2,
                                                   socket_connect_timeout=TIMEOUT_S / 2)
            client = self._redis
        ok = bool(client.ping())
        return CheckResult(ok, None if ok else "no_pong")

    def run(self) -> tuple[bool, dict[str, CheckResult]]:
        """Every check (Redis only when configured); never raises."""
        checks: dict[str, Callable[[], CheckResult]] = {"database": self.check_database,
                                                        "key_store": self.check_key_store}
        if self._redis_url:
            checks["redis"] = self.check_redis
        results: dict[str, CheckResult] = {}
        for name, check in checks.items():
            try:
                result = check()
            except Exception as exc:
                # The type only: the text of a connection error can quote the URL, password included.
                result = CheckResult(False, type(exc).__name__)
            if not result.ok:
                log.warning("readiness check failed", extra={"check": name, "error_type": result.error})
            results[name] = result
        return all(r.ok for r in results.values()), results

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
