"""Safe upgrades: a database made at any earlier revision, with data in it, works after `waybill init`.

For every revision before head (read from the Alembic scripts, never listed here) a database is migrated to
that revision and filled through tables reflected at that revision (so each insert matches that revision's
schema): a merchant with an API key, shipments whose personal data is encrypted with the head code's vault
(the ciphertext format has not changed since 0001), masked views, an audit chain, and where the revision has
them QR tokens, staff users and virtual numbers. Then `initialise` (what `waybill init` runs) upgrades it and
the main flows run against it through the real app. Also: the single head, the downgrade round trip, and
init refusing a schema that drifted from head (the migration-edited-after-merge scenario).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.util import CommandError
from sqlalchemy import Engine, MetaData, Table, insert, inspect, select, text, update

from courier_api.models import StaffUser
from courier_api.staff import HASHER, set_phone
from tests.conftest import PG_URL, RECIPIENT, SENDER, Env, _drop, shipment_body
from tests.conftest import run as _untyped_run
from tests.courier_api import bearer, make_staff
from tests.printing.label_helpers import decode, pdf_pages_as_images
from waybill import audit, db, keyfile, masked
from waybill.audit import PendingEvent, chain_hash
from waybill.crypto import vault as vault_module
from waybill.crypto.vault import Vault, blind_index_key, blind_index_value
from waybill.ids import new_id
from waybill.labels import derive_token, hash_token
from waybill.merchants import KEY_PREFIX
from waybill.merchants import _hash as api_key_hash
from waybill.models import Shipment, utcnow
from waybill.permissions import Principal
from waybill.routing import RoutingTable
from waybill.schemas import ShipmentIn
from waybill.services import initialise
from waybill.settings import Settings, load_settings
from waybill.shipment_rows import Built, RowBuilder, ShipmentRow
from waybill.shipments import ShipmentDeps, _fingerprint
from waybill.virtual_numbers import add_numbers

SCRIPTS = db.script_directory()
REVISIONS = [s.revision for s in reversed(list(SCRIPTS.walk_revisions("base", "heads")))]
HEAD = REVISIONS[-1]
EARLIER = REVISIONS[:-1]
STATION = "755-W012"  # the recipient's station (深圳市南山区)
POOL = ["17000000101", "17000000102"]
COURIER_PHONE = "13700001234"


def test_exactly_one_head() -> None:
    assert SCRIPTS.get_heads() == [HEAD] == [db.head_revision()]
    assert len(EARLIER) >= 1 and REVISIONS[0] == SCRIPTS.get_base()


# --- an installation whose schema is made step by step, not by initialise() ---------------------------------


def _bare_env(tmp: Path) -> Env:
    """Settings, a key file and an empty database (its own schema on PostgreSQL): no migrations run yet."""
    schema = None
    if PG_URL:
        schema = "wbupg_" + secrets.token_hex(5)
        admin = db.make_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    else:
        url = f"sqlite:///{(tmp / 'waybill.db').as_posix()}"
    settings = load_settings(environ={}, data_dir=tmp, database_url=url, env="test", merchant_rate_per_s=1e5,
                             merchant_burst=10**6, log_level="INFO")
    tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    keyfile.load_or_create(settings.key_file, allow_create=True)
    return Env(settings, db.make_engine(url), schema)


@pytest.fixture
def bare_env(tmp_path: Path) -> Iterator[Callable[[], Env]]:
    made: list[Env] = []

    def make() -> Env:
        env = _bare_env(tmp_path / f"upg{len(made)}")
        made.append(env)
        return env

    yield make
    for env in made:
        _drop(env)


def _tables(engine: Engine) -> dict[str, Table]:
    md = MetaData()
    md.reflect(engine)
    return dict(md.tables)


def _row(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """The values the table at this revision has columns for; every required column must be given."""
    # A None for a column with a server default is an ORM default not applied yet (an unflushed object): the
    # database fills it in, as it did for the code of that revision.
    row = {k: v for k, v in values.items()
           if k in table.c and not (v is None and table.c[k].server_default is not None)}
    missing = [c.name for c in table.c if not c.nullable and c.server_default is None and c.name not in row]
    assert not missing, (table.name, missing)
    return row


# --- data made at an old revision ---------------------------------------------------------------------------


@dataclass
class Seeded:
    revision: str
    merchant_id: str
    api_key: str
    plain_id: str  # created, never printed
    printed_id: str | None  # printed at that revision (its QR token is in the table), if it has qr_tokens
    printed_token: str | None
    idem_key: str
    staff_passwords: dict[str, str] = field(default_factory=dict)
    courier_phone_seeded: bool = False
    audit_events: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


class _Format1:
    """The vault as it was before subject keys: every value under the active shared data key."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def encrypt(self, plaintext: str, *, table: str, column: str, row_id: str,
                subject_key: int | None = None) -> bytes:
        return self._vault.encrypt(plaintext, table=table, column=column, row_id=row_id)

    def encrypt_fields(self, fields: Sequence[tuple[str, str]], *, table: str, row_id: str,
                       subject_key: int) -> list[bytes]:
        return [self.encrypt(text, table=table, column=column, row_id=row_id) for column, text in fields]

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: str) -> str:
        return self._vault.decrypt(blob, table=table, column=column, row_id=row_id)

    def blind_index(self, field: str, normalised: str) -> int:
        return self._vault.blind_index(field, normalised)


