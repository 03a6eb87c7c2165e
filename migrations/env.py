"""Alembic environment: runs against the engine the caller passes, or the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from waybill.db import make_engine, model_metadata

config = context.config
# The one list of model modules (waybill's own and every extension's): waybill.db.model_metadata.
target_metadata = model_metadata()


def run_migrations_online() -> None:
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration copies a table that others refer to: with foreign keys enforced, dropping the
            # old copy would fail (or cascade). SQLite ignores this pragma inside a transaction, so it is set
            # on the raw connection before one begins, and the keys are checked once the migrations ran.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        try:
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise RuntimeError(f"migration left a broken foreign key in table {broken[0]}")
            connection.commit()
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `waybill init`")
run_migrations_online()
