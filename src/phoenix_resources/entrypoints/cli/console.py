"""``phoenix-resources console``: the operators' web console (docs/operations.md#web-console).

It serves pages, so it runs until stopped (SIGTERM / SIGINT); exit 1 when it cannot start
(no token configured, an unmigrated database, the port taken, no ``server`` extra).
"""

from __future__ import annotations

import typer

from phoenix_resources.entrypoints.cli.common import load_settings, require_server


def register(app: typer.Typer) -> None:
    """Add ``console`` to ``app``."""
    app.command()(console)


def console() -> None:
    """Serve the web console: the pipeline at a glance, parked commands, parked events and
    dead letters, with replay / retry / discard behind a confirmation step.

    Example: PHOENIX_CONSOLE_OPERATOR_TOKEN_HASHES='{"alice": "<sha256 of her token>"}'
    phoenix-resources console   # then open http://127.0.0.1:8010
    """
    require_server("console")
    from phoenix_resources.entrypoints.console import serve

    raise typer.Exit(serve(load_settings()))
