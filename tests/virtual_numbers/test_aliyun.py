"""The Aliyun Dyplsapi adapter against a loopback fake of the service (signatures checked by the fake)."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.virtual_numbers.conftest import HOUR, LANDLINE, A, B, C
from tests.virtual_numbers.fake_aliyun import FakeAliyun
from waybill.virtual_numbers import (
    BindConflict,
    NoAvailableNumber,
    ProviderError,
    VirtualNumberProvider,
    derive_endpoint_key,
)
from waybill.virtual_numbers.aliyun import AliyunProvider, from_beijing, parse_receipts, sign, to_beijing
from waybill.virtual_numbers.models import VnBinding, VnCall

SECRET = "fake-secret-123"


@pytest.fixture
def fake():
    with FakeAliyun(access_key_secret=SECRET) as server:
        yield server


def _provider(services, clock, fake, **overrides):
    kwargs = {"access_key_id": fake.access_key_id, "access_key_secret": SECRET, "pool_key": fake.pool_key,
              "endpoint": fake.url, "timeout": 5.0, "clock": clock}
    kwargs.update(overrides)
    return AliyunProvider(services.codec, derive_endpoint_key(services.keys), **kwargs)


def test_signature_matches_the_documented_example():
    # The worked example of Alibaba Cloud's RPC signature documentation (signature version 1.0).
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML", "SignatureMethod": "HMAC-SHA1",
              "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "SignatureVersion": "1.0",
              "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26"}
    assert sign("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_beijing_time_round_trip():
    moment = datetime(2026, 11, 23, 16, 0, 0, tzinfo=UTC)
    assert to_beijing(moment) == "2026-11-24 00:00:00"
    assert from_beijing("2026-11-24 00:00:00") == moment


def test_bind_axb_route_and_unbind(session, services, clock, fake):
    provider = _provider(services, clock, fake)
    assert isinstance(provider, VirtualNumberProvider)
    binding = provider.bind_axb(session, A, "(021) 6432 1234", ttl=HOUR, ref="shp_1")
    assert binding.x_number == fake.pool[0] and binding.mode == "axb" and binding.extension is None
    sent = fake.requests[-1]
    assert sent["Action"] == "BindAxb" and sent["PoolKey"] == fake.pool_key and sent["OutId"] == "shp_1"
    assert (sent["PhoneNoA"], sent["PhoneNoB"]) == (A, "02164321234")  # digits only, as Aliyun wants
    assert sent["Expiration"] == to_beijing(binding.expires_at)
    subs_id = next(iter(fake.bindings))
    assert session.get(VnBinding, binding.id).provider_ref == subs_id

    assert provider.route_call(session, A, binding.x_number, None, call_id="c1", at=clock.now).callee == LANDLINE
    assert provider.route_call(session, LANDLINE, binding.x_number, None, call_id="c2", at=clock.now).callee == A
    # Repeating the request does not make a second remote binding.
    assert provider.bind_axb(session, A, LANDLINE, ttl=HOUR, ref="shp_1") == binding
    assert len(fake.bindings) == 1

    provider.release(session, binding.id)
    assert fake.requests[-1] == {"Action": "UnbindSubscription", "PoolKey": fake.pool_key, "SubsId": subs_id,
                                 "SecretNo": binding.x_number}
    assert fake.bindings == {}
    assert not provider.route_call(session, A, binding.x_number, None, call_id="c3", at=clock.now).routed
    assert fake.rejected == []  # every request was signed correctly


def test_bind_axe_maps_the_parties_for_axn_extension(session, services, clock, fake):
    provider = _provider(services, clock, fake)
    binding = provider.bind_axe(session, A, B, ttl=HOUR, ref="shp_1")
    sent = fake.requests[-1]
    # Aliyun connects X+extension to PhoneNoA, and PhoneNoA calling X to PhoneNoB.
    assert (sent["Action"], sent["PhoneNoA"], sent["PhoneNoB"]) == ("BindAxnExtension", B, A)
    assert binding.mode == "axe" and binding.extension
    x, ext = binding.x_number, binding.extension
    assert provider.route_call(session, A, x, ext, call_id="c1", at=clock.now).callee == B
    assert provider.route_call(session, B, x, None, call_id="c2", at=clock.now).callee == A


def test_scheduled_release_shortens_the_remote_binding(session, services, clock, fake):
    provider = _provider(services, clock, fake)
    binding = provider.bind_axb(session, A, B, ttl=24 * HOUR, ref="shp_1")
    grace_end = (clock.now + timedelta(minutes=30)).replace(microsecond=0)
    provider.release(session, binding.id, at=grace_end)
    sent = fake.requests[-1]
    assert (sent["Action"], sent["OperateType"], sent["Expiration"]) == ("UpdateSubscription", "updateExpire",
                                                                         to_beijing(grace_end))
    assert len(fake.bindings) == 1
    assert session.get(VnBinding, binding.id).expires_at == grace_end


def test_release_of_a_binding_already_gone_at_the_provider(session, services, clock, fake):
    provider = _provider(services, clock, fake)
    binding = provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    fake.bindings.clear()  # expired or unbound on Aliyun's side
    provider.release(session, binding.id)  # isv.SUBS_NOT_EXIST means the goal is reached
    assert fake.rejected == ["isv.SUBS_NOT_EXIST"]
    assert session.get(VnBinding, binding.id).active is False


def test_stale_local_rows_give_way_to_the_provider(session, services, clock, fake):
    provider = _provider(services, clock, fake)
    old = provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    fake.bindings.clear()  # Aliyun dropped it without telling us; it hands out the same X again
    new = provider.bind_axb(session, A, C, ttl=HOUR, ref="shp_2")
    assert new.x_number == old.x_number
    assert session.get(VnBinding, old.id).active is False
    assert provider.route_call(session, A, new.x_number, None, call_id="c1", at=clock.now).callee == C


def test_errors_map_to_named_exceptions(session, services, clock, fake):
    provider = _provider(services, clock, fake)
    fake.pool[:] = fake.pool[:1]
    provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    with pytest.raises(NoAvailableNumber):  # A is already bound on the only X
        provider.bind_axb(session, A, C, ttl=HOUR, ref="shp_2")
    fake.fail_next = "isv.BIND_CONFLICT"
    with pytest.raises(BindConflict):
        provider.bind_axb(session, B, "13600000009", ttl=HOUR, ref="shp_3")
    fake.fail_next = "isv.FLOW_LIMIT"
    with pytest.raises(ProviderError) as info:
        provider.bind_axb(session, "13600000008", "13600000009", ttl=HOUR, ref="shp_4")
    assert info.value.code == "isv.FLOW_LIMIT" and info.value.retryable
    assert session.scalars(select(VnBinding.ref)).all() == ["shp_1"]  # failures leave no local row


def test_wrong_secret_is_refused_and_never_shown(session, services, clock, fake):
    provider = _provider(services, clock, fake, access_key_secret="not-the-secret")
    with pytest.raises(ProviderError) as info:
        provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    assert info.value.code == "SignatureDoesNotMatch" and fake.rejected == ["SignatureDoesNotMatch"]
    for text in (str(info.value), repr(info.value), repr(provider), repr(provider.client)):
        assert "not-the-secret" not in text and A not in text


def test_unreachable_endpoint_is_a_retryable_provider_error(session, services, clock, fake):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    provider = _provider(services, clock, fake, endpoint=f"http://127.0.0.1:{port}/", timeout=2.0)
    with pytest.raises(ProviderError) as info:
        provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    assert info.value.code == "network" and info.value.retryable


def test_call_receipts_are_parsed_and_recorded_once(session, services, clock, fake):
    provider = _provider(services, clock, fake)
    binding = provider.bind_axb(session, A, B, ttl=HOUR, ref="shp_1")
    subs_id = session.get(VnBinding, binding.id).provider_ref
    push = json.dumps([
        {"pool_key": fake.pool_key, "sub_id": int(subs_id), "call_id": "416662cb0001", "phone_no": A,
         "secret_no": binding.x_number, "peer_no": B, "call_type": 0, "call_time": "2026-11-23 12:00:00",
         "start_time": "2026-11-23 12:00:10", "release_time": "2026-11-23 12:01:40", "release_dir": 1,
         "release_cause": 16, "out_id": "shp_1"},
        {"pool_key": fake.pool_key, "call_id": "416662cb0002", "phone_no": A, "secret_no": binding.x_number,
         "peer_no": C, "call_type": 4, "call_time": "2026-11-23 12:05:00", "release_time": "2026-11-23 12:05:00"},
        {"note": "no call id: skipped"},
    ])
    receipts = parse_receipts(push)
    assert [r.call_id for r in receipts] == ["416662cb0001", "416662cb0002"]
    first = receipts[0]
    assert first.duration_s == 90 and first.started_at == datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    assert first.provider_ref == subs_id and first.caller == A and first.routed
    assert A not in repr(first)
    assert receipts[1].routed is False and receipts[1].duration_s == 0

    assert [provider.record_receipt(session, r) for r in receipts] == [True, True]
    assert [provider.record_receipt(session, r) for r in parse_receipts(push)] == [False, False]  # re-delivered
    row = session.get(VnCall, "416662cb0001")
    assert (row.binding_id, row.duration_s, row.release_cause, row.outcome) == (binding.id, 90, 16, "routed")
    assert row.caller_hash == provider.endpoint_hash(A)
    assert session.get(VnCall, "416662cb0002").outcome == "out_of_session"


def test_remote_binding_is_given_back_when_the_unit_of_work_rolls_back(services, clock, fake):
    """A bind reaches Aliyun before the local rows commit; if the work then fails, the compensation the
    adapter registered with the unit of work unbinds it remotely (nothing local would refer to it)."""
    from waybill.uow import unit_of_work

    provider = _provider(services, clock, fake)
    with pytest.raises(RuntimeError), unit_of_work(services.session_factory) as tx:
        provider.bind_axb(tx.session, A, B, ttl=HOUR, ref="shp_rollback")
        assert len(fake.bindings) == 1
        raise RuntimeError("the request failed after the bind")
    assert fake.bindings == {}
    assert fake.requests[-1]["Action"] == "UnbindSubscription"
    # And a committed bind keeps its remote binding.
    with unit_of_work(services.session_factory) as tx:
        provider.bind_axb(tx.session, A, C, ttl=HOUR, ref="shp_commit")
    assert len(fake.bindings) == 1


def test_a_courier_keeps_every_axe_binding_on_one_aliyun_number(session, services, clock, fake):
    """AXN extension: Aliyun puts one courier on the same X with several extensions; locally each is its own
    slot. Before, the second local insert clashed on (X, courier) and the first binding was dropped as stale."""
    provider = _provider(services, clock, fake)
    fake.pool[:] = fake.pool[:1]
    recipients = [f"1390000{i:04d}" for i in range(5)]
    bindings = [provider.bind_axe(session, A, b, ttl=HOUR, ref=f"shp_{i}") for i, b in enumerate(recipients)]
    assert {b.x_number for b in bindings} == {fake.pool[0]} and len(fake.bindings) == 5
    assert all(session.get(VnBinding, b.id).active for b in bindings)
    for i, (recipient, binding) in enumerate(zip(recipients, bindings, strict=True)):
        route = provider.route_call(session, A, binding.x_number, binding.extension, call_id=f"c{i}", at=clock.now)
        assert route.callee == recipient
