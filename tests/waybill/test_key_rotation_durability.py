"""Issue 11 item 18: keys survive a power cut during `keys rotate`, and `keys retire` ends a rotation safely.

A power cut can undo the key file's rename after the database committed data keys re-wrapped under the new
master key: the database then names a master key no file holds. The previous wrapping, kept until retire,
is what still opens those data keys.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import RECIPIENT, SENDER, make_merchant, shipment_body
from waybill import keyfile
from waybill.crypto import rotation
from waybill.crypto.rotation import RetireRefused, retire, rotate
from waybill.crypto.vault import Vault
from waybill.models import DataKey, Shipment


def _populate(env, n=3):
    """Shipments under two data keys (a rotation in between), made through the API."""
    svc = env.services()
    m = make_merchant(svc)
    client = env.app().test_client()
    for i in range(n):
        assert client.post("/v1/shipments", json=shipment_body(f"K-{i}"), headers=m.headers).status_code == 201
    return m


def _all_decrypt(env) -> int:
    """A new process (fresh vault from the key file on disk) decrypts every phone and masked view."""
    vault = Vault(env.engine, env.settings.key_file, env.settings.cipher)
    with env.engine.connect() as conn:
        rows = conn.execute(select(Shipment.id, Shipment.recipient_phone_ct, Shipment.sender_phone_ct)).all()
    for row in rows:
        assert vault.decrypt(row.recipient_phone_ct, table="shipments", column="recipient_phone",
                             row_id=row.id) == RECIPIENT["phone"]
        assert vault.decrypt(row.sender_phone_ct, table="shipments", column="sender_phone",
                             row_id=row.id) == SENDER["phone"]
    return len(rows)


def _api_reads(env, m) -> None:
    client = env.app().test_client()
    r = client.get("/v1/shipments?limit=50", headers=m.headers)
    assert r.status_code == 200, r.get_json()
    assert {s["recipient"]["phone"] for s in r.get_json()["items"]} == {"138******78"}


def test_power_cut_undoing_the_key_file_rename_after_commit_still_decrypts(fresh_env):
    env = fresh_env()
    m = _populate(env)
    key_file = env.settings.key_file
    before = key_file.read_bytes()
    report = rotate(env.engine, key_file, env.settings.cipher)
    with env.engine.connect() as conn:
        assert {r.master_key_id for r in conn.execute(select(DataKey))} == {report.new_master_key}
    # A shipment made after the rotation, under the new data key.
    client = env.app().test_client()
    assert client.post("/v1/shipments", json=shipment_body("K-after"), headers=m.headers).status_code == 201
    # The power cut: the rename of the new key file is lost, the database's commits are not.
    key_file.write_bytes(before)
    assert report.new_master_key not in keyfile.load(key_file).master_keys
    assert _all_decrypt(env) == 4
    _api_reads(env, m)


def test_crash_between_key_file_write_and_commits_still_decrypts(fresh_env, monkeypatch):
    env = fresh_env()
    m = _populate(env)
    rotate(env.engine, env.settings.key_file, env.settings.cipher)  # a second data key, for a partial run
    key_file = env.settings.key_file
    before = key_file.read_bytes()
    calls = []

    def crash(done: int, total: int) -> None:
        calls.append(done)
        raise RuntimeError("power cut")  # after the first data key's commit, before the others

    with pytest.raises(RuntimeError, match="power cut"):
        rotate(env.engine, key_file, env.settings.cipher, progress=crash)
    assert calls == [1]
    with env.engine.connect() as conn:
        assert len({r.master_key_id for r in conn.execute(select(DataKey))}) == 2  # half re-wrapped
    assert _all_decrypt(env) == 3  # with the new key file
    key_file.write_bytes(before)  # and with the file as it was before the rotation
    assert _all_decrypt(env) == 3
    _api_reads(env, m)


def test_rotate_reads_the_key_file_back_and_wraps_only_under_what_is_on_disk(fresh_env, monkeypatch):
    env = fresh_env()
    _populate(env, 1)
    with env.engine.connect() as conn:
        wrapped_before = {r.id: bytes(r.wrapped) for r in conn.execute(select(DataKey))}

    def lost_write(path, material):  # the write "succeeded" but the disk still has the old file
        return None

    monkeypatch.setattr(keyfile, "write", lost_write)
    with pytest.raises(keyfile.KeyFileError):
        rotate(env.engine, env.settings.key_file, env.settings.cipher)
    with env.engine.connect() as conn:
        assert {r.id: bytes(r.wrapped) for r in conn.execute(select(DataKey))} == wrapped_before
    assert _all_decrypt(env) == 1


def test_retire_drops_previous_wrappings_and_old_master_keys(fresh_env):
    env = fresh_env()
    m = _populate(env)
    key_file = env.settings.key_file
    old = keyfile.load(key_file).primary_master_key
    first = rotate(env.engine, key_file, env.settings.cipher)
    second = rotate(env.engine, key_file, env.settings.cipher)
    assert set(keyfile.load(key_file).master_keys) == {old, first.new_master_key, second.new_master_key}
    report = retire(env.engine, key_file)
    assert set(report.retired) == {old, first.new_master_key} and report.dropped_previous >= 1
    material = keyfile.load(key_file)
    assert set(material.master_keys) == {second.new_master_key} == {material.primary_master_key}
    with env.engine.connect() as conn:
        rows = conn.execute(select(DataKey)).all()
    assert all(r.previous_wrapped is None and r.previous_master_key_id is None for r in rows)
    assert _all_decrypt(env) == 3
    _api_reads(env, m)
    assert retire(env.engine, key_file).retired == ()  # nothing left to retire


def test_retire_refuses_while_the_key_file_lacks_the_current_master_key(fresh_env):
    env = fresh_env()
    _populate(env)
    key_file = env.settings.key_file
    before = key_file.read_bytes()
    rotate(env.engine, key_file, env.settings.cipher)
    key_file.write_bytes(before)  # the power-cut state: only the previous wrappings open the data keys
    with pytest.raises(RetireRefused) as err:
        retire(env.engine, key_file)
    assert err.value.code == "key_missing"
    with env.engine.connect() as conn:
        assert all(r.previous_wrapped is not None for r in conn.execute(select(DataKey)))
    assert key_file.read_bytes() == before
    assert _all_decrypt(env) == 3


def test_retire_refuses_a_master_key_still_in_use_or_the_primary(fresh_env):
    env = fresh_env()
    _populate(env, 1)
    key_file = env.settings.key_file
    old = keyfile.load(key_file).primary_master_key
    with pytest.raises(RetireRefused) as err:
        retire(env.engine, key_file, [old])
    assert err.value.code == "key_file"  # it is the primary
    rotate(env.engine, key_file, env.settings.cipher)
    keyfile.add_master_key(key_file)  # promoted, but nothing re-wrapped under it: the previous one is in use
    current = keyfile.load(key_file)
    in_use = next(k for k in current.master_keys if k not in (old, current.primary_master_key))
    with pytest.raises(RetireRefused) as err:
        retire(env.engine, key_file, [in_use])
    assert err.value.code == "key_in_use"
    assert rotation.retire(env.engine, key_file, [old]).retired == (old,)
    assert _all_decrypt(env) == 1
