"""Issue 15: two nodes (independent Services and apps, each with its own copy of the key file and its own caches)
share one database and one key source, Vault/OpenBao through the adapter (a fake Vault HTTP server here).

A rotation on node A: node B keeps creating and decrypting with no failure, writes under the new data key within
the cache TTL, a restarted node B decrypts everything, and after `retire` (older transit versions refused by the
KMS) both still decrypt everything, old data included.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.conftest import RECIPIENT, SENDER, make_merchant, shipment_body
from tests.fake_vault import running_vault
from waybill.crypto.rotation import retire, rotate
from waybill.crypto.vault import Vault, key_id_of, subject_key_of
from waybill.models import DataKey, Shipment
from waybill.services import Services, build
from waybill.settings import Settings
from waybill.web.app import create_app

TTL = 0.5


def _token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "vault-token"
    path.write_text(token)
    path.chmod(0o600)
    return path


def _other_host(settings: Settings, tmp_path: Path, name: str) -> Settings:
    """Node B's settings: the same database and KMS, a data dir and a copy of the key file of its own."""
    data_dir = tmp_path / name
    data_dir.mkdir(mode=0o700)
    key_file = data_dir / "keys.json"
    shutil.copy(settings.key_file, key_file)
    key_file.chmod(0o600)
    return dataclasses.replace(settings, data_dir=data_dir, key_file=key_file,
                               period_key_file=data_dir / "period-keys.json")


class Node:
    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings, self.svc = settings, services
        self.client = create_app(settings, services_override=services).test_client()

    def create(self, headers: dict[str, str], order: str) -> str:
        r = self.client.post("/v1/shipments", json=shipment_body(order), headers=headers)
        assert r.status_code == 201, r.get_json()
        return str(r.get_json()["id"])

    def seal(self, row_id: str) -> tuple[str, bytes]:
        """A format-1 value under the active data key (what staff secrets and courier phones use)."""
        return row_id, self.svc.codec.encrypt(f"secret-{row_id}", table="t", column="c", row_id=row_id)

    def check_all(self, headers: dict[str, str], sealed: list[tuple[str, bytes]]) -> int:
        """Every shipment of the database and every sealed value decrypt on this node; the API reads them."""
        vault = self.svc.codec
        assert isinstance(vault, Vault)
        with self.svc.engine.connect() as conn:
            rows = conn.execute(select(Shipment.id, Shipment.recipient_phone_ct, Shipment.sender_name_ct)).all()
        for row in rows:
            assert subject_key_of(row.recipient_phone_ct) is not None  # each party's own key: the shared store
            assert vault.decrypt(row.recipient_phone_ct, table="shipments", column="recipient_phone",
                                 row_id=row.id) == RECIPIENT["phone"]
            assert vault.decrypt(row.sender_name_ct, table="shipments", column="sender_name",
                                 row_id=row.id) == SENDER["name"]
            r = self.client.get(f"/v1/shipments/{row.id}", headers=headers)
            assert r.status_code == 200 and r.get_json()["recipient"]["phone"] == "138******78", r.get_json()
        for row_id, blob in sealed:
            assert vault.decrypt(blob, table="t", column="c", row_id=row_id) == f"secret-{row_id}"
        return len(rows)


def _vault_env(fresh_env: Any, tmp_path: Path, kms: Any, **overrides: Any) -> Any:
    """An installation whose key source is the fake Vault ``kms`` (its transit key made first)."""
    kms.create_transit_key("waybill-data-keys")
    return fresh_env(key_provider="vault", vault_addr=kms.url,
                     vault_token_file=str(_token_file(tmp_path, kms.token)), **{"key_cache_ttl_s": TTL, **overrides})


def _host_b(env: Any, tmp_path: Path) -> tuple[Any, Node]:
    """A second host of ``env``'s installation (its own data directory) and its node."""
    b_settings = _other_host(env.settings, tmp_path, "node-b")
    return b_settings, Node(b_settings, build(b_settings))


