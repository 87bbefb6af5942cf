"""Alembic environment, on the URL that ``schema.py`` passes in.

Online: one connection, transactional DDL (a migration that builds an index
``CONCURRENTLY`` steps out of the transaction with ``autocommit_block``, see
docs/decisions/0010-online-index-builds.md). Offline (``migrate --sql``): the same
migrations rendered as SQL for review; no connection is made.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True, transactional_ddl=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
