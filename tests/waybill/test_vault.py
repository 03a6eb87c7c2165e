"""Envelope encryption: round trips, typed failures, binding, rotation, blind index."""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import select

from waybill import keyfile
from waybill.crypto.rotation import rotate
from waybill.crypto.vault import (
    DecryptionFailed,
    KeyUnavailable,
    MalformedCiphertext,
    UnknownKeyId,
    Vault,
)
from waybill.models import DataKey

BIND = {"table": "shipments", "column": "recipient_name", "row_id": "shp_1"}


def make_vault(env, **kw):
    return Vault(env.engine, env.settings.key_file, env.settings.cipher, **kw)


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "sm4-gcm"])
def test_round_trip_both_ciphers(fresh_env, cipher):
    env = fresh_env(cipher=cipher)
    v = make_vault(env)
    for text in ["张三", "", "😀 mixed 文字 ünïcode", "x" * 5000]:
        blob = v.encrypt(text, **BIND)
        assert text.encode() not in blob or text == ""
        assert blob[1] == (1 if cipher == "aes-256-gcm" else 2)  # algorithm id in the header
        assert v.decrypt(blob, **BIND) == text


def test_nonce_is_fresh_every_time(base_env):
    v = make_vault(base_env)
    assert v.encrypt("张三", **BIND) != v.encrypt("张三", **BIND)


@pytest.mark.parametrize("field,value", [("table", "merchants"), ("column", "sender_name"), ("row_id", "shp_2")])
def test_ciphertext_moved_elsewhere_fails(base_env, field, value):
    v = make_vault(base_env)
    blob = v.encrypt("欧阳娜娜", **BIND)
    with pytest.raises(DecryptionFailed):
        v.decrypt(blob, **{**BIND, field: value})


def test_every_flipped_bit_is_a_typed_error(base_env):
    v = make_vault(base_env)
    blob = v.encrypt("张三", **BIND)
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises((DecryptionFailed, MalformedCiphertext, UnknownKeyId)):
            v.decrypt(bytes(bad), **BIND)


def test_truncated_and_garbage(base_env):
    v = make_vault(base_env)
    blob = v.encrypt("张三", **BIND)
    for bad in (b"", blob[:10], blob[:-1], os.urandom(40)):
        with pytest.raises((DecryptionFailed, MalformedCiphertext, UnknownKeyId)):
            v.decrypt(bad, **BIND)


def test_unknown_key_id(base_env):
    v = make_vault(base_env)
    blob = bytearray(v.encrypt("张三", **BIND))
    blob[2:6] = (999_999).to_bytes(4, "big")
    with pytest.raises(UnknownKeyId):
        v.decrypt(bytes(blob), **BIND)


def test_wrong_key_file_cannot_decrypt(fresh_env, tmp_path):
    a, b = fresh_env(), fresh_env()
    blob = make_vault(a).encrypt("张三", **BIND)
    # Same data key table, wrong key file: the master key is not there.
    other = tmp_path / "other-keys.json"
    shutil.copy(b.settings.key_file, other)
    os.chmod(other, 0o600)
    with pytest.raises(KeyUnavailable):
        Vault(a.engine, other, "aes-256-gcm").decrypt(blob, **BIND)


def test_wrong_master_key_material_is_detected(fresh_env, tmp_path):
    env = fresh_env()
    blob = make_vault(env).encrypt("张三", **BIND)
    material = keyfile.load(env.settings.key_file)
    forged = keyfile.KeyMaterial(material.primary_master_key,
                                 {material.primary_master_key: os.urandom(32)}, material.secrets)
    path = tmp_path / "forged.json"
    keyfile.write(path, forged)
    with pytest.raises(DecryptionFailed):
        Vault(env.engine, path, "aes-256-gcm").decrypt(blob, **BIND)


