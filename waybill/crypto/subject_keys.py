"""Subject keys: one data key per party (sender, recipient) of each shipment, wrapped by key store keys.

The hierarchy, and why (README "Retention" says it for operators):

- a party's personal data (fields, masked snapshot, virtual-number endpoint, messages, requests) is sealed
  under that party's own data key (ciphertext format 2, :mod:`waybill.crypto.vault`);
- while the contract runs, the data key is wrapped by the *active-period* key of its creation day
  (``ap-YYYYMMDD``, China Standard Time): each such key wraps one day's keys (10 million shipments a day make
  2e7 wrappings, far below the 2^32 random-nonce bound of GCM) and each data key encrypts a dozen fields;
- when the contract ends it is re-wrapped under the key of its *end day* (``ed-YYYYMMDD-gN``);
- retention destroys whole end-day keys in the key store; the rows go too. A restored older copy of the
  database holds only wrapped keys, and every key that ever wrapped them is gone from the store.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from waybill.crypto.aead import key_sealer, open_key, seal_key
from waybill.crypto.keystore import KeyDestroyed, KeyStore
from waybill.models import Shipment, SubjectKey

CST = ZoneInfo("Asia/Shanghai")
PARTIES = ("sender", "recipient")
_KEY_LEN = {"aes-256-gcm": 32, "sm4-gcm": 16}
_END_KEY = re.compile(r"ed-([0-9]{8})-g([0-9]+)")
CACHE_SIZE = 100_000


class SubjectKeyGone(LookupError):
    """The party's data key no longer exists (its data was destroyed) or its wrapping key was destroyed."""


def day_of(at: datetime) -> date:
    """The calendar day (China Standard Time) that names the period keys of ``at``."""
    return at.astimezone(CST).date()


def active_key_id(day: date) -> str:
    return f"ap-{day:%Y%m%d}"


def end_key_day(key_id: str) -> date | None:
    match = _END_KEY.fullmatch(key_id)
    return None if match is None else datetime.strptime(match.group(1), "%Y%m%d").date()


def key_day(key_id: str) -> date:
    """The day a key store key is named after (``ap-`` or ``ed-``)."""
    return datetime.strptime(key_id[3:11], "%Y%m%d").date()


def _aad(key_id: int, shipment_id: str, party: str, algorithm: str) -> bytes:
    return f"waybill-subject-key|{key_id}|{shipment_id}|{party}|{algorithm}".encode()


@contextmanager
def connect(engine: Engine | None, connection: Connection | None) -> Iterator[Connection]:
    """``connection`` when one was lent (a migration's), else a fresh connection of ``engine``."""
    if connection is not None:
        yield connection
        return
    assert engine is not None
    with engine.connect() as conn:
        yield conn


