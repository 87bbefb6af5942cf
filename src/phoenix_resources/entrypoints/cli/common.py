"""What every CLI topic module shares: the exit codes, :func:`fail`, settings loading, and
the option types more than one command takes (each defined here once).

Importing this module is cheap (Typer, the settings model, the error tree): no I/O, no
server module.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from enum import StrEnum
from importlib import metadata
from typing import Annotated

import typer

from phoenix_resources.config import Settings

# The meanings are stable (scripts rely on them); the package docstring lists them.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_REJECTED = 4
EXIT_NOT_FOUND = EXIT_REJECTED
EXIT_PARKED = 5
EXIT_UNREACHABLE = 6
"""The broker, the HTTP API or the database did not answer within ``--connect-timeout``
(one line on stderr names which, at which address): nothing, or not everything, was done;
trying again later is the remedy."""


class Format(StrEnum):
    avro = "avro"
    json = "json"


class StatusChoice(StrEnum):
    pending = "pending"
    active = "active"
    inactive = "inactive"


StatusOpt = Annotated[StatusChoice | None, typer.Option("--status")]
ResourceIdArg = Annotated[str, typer.Argument(help="UUID of the resource.")]


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``error: message`` (red, on stderr) and return the exit to raise:
    ``raise fail(...) from e``."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


DISTRIBUTION = "phoenix-resources"
SERVER_EXTRA = "server"


def missing_server_packages() -> list[str]:
    """The distributions of the ``server`` extra that are not installed (read from this
    package's own metadata, so the list is pyproject's). Empty when all are, or when the
    package runs from a source tree without metadata."""
    try:
        requires = metadata.distribution(DISTRIBUTION).requires or []
    except metadata.PackageNotFoundError:
        return []
    missing = []
    for requirement in requires:
        if not re.search(rf"""extra\s*==\s*["']{SERVER_EXTRA}["']""", requirement):
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        if name is None:
            continue
        try:
            metadata.version(name.group(0))
        except metadata.PackageNotFoundError:
            missing.append(name.group(0))
    return missing


def require_server(command: str) -> None:
    """Refuse (exit 1, a message naming the extra) when ``command`` needs the server extra
    and it is not installed: ``pip install phoenix-resources`` is the client only."""
    missing = missing_server_packages()
    if missing:
        raise fail(f"`phoenix-resources {command}` runs the service and needs the "
                   f"'{SERVER_EXTRA}' extra, which is not installed (missing: "
                   f"{', '.join(missing)}). Install it with: "
                   f"pip install '{DISTRIBUTION}[{SERVER_EXTRA}]'")


_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message",
                                                                           "asctime"}


class _ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message key=value …`` (the ``extra=`` fields last)."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        text = (f"{time.strftime('%H:%M:%S', time.localtime(record.created))} "
                f"{record.levelname:<7} {record.name}: {record.getMessage()}")
        return f"{text} {extra}" if extra else text


def console_logging(level: str = "WARNING") -> None:
    """Log lines for a person on stderr, with the standard library only: the client
    commands run without the server extra, which the service's own logging needs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def load_settings(wire_format: Format | None = None) -> Settings:
    """The settings from the environment, with ``--format`` applied when given.

    Invalid settings exit with :data:`EXIT_USAGE` and pydantic's message, which names the
    bad variable; nothing has been sent or started by then."""
    try:
        settings = Settings()
    except Exception as e:  # any failure to build them is a settings problem, not a crash
        raise fail(f"invalid settings: {e}", EXIT_USAGE) from e
    if wire_format is not None:
        settings = settings.model_copy(update={"wire_format": wire_format.value})
    return settings


def uuid_arg(value: str, what: str) -> uuid.UUID:
    """``value`` as a UUID, or a usage error (exit 2) naming the parameter ``what``."""
    try:
        return uuid.UUID(value)
    except ValueError as e:
        raise typer.BadParameter(f"{value!r} is not a UUID", param_hint=what) from e
