"""An installation on the embedded default moves to Vault/OpenBao with the CLI (against the fake Vault):
`keys copy-period-keys`, `keys rotate` (key file wrappings re-wrapped under the transit key), `keys retire`;
afterwards everything decrypts with the local period-key file gone."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from tests.conftest import RECIPIENT, make_merchant, run, shipment_body
from tests.fake_vault import running_vault
from waybill.crypto.vault import Vault
from waybill.models import DataKey, Shipment
from waybill.services import build
from waybill.settings import load_settings
from waybill.web.app import create_app


def test_move_from_the_key_file_to_the_kms(cli_env: dict[str, str], tmp_path: Path) -> None:
    run(["init"], cli_env)
    settings = load_settings(environ=cli_env)
    svc = build(settings)
    m = make_merchant(svc)
    client = create_app(settings, services_override=svc).test_client()
    assert client.post("/v1/shipments", json=shipment_body("local"), headers=m.headers).status_code == 201
    staff_secret = svc.codec.encrypt("13900001111", table="t", column="c", row_id="r1")  # a format-1 value
    svc.engine.dispose()
    with running_vault() as kms:
        kms.create_transit_key("waybill-data-keys")
        token = tmp_path / "token"
        token.write_text(kms.token)
        token.chmod(0o600)
        vault_env = {**cli_env, "WAYBILL_KEY_PROVIDER": "vault", "WAYBILL_VAULT_ADDR": kms.url,
                     "WAYBILL_VAULT_TOKEN_FILE": str(token)}
        copied = json.loads(run(["keys", "copy-period-keys"], vault_env).stdout)
        assert copied["ok"] and copied["copied"] >= 1
        again = json.loads(run(["keys", "copy-period-keys"], vault_env).stdout)
        assert again["copied"] == 0 and again["already_there"] == copied["copied"]
        rotated = json.loads(run(["keys", "rotate"], vault_env).stdout)
        assert rotated["new_master_key"] == "vault:waybill-data-keys:v2" and rotated["key_provider"] == "vault"
        retired = json.loads(run(["keys", "retire"], vault_env).stdout)
        assert "vault:waybill-data-keys:v1" in retired["retired"]
        assert any(k.startswith("mk-") for k in retired["retired"])  # the key file's, no longer used
        settings.period_key_file.unlink()  # the local store is gone: only the KMS holds the period keys
        moved = load_settings(environ=vault_env)
        svc = build(moved)
        with svc.engine.connect() as conn:
            rows = conn.execute(select(DataKey.master_key_id, DataKey.previous_master_key_id)).all()
            shipment = conn.execute(select(Shipment.id, Shipment.recipient_phone_ct)).one()
        assert {r.master_key_id for r in rows} == {"vault:waybill-data-keys:v2"}
        assert {r.previous_master_key_id for r in rows} == {None}  # nothing depends on the key file's master keys
        vault = svc.codec
        assert isinstance(vault, Vault)
        assert vault.decrypt(shipment.recipient_phone_ct, table="shipments", column="recipient_phone",
                             row_id=shipment.id) == RECIPIENT["phone"]
        assert vault.decrypt(staff_secret, table="t", column="c", row_id="r1") == "13900001111"
        client = create_app(moved, services_override=svc).test_client()
        assert client.post("/v1/shipments", json=shipment_body("kms"), headers=m.headers).status_code == 201
        assert client.get(f"/v1/shipments/{shipment.id}", headers=m.headers).status_code == 200
        svc.engine.dispose()
