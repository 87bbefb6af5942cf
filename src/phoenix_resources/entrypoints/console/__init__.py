"""The operators' web console (``phoenix-resources console``): the pipeline at a glance, the
parked commands, parked outbox rows and dead letters, and the actions on them — replay and
discard parked commands, retry and discard parked outbox rows, replay a dead letter — each
with a confirmation step and an audit line, through the same functions as the CLI.

It is its own process because it acts with the worker's writing database role, which the
read-only API must never hold. Server-rendered HTML with a little script, all served by the
process itself (no CDN: it works offline).

Modules: :mod:`.auth` (tokens, sessions, CSRF), :mod:`.glance` (the processes' ``/metrics``
and ``/readyz``), :mod:`.operations` (the port and its live implementation), :mod:`.markup`
(HTML escaped by construction), :mod:`.layout` and :mod:`.views` (the pages), :mod:`.app`
(the gate, sign-in, the pages that look), :mod:`.actions` (the pages that act),
:mod:`.server` (assembly, ``serve``).
"""

from __future__ import annotations

from phoenix_resources.entrypoints.console.server import build_server, create_app, serve

__all__ = ["build_server", "create_app", "serve"]
