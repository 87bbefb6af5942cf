"""The worker's per-command path: compiled or Python, and how strictly it checks where a
record was published. Part of the settings model — :class:`~phoenix_resources.config.
Settings` inherits them, read like every other setting (``PHOENIX_`` prefix) and documented
in ``docs/configuration.md`` from the docstrings below. Kept apart so ``config.py`` stays
readable.
"""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerPath(BaseSettings):
    """How the worker does its per-command work (a part of the settings model)."""

    model_config = SettingsConfigDict(use_attribute_docstrings=True)

    # --- Worker hot path ------------------------------------------------------------------------
    native: Literal["auto", "on", "off"] = "auto"
    """The compiled hot path (the optional ``phoenix-resources-native`` extension, built by
    ``make deps`` when cargo is present): ``auto`` uses it when it can be imported and
    matches this version's schemas, else the Python code; ``off`` always runs the Python code
    (the reference); ``on`` refuses to start without it. Either way the outcomes, rows,
    events, parking and dead letters are the same (``docs/performance.md``, The compiled hot
    path)."""
    partition_check: Literal["refuse", "warn"] = "refuse"
    """A command whose record sits in another partition than the Java client's partitioner
    puts its key (``murmur2(key) % partitions`` of the commands topic) is refused
    (``CMD-011``) — its order with the resource's other commands is lost. ``warn`` applies it
    anyway, logs a warning and counts it (``phoenix_partition_mismatches_total``): for a
    topic whose partition count was raised, where older records sit where the old count put
    them."""
