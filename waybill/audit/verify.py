"""Verifying the audit chains: every shard walked in sequence order, the shards in parallel.

Each shard's head (seq, hash) is read first, all heads in one statement (one snapshot), and each walk stops at
its head: events appended while it runs are not part of what is being verified, so a write committing during
the walk cannot look like "events missing at the end" (PostgreSQL, read committed). Given a session factory,
the heads and every ``batch`` events are each read in a short transaction of their own, so a long walk holds no
lock a writer waits for (on SQLite the factory's sessions must begin deferred transactions; see
:attr:`waybill.services.Services.read_session_factory`).

A walk may start from a known-good place of a shard (``start``: a verified checkpoint's (seq, hash)), so a daily
verify reads a day of events, not all of them. Rows are read with Core, not the ORM: building an object per
event cost most of the walk.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from waybill.audit.chain import GENESIS, chain_hash
from waybill.models import AuditEvent, AuditHead

_HEAD, _EVENTS = cast(Table, AuditHead.__table__), cast(Table, AuditEvent.__table__)
#: Shard numbers the settings allow (``WAYBILL_AUDIT_SHARDS`` is at most 256).
MAX_SHARDS = 256
_WALK_COLUMNS = [c for c in _EVENTS.c if c.name not in ("seq", "shard")]


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


def read_heads(source: VerifySource) -> tuple[list[_Head], list[int]]:
    """Every shard's head and highest stored place (one snapshot), and shards holding events but no head."""
    top = (select(func.max(_EVENTS.c.shard_seq)).where(_EVENTS.c.shard == _HEAD.c.id)
           .correlate(_HEAD).scalar_subquery())
    with _reading(source) as s:
        heads = [_Head(int(r[0]), int(r[1]), bytes(r[2]), None if r[3] is None else int(r[3]))
                 for r in s.execute(select(_HEAD.c.id, _HEAD.c.seq, _HEAD.c.hash, top).order_by(_HEAD.c.id))]
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
                .order_by(_EVENTS.c.shard_seq).limit(batch)).all()
        if not rows:
            break
        for ev in rows:
            count += 1
            if ev.shard_seq != expected:
                reason = "missing events before this one" if ev.shard_seq > expected else "out of order"
                return bad(reason, expected, found_seq=ev.shard_seq)
            if bytes(ev.prev_hash) != prev:
                return bad("broken link", ev.shard_seq)
            digest = chain_hash(key, prev, ev.shard_seq, ev, shard)
            if not hmac.compare_digest(digest, bytes(ev.hash)):
                return bad("content altered", ev.shard_seq)
            signed = marks.get(ev.shard_seq)
            if signed is not None and not hmac.compare_digest(digest, signed):
                return bad("differs from a checkpoint", ev.shard_seq, checkpoint_seq=ev.shard_seq)
            prev, expected, last = digest, expected + 1, ev.shard_seq
        if after_chunk is not None:
            after_chunk(last)
    if head.seq != last or not hmac.compare_digest(head.hash, prev):
        return bad("events missing at the end", last + 1)
    if head.top is not None and head.top > head.seq:  # rows added behind the chain's back (in the heads' snapshot)
        return bad("events after the head", head.seq + 1)
    return ShardResult(shard, True, count, head.seq, None, head.hash, from_seq)


def verify(source: VerifySource, key: bytes, *, batch: int = 5000,
           after_chunk: Callable[[int], None] | None = None,
           start: Mapping[int, tuple[int, bytes]] | None = None, workers: int = 4,
           marks: Mapping[int, Mapping[int, bytes]] | None = None) -> VerifyResult:
    """Verify every shard (in parallel over ``workers`` threads when given a session factory); report each
    shard's first edited, deleted, inserted or moved event.

    ``start`` maps a shard to a known-good (seq, hash) to walk from (incremental verify). ``marks`` maps a shard to
    the places and hashes signed checkpoints give it (see :func:`verify_shard`). ``after_chunk`` is told the last
    place checked after each chunk (progress; tests commit a write there).
    """
    heads, stray = read_heads(source)
    start = start or {}
    marks = marks or {}

    def one(head: _Head) -> ShardResult:
        from_seq, from_hash = start.get(head.shard, (0, GENESIS))
        return verify_shard(source, key, head, from_seq=from_seq, from_hash=from_hash, batch=batch,
                            after_chunk=after_chunk, marks=marks.get(head.shard))

    # A factory bound to one connection (a caller's transaction, its sessions savepoints on it) cannot be shared
    # by threads either: their savepoints would interleave on the one connection.
    one_connection = isinstance(getattr(source, "kw", {}).get("bind"), Connection)
    if isinstance(source, Session) or one_connection or workers <= 1 or len(heads) <= 1:
        results = [one(h) for h in heads]  # one session cannot be shared by threads
        if isinstance(source, Session):
            source.expunge_all()
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(heads)), thread_name_prefix="audit-verify") as pool:
            results = list(pool.map(one, heads))
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
