"""Persistence shared by every provider: bindings, endpoint hashes, routing, the call log, receipts.

:class:`StoredProvider` implements everything except *choosing* the X number: the built-in provider picks
one from its own pool, a cloud adapter gets one from the cloud. Both keep the same local records, so that
routing, release and call receipts work the same way for each.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from waybill import outbox, uow
from waybill.crypto.subject_keys import SubjectKeyring
from waybill.crypto.vault import FieldCodec
from waybill.ids import looks_like, new_id
from waybill.keyfile import KeyMaterial
from waybill.models import utcnow
from waybill.phones import InvalidPhone, normalize_phone
from waybill.virtual_numbers.base import (
    BindConflict,
    Binding,
    CallReceipt,
    CallRoute,
    Mode,
    OutOfSession,
    VirtualNumberError,
    check_ttl,
)
from waybill.virtual_numbers.models import VnBinding, VnBindingEndpoint, VnCall

# The endpoint key comes from the key file's own "phone_hash" secret: independent of the blind index (whose
# secret once keyed these hashes too, see ENDPOINT_KEY_VERSION), so a leak or rotation of one leaves the other.
ENDPOINT_KEY_INFO = b"waybill virtual-number endpoint hash v2"
#: The key generation of endpoint and caller hashes; rows of an older one are upgraded by
#: :func:`upgrade_legacy_hashes` (1: derived from the blind-index secret, before migration 0012).
ENDPOINT_KEY_VERSION = 2
OUT_OF_SESSION = "out_of_session"
#: The outbox topic that carries a release to a remote provider (retried until it is through).
RELEASE_TOPIC = "virtual_numbers.release"
MAX_REF_LENGTH = 64
_NO_SYNC = {"synchronize_session": False}


def derive_endpoint_key(keys: KeyMaterial) -> bytes:
    """The HMAC key for endpoint and caller hashes, derived from the key file's ``phone_hash`` secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=ENDPOINT_KEY_INFO).derive(
        keys.secret("phone_hash"))


def upgrade_legacy_hashes(session: Session, codec: FieldCodec, endpoint_key: bytes) -> dict[str, int]:
    """Re-key hashes written under the blind-index-derived key (key version 1) with the endpoint key.

    Endpoint hashes are recomputed from the binding's own ciphertexts (a_ct, b_ct), so live bindings keep
    routing and the allocation rule keeps seeing them; an endpoint whose ciphertext no longer decrypts
    (its data destroyed) is deleted. A call's caller hash has no ciphertext to recompute it from: it is
    cleared (the old hash is tied to the blind-index secret, which is what this separation ends).
    Idempotent; a no-op once every row is at the current version. Flushes, never commits.
    """
    hasher = hmac.new(endpoint_key, digestmod=hashlib.sha256)
    rows = session.execute(
        select(VnBindingEndpoint.binding_id, VnBindingEndpoint.endpoint_hash, VnBindingEndpoint.role,
               VnBinding.a_ct, VnBinding.b_ct)
        .join(VnBinding, VnBinding.id == VnBindingEndpoint.binding_id)
        .where(VnBindingEndpoint.key_version < ENDPOINT_KEY_VERSION)).all()
    rehashed = dropped = 0
    for binding_id, old_hash, role, a_ct, b_ct in rows:
        column = "a_ct" if role == "a" else "b_ct"
        where = (VnBindingEndpoint.binding_id == binding_id) & (VnBindingEndpoint.endpoint_hash == old_hash)
        try:
            number = codec.decrypt(a_ct if role == "a" else b_ct, table="vn_bindings", column=column,
                                   row_id=binding_id)
        except Exception:  # destroyed or unreadable: nothing can route to it any more
            session.execute(delete(VnBindingEndpoint).where(where), execution_options=_NO_SYNC)
            dropped += 1
            continue
        digest = hasher.copy()
        digest.update(normalise(number).encode())
        session.execute(update(VnBindingEndpoint).where(where).values(
            endpoint_hash=digest.digest(), key_version=ENDPOINT_KEY_VERSION), execution_options=_NO_SYNC)
        rehashed += 1
    cleared = session.execute(update(VnCall).where(VnCall.key_version < ENDPOINT_KEY_VERSION).values(
        caller_hash=None, key_version=ENDPOINT_KEY_VERSION), execution_options=_NO_SYNC)
    session.flush()
    return {"endpoints_rehashed": rehashed, "endpoints_dropped": dropped,
            "caller_hashes_cleared": int(cleared.rowcount or 0)}  # type: ignore[attr-defined]