def test_rotation_on_one_node_with_a_shared_kms(fresh_env: Any, tmp_path: Path) -> None:
    with running_vault() as kms:
        env = _vault_env(fresh_env, tmp_path, kms)
        a = Node(env.settings, env.services())
        b_settings, b = _host_b(env, tmp_path)
        m = make_merchant(a.svc).headers
        with env.engine.connect() as conn:
            first = conn.execute(select(DataKey.id, DataKey.master_key_id)).one()
        assert first.master_key_id == "vault:waybill-data-keys:v1"  # the first data key went to the KMS
        sealed = [a.seal("a-0"), b.seal("b-0")]
        a.create(m, "A-0")
        b.create(m, "B-0")
        assert a.check_all(m, sealed) == b.check_all(m, sealed) == 2

        report = rotate(env.engine, a.svc.master_keys, env.settings.cipher)
        assert report.new_master_key == "vault:waybill-data-keys:v2" and report.rewrapped == 1
        assert ("POST", "/v1/transit/rewrap/waybill-data-keys") in kms.requests
        # At once, before any cache expired: B creates and reads everything, A's and its own.
        for i in range(3):
            b.create(m, f"B-{i + 1}")
            a.create(m, f"A-{i + 1}")
            sealed += [a.seal(f"a-{i + 1}"), b.seal(f"b-{i + 1}")]
        assert b.check_all(m, sealed) == a.check_all(m, sealed) == 8
        time.sleep(TTL + 0.2)
        # Past the TTL no node writes under the deactivated data key any more.
        sealed += [a.seal("a-late"), b.seal("b-late")]
        assert {key_id_of(sealed[-1][1]), key_id_of(sealed[-2][1])} == {report.new_data_key}
        assert key_id_of(sealed[0][1]) == first.id != report.new_data_key

        restarted = Node(b_settings, build(b_settings))  # B restarts after the rotation on A
        assert restarted.check_all(m, sealed) == 8
        restarted.create(m, "B-restarted")

        done = retire(env.engine, a.svc.master_keys)
        # The old data key's previous wrapping, and the new one's second wrapping under the old primary.
        assert done.retired[0] == "vault:waybill-data-keys:v1" and done.dropped_previous == 2
        assert all(k.startswith("mk-") for k in done.retired[1:])  # the key file's, never used here
        assert kms.transit["waybill-data-keys"].min_decryption_version == 2
        with env.engine.connect() as conn:
            assert {r.master_key_id for r in conn.execute(select(DataKey))} == {"vault:waybill-data-keys:v2"}
        again = Node(b_settings, build(b_settings))
        assert again.check_all(m, sealed) == a.check_all(m, sealed) == 9
        assert Node(env.settings, env.services()).check_all(m, sealed) == 9
        again.create(m, "B-after-retire")
        # The KMS only ever saw wrapped data keys: no personal data, no field value, in anything sent to it.
        sent = b"".join(kms.bodies)
        for plain in (RECIPIENT["phone"], RECIPIENT["name"], SENDER["name"], "secret-a-0"):
            assert plain.encode() not in sent


def test_period_keys_are_one_store_for_every_node(fresh_env: Any, tmp_path: Path) -> None:
    """A shipment made on A is read on B: its parties' keys are wrapped by a period key B finds in the KMS, not
    in a file of its own host (which is what fails with the local store on two hosts)."""
    with running_vault() as kms:
        env = _vault_env(fresh_env, tmp_path, kms)
        a = Node(env.settings, env.services())
        b_settings, b = _host_b(env, tmp_path)
        m = make_merchant(a.svc).headers
        a.create(m, "A-0")
        assert b.check_all(m, []) == 1
        assert [p for p in kms.kv if p.startswith("waybill/period-keys/ap-")]
        assert not b_settings.period_key_file.exists() and not env.settings.period_key_file.exists()


