"""Alembic environment for the card store (run through cardstore.migrate)."""
from alembic import context
from sqlalchemy import create_engine, event

from cardstore.models import Base
from cardstore.uow import sqlite_page_size

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", sqlite_page_size)  # a store the migrations create gets the store's page size
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
