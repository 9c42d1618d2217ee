"""Alembic environment: runs on the connection handed over by ``metatrail.consumer.store.migrate``."""

from __future__ import annotations

from alembic import context

from metatrail.consumer.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through metatrail.consumer.store.migrate
    raise RuntimeError("run migrations through `metatrail db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
