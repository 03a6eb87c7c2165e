"""Verifying the audit chains: every shard walked in sequence order, the shards in parallel.

Each shard's head (seq, hash) is read first, all heads in one statement (one snapshot), and each walk stops at
its head: events appended while it runs are not part of what is being verified, so a write committing during
the walk cannot look like "events missing at the end" (PostgreSQL, read committed). Given a session factory,
the heads and every ``batch`` events are each read in a short transaction of their own, so a long walk holds no
lock a writer waits for (on SQLite the factory's sessions must begin deferred transactions; see
:attr:`waybill.services.Services.read_session_factory`).

A walk may start from a known-good place of a shard (``start``: a verified checkpoint's (seq, hash)), so a daily
verify reads a day of events, not all of them. Rows are read with Core, not the ORM, and without the models'
type conversions: building an object, decoding JSON and converting a datetime per event cost most of the walk.
Hashing is CPU-bound, so a big walk on PostgreSQL is split over walker processes (:mod:`waybill.audit.walk`).
"""

from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, DateTime, Engine, Table, Text, and_, exists, func, or_, select, type_coerce
from sqlalchemy import cast as sa_cast
from sqlalchemy.orm import Session, sessionmaker

from waybill.audit.chain import GENESIS, canonical_values, link_hash
from waybill.errors import AuditWalkFailed
from waybill.models import AuditEvent, AuditHead

_HEAD, _EVENTS = cast(Table, AuditHead.__table__), cast(Table, AuditEvent.__table__)
#: Shard numbers the settings allow (``WAYBILL_AUDIT_SHARDS`` is at most 256).
MAX_SHARDS = 256
# What the walk reads, in this order, without the models' type conversions (their cost per row was most of
# the fetch): ``at`` as the driver's datetime (made UTC by _utc_iso, as UTCDateTime would), ``fields`` as its
# stored JSON text (decoded by _json_list, which remembers the few distinct values a log holds).
_WALK_COLUMNS = [_EVENTS.c.shard_seq, type_coerce(_EVENTS.c.at, DateTime(timezone=True)), _EVENTS.c.actor,
                 _EVENTS.c.role, _EVENTS.c.action, _EVENTS.c.object_type, _EVENTS.c.object_id, _EVENTS.c.purpose,
                 sa_cast(_EVENTS.c.fields, Text), _EVENTS.c.outcome, _EVENTS.c.client_addr, _EVENTS.c.request_id,
                 _EVENTS.c.prev_hash, _EVENTS.c.hash]


def _utc_iso(at: datetime) -> str:
    """``isoformat()`` of the time in UTC, as the append hashed it (``UTCDateTime``'s reading of the value)."""
    offset = at.utcoffset()
    if offset is None:  # SQLite keeps no offset: the value is UTC
        return at.replace(tzinfo=UTC).isoformat()
    return at.isoformat() if not offset else at.astimezone(UTC).isoformat()


@lru_cache(maxsize=4096)
def _json_list(text: str) -> Any:
    """The stored ``fields`` decoded (kept: a log holds few distinct lists; the walk copies what it hashes)."""
    return json.loads(text)


