"""Settings validation and the migrations matching the models (`alembic check`)."""

from __future__ import annotations

import dataclasses

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from waybill.db import model_metadata
from waybill.masking import MaskPolicy
from waybill.settings import SettingsError, load_settings


def test_defaults_are_embedded_sqlite():
    s = load_settings(environ={})
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("var/waybill.db")
    assert s.cipher == "aes-256-gcm" and not s.is_production
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cipher = "sm4-gcm"  # type: ignore[misc]


@pytest.mark.parametrize("env,needle", [
    ({"WAYBILL_ENV": "staging"}, "WAYBILL_ENV"),
    ({"WAYBILL_CIPHER": "des"}, "WAYBILL_CIPHER"),
    ({"WAYBILL_DATABASE_URL": "mysql://x"}, "WAYBILL_DATABASE_URL"),
    ({"WAYBILL_MERCHANT_RATE_PER_S": "fast"}, "WAYBILL_MERCHANT_RATE_PER_S"),
    ({"WAYBILL_BATCH_MAX_ITEMS": "5000"}, "WAYBILL_BATCH_MAX_ITEMS"),
    ({"WAYBILL_BLIND_INDEX_BITS": "8"}, "WAYBILL_BLIND_INDEX_BITS"),
    ({"WAYBILL_LOG_LEVEL": "LOUD"}, "WAYBILL_LOG_LEVEL"),
    ({"WAYBILL_ENV": "production"}, "WAYBILL_KEY_FILE"),
])
def test_invalid_settings_name_the_variable(env, needle):
    with pytest.raises(SettingsError, match=needle):
        load_settings(environ=env)


def test_sm4_selectable_and_postgres_url_normalised():
    s = load_settings(environ={"WAYBILL_CIPHER": "SM4-GCM", "WAYBILL_DATABASE_URL": "postgresql://h/db"})
    assert s.cipher == "sm4-gcm" and s.database_url == "postgresql+psycopg://h/db"


def test_weaker_mask_policy_is_rejected():
    from waybill.masking import MaskPolicyTooWeak

    with pytest.raises((SettingsError, MaskPolicyTooWeak)):
        load_settings(environ={}, mask_policy=MaskPolicy(mobile_keep_prefix=4, mobile_keep_suffix=4))
    tighter = load_settings(environ={}, mask_policy=MaskPolicy(name_keep_first=0, mobile_keep_suffix=0))
    assert tighter.mask_policy.name_keep_first == 0


def test_migrations_match_models(base_env):
    """The equivalent of `alembic check`: the migrated schema has no drift from the models (on PostgreSQL the
    month partitions and the partitioned form of the unique constraints are known, see waybill/db.py)."""
    from waybill.db import include_object_for

    metadata = model_metadata()
    with base_env.engine.connect() as conn:
        opts = {"compare_type": True, "include_object": include_object_for(conn, metadata)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)
    assert diff == []


@pytest.mark.parametrize(("variable", "value"), [
    ("WAYBILL_ZPL_TEXT", "bitmap"),
    ("WAYBILL_ZPL_FONT", "E:SIMSUN.TTF^XA^FDinjected"),  # it goes into printer commands verbatim
    ("WAYBILL_ZPL_FONT", "SIMSUN.TTF"),
])
def test_printing_settings_are_validated(tmp_path, variable, value):
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ={variable: value, "WAYBILL_DATA_DIR": str(tmp_path)})


def test_printing_takes_its_configuration_from_the_settings(fresh_env):
    """printing reads no environment: the service hands it the validated settings when it is built."""
    import printing
    from printing.config import current

    before = current()
    try:
        env = fresh_env(zpl_text="resident", zpl_font="E:ANMDS.TTF")
        env.services()
        assert (current().zpl_text, current().zpl_font) == ("resident", "E:ANMDS.TTF")
        from printing.samples import sample_models

        (model,) = sample_models(1)
        assert b"^CWJ,E:ANMDS.TTF" in printing.render_label(model, "zpl", "100x150")
    finally:
        printing.configure(before)


def test_partitions_are_known_to_the_schema_check(fresh_env):
    """Run-time partitions (``<table>_p<suffix>``, waybill/partitions.py) are not drift; any other stray table is.
    On PostgreSQL a partition is a table attached to its parent: one merely named like a partition is drift."""
    from sqlalchemy import text

    from tests.conftest import PG_URL
    from waybill import db, partitions

    env = fresh_env()
    if PG_URL:
        with env.engine.begin() as conn:
            assert partitions.partitioned_tables(conn) == {"audit_events", "tracking_events"}
    assert db.check_schema(env.engine).differences == ()  # the month partitions the upgrade made
    with env.engine.begin() as conn:
        conn.execute(text("CREATE TABLE audit_events_p1999_12 (seq BIGINT PRIMARY KEY, at TIMESTAMP)"))
        conn.execute(text("CREATE INDEX ix_audit_events_p1999_12_at ON audit_events_p1999_12 (at)"))
    if PG_URL:
        found = {(d["op"], d.get("table")) for d in db.schema_report(env.engine).differences}
        assert ("remove_table", "audit_events_p1999_12") in found  # not attached: a stray table
    else:
        assert db.check_schema(env.engine).differences == ()
    with env.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_events_p1999_12"))
        conn.execute(text("CREATE TABLE nobody_p1 (id INTEGER PRIMARY KEY)"))  # no such parent table
    with pytest.raises(db.SchemaMismatch):
        db.check_schema(env.engine)


def test_loose_data_dir_and_database_modes_are_tightened_at_start(tmp_path):
    """A pre-existing 0777 data directory and a 0644 SQLite file (a copy, a restore) become owner-only."""
    import os
    import stat

    from waybill.services import initialise
    from waybill.settings import load_settings

    data = tmp_path / "loose"
    data.mkdir(mode=0o777)
    os.chmod(data, 0o777)
    db_file = data / "waybill.db"
    db_file.touch()
    os.chmod(db_file, 0o644)
    settings = load_settings(environ={}, data_dir=data, env="test")
    _keys, engine, _ = initialise(settings)
    engine.dispose()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_file.stat().st_mode) == 0o600
