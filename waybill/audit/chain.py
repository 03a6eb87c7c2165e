"""The audit chains' arithmetic: which shard an event belongs to, and how an event is hashed into its chain.

Each event's hash is ``HMAC(audit key, previous hash || canonical event)``; keyed, so someone with write access
to the database cannot recompute a chain after editing it. The canonical form of an event of shard 0 is the one
the single chain used before shards existed (so that log verifies unchanged); other shards' events also carry
their shard, so an event moved to another chain no longer verifies there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

#: The hash before a chain's first event.
GENESIS = bytes(32)


class ChainedEvent(Protocol):
    """What the hash covers: an ``AuditEvent`` row, a pending event, or a row read by Core."""

    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def object_type(self) -> str | None: ...
    @property
    def object_id(self) -> str | None: ...
    @property
    def purpose(self) -> str | None: ...
    @property
    def fields(self) -> list[str]: ...
    @property
    def outcome(self) -> str: ...
    @property
    def client_addr(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...


def shard_of(object_id: str | None, actor: str, shards: int) -> int:
    """The chain of an event: its object's (so one shipment's trail stays in one chain), else its actor's.

    A keyed-free stable hash (BLAKE2b), the same in every process and release; not Python's ``hash``.
    """
    if shards <= 1:
        return 0
    key = f"o:{object_id}" if object_id else f"a:{actor}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % shards


# json.dumps(doc, ensure_ascii=False, separators=(",", ":")) without building an encoder per call (the same
# output: these are the encoder's only non-default options).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def canonical(shard: int, seq: int, ev: ChainedEvent) -> bytes:
    return canonical_values(shard, seq, ev.at.isoformat(), ev.actor, ev.role, ev.action, ev.object_type,
                            ev.object_id, ev.purpose, ev.fields, ev.outcome, ev.client_addr, ev.request_id)


def canonical_values(shard: int, seq: int, at_iso: str, actor: str, role: str, action: str,
                     object_type: str | None, object_id: str | None, purpose: str | None, fields: Iterable[str],
                     outcome: str, client_addr: str | None, request_id: str | None) -> bytes:
    """:func:`canonical` from the values (``at_iso``: the UTC time's ``isoformat()``); the verifier's fast path."""
    doc: list[Any] = [seq, at_iso, actor, role, action, object_type, object_id, purpose, list(fields), outcome,
                      client_addr, request_id]
    if shard:
        doc.insert(0, shard)
    return _ENCODE(doc).encode()


def chain_hash(key: bytes, prev: bytes, seq: int, ev: ChainedEvent, shard: int = 0) -> bytes:
    """The hash of ``ev`` at place ``seq`` of ``shard``'s chain, after ``prev``."""
    return link_hash(key, prev, canonical(shard, seq, ev))


def link_hash(key: bytes, prev: bytes, canonical_event: bytes) -> bytes:
    """``HMAC-SHA256(key, prev || canonical event)`` (the one-shot ``hmac.digest``: no HMAC object per event)."""
    return hmac.digest(key, bytes(prev) + canonical_event, "sha256")