@dataclass
class ShardResult:
    """One chain's verdict: ``first_bad`` names its first bad event (``seq`` is the place in the shard)."""

    shard: int
    ok: bool
    events: int
    head_seq: int
    first_bad: dict[str, Any] | None = None
    head_hash: bytes = GENESIS
    from_seq: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"shard": self.shard, "ok": self.ok, "events": self.events, "head_seq": self.head_seq,
                "from_seq": self.from_seq, "first_bad": self.first_bad}

    def to_json(self) -> dict[str, Any]:
        """Everything, for a walker process's answer (:func:`from_json`)."""
        return {**self.as_dict(), "head_hash": self.head_hash.hex()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ShardResult:
        return cls(int(d["shard"]), bool(d["ok"]), int(d["events"]), int(d["head_seq"]), d["first_bad"],
                   bytes.fromhex(d["head_hash"]), int(d["from_seq"]))


@dataclass
class VerifyResult:
    """The whole log's verdict. ``events`` counts the events checked; ``head_seq`` sums the shards' heads (the
    number of events in a sound log); ``first_bad`` is the lowest bad shard's first bad event, with its shard."""

    ok: bool
    events: int
    head_seq: int
    first_bad: dict[str, Any] | None = field(default=None)
    shards: list[ShardResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "head_seq": self.head_seq, "first_bad": self.first_bad,
                "shards": [r.as_dict() for r in self.shards]}


#: Where :func:`verify` reads: a session factory (each read a short transaction of its own, the way to run it
#: for real) or one open session (the caller's transaction; tests, or a caller already inside one).
VerifySource = Session | Callable[[], Session]


@contextmanager
def _reading(source: VerifySource) -> Iterator[Session]:
    """One short read: a fresh session closed (its transaction ended) at once, or the caller's own session."""
    if isinstance(source, Session):
        yield source
        return
    with source() as session:
        yield session


@dataclass(frozen=True)
class _Head:
    shard: int
    seq: int
    hash: bytes
    top: int | None  # the highest stored place of the shard, in the heads' snapshot
    count: int = -1  # rows of the shard at places 1..seq (same snapshot); -1: not counted
    low: int | None = None  # the lowest stored place of the shard


def read_heads(source: VerifySource) -> tuple[list[_Head], list[int]]:
    """Every shard's head and highest stored place (one snapshot), and shards holding events but no head."""
    of_head = _EVENTS.c.shard == _HEAD.c.id
    top = select(func.max(_EVENTS.c.shard_seq)).where(of_head).correlate(_HEAD).scalar_subquery()
    low = select(func.min(_EVENTS.c.shard_seq)).where(of_head).correlate(_HEAD).scalar_subquery()
    # The census: a walk reads each place once, in order, so a second row at a taken place (PostgreSQL's
    # partitions cannot enforce (shard, shard_seq) alone), one before a walk's start (incremental verify) or at a
    # place below 1 would go unread. Counting every shard's rows at places 1..head (an index-only range count)
    # and its lowest place catches them, whatever the walk skipped.
    count = (select(func.count()).where(of_head, _EVENTS.c.shard_seq >= 1, _EVENTS.c.shard_seq <= _HEAD.c.seq)
             .correlate(_HEAD).scalar_subquery())
    with _reading(source) as s:
        heads = [_Head(int(r[0]), int(r[1]), bytes(r[2]), None if r[3] is None else int(r[3]), int(r[4]),
                       None if r[5] is None else int(r[5]))
                 for r in s.execute(select(_HEAD.c.id, _HEAD.c.seq, _HEAD.c.hash, top, count, low)
                                    .order_by(_HEAD.c.id))]
        known = {h.shard for h in heads}
        # Rows of a chain without a head were added behind the log's back: each possible shard is one index
        # probe, plus one range probe for numbers no setting allows.
        probes = [k for k in range(MAX_SHARDS) if k not in known]
        stray = [k for k in probes if s.scalar(select(exists().where(_EVENTS.c.shard == k)))]
        if s.scalar(select(exists().where(or_(_EVENTS.c.shard < 0, _EVENTS.c.shard >= MAX_SHARDS)))):
            stray.append(-1)
    return heads, stray


def verify_shard(source: VerifySource, key: bytes, head: _Head, *, from_seq: int = 0, from_hash: bytes = GENESIS,
                 batch: int = 5000, after_chunk: Callable[[int], None] | None = None,
                 marks: Mapping[int, bytes] | None = None) -> ShardResult:
    """Walk ``head.shard``'s chain from place ``from_seq`` (whose hash is ``from_hash``) to its head.

    ``marks`` maps places to the hash a signed checkpoint gives them: the chain must reach each (a head behind one
    is a truncated and rewound chain) and have that hash there (else it was rewritten after the checkpoint).
    """
    shard = head.shard
    expected, prev, count, last = from_seq + 1, from_hash, 0, from_seq
    marks = {seq: h for seq, h in (marks or {}).items() if seq > from_seq}

    def bad(reason: str, seq: int, **extra: Any) -> ShardResult:
        return ShardResult(shard, False, count, head.seq, {"shard": shard, "seq": seq, "reason": reason, **extra},
                           head.hash, from_seq)

    if head.seq < from_seq:
        return bad("head behind a checkpoint", head.seq + 1, checkpoint_seq=from_seq)
    if marks and head.seq < max(marks):
        # The events up to the checkpoint's place were there when it was signed: the first missing one is bad.
        return bad("head behind a checkpoint", head.seq + 1, checkpoint_seq=max(marks))
    while last < head.seq:
        with _reading(source) as s:
            rows = s.execute(
                select(*_WALK_COLUMNS).where(and_(_EVENTS.c.shard == shard, _EVENTS.c.shard_seq > last,
                                                  _EVENTS.c.shard_seq <= head.seq))
                .order_by(_EVENTS.c.shard_seq).limit(batch)).tuples().all()
        if not rows:
            break
        for (seq, at, actor, role, action, object_type, object_id, purpose, fields, outcome, client_addr,
             request_id, prev_hash, stored_hash) in rows:
            count += 1
            if seq != expected:
                reason = "missing events before this one" if seq > expected else "out of order"
                return bad(reason, expected, found_seq=seq)
            if bytes(prev_hash) != prev:
                return bad("broken link", seq)
            digest = link_hash(key, prev, canonical_values(
                shard, seq, _utc_iso(at), actor, role, action, object_type, object_id, purpose,
                _json_list(fields), outcome, client_addr, request_id))
            if not hmac.compare_digest(digest, bytes(stored_hash)):
                return bad("content altered", seq)
            signed = marks.get(seq)
            if signed is not None and not hmac.compare_digest(digest, signed):
                return bad("differs from a checkpoint", seq, checkpoint_seq=seq)
            prev, expected, last = digest, expected + 1, seq
        if after_chunk is not None:
            after_chunk(last)
    if head.seq != last or not hmac.compare_digest(head.hash, prev):
        return bad("events missing at the end", last + 1)
    if head.top is not None and head.top > head.seq:  # rows added behind the chain's back (in the heads' snapshot)
        return bad("events after the head", head.seq + 1)
    return ShardResult(shard, True, count, head.seq, None, head.hash, from_seq)


#: A walk of at least this many events is split over processes (when the source allows it): below it, starting
#: the processes (each imports the models) costs more than a second core saves.
PROCESS_WALK_MIN = 50_000


def _process_url(source: VerifySource) -> str | None:
    """The database URL a walker process can open for ``source``: a session factory bound to an engine of a
    PostgreSQL database. Not SQLite: the embedded single-node store, whose logs are small; and a second process
    closing its connection to a WAL-mode file may checkpoint under this process's open read (seen as "disk I/O
    error")."""
    bind = source.kw.get("bind") if isinstance(source, sessionmaker) else None
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        return None
    return bind.url.render_as_string(hide_password=False)


def _one_connection(source: VerifySource) -> bool:
    """Whether ``source``'s sessions all use one connection (a factory bound to a Connection: tests)."""
    return isinstance(source, sessionmaker) and isinstance(source.kw.get("bind"), Connection)


def head_to_json(head: _Head, from_seq: int, from_hash: bytes, marks: Mapping[int, bytes] | None = None) -> list[Any]:
    return [head.shard, head.seq, head.hash.hex(), head.top, from_seq, from_hash.hex(),
            {str(k): v.hex() for k, v in (marks or {}).items()}]


def head_from_json(task: list[Any]) -> tuple[_Head, int, bytes, dict[int, bytes]]:
    """A walker's task: the head, where to start (place, hash) and the checkpoints' marks of that shard."""
    shard, seq, hash_hex, top, from_seq, from_hex, marks = task
    return (_Head(int(shard), int(seq), bytes.fromhex(hash_hex), None if top is None else int(top)), int(from_seq),
            bytes.fromhex(from_hex), {int(k): bytes.fromhex(v) for k, v in marks.items()})


def _walk_in_processes(url: str, key: bytes, tasks: list[tuple[_Head, int, bytes]], batch: int,
                       processes: int, marks: Mapping[int, Mapping[int, bytes]]) -> list[ShardResult]:
    """Walk the shards in ``processes`` fresh interpreters (``python -m waybill.audit.walk``), the biggest
    shards first, each to the least loaded process. Fresh interpreters rather than multiprocessing: forking a
    server's process copies its threads' locks, and spawning re-runs its main module."""
    loads: list[list[list[Any]]] = [[] for _ in range(min(processes, len(tasks)))]
    size = [0] * len(loads)
    for head, from_seq, from_hash in sorted(tasks, key=lambda t: t[1] - t[0].seq):
        i = size.index(min(size))
        loads[i].append(head_to_json(head, from_seq, from_hash, marks.get(head.shard)))
        size[i] += max(0, head.seq - from_seq)
    walkers: list[subprocess.Popen[bytes]] = []
    results: list[ShardResult] = []
    try:
        for load in loads:
            # The URL (it may hold a password) and the key go through a pipe, never the command line.
            # -P: the working directory is not put on the path, so a "waybill" folder there cannot stand in for
            # the package and be handed the URL and the key.
            p = subprocess.Popen([sys.executable, "-P", "-m", "waybill.audit.walk"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
            walkers.append(p)
            assert p.stdin is not None
            p.stdin.write(json.dumps({"url": url, "key": key.hex(), "batch": batch, "tasks": load}).encode())
            p.stdin.close()
        for p in walkers:
            assert p.stdout is not None
            out = p.stdout.read()
            if p.wait() != 0:
                raise AuditWalkFailed()  # not verified: neither sound nor broken (503, try again)
            results.extend(ShardResult.from_json(r) for r in json.loads(out))
    finally:
        for p in walkers:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
    return results


def _census(heads: list[_Head], results: list[ShardResult]) -> list[ShardResult]:
    """Every head answered for exactly once, and each shard's rows counted against its head.

    A shard a walker process did not answer for (or answered for twice, or for another head) is not verified: it
    fails, never passes by omission. A sound walk of a shard with a place taken twice, or one below 1, is turned
    into that shard's failure."""
    answers: dict[int, list[ShardResult]] = {}
    for r in results:
        answers.setdefault(r.shard, []).append(r)
    out = []
    for h in heads:
        got = answers.get(h.shard, [])
        if len(got) != 1 or got[0].head_seq != h.seq:
            out.append(ShardResult(h.shard, False, 0, h.seq, {"shard": h.shard, "seq": 1,
                                   "reason": "not verified: the walk did not answer for this shard"}, h.hash))
            continue
        r = got[0]
        if r.ok and h.low is not None and h.low < 1:
            r = ShardResult(h.shard, False, r.events, h.seq, {"shard": h.shard, "seq": h.low,
                            "reason": "events before the chain's first place"}, h.hash, r.from_seq)
        elif r.ok and h.count not in (-1, h.seq):
            r = ShardResult(h.shard, False, r.events, h.seq, {"shard": h.shard, "seq": 1, "reason": (
                "a place taken twice" if h.count > h.seq else "missing events before this one"),
                "rows": h.count}, h.hash, r.from_seq)
        out.append(r)
    return out


def verify(source: VerifySource, key: bytes, *, batch: int = 10_000,
           after_chunk: Callable[[int], None] | None = None,
           start: Mapping[int, tuple[int, bytes]] | None = None, workers: int = 4,
           processes: int | None = None, marks: Mapping[int, Mapping[int, bytes]] | None = None) -> VerifyResult:
    """Verify every shard, in parallel when given a session factory; report each shard's first edited, deleted,
    inserted or moved event.

    ``start`` maps a shard to a known-good (seq, hash) to walk from (incremental verify). ``marks`` maps a shard to
    the places and hashes signed checkpoints give it (see :func:`verify_shard`). ``after_chunk`` is told
    the last place checked after each chunk (progress; tests commit a write there). The shards are walked by
    ``processes`` processes (default: one per CPU when the walk has ``PROCESS_WALK_MIN`` events or more; ``0``:
    never), since hashing is CPU-bound and threads share one interpreter lock; else by ``workers`` threads (they
    overlap the reads' waits).
    """
    heads, stray = read_heads(source)
    start = start or {}
    marks = marks or {}

    def place(head: _Head) -> tuple[int, bytes]:
        return start.get(head.shard, (0, GENESIS))

    def one(head: _Head) -> ShardResult:
        from_seq, from_hash = place(head)
        return verify_shard(source, key, head, from_seq=from_seq, from_hash=from_hash, batch=batch,
                            after_chunk=after_chunk, marks=marks.get(head.shard))

    to_walk = sum(max(0, h.seq - place(h)[0]) for h in heads)
    if processes is None:
        processes = (os.cpu_count() or 1) if to_walk >= PROCESS_WALK_MIN else 0
    url = _process_url(source) if processes > 1 and len(heads) > 1 and after_chunk is None else None
    if url is not None:
        results = _walk_in_processes(url, key, [(h, *place(h)) for h in heads], batch, processes, marks)
    elif isinstance(source, Session) or _one_connection(source) or workers <= 1 or len(heads) <= 1:
        results = [one(h) for h in heads]  # one session, or one connection, cannot be shared by threads
        if isinstance(source, Session):
            source.expunge_all()
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(heads)), thread_name_prefix="audit-verify") as pool:
            results = list(pool.map(one, heads))
    results = _census(heads, results)
    for shard in stray:
        results.append(ShardResult(shard, False, 0, 0,
                                   {"shard": shard, "seq": 1, "reason": "events of a shard without a head"}))
    known = {h.shard for h in heads}
    expected = {shard: from_seq for shard, (from_seq, _hash) in start.items()}
    for shard, places in marks.items():
        if places and max(places) > 0:
            expected[shard] = max(expected.get(shard, 0), max(places))
    for shard, seq in sorted(expected.items()):
        if shard not in known and seq > 0:  # a chain a checkpoint signed (or a verify started in) lost its head
            results.append(ShardResult(shard, False, 0, 0, {"shard": shard, "seq": 1, "reason": "head missing",
                                                            "checkpoint_seq": seq},
                                       from_seq=start.get(shard, (0, GENESIS))[0]))
    results.sort(key=lambda r: r.shard)
    bad = [r for r in results if not r.ok]
    return VerifyResult(not bad, sum(r.events for r in results), sum(r.head_seq for r in results),
                        bad[0].first_bad if bad else None, results)