def _build(deps: ShipmentDeps, merchant: Principal, data: ShipmentIn, idem_key: str | None,
           fingerprint: bytes | None) -> ShipmentRow:
    """A shipment row as the head code builds it, seeded without its first tracking event (event_seq 0)."""
    (built,) = RowBuilder(deps, merchant).build([(data, idem_key, fingerprint)])
    assert isinstance(built, Built)
    built.row.event_seq = 0
    return built.row


def _seed(env: Env, revision: str) -> Seeded:
    settings: Settings = env.settings
    db.upgrade(env.engine, revision)
    tables = _tables(env.engine)
    keys = keyfile.load(settings.key_file)
    now = utcnow()
    created_at = now - timedelta(days=2)

    # A data key, wrapped under the primary master key exactly as the head vault wraps one.
    master = keys.primary_master_key
    wrapped = vault_module._wrap(keys.master_keys[master], 1, settings.cipher,
                                 secrets.token_bytes(vault_module._KEY_LEN[settings.cipher]))
    with env.engine.begin() as conn:
        conn.execute(insert(tables["data_keys"]), [_row(tables["data_keys"], {
            "id": 1, "algorithm": settings.cipher, "master_key_id": master, "wrapped": wrapped, "active": True,
            "created_at": created_at})])
    codec = Vault(env.engine, settings.key_file, settings.cipher, blind_index_bits=settings.blind_index_bits,
                  material=keys)
    # Rows as the code before 0016 wrote them: format-1 ciphertexts under the shared data key (the keyring's
    # keys are made and dropped: subject_keys is a table of 0016).
    deps = ShipmentDeps(codec=_Format1(codec), routing=RoutingTable.load(), policy=settings.mask_policy,
                        fingerprint_key=keys.secret("idempotency"), keyring=codec.subject_keys)

    merchant_id = new_id("mch")
    key_id = secrets.token_hex(8)
    raw_key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    merchant = Principal(kind="merchant", id=merchant_id, role="merchant")
    idem_key = "old-idem-1"
    plain_in = ShipmentIn.model_validate(shipment_body("OLD-1"))
    plain = _build(deps, merchant, plain_in, idem_key, _fingerprint(deps, plain_in))
    printed = _build(deps, merchant, ShipmentIn.model_validate(shipment_body("OLD-2")), None, None)
    has_qr = "qr_tokens" in tables
    ship_rows = []
    for shp in ([plain, printed] if has_qr else [plain]):
        values = shp.values()
        if "sender_masked" in tables["shipments"].c:
            # Before 0015 the masked snapshot was plaintext JSON, and the phone index 24 bits wide (the old
            # default): the upgrade must seal the one and recompute the other.
            for role in ("sender", "recipient"):
                values[f"{role}_masked"] = masked.unseal(codec, shp.id, role, values[f"{role}_masked_ct"])
                phone = codec.decrypt(values[f"{role}_phone_ct"], table="shipments", column=f"{role}_phone",
                                      row_id=shp.id)
                values[f"{role}_phone_bidx"] = blind_index_value(
                    blind_index_key(keys.secret("blind_index"), f"{role}_phone"), f"{merchant_id}|{phone}", 24)
        values.update(created_at=created_at, updated_at=created_at)
        if shp is printed:
            values.update(status="printed", printed_at=created_at)
        ship_rows.append(_row(tables["shipments"], values))
    events: list[tuple[str, str, str, list[str]]] = [("merchant.create", "merchant", merchant_id, [])]
    events += [("shipment.create", "shipment", r["id"], sorted(f"{p}.{f}" for p in ("sender", "recipient")
                                                              for f in ("name", "phone", "address")))
               for r in ship_rows]

    seeded = Seeded(revision, merchant_id, raw_key, plain.id, printed.id if has_qr else None, None, idem_key)
    with env.engine.begin() as conn:
        conn.execute(insert(tables["merchants"]), [_row(tables["merchants"], {
            "id": merchant_id, "name": "老商户", "disabled": False, "created_at": created_at})])
        conn.execute(insert(tables["api_keys"]), [_row(tables["api_keys"], {
            "id": key_id, "merchant_id": merchant_id, "key_hash": api_key_hash(keys.secret("api_key"), raw_key),
            "created_at": created_at})])
        conn.execute(insert(tables["shipments"]), ship_rows)
        if has_qr:
            qr_key = keys.secret("qr_token")
            nonce = secrets.token_bytes(20)
            seeded.printed_token = derive_token(qr_key, nonce)
            conn.execute(insert(tables["qr_tokens"]), [_row(tables["qr_tokens"], {
                "id": new_id("qrt"), "shipment_id": printed.id, "nonce": nonce,
                "token_hash": hash_token(qr_key, seeded.printed_token), "issued_at": created_at,
                "issued_by": "staff:old-sorter", "issue_reason": "first_print", "is_reprint": False})])
            events.append(("label.print", "shipment", printed.id, []))
        if "staff_users" in tables:
            for username, role in (("olddisp", "dispatcher"), ("oldcourier", "courier")):
                password = secrets.token_urlsafe(18)
                seeded.staff_passwords[username] = password
                uid = new_id("usr")
                values = {"id": uid, "username": username, "role": role, "station": STATION,
                          "password_hash": HASHER.hash(password), "failed_attempts": 0, "created_at": created_at,
                          # From 0025 on, the code of the revision records the obligations attested at creation.
                          "confidentiality_attested_at": created_at, "training_attested_at": created_at,
                          "obligations_source": "create"}
                if "phone_ct" in tables["staff_users"].c and role == "courier":
                    values["phone_ct"] = codec.encrypt(COURIER_PHONE, table="staff_users", column="phone",
                                                       row_id=uid)
                    seeded.courier_phone_seeded = True
                conn.execute(insert(tables["staff_users"]), [_row(tables["staff_users"], values)])
                events.append(("user.create", "staff_user", uid, []))
        if "vn_numbers" in tables:
            conn.execute(insert(tables["vn_numbers"]), [_row(tables["vn_numbers"], {
                "x_number": x, "enabled": True, "added_at": created_at}) for x in POOL])

        # The audit chain as the head code computes it, appended through that revision's tables.
        audit_key = keys.secret("audit_chain")
        prev = bytes(32)
        rows = []
        for seq, (action, otype, oid, fields) in enumerate(events, start=1):
            ev = PendingEvent(at=created_at, actor="system:cli", role="system", action=action, object_type=otype,
                              object_id=oid, purpose=None, fields=fields, outcome="ok", client_addr=None,
                              request_id=None)
            digest = chain_hash(audit_key, prev, seq, ev)
            rows.append(_row(tables["audit_events"], {
                "seq": seq, "at": ev.at, "actor": ev.actor, "role": ev.role, "action": ev.action,
                "object_type": ev.object_type, "object_id": ev.object_id, "purpose": None, "fields": ev.fields,
                "outcome": ev.outcome, "client_addr": None, "request_id": None, "prev_hash": prev, "hash": digest,
                "shard": 0, "shard_seq": seq}))  # (from 0028 on: the one chain is shard 0, its head row 0)
            prev = digest
        conn.execute(insert(tables["audit_events"]), rows)
        head_id = 0 if "shard_seq" in tables["audit_events"].c else 1
        if head_id == 0 and conn.dialect.name == "postgresql":
            # From 0028 on the code leaves seq to a sequence; rows given their seq here must move it past them.
            conn.execute(text("SELECT setval('audit_event_seq', (SELECT max(seq) FROM audit_events))"))
        conn.execute(update(tables["audit_head"]).where(tables["audit_head"].c.id == head_id)
                     .values(seq=len(rows), hash=prev))
        seeded.audit_events = len(rows)
    return seeded