def normalise(number: str) -> str:
    """The canonical spelling of a phone number; raises :class:`InvalidPhone` (never echoing it)."""
    return normalize_phone(number).number


def check_ref(ref: str) -> None:
    """A ref names the business object (e.g. a shipment id); it must fit the column."""
    if not isinstance(ref, str) or not ref or len(ref) > MAX_REF_LENGTH:
        raise ValueError(f"ref must be 1..{MAX_REF_LENGTH} characters")


def _extension_ok(role: str, dialled: str | None, bound: str | None) -> bool:
    if role == "a":
        return dialled == bound
    return dialled in (None, "", bound)


def after_transaction(session: Session, fn: Callable[[], None], *, on_commit: bool = True,
                      on_rollback: bool = True) -> None:
    """Run ``fn`` once the session's unit of work has ended (committed and/or rolled back), so a remote call
    never waits on the network while this transaction holds row locks. A bare session (a unit test holding
    its own transaction) has no such end to wait for: ``fn`` runs at once."""
    tx = uow.current(session)
    if tx is None:
        fn()
        return
    if on_commit:
        tx.after_commit(fn)
    if on_rollback:
        tx.on_rollback(fn)


def to_binding(row: VnBinding) -> Binding:
    return Binding(id=row.id, x_number=row.x_number, extension=row.extension, expires_at=row.expires_at,
                   mode=row.mode, ref=row.ref)  # type: ignore[arg-type]


