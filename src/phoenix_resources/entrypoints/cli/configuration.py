"""``phoenix-resources config docs | show``: the settings, documented and resolved.

``docs`` renders ``docs/configuration.md`` from the settings model
(:mod:`phoenix_resources.config_docs`); ``--check`` exits 1 when a file differs from it.
``show`` prints the settings this process would run with, as JSON, passwords redacted.
Both need only the base install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from phoenix_resources.entrypoints.cli.common import EXIT_ERROR, fail, load_settings

config_app = typer.Typer(no_args_is_help=True, help="The settings: documentation and the "
                         "values in effect.")


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to ``app``."""
    app.add_typer(config_app, name="config")


@config_app.command("docs")
def docs(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file instead of standard output.")] = None,
    check: Annotated[Path | None, typer.Option(
        "--check", help="Compare with this file; exit 1 when it is not current.")] = None,
) -> None:
    """The configuration reference (Markdown), generated from the settings model.

    Example: phoenix-resources config docs --output docs/configuration.md
    """
    from phoenix_resources.config_docs import render

    text = render()
    if check is not None:
        try:
            current = check.read_text(encoding="utf-8")
        except OSError as e:
            raise fail(f"cannot read {check}: {e}") from e
        if current != text:
            raise fail(f"{check} is not current: run `phoenix-resources config docs "
                       f"--output {check}` (make docs)", EXIT_ERROR)
        typer.echo(f"{check} is current")
    elif output is not None:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@config_app.command("show")
def show() -> None:
    """The settings in effect (environment, .env, secrets dir, defaults) as JSON.

    Example: PHOENIX_ENV_FILE=prod.env phoenix-resources config show
    """
    from phoenix_resources.config import redact

    values = load_settings().model_dump(mode="json")
    for key in ("database_url", "read_database_url"):
        if values.get(key):
            values[key] = redact(values[key])
    for key in [k for k in values if k.startswith("kafka_") and isinstance(values[k], dict)]:
        values[key] = {k: ("***" if "password" in k or "secret" in k else v)
                       for k, v in values[key].items()}
    typer.echo(json.dumps(values, indent=2, sort_keys=True))