def _qr(pdf: bytes) -> tuple[str, list[tuple[str, str]]]:
    (page,) = pdf_pages_as_images(pdf)
    codes = decode(page)
    return next(t for fmt, t in codes if "QR" in fmt.upper()), codes


def _login(client: Any, username: str, password: str) -> dict[str, str]:
    r = client.post("/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 200, r.get_json()
    return bearer(r.get_json()["access_token"])


@pytest.mark.parametrize("revision", EARLIER)
def test_upgrade_from_every_earlier_revision_with_data(bare_env: Callable[[], Env], revision: str) -> None:
    env = bare_env()
    seeded = _seed(env, revision)
    assert db.schema_report(env.engine).current == (revision,)

    # `waybill init`: migrate to head, check the schema, keep the existing data key.
    _keys, engine, created = initialise(env.settings)
    engine.dispose()
    assert created is False
    report = db.check_schema(env.engine)
    assert report.ok and report.current == (HEAD,)
    # No masked snapshot is left in plaintext: the visible digits next to the index reversed it.
    with env.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM shipments")).all())
    assert "138******78" not in dump and "欧***" not in dump

    services = env.services()
    app = env.app()
    client = app.test_client()
    h = seeded.headers

    # The merchant's old shipments: read, listed, found by phone, masked as they were stored.
    old = client.get(f"/v1/shipments/{seeded.plain_id}", headers=h)
    assert old.status_code == 200, old.get_json()
    body = old.get_json()
    assert body["status"] == "created" and body["merchant_order_id"] == "OLD-1"
    assert body["recipient"]["name"] == "欧***" and body["recipient"]["phone"] == "138******78"
    assert body["parcel"]["pieces"] == 1  # the server default of a later migration
    old_ids = {seeded.plain_id} | ({seeded.printed_id} if seeded.printed_id else set())
    listed = client.get("/v1/shipments?limit=50", headers=h)
    assert listed.status_code == 200 and {s["id"] for s in listed.get_json()["items"]} == old_ids
    found = client.post("/v1/shipments/search", json={"recipient_phone": RECIPIENT["phone"]}, headers=h)
    assert found.status_code == 200 and {s["id"] for s in found.get_json()["items"]} == old_ids
    replay = client.post("/v1/shipments", json=shipment_body("OLD-1"), headers={**h, "Idempotency-Key": "old-idem-1"})
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json()["id"] == seeded.plain_id

    # Labels of the old shipments, as PDF, decoded by an independent reader.
    label = client.get(f"/v1/shipments/{seeded.plain_id}/label?format=pdf", headers=h)
    assert label.status_code == 200, label.get_data(as_text=True)
    token, codes = _qr(label.data)
    assert ("Code128", body["waybill_no"]) in codes
    if seeded.printed_id:  # printed before the upgrade: the same token as then
        again = client.get(f"/v1/shipments/{seeded.printed_id}/label?format=pdf", headers=h)
        assert again.status_code == 200
        assert _qr(again.data)[0] == seeded.printed_token
        scan_id, scan_token = seeded.printed_id, seeded.printed_token
    else:
        scan_id, scan_token = seeded.plain_id, token

    # The upgrade recorded the old rows' stations (sender's region routed, the sorting code's station): a sorter
    # of the recipient's station prints their labels, a sorter of another station gets the same 404 as for none.
    with services.session_factory() as s:
        recorded = s.execute(select(Shipment.origin_station, Shipment.destination_station)
                             .where(Shipment.id.in_(old_ids))).all()
    assert [tuple(r) for r in recorded] == [("021-W112", STATION)] * len(old_ids)
    here, away = make_staff(services, "upg_sorter", "sorter", STATION), make_staff(services, "upg_far", "sorter",
                                                                                   "010-W201")
    assert client.get(f"/v1/shipments/{seeded.plain_id}/label?format=zpl",
                      headers=_login(client, "upg_sorter", here.password)).status_code == 200
    assert client.get(f"/v1/shipments/{seeded.plain_id}/label?format=zpl",
                      headers=_login(client, "upg_far", away.password)).status_code == 404

    # A new shipment next to the old ones.
    new = client.post("/v1/shipments", json=shipment_body("NEW-1", parcel={"weight_g": 900, "pieces": 2}), headers=h)
    assert new.status_code == 201, new.get_json()
    assert new.get_json()["parcel"]["pieces"] == 2
    assert client.get(f"/v1/shipments/{new.get_json()['id']}/label?format=pdf", headers=h).status_code == 200

    # The courier side decrypts the old ciphertexts: staff from that revision (or made now), its number pool.
    if seeded.staff_passwords:
        disp = _login(client, "olddisp", seeded.staff_passwords["olddisp"])
        courier = _login(client, "oldcourier", seeded.staff_passwords["oldcourier"])
        courier_name = "oldcourier"
    else:
        d, c = make_staff(services, "newdisp", "dispatcher", STATION), make_staff(services, "newcourier", "courier",
                                                                                 STATION)
        disp, courier = _login(client, "newdisp", d.password), _login(client, "newcourier", c.password)
        courier_name = "newcourier"
    with services.session_factory() as s:
        if not seeded.courier_phone_seeded:
            set_phone(s, Principal(kind="system", id="cli", role="system"), courier_name, COURIER_PHONE,
                      services.codec)
        add_numbers(s, POOL)  # already there when the revision had the pool: nothing added
        s.commit()
    if seeded.staff_passwords and revision < "0025":  # accounts from before 0025: attested at the upgrade
        with services.session_factory() as s:
            source, trained = s.execute(select(StaffUser.obligations_source, StaffUser.training_attested_at)
                                        .where(StaffUser.username == "oldcourier")).one()
        assert source == "upgrade" and trained is not None
    assigned = client.post("/v1/dispatch/assignments", json={"shipment_id": scan_id, "courier": courier_name},
                           headers=disp)
    assert assigned.status_code == 201, assigned.get_json()
    view = client.post("/v1/courier/scan", json={"token": scan_token}, headers=courier)
    assert view.status_code == 200, view.get_json()
    assert view.get_json()["recipient"]["address"] == RECIPIENT["address"]
    call = client.post(f"/v1/courier/shipments/{scan_id}/call", headers=courier)
    assert call.status_code == 200, call.get_json()
    assert call.get_json()["virtual_number"] in POOL
    for value in (RECIPIENT["phone"], SENDER["phone"], COURIER_PHONE):
        assert value not in call.get_data(as_text=True)

    # `waybill audit verify`: the chain written at the old revision continues unbroken.
    with services.session_factory() as s:
        result = audit.verify(s, services.keys.secret("audit_chain"))
    assert result.ok, result.as_dict()
    assert result.as_dict()["events"] > seeded.audit_events
    services.engine.dispose()



def test_sealing_migration_refuses_existing_shipments_without_the_key_file(bare_env: Callable[[], Env]) -> None:
    # 0015 encrypts existing masked snapshots: without the keys it must stop, changing nothing.
    env = bare_env()
    before = REVISIONS[REVISIONS.index("0015") - 1]
    _seed(env, before)
    with pytest.raises(CommandError, match="key file"):
        db.upgrade(env.engine, "0015")
    assert db.schema_report(env.engine).current == (before,)
    columns = {c["name"] for c in inspect(env.engine).get_columns("shipments")}
    assert "sender_masked" in columns and "sender_masked_ct" not in columns


# --- the downgrade round trip, and a schema that drifted from its revision --------------------------------


def test_upgrade_downgrade_base_upgrade_round_trip(bare_env: Callable[[], Env]) -> None:
    env = bare_env()
    db.upgrade(env.engine, "head")
    assert db.check_schema(env.engine).ok
    command.downgrade(db.alembic_config(env.engine), "base")
    assert set(inspect(env.engine).get_table_names()) <= {"alembic_version"}
    assert db.schema_report(env.engine).current == ()
    db.upgrade(env.engine, "head")
    report = db.check_schema(env.engine)
    assert report.ok and report.current == (HEAD,) and report.differences == ()


def run(args: list[str], env_vars: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc: subprocess.CompletedProcess[str] = _untyped_run(args, env_vars, check)  # type: ignore[no-untyped-call]
    return proc


def _cli_vars(env: Env) -> dict[str, str]:
    return {"WAYBILL_DATA_DIR": str(env.settings.data_dir), "WAYBILL_DATABASE_URL": env.settings.database_url}


def test_init_refuses_a_schema_that_differs_from_its_revision(bare_env: Callable[[], Env]) -> None:
    """The reported incident: a database made at 0003 by a 0002 that was edited after merging.

    Here the old 0002 is simulated by removing what the merged 0002 adds to ``shipments`` once the database
    is at 0003; `waybill init` then migrates to head, and must refuse instead of answering ok.
    """
    env = bare_env()
    first_with_qr = next(r for r in REVISIONS if "qr_tokens" in _tables_at(env, r))
    after = REVISIONS[REVISIONS.index(first_with_qr) + 1]
    db.upgrade(env.engine, after)
    with env.engine.begin() as conn:
        conn.execute(text("ALTER TABLE shipments DROP COLUMN printed_at"))

    with pytest.raises(db.SchemaMismatch) as caught:
        initialise(env.settings)
    assert caught.value.report.current == (HEAD,)  # the migrations ran: it is the schema that is wrong
    assert {"op": "add_column", "table": "shipments", "column": "printed_at"} in caught.value.report.differences

    proc = run(["init"], _cli_vars(env), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["error"]["code"] == "schema_mismatch"
    assert doc["differences"] == [{"op": "add_column", "table": "shipments", "column": "printed_at"}]
    # `waybill serve` refuses too, before it listens (a served drifted schema answers 500s).
    proc = run(["serve", "--port", "1"], _cli_vars(env), check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["error"]["code"] == "schema_mismatch"
    assert "listening" not in proc.stdout


def test_init_refuses_an_altered_column_and_an_extra_index(bare_env: Callable[[], Env]) -> None:
    env = bare_env()
    _keys, engine, _created = initialise(env.settings)
    engine.dispose()
    with env.engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_stray ON shipments (weight_g)"))
    with pytest.raises(db.SchemaMismatch) as caught:
        initialise(env.settings)
    assert [(d["op"], d.get("name")) for d in caught.value.report.differences] == [("remove_index", "ix_stray")]


def _tables_at(env: Env, revision: str) -> set[str]:
    """Tables a database has at ``revision`` (migrated in a scratch copy of the same backend)."""
    scratch = _bare_env(env.settings.data_dir / f"scratch-{revision}")
    try:
        db.upgrade(scratch.engine, revision)
        return set(inspect(scratch.engine).get_table_names())
    finally:
        _drop(scratch)
