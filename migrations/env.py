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
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `waybill init`")
run_migrations_online()
