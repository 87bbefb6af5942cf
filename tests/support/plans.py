"""Reading PostgreSQL plans in tests: ``EXPLAIN (FORMAT JSON)`` and its nodes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg


def explain(conn: psycopg.Connection[Any], query: str,
            params: Sequence[Any] | None = None) -> dict[str, Any]:
    """The top node of the plan PostgreSQL makes for ``query`` (not executed)."""
    row = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    top: dict[str, Any] = row[0][0]["Plan"]
    return top


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``node`` and every node below it."""
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)