class SubjectKeyring:
    """Makes, finds, re-wraps and forgets subject keys; the vault asks it for a key by id to decrypt."""

    def __init__(self, store: KeyStore, algorithm: str, engine: Engine | None = None, *,
                 connection: Connection | None = None) -> None:
        if algorithm not in _KEY_LEN:
            raise ValueError(f"unknown algorithm {algorithm}")
        self.store = store
        self.algorithm = algorithm
        self._engine = engine
        self._connection = connection
        self._cache: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    # -- wrapping ---------------------------------------------------------------------------------------------
    @staticmethod
    def _seal(kek: bytes, key_id: int, shipment_id: str, party: str, algorithm: str, key: bytes) -> bytes:
        return seal_key(kek, algorithm, key, _aad(key_id, shipment_id, party, algorithm))

    @staticmethod
    def _open(kek: bytes, row: SubjectKey) -> bytes:
        return open_key(kek, row.algorithm, bytes(row.wrapped),
                        _aad(row.id, row.shipment_id, row.party, row.algorithm))

    def _remember(self, key_id: int, algorithm: str, key: bytes) -> None:
        with self._lock:
            self._cache[key_id] = (algorithm, key)
            self._cache.move_to_end(key_id)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)

    def forget(self, key_ids: Iterable[int]) -> None:
        """Drop keys from this process's cache (their rows are being deleted)."""
        with self._lock:
            for key_id in key_ids:
                self._cache.pop(key_id, None)

    # -- making and finding -----------------------------------------------------------------------------------
    def new(self, shipment_id: str, party: str, now: datetime) -> SubjectKey:
        """A fresh data key for ``party`` of ``shipment_id`` (a row for the caller to add; usable at once)."""
        return SubjectKey(**self.new_rows([(shipment_id, party, now)])[0])

    def new_rows(self, parties: Sequence[tuple[str, str, datetime]]) -> list[dict[str, Any]]:
        """Fresh data keys for ``(shipment id, party, created at)`` triples, as ``subject_keys`` column values for
        the caller to insert (usable at once): each day's wrapping key is fetched, and its cipher made, once."""
        if any(party not in PARTIES for _, party, _ in parties):
            raise ValueError("party must be sender or recipient")
        algorithm, size = self.algorithm, _KEY_LEN[self.algorithm]
        sealers: dict[str, Callable[[bytes, bytes], bytes]] = {}
        rows: list[dict[str, Any]] = []
        made: list[tuple[int, bytes]] = []
        for shipment_id, party, now in parties:
            wrapping = active_key_id(day_of(now))
            seal = sealers.get(wrapping)
            if seal is None:
                seal = sealers[wrapping] = key_sealer(self.store.ensure(wrapping), algorithm)
            key = os.urandom(size)
            key_id = secrets.randbits(62) + 1  # random: an id of a rolled-back key is never handed out again
            rows.append({"id": key_id, "shipment_id": shipment_id, "party": party, "algorithm": algorithm,
                         "wrapping_key_id": wrapping, "created_under": wrapping,
                         "wrapped": seal(key, _aad(key_id, shipment_id, party, algorithm)), "created_at": now})
            made.append((key_id, key))
        with self._lock:
            for key_id, key in made:
                self._cache[key_id] = (algorithm, key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return rows

    @staticmethod
    def key_id(session: Session, shipment_id: str, party: str) -> int | None:
        """The party's data key id, or None when its data was destroyed."""
        return session.scalar(select(SubjectKey.id).where(SubjectKey.shipment_id == shipment_id,
                                                          SubjectKey.party == party))

    def _connect(self) -> AbstractContextManager[Connection]:
        return connect(self._engine, self._connection)

    def _load(self, rows: Sequence[SubjectKey]) -> None:
        for row in rows:
            try:
                kek = self.store.get(row.wrapping_key_id)
            except KeyDestroyed:
                continue  # the key it is wrapped under is destroyed: so is the data
            self._remember(row.id, row.algorithm, self._open(kek, row))

    def get(self, key_id: int) -> tuple[str, bytes]:
        """``(algorithm, key)`` of a data key, or :class:`SubjectKeyGone`."""
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None:
            return hit
        if not 0 < key_id < 2**63:
            raise SubjectKeyGone("unknown subject key")
        self.prefetch([key_id])
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is None:
            raise SubjectKeyGone("the subject key is destroyed")
        return hit

    def prefetch(self, key_ids: Iterable[int]) -> None:
        """Load many data keys in one query (listings decrypt a page of shipments)."""
        with self._lock:
            wanted = [k for k in set(key_ids) if k not in self._cache and 0 < k < 2**63]
        for start in range(0, len(wanted), 500):
            with self._connect() as conn:
                rows = conn.execute(select(SubjectKey.__table__).where(
                    SubjectKey.id.in_(wanted[start:start + 500]))).all()
            self._load([SubjectKey(**row._asdict()) for row in rows])

    # -- re-wrapping ------------------------------------------------------------------------------------------
    def current_end_key(self, day: date) -> str:
        """The newest generation of the end-day key of ``day`` (made when there is none)."""
        prefix = f"ed-{day:%Y%m%d}-g"
        gens = [int(k[len(prefix):]) for k in self.store.ids() if k.startswith(prefix)]
        key_id = f"{prefix}{max(gens) if gens else 1}"
        self.store.ensure(key_id)
        return key_id

    def next_end_key(self, key_id: str) -> str:
        """A fresh generation for the day of ``key_id`` (one past every generation the store holds)."""
        day = key_day(key_id)
        prefix = f"ed-{day:%Y%m%d}-g"
        gens = [int(k[len(prefix):]) for k in self.store.ids() if k.startswith(prefix)]
        gens.append(int(key_id.rsplit("-g", 1)[1]))
        fresh = f"{prefix}{max(gens) + 1}"
        self.store.ensure(fresh)
        return fresh

    def rewrap(self, rows: Sequence[SubjectKey], to_key_id: str) -> list[tuple[int, bytes]]:
        """New wrappings of ``rows`` under ``to_key_id``: ``(id, wrapped)`` pairs for the caller to store.

        Rows whose current wrapping key is destroyed already are skipped (their data is gone)."""
        kek_to = self.store.ensure(to_key_id)
        keks: dict[str, bytes | None] = {}
        out: list[tuple[int, bytes]] = []
        for row in rows:
            if row.wrapping_key_id not in keks:
                try:
                    keks[row.wrapping_key_id] = self.store.get(row.wrapping_key_id)
                except KeyDestroyed:
                    keks[row.wrapping_key_id] = None
            kek = keks[row.wrapping_key_id]
            if kek is None:
                continue
            key = self._open(kek, row)
            out.append((row.id, self._seal(kek_to, row.id, row.shipment_id, row.party, row.algorithm, key)))
        return out

    def end_contract(self, session: Session, shipment: Shipment, ended_at: datetime) -> str:
        """The shipment's contract ended (delivered, cancelled, returned): retention counts from ``ended_at``,
        and its data keys are re-wrapped under the key of its end day; returns that key's id."""
        if shipment.ended_at is None:
            shipment.ended_at = ended_at
        target = self.current_end_key(day_of(ended_at))
        rows = list(session.scalars(select(SubjectKey).where(SubjectKey.shipment_id == shipment.id)))
        for key_id, wrapped in self.rewrap(rows, target):
            row = next(r for r in rows if r.id == key_id)
            row.wrapped = wrapped
            row.wrapping_key_id = target
        session.flush()
        return target
