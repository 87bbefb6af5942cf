"""``phoenix-resources grpc | asyncapi``: the interfaces beside the HTTP API — the gRPC server
(docs/interfaces.md) and the AsyncAPI document of the Kafka topics.

Like every topic module, it imports server code only inside its commands.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from phoenix_resources.entrypoints.cli.common import fail, load_settings, require_server


class DocFormat(StrEnum):
    yaml = "yaml"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add ``grpc`` and ``asyncapi`` to ``app``."""
    app.command("grpc")(grpc_serve)
    app.command("asyncapi")(asyncapi)


def grpc_serve() -> None:
    """Serve the gRPC API (ResourceService, health, reflection) until SIGTERM / Ctrl-C.

    Listens on PHOENIX_GRPC_HOST:PHOENIX_GRPC_PORT (127.0.0.1:50051); reads through
    PHOENIX_READ_DATABASE_URL, publishes commands to the commands topic.

    Example: PHOENIX_GRPC_PORT=50052 phoenix-resources grpc
    """
    require_server("grpc")
    from phoenix_resources.entrypoints.grpc.server import serve

    raise typer.Exit(serve(load_settings()))


def asyncapi(
    fmt: Annotated[DocFormat, typer.Option("--format", help="Output format.")]
    = DocFormat.yaml,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to this file instead of standard output.")] = None,
    defaults: Annotated[bool, typer.Option(
        "--defaults", help="Use the default settings, ignoring PHOENIX_* variables (what "
                           "schemas/asyncapi.yaml holds).")] = False,
) -> None:
    """Print the AsyncAPI 3.0 document of the Kafka topics (commands, events, ...).

    Generated from schemas/*.avsc and the settings (topic names, brokers, registry).

    Example: phoenix-resources asyncapi --defaults --output schemas/asyncapi.yaml
    """
    # No require_server: the document needs only the contracts and the settings (base install).
    import orjson

    from phoenix_resources.entrypoints.asyncapi import default_settings, document, render_yaml

    doc = document(default_settings() if defaults else load_settings())
    text = render_yaml(doc) if fmt is DocFormat.yaml else \
        orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as e:
        raise fail(f"cannot write {output}: {e}") from e
