"""The built-in provider: AXB/AXE binding, routing, expiry, release, pool exhaustion, receipts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.virtual_numbers.conftest import HOUR, LANDLINE, X1, X2, X3, A, B, C
from waybill.virtual_numbers import (
    BindConflict,
    CallReceipt,
    NoAvailableNumber,
    OutOfSession,
    VirtualNumberProvider,
    add_numbers,
    pool_size,
)
from waybill.virtual_numbers.models import VnBinding, VnBindingEndpoint, VnCall


def _route(provider, session, clock, caller, x, ext=None, call_id=None, at=None):
    return provider.route_call(session, caller, x, ext, call_id=call_id or f"c-{caller}-{x}-{ext}-{clock.now}",
                               at=at or clock.now)


def test_provider_implements_the_interface(provider):
    assert isinstance(provider, VirtualNumberProvider)


def test_add_numbers_normalises_and_skips_duplicates(session):
    assert add_numbers(session, [X1, "+86 170 0000 0002", X1]) == 2
    assert add_numbers(session, [X2, X3]) == 1
    assert pool_size(session) == 3


def test_axb_routes_both_ways_and_refuses_a_third_party(session, provider, clock):
    add_numbers(session, [X1])
    binding = provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    assert (binding.x_number, binding.extension, binding.mode, binding.ref) == (X1, None, "axb", "shp_1")
    assert binding.expires_at == clock.now + HOUR

    to_b = _route(provider, session, clock, A, X1)
    assert to_b.routed and to_b.callee == B and to_b.binding_id == binding.id and to_b.x_number == X1
    assert B not in repr(to_b)  # the callee's number stays out of reprs (logs, tracebacks)
    to_a = _route(provider, session, clock, "+86 139-3333-4444", "170 0000 0001")  # any accepted spelling
    assert to_a.routed and to_a.callee == A
    stranger = _route(provider, session, clock, C, X1)
    assert not stranger.routed and stranger.reason == "out_of_session" and stranger.callee is None


def test_landline_endpoints_work(session, provider, clock):
    add_numbers(session, [X1])
    provider.bind_axb(session, A, "(021) 6432-1234", ttl=HOUR, ref="shp_1")
    assert _route(provider, session, clock, A, X1).callee == LANDLINE
    assert _route(provider, session, clock, "+86 21 6432 1234", X1).callee == A


def test_axe_needs_the_extension_from_a_but_not_for_the_call_back(session, provider, clock):
    add_numbers(session, [X1])
    binding = provider.bind_axe(session, A, B, ttl=HOUR, ref="shp_1")
    assert binding.mode == "axe" and binding.x_number == X1
    assert binding.extension is not None and len(binding.extension) == 4 and binding.extension.isdigit()
    ext = binding.extension
    wrong = f"{(int(ext) + 1) % 10000:04d}"
    assert _route(provider, session, clock, A, X1, ext).callee == B
    assert not _route(provider, session, clock, A, X1, None).routed
    assert not _route(provider, session, clock, A, X1, wrong).routed
    assert _route(provider, session, clock, B, X1, None).callee == A
    assert _route(provider, session, clock, B, X1, ext).callee == A
    assert not _route(provider, session, clock, B, X1, wrong).routed
    assert not _route(provider, session, clock, C, X1, ext).routed


def test_axe_extensions_on_one_x_are_distinct(session, provider):
    add_numbers(session, [X1])
    pairs = [(f"138000000{i:02d}", f"139000000{i:02d}") for i in range(20)]
    bindings = [provider.bind_axe(session, a, b, ttl=HOUR, ref=f"r{i}") for i, (a, b) in enumerate(pairs)]
    assert {b.x_number for b in bindings} == {X1}
    assert len({b.extension for b in bindings}) == 20


def test_live_bindings_on_one_x_never_share_an_endpoint(session, provider, clock):
    add_numbers(session, [X1, X2])
    ab = provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    ac = provider.bind_axb(session, A, C, ttl=HOUR, ref="r2")
    assert ab.x_number != ac.x_number
    with pytest.raises(NoAvailableNumber):  # B is live on one X, C on the other
        provider.bind_axb(session, B, C, ttl=HOUR, ref="r3")
    # Parties that share nothing with the live bindings may reuse either X.
    provider.bind_axb(session, "13600000001", "13600000002", ttl=HOUR, ref="r4")
    assert _route(provider, session, clock, A, ab.x_number).callee == B
    assert _route(provider, session, clock, A, ac.x_number).callee == C


def test_no_available_number_when_the_pool_is_empty_or_exhausted(session, provider):
    with pytest.raises(NoAvailableNumber):
        provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    add_numbers(session, [X1])
    provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    with pytest.raises(NoAvailableNumber):
        provider.bind_axe(session, A, C, ttl=HOUR, ref="r2")
    assert session.scalar(select(func.count()).select_from(VnBinding)) == 1  # the failures left nothing


def test_expired_binding_is_out_of_session_and_its_x_is_reusable(session, provider, clock):
    add_numbers(session, [X1])
    old = provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    # Routing checks the expiry itself, even before anything marked the row inactive.
    assert not _route(provider, session, clock, A, X1, at=old.expires_at).routed
    assert not _route(provider, session, clock, B, X1, at=old.expires_at + timedelta(seconds=1)).routed
    clock.advance(2 * HOUR)
    new = provider.bind_axb(session, A, C, ttl=HOUR, ref="r2")  # lazily frees the expired binding's X
    assert new.x_number == X1 and new.id != old.id
    assert session.get(VnBinding, old.id).active is False
    assert _route(provider, session, clock, A, X1).callee == C
    assert not _route(provider, session, clock, B, X1).routed  # the old pair is out of session


def test_release_now(session, provider, clock):
    add_numbers(session, [X1])
    binding = provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    provider.release(session, binding.id)
    row = session.get(VnBinding, binding.id)
    assert row.active is False and row.released_at == clock.now
    assert not _route(provider, session, clock, A, X1).routed
    provider.release(session, binding.id)  # harmless twice
    again = provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")  # same parties and ref: a new binding
    assert again.id != binding.id and _route(provider, session, clock, B, X1).callee == A
    with pytest.raises(OutOfSession):
        provider.release(session, "vnb_unknown")


def test_scheduled_release_keeps_a_grace_period_for_call_backs(session, provider, clock):
    add_numbers(session, [X1])
    binding = provider.bind_axb(session, A, B, ttl=24 * HOUR, ref="r1")
    grace_end = clock.now + timedelta(minutes=30)
    provider.release(session, binding.id, at=grace_end)
    assert session.get(VnBinding, binding.id).expires_at == grace_end
    assert _route(provider, session, clock, B, X1, at=grace_end - timedelta(minutes=1)).callee == A
    assert not _route(provider, session, clock, B, X1, at=grace_end).routed
    clock.advance(timedelta(minutes=31))
    provider.bind_axb(session, A, C, ttl=HOUR, ref="r2")  # the X is free again after the grace period
    assert _route(provider, session, clock, A, X1).callee == C


def test_grace_period_counts_from_release_even_beyond_the_original_ttl(session, provider, clock):
    add_numbers(session, [X1])
    binding = provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    grace_end = clock.now + 72 * HOUR  # delivered now; the recipient may call back for three days
    provider.release(session, binding.id, at=grace_end)
    assert session.get(VnBinding, binding.id).expires_at == grace_end
    assert _route(provider, session, clock, B, X1, at=clock.now + 2 * HOUR).callee == A
    assert not _route(provider, session, clock, B, X1, at=grace_end).routed
    # An expired binding is never revived by a later release.
    clock.advance(73 * HOUR)
    provider.release(session, binding.id, at=clock.now + HOUR)
    assert not _route(provider, session, clock, B, X1).routed


def test_same_ref_is_idempotent_and_other_parties_conflict(session, provider):
    add_numbers(session, [X1, X2])
    first = provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    assert provider.bind_axb(session, A, B, ttl=2 * HOUR, ref="shp_1") == first
    with pytest.raises(BindConflict):
        provider.bind_axb(session, A, C, ttl=HOUR, ref="shp_1")
    with pytest.raises(BindConflict):
        provider.bind_axb(session, B, A, ttl=HOUR, ref="shp_1")  # roles matter
    with pytest.raises(BindConflict):
        provider.bind_axe(session, A, B, ttl=HOUR, ref="shp_1")


def test_invalid_arguments(session, provider, clock):
    add_numbers(session, [X1])
    with pytest.raises(ValueError):
        provider.bind_axb(session, A, "+86 138 1111 2222", ttl=HOUR, ref="r")  # the same person twice
    with pytest.raises(ValueError):
        provider.bind_axb(session, A, B, ttl=timedelta(0), ref="r")
    with pytest.raises(ValueError):
        provider.bind_axb(session, A, B, ttl=HOUR, ref="")
    with pytest.raises(ValueError) as info:
        provider.bind_axb(session, A, "12345", ttl=HOUR, ref="r")
    assert "12345" not in str(info.value)
    provider.bind_axb(session, A, B, ttl=HOUR, ref="r")
    # A switch may hand over anything as the caller or X: that is out of session, not an error.
    assert not _route(provider, session, clock, "anonymous", X1).routed
    assert not _route(provider, session, clock, A, "not-a-number").routed


def test_calls_are_logged_once_and_receipts_are_idempotent(session, provider, clock):
    add_numbers(session, [X1])
    binding = provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    _route(provider, session, clock, A, X1, call_id="call-1")
    _route(provider, session, clock, A, X1, call_id="call-1")  # the switch asked twice
    _route(provider, session, clock, C, X1, call_id="call-2")
    calls = {c.call_id: c for c in session.scalars(select(VnCall))}
    assert set(calls) == {"call-1", "call-2"}
    assert (calls["call-1"].outcome, calls["call-1"].binding_id) == ("routed", binding.id)
    assert (calls["call-2"].outcome, calls["call-2"].binding_id) == ("out_of_session", None)
    assert calls["call-1"].caller_hash == provider.endpoint_hash(A)

    receipt = CallReceipt(call_id="call-1", x_number=X1, started_at=clock.now, duration_s=42, caller=A,
                          release_cause=16)
    assert provider.record_receipt(session, receipt) is True
    assert provider.record_receipt(session, receipt) is False
    changed = CallReceipt(call_id="call-1", x_number=X1, started_at=clock.now, duration_s=99, caller=A)
    assert provider.record_receipt(session, changed) is False  # a duplicate changes nothing
    session.expire_all()
    row = session.get(VnCall, "call-1")
    assert (row.duration_s, row.release_cause, row.outcome) == (42, 16, "routed")

    # A receipt for a call never routed here (e.g. routed by the switch alone) is stored once as well.
    foreign = CallReceipt(call_id="call-9", x_number=X1, started_at=clock.now, duration_s=5, caller=B,
                          binding_id=binding.id)
    assert provider.record_receipt(session, foreign) is True
    assert provider.record_receipt(session, foreign) is False
    assert session.get(VnCall, "call-9").binding_id == binding.id
    dangling = CallReceipt(call_id="call-10", x_number=X1, started_at=clock.now, duration_s=0,
                           binding_id="vnb_gone", routed=False)
    assert provider.record_receipt(session, dangling) is True
    assert session.get(VnCall, "call-10").binding_id is None


def test_endpoint_rows_follow_the_binding(session, provider, clock):
    add_numbers(session, [X1])
    binding = provider.bind_axb(session, A, B, ttl=HOUR, ref="r1")
    rows = session.scalars(select(VnBindingEndpoint).where(VnBindingEndpoint.binding_id == binding.id)).all()
    assert {(r.role, r.endpoint_hash) for r in rows} == {("a", provider.endpoint_hash(A)),
                                                          ("b", provider.endpoint_hash(B))}
    assert all(len(r.endpoint_hash) == 32 and r.active and r.x_number == X1 for r in rows)
    provider.release(session, binding.id)
    session.expire_all()
    rows = session.scalars(select(VnBindingEndpoint).where(VnBindingEndpoint.binding_id == binding.id)).all()
    assert not any(r.active for r in rows)


def test_one_courier_reaches_fifty_recipients_through_a_four_number_pool(session, provider, clock):
    """AXE: a courier's bindings share X numbers (each has its own extension); a recipient still reaches
    exactly one courier per X. The fifth binding of one courier used to be NoAvailableNumber (503)."""
    add_numbers(session, [X1, X2, X3, "17000000004"])
    recipients = [f"1390000{i:04d}" for i in range(50)]
    bindings = [provider.bind_axe(session, A, b, ttl=HOUR, ref=f"shp_{i}") for i, b in enumerate(recipients)]
    assert len({b.x_number for b in bindings}) <= 4
    assert len({(b.x_number, b.extension) for b in bindings}) == 50
    for i, (recipient, binding) in enumerate(zip(recipients, bindings, strict=True)):
        x, ext = binding.x_number, binding.extension
        assert provider.route_call(session, A, x, ext, call_id=f"a{i}", at=clock.now).callee == recipient
        assert provider.route_call(session, recipient, x, None, call_id=f"b{i}", at=clock.now).callee == A
    # X alone from the courier is ambiguous among their bindings: refused, never guessed.
    assert not provider.route_call(session, A, bindings[0].x_number, None, call_id="n", at=clock.now).routed
    # AXB keeps the strict rule: each endpoint reaches its peer by X alone, so a courier needs one X per peer.
    others = [f"1360000{i:04d}" for i in range(5)]
    axb = [provider.bind_axb(session, C, b, ttl=HOUR, ref=f"axb_{i}") for i, b in enumerate(others[:4])]
    assert len({b.x_number for b in axb}) == 4
    with pytest.raises(NoAvailableNumber):
        provider.bind_axb(session, C, others[4], ttl=HOUR, ref="axb_4")