class StoredProvider:
    """Local bindings, routing and call log; subclasses decide how an X number is obtained."""

    name = "stored"
    #: Expire due bindings before choosing an X. An adapter that calls a remote provider first turns this
    #: off and expires after the remote call: the UPDATE takes row locks, which no network wait may hold.
    expire_before_allocate = True

    def __init__(self, codec: FieldCodec, endpoint_key: bytes, *, clock: Callable[[], datetime] = utcnow) -> None:
        if len(endpoint_key) < 32:
            raise ValueError("endpoint_key must be at least 32 bytes")
        self._codec = codec
        self._key = endpoint_key
        self._clock = clock

    def __repr__(self) -> str:  # never show key material
        return f"<{type(self).__name__}>"

    # -- hashing -------------------------------------------------------------------------------------------
    def endpoint_hash(self, normalised: str) -> bytes:
        """Full-width keyed hash of a normalised number: equality lookups without storing the number."""
        return hmac.new(self._key, normalised.encode(), hashlib.sha256).digest()

    def _try_hash(self, raw: str | None) -> tuple[str | None, bytes | None]:
        if raw is None:
            return None, None
        try:
            number = normalise(raw)
        except (InvalidPhone, TypeError):
            return None, None
        return number, self.endpoint_hash(number)

    # -- bindings ------------------------------------------------------------------------------------------
    def bind_axb(self, session: Session, a: str, b: str, *, ttl: timedelta, ref: str) -> Binding:
        """Bind A and B to an X on which neither is bound yet."""
        return self._bind(session, "axb", a, b, ttl=ttl, ref=ref)

    def bind_axe(self, session: Session, a: str, b: str, *, ttl: timedelta, ref: str) -> Binding:
        """Bind A and B to an X plus an extension that reaches B; B calling X reaches A."""
        return self._bind(session, "axe", a, b, ttl=ttl, ref=ref)

    def _bind(self, session: Session, mode: Mode, a: str, b: str, *, ttl: timedelta, ref: str) -> Binding:
        """Validate, expire what is due, answer a repeated ref with its live binding, else allocate."""
        check_ttl(ttl)
        check_ref(ref)
        a_number, b_number = normalise(a), normalise(b)
        if a_number == b_number:
            raise ValueError("the two endpoints of a binding must differ")
        ha, hb = self.endpoint_hash(a_number), self.endpoint_hash(b_number)
        now = self._clock()
        if self.expire_before_allocate:
            # Lazily free what has expired, so expired bindings neither block numbers nor ever route again.
            self.expire_due(session, now)
        existing = self.existing_for_ref(session, ref, mode, ha, hb, now)
        if existing is not None:
            return existing  # a repeated request: no second binding (local or remote)
        return self._allocate(session, mode, a_number, b_number, ha, hb, ttl=ttl, ref=ref, now=now)

    def _allocate(self, session: Session, mode: Mode, a_number: str, b_number: str, ha: bytes, hb: bytes, *,
                  ttl: timedelta, ref: str, now: datetime) -> Binding:
        """Provider-specific: find an X (and extension) and record the binding."""
        raise NotImplementedError

    def expire_due(self, session: Session, now: datetime) -> int:
        """Deactivate bindings whose expiry has passed, freeing their X numbers and extensions."""
        ended = session.execute(update(VnBindingEndpoint).where(
            VnBindingEndpoint.active.is_(True), VnBindingEndpoint.expires_at <= now).values(active=False),
            execution_options=_NO_SYNC)
        session.execute(update(VnBinding).where(VnBinding.active.is_(True), VnBinding.expires_at <= now)
                        .values(active=False), execution_options=_NO_SYNC)
        return int(ended.rowcount or 0)  # type: ignore[attr-defined]

    def existing_for_ref(self, session: Session, ref: str, mode: Mode, ha: bytes, hb: bytes,
                         now: datetime) -> Binding | None:
        """The live binding of ``ref`` if it binds the same parties in the same mode (an idempotent repeat).

        Raises BindConflict when ``ref`` is bound live to other parties or in another mode.
        """
        row = session.scalars(select(VnBinding).where(
            VnBinding.provider == self.name, VnBinding.ref == ref, VnBinding.active.is_(True),
            VnBinding.released_at.is_(None), VnBinding.expires_at > now)).first()
        if row is None:
            return None
        query = select(VnBindingEndpoint.role, VnBindingEndpoint.endpoint_hash).where(
            VnBindingEndpoint.binding_id == row.id)
        parties = {(role, bytes(digest)) for role, digest in session.execute(query)}
        if row.mode != mode or parties != {("a", ha), ("b", hb)}:
            raise BindConflict()
        return to_binding(row)

    def insert_binding(self, session: Session, *, mode: Mode, x_number: str, extension: str | None, a: str,
                       b: str, ref: str, now: datetime, expires_at: datetime,
                       provider_ref: str | None = None) -> VnBinding:
        """Insert a binding and its endpoint rows inside a savepoint.

        On a unique-index violation (an endpoint or extension already live on this X, or ``ref`` already
        bound) the savepoint is rolled back and :class:`IntegrityError` propagates, leaving the caller's
        transaction usable for another attempt.
        """
        binding_id = new_id("vnb")
        a_ct = self._codec.encrypt(a, table="vn_bindings", column="a_ct", row_id=binding_id)
        # B is the recipient of the shipment ``ref``: sealed under their own key, so it dies with their data.
        b_key = SubjectKeyring.key_id(session, ref, "recipient") if looks_like("shp", ref) else None
        b_ct = self._codec.encrypt(b, table="vn_bindings", column="b_ct", row_id=binding_id, subject_key=b_key)
        # Endpoint rows go in in hash order: two transactions racing for the same pair then wait on each
        # other in the same order, so they conflict cleanly instead of deadlocking.
        endpoints = sorted([(self.endpoint_hash(a), "a"), (self.endpoint_hash(b), "b")])
        # AXE: A reaches B only by X plus the extension, so A is unique per (X, extension), not per X.
        slots = {"a": (extension or "") if mode == "axe" else "", "b": ""}
        with session.begin_nested():
            session.execute(insert(VnBinding).values(
                id=binding_id, provider=self.name, provider_ref=provider_ref, mode=mode, x_number=x_number,
                extension=extension, ref=ref, a_ct=a_ct, b_ct=b_ct, active=True, created_at=now,
                expires_at=expires_at, released_at=None))
            for digest, role in endpoints:
                session.execute(insert(VnBindingEndpoint).values(
                    binding_id=binding_id, endpoint_hash=digest, x_number=x_number, role=role, slot=slots[role],
                    active=True, expires_at=expires_at, key_version=ENDPOINT_KEY_VERSION))
        row = session.get(VnBinding, binding_id)
        assert row is not None
        return row

    def _deactivate(self, session: Session, binding_id: str, **values: object) -> None:
        session.execute(update(VnBinding).where(VnBinding.id == binding_id).values(active=False, **values),
                        execution_options=_NO_SYNC)
        session.execute(update(VnBindingEndpoint).where(VnBindingEndpoint.binding_id == binding_id)
                        .values(active=False), execution_options=_NO_SYNC)

    # -- release -----------------------------------------------------------------------------------------
    def release_remote(self, provider_ref: str, x_number: str, at: datetime | None) -> None:
        """Hook for adapters: end (``at`` None) or shorten the binding at the remote provider; raises on
        failure, treats "already gone" as done. Called outside any transaction. The built-in provider has
        nobody to tell."""

    def sync_remote_release(self, session: Session, binding_id: str) -> None:
        """Bring the remote provider in line with the local row (the outbox job; idempotent, retried)."""
        row = session.get(VnBinding, binding_id)
        if row is None or row.provider != self.name or row.provider_ref is None:
            return
        ended = not row.active or row.released_at is not None or row.expires_at <= self._clock()
        self.release_remote(row.provider_ref, row.x_number, None if ended else row.expires_at)

    def _schedule_remote_release(self, session: Session, row: VnBinding, at: datetime | None) -> None:
        """Tell the remote provider once this transaction has committed: at once (after commit) and, durably,
        through an outbox job that retries until the provider has it (a lost call would leave the old
        pair reachable at the provider until the binding's original expiry)."""
        if row.provider_ref is None:
            return
        outbox.enqueue(session, RELEASE_TOPIC, {"binding_id": row.id})
        provider_ref, x_number = row.provider_ref, row.x_number

        def now_if_possible() -> None:
            with contextlib.suppress(VirtualNumberError):  # the outbox job tries again
                self.release_remote(provider_ref, x_number, at)

        after_transaction(session, now_if_possible, on_rollback=False)

    def release(self, session: Session, binding_id: str, *, at: datetime | None = None) -> None:
        """Release now, or let a live binding end exactly at ``at`` (a call-back grace period after delivery).

        ``at`` may lie beyond the original expiry: the grace period is counted from the delivery, whatever
        was left of the binding's lifetime. A binding already released or expired is never revived. The
        local rows change in this transaction; a remote provider is told after it commits (never while the
        row lock taken here is held).
        """
        row = session.scalars(select(VnBinding).where(VnBinding.id == binding_id, VnBinding.provider == self.name)
                              .with_for_update()).first()
        if row is None:
            raise OutOfSession()
        now = self._clock()
        if not row.active or row.released_at is not None or row.expires_at <= now:
            if row.active:
                self._deactivate(session, row.id)
            session.flush()
            return
        if at is not None and at > now:
            session.execute(update(VnBinding).where(VnBinding.id == row.id).values(expires_at=at),
                            execution_options=_NO_SYNC)
            session.execute(update(VnBindingEndpoint).where(VnBindingEndpoint.binding_id == row.id)
                            .values(expires_at=at), execution_options=_NO_SYNC)
            self._schedule_remote_release(session, row, at)
        else:
            self._deactivate(session, row.id, released_at=now)
            self._schedule_remote_release(session, row, None)
        session.expire(row)
        session.flush()

    # -- calls ---------------------------------------------------------------------------------------------
    def route_call(self, session: Session, caller: str, x: str, extension: str | None, *, call_id: str,
                   at: datetime) -> CallRoute:
        """Route a call to X: the binding's other endpoint, or out of session. The call is logged once."""
        x_number = self._try_hash(x)[0]
        caller_number, caller_hash = self._try_hash(caller)
        # An unparsable X is no number of ours; "invalid" is logged instead of whatever was dialled.
        route = CallRoute(routed=False, call_id=call_id, x_number=x_number or "invalid", reason=OUT_OF_SESSION)
        if x_number is not None and caller_hash is not None:
            route = self._route(session, caller_hash, x_number, extension, call_id, at) or route
        self._log_route(session, route, caller_hash, at)
        return route

    def _route(self, session: Session, caller_hash: bytes, x_number: str, extension: str | None, call_id: str,
               at: datetime) -> CallRoute | None:
        # The caller's live rows on X: at most one with the empty slot (X alone) and, for an AXE caller A,
        # at most one per extension. A dialled extension that is A's slot picks that binding; otherwise
        # the empty-slot row decides.
        dialled = extension or ""
        found = session.execute(
            select(VnBindingEndpoint.role, VnBindingEndpoint.slot, VnBinding)
            .join(VnBinding, VnBinding.id == VnBindingEndpoint.binding_id)
            .where(VnBindingEndpoint.x_number == x_number, VnBindingEndpoint.endpoint_hash == caller_hash,
                   VnBindingEndpoint.slot.in_({"", dialled}),
                   VnBindingEndpoint.active.is_(True), VnBindingEndpoint.expires_at > at,
                   # Checked again on the binding itself: a stale "active" flag must never route.
                   VnBinding.active.is_(True), VnBinding.released_at.is_(None), VnBinding.expires_at > at)
        ).all()
        if not found:
            return None
        role, _slot, row = max(found, key=lambda r: r[1] != "")  # an extension match wins over X alone
        # AXE: A reaches B only through X plus the extension; B's call-back needs none, but a wrong one typed
        # by B is refused rather than guessed at.
        if row.mode == "axe" and not _extension_ok(role, extension, row.extension):
            return None
        column = "b_ct" if role == "a" else "a_ct"
        callee = self._codec.decrypt(getattr(row, column), table="vn_bindings", column=column, row_id=row.id)
        return CallRoute(routed=True, call_id=call_id, x_number=x_number, extension=row.extension,
                         binding_id=row.id, callee=callee)

    def _log_route(self, session: Session, route: CallRoute, caller_hash: bytes | None, at: datetime) -> None:
        if session.get(VnCall, route.call_id) is not None:
            return  # the switch asked again for the same call: log it once
        try:
            with session.begin_nested():
                session.execute(insert(VnCall).values(
                    call_id=route.call_id, binding_id=route.binding_id, x_number=route.x_number,
                    outcome="routed" if route.routed else OUT_OF_SESSION, caller_hash=caller_hash, started_at=at,
                    routed_at=self._clock(), key_version=ENDPOINT_KEY_VERSION))
        except IntegrityError:
            pass  # a concurrent request for the same call id logged it first

    def binding_for_provider_ref(self, session: Session, provider_ref: str | None) -> str | None:
        if not provider_ref:
            return None
        return session.scalars(select(VnBinding.id).where(VnBinding.provider == self.name,
                                                          VnBinding.provider_ref == provider_ref)).first()

    def record_receipt(self, session: Session, receipt: CallReceipt) -> bool:
        """Store a receipt once per ``call_id``; a duplicate (already receipted) changes nothing -> False."""
        binding_id = self.binding_for_provider_ref(session, receipt.provider_ref)
        if receipt.binding_id is not None:  # only a binding that exists: a dangling id must not drop the receipt
            binding_id = session.scalars(select(VnBinding.id).where(VnBinding.id == receipt.binding_id)).first()
        now = self._clock()
        values = {"duration_s": max(0, int(receipt.duration_s)), "release_cause": receipt.release_cause,
                  "receipt_at": now}
        for _ in range(2):
            done = session.execute(update(VnCall).where(VnCall.call_id == receipt.call_id,
                                                        VnCall.receipt_at.is_(None)).values(**values),
                                   execution_options=_NO_SYNC)
            if done.rowcount:  # type: ignore[attr-defined]
                return True  # the receipt of a call this provider routed itself
            if session.scalars(select(VnCall.call_id).where(VnCall.call_id == receipt.call_id)).first():
                return False
            x_number = self._try_hash(receipt.x_number)[0] or "invalid"
            try:
                with session.begin_nested():
                    session.execute(insert(VnCall).values(
                        call_id=receipt.call_id, binding_id=binding_id, x_number=x_number,
                        outcome="routed" if receipt.routed else OUT_OF_SESSION,
                        caller_hash=self._try_hash(receipt.caller)[1], started_at=receipt.started_at,
                        key_version=ENDPOINT_KEY_VERSION, **values))
                return True
            except IntegrityError:
                continue  # a concurrent copy of this receipt was inserted first: look again
        return False
