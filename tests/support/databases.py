"""Per-test databases cloned from a migrated template, so tests never see each other's rows."""

from __future__ import annotations

import contextlib
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from phoenix_resources.adapters.postgres import schema


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def create_database(server_url: str, template: str | None = None, prefix: str = "t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(stmt)
    return name


def drop_database(server_url: str, name: str, wait_s: float = 30.0) -> None:
    """Drop ``name``, ending its sessions. A session of a role this one may not signal (a
    server process still on its way out) is waited for instead of failing the test."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    deadline = time.monotonic() + wait_s
    with psycopg.connect(server_url, autocommit=True) as conn:
        while True:
            try:
                conn.execute(drop)
                return
            except psycopg.errors.InsufficientPrivilege:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def migrated_template(server_url: str) -> str:
    name = create_database(server_url, prefix="tpl")
    schema.upgrade(with_database(server_url, name))
    return name


def ensure_login_role(server_url: str, role: str, member_of: str) -> None:
    """The API's read-only login role, for clusters the tests did not create."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if not exists:
            # Another test process may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    sql.Identifier(role), sql.Identifier(member_of)))
        # Membership lets DROP DATABASE ... WITH (FORCE) end this role's backends.
        with contextlib.suppress(psycopg.Error):
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