def test_rotation_rewraps_and_old_ciphertexts_stay_readable(fresh_env):
    env = fresh_env()
    v = make_vault(env)
    old_blob = v.encrypt("欧阳娜娜", **BIND)
    with env.engine.connect() as c:
        before = {r.id: bytes(r.wrapped) for r in c.execute(select(DataKey))}
    old_mk = keyfile.load(env.settings.key_file).primary_master_key
    report = rotate(env.engine, env.settings.key_file, "aes-256-gcm")
    material = keyfile.load(env.settings.key_file)
    assert material.primary_master_key == report.new_master_key != old_mk
    with env.engine.connect() as c:
        after = {r.id: r for r in c.execute(select(DataKey))}
    assert report.rewrapped == len(before)
    for dek_id, wrapped in before.items():
        assert bytes(after[dek_id].wrapped) != wrapped
        assert after[dek_id].master_key_id == report.new_master_key
    assert after[report.new_data_key].active and not after[min(before)].active
    fresh = make_vault(env)  # a new process after rotation
    assert fresh.decrypt(old_blob, **BIND) == "欧阳娜娜"
    new_blob = fresh.encrypt("张三", **BIND)
    assert int.from_bytes(new_blob[2:6], "big") == report.new_data_key
    # The old master key is no longer needed: retire it, everything still decrypts.
    keyfile.remove_master_key(env.settings.key_file, old_mk)
    assert make_vault(env).decrypt(old_blob, **BIND) == "欧阳娜娜"


def test_rotated_away_key_is_a_typed_error(fresh_env):
    env = fresh_env()
    v = make_vault(env)
    blob = v.encrypt("张三", **BIND)
    mk = keyfile.load(env.settings.key_file).primary_master_key
    keyfile.add_master_key(env.settings.key_file)  # promoted, but data keys not re-wrapped
    keyfile.remove_master_key(env.settings.key_file, mk)  # and the old one thrown away
    with pytest.raises(KeyUnavailable):
        make_vault(env).decrypt(blob, **BIND)


def test_rotation_never_writes_plaintext_keys(fresh_env):
    env = fresh_env()
    v = make_vault(env)
    v.encrypt("x", **BIND)
    dek = v._active_dek().key
    rotate(env.engine, env.settings.key_file, "aes-256-gcm")
    with env.engine.connect() as c:
        for row in c.execute(select(DataKey)):
            assert dek not in bytes(row.wrapped)
    assert dek not in env.settings.key_file.read_bytes()


def test_blind_index_width_and_determinism(base_env):
    v = make_vault(base_env, blind_index_bits=16)
    a = v.blind_index("phone", "13812345678")
    assert a == v.blind_index("phone", "13812345678")
    assert 0 <= a < 2**16
    values = {v.blind_index("phone", f"138{n:08d}") for n in range(3000)}
    assert len(values) > 2500  # spreads well even at the widest allowed 16 bits (~2,930 expected)


def test_blind_index_keys_differ_per_field(base_env):
    v = make_vault(base_env)
    same = sum(v.blind_index("phone", f"1381234{n:04d}") == v.blind_index("id_card", f"1381234{n:04d}")
               for n in range(200))
    assert same < 5


def test_concurrent_rotations_never_lose_a_master_key(fresh_env):
    import threading

    env = fresh_env()
    v = make_vault(env)
    blob = v.encrypt("欧阳娜娜", **BIND)
    errors = []

    def go():
        try:
            rotate(env.engine, env.settings.key_file, "aes-256-gcm")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    material = keyfile.load(env.settings.key_file)
    with env.engine.connect() as c:
        used = {r.master_key_id for r in c.execute(select(DataKey))}
    assert used <= set(material.master_keys)
    assert make_vault(env).decrypt(blob, **BIND) == "欧阳娜娜"


def test_two_first_starts_at_once_share_one_key_file(tmp_path):
    """Creating the key file is exclusive: of racing first starts, one creates it, all use the same keys."""
    import threading

    from waybill import keyfile

    path = tmp_path / "keys.json"
    barrier = threading.Barrier(8)
    results: list[tuple[bytes, bool]] = []

    def start() -> None:
        barrier.wait()
        material, created = keyfile.load_or_create(path, allow_create=True)
        results.append((material.secret("audit_chain"), created))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(created for _, created in results) == 1
    assert len({secret for secret, _ in results}) == 1
    # No temporary file left behind (the lock file beside it stays by design: a thread that found the file made
    # already takes it to complete missing secrets, so whether it exists depends on the race).
    assert [p.name for p in tmp_path.iterdir() if p.name != "keys.json.lock"] == ["keys.json"]


def test_key_file_writes_fsync_the_directory(tmp_path, monkeypatch):
    import os

    from waybill import keyfile

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    keyfile.write(tmp_path / "keys.json", keyfile.generate())
    # The temporary file, then the directory holding the renamed file.
    assert len(synced) == 2