def test_a_sealed_kms_is_a_503_with_nothing_written_and_recovers(fresh_env: Any, tmp_path: Path) -> None:
    with running_vault() as kms:
        env = _vault_env(fresh_env, tmp_path, kms, key_cache_ttl_s=0.05)
        _b_settings, node = _host_b(env, tmp_path)
        m = make_merchant(node.svc).headers
        node.create(m, "before")
        kms.down = True
        time.sleep(0.1)  # past the TTL: the period key must be read from the KMS again
        r = node.client.post("/v1/shipments", json=shipment_body("while-sealed"), headers=m)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.get_json()["error"]["code"] == "key_service_unavailable"
        assert node.client.get("/readyz").status_code == 503
        with env.engine.connect() as conn:
            assert conn.execute(select(Shipment.merchant_order_id)).scalars().all() == ["before"]
        kms.down = False
        node.create(m, "while-sealed")  # the same request again, once the KMS is back: no restart
        assert node.client.get("/readyz").status_code == 200


def test_rotation_on_one_host_with_key_file_copies(fresh_env: Any, tmp_path: Path) -> None:
    """The embedded default on two hosts (each its own copy of the key file; the period-key file on a volume both
    mount): between `keys rotate` on A and the new key file reaching B, B works on the second wrapping under the
    previous master key, restarts included; the file reaches B before `keys retire`, as README says."""
    env = fresh_env(key_cache_ttl_s=TTL)
    a = Node(env.settings, env.services())
    b_settings = dataclasses.replace(_other_host(env.settings, tmp_path, "node-b"),
                                     period_key_file=env.settings.period_key_file)
    b = Node(b_settings, build(b_settings))
    m = make_merchant(a.svc).headers
    sealed = [a.seal("a-0"), b.seal("b-0")]
    a.create(m, "A-0")
    report = rotate(env.engine, env.settings.key_file, env.settings.cipher)
    assert report.new_master_key not in b_settings.key_file.read_text()  # B's copy is the old file
    b.create(m, "B-0")
    time.sleep(TTL + 0.2)
    sealed.append(b.seal("b-late"))
    assert key_id_of(sealed[-1][1]) == report.new_data_key  # B follows within the TTL, on its old key file
    assert b.check_all(m, sealed) == 2
    restarted = Node(b_settings, build(b_settings))
    assert restarted.check_all(m, sealed) == 2
    shutil.copy(env.settings.key_file, b_settings.key_file)  # step 2 of the protocol: the file reaches B
    retire(env.engine, env.settings.key_file)
    assert Node(b_settings, build(b_settings)).check_all(m, sealed) == a.check_all(m, sealed) == 2


def test_retention_on_one_node_destroys_in_the_shared_store(fresh_env: Any, tmp_path: Path) -> None:
    """Retention run on A destroys the period keys in KV (every version, the metadata): B, restarted, cannot open
    the destroyed shipments' data and still opens the rest."""
    from datetime import timedelta

    from waybill import retention
    from waybill.models import utcnow
    from waybill.permissions import SYSTEM

    with running_vault() as kms:
        env = _vault_env(fresh_env, tmp_path, kms, retention_days=30)
        a = Node(env.settings, env.services())
        b_settings = _other_host(env.settings, tmp_path, "node-b")
        m = make_merchant(a.svc).headers
        due = a.create(m, "due")
        assert a.client.post(f"/v1/shipments/{due}/cancel", headers=m).status_code == 200
        active = a.create(m, "active")
        result = retention.run(a.svc, SYSTEM, now=utcnow() + timedelta(days=32))
        assert result.destroyed == 1 and result.keys_destroyed
        for key_id in result.keys_destroyed:
            assert f"waybill/period-keys/{key_id}" not in kms.kv
            assert ("DELETE", f"/v1/secret/metadata/waybill/period-keys/{key_id}") in kms.requests
        b = Node(b_settings, build(b_settings))
        assert b.client.get(f"/v1/shipments/{due}", headers=m).get_json()["personal_data"] == "destroyed"
        doc = b.client.get(f"/v1/shipments/{active}", headers=m).get_json()
        assert doc["personal_data"] == "present" and doc["recipient"]["phone"] == "138******78"
