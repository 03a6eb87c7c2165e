"""Alembic environment: runs against the engine the caller passes, or the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

import waybill.virtual_numbers.models  # noqa: F401  (registers the virtual-number tables on Base.metadata)
from waybill.db import make_engine
from waybill.extensions import load_extensions
from waybill.models import Base

load_extensions()  # each extension's tables (the staff tables of the courier side) join Base.metadata

config = context.config
target_metadata = Base.metadata


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
