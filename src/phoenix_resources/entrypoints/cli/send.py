"""``phoenix-resources send create | update | delete`` and ``send --file``: publish commands.

The options every sub-command shares (ids, ``--expected-version``, ``--wait``, output,
wire format) are the fields of :class:`SendOptions`, declared once; :func:`send_command`
gives each sub-command those options after its own. With ``--wait`` the outcome is printed
and a rejection exits 4; a command that fails local validation exits 2 and is not sent; a
broker (or, with ``--wait --api-url``, an API) that does not answer within
``--connect-timeout`` exits 6 (:mod:`.reach`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, get_type_hints

import typer

from phoenix_resources.entrypoints.cli.bulk import send_file
from phoenix_resources.entrypoints.cli.common import (
    EXIT_ERROR,
    EXIT_PARKED,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Format,
    ResourceIdArg,
    StatusChoice,
    StatusOpt,
    console_logging,
    fail,
    load_settings,
    uuid_arg,
)
from phoenix_resources.entrypoints.cli.reach import (
    ConnectTimeoutOpt,
    Reach,
    check_api,
    kafka_failed,
)
from phoenix_resources.errors import CommandInvalid, OutcomeTimeout, PhoenixError

if TYPE_CHECKING:
    from phoenix_resources.client import Outcome, Sent
    from phoenix_resources.config import Settings
    from phoenix_resources.domain.commands import AnyCommand

send_app = typer.Typer(no_args_is_help=False)


def register(app: typer.Typer) -> None:
    """Add the ``send`` group (``--file`` and its sub-commands) to ``app``."""
    app.add_typer(send_app, name="send")


FormatOpt = Annotated[Format | None, typer.Option(
    "--format", help="Wire format (default: PHOENIX_WIRE_FORMAT, avro).")]
ConfigOpt = Annotated[list[str] | None, typer.Option(
    "--config", "-c", help="A config entry KEY=VALUE; repeat for more.")]


@dataclass(frozen=True)
class SendOptions:
    """The options of every ``send`` sub-command, in help order; each field's type carries
    its Typer option."""

    command_id: Annotated[str | None, typer.Option(
        "--command-id", help="Idempotency key (UUID); reuse it when retrying a send.")] = None
    correlation_id: Annotated[str | None, typer.Option("--correlation-id")] = None
    issued_by: Annotated[str | None, typer.Option("--issued-by")] = None
    expected_version: Annotated[int | None, typer.Option(
        "--expected-version", min=0, help="Refuse unless the resource is at this version.")
    ] = None
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for the outcome and print it (exit 4 when rejected, 5 when "
                       "parked).")] = False
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds to wait for the outcome.")] = 30.0
    api_url: Annotated[str | None, typer.Option(
        "--api-url", envvar="PHOENIX_API_URL",
        help="Ask this HTTP API for the outcome (default: read the events/rejections topics).")
    ] = None
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False
    wire_format: FormatOpt = None
    connect_timeout: ConnectTimeoutOpt = None

    def command_fields(self) -> dict[str, Any]:
        """The keyword arguments every publisher method takes."""
        return {"command_id": self.command_id, "correlation_id": self.correlation_id,
                "issued_by": self.issued_by, "expected_version": self.expected_version}


@dataclass(frozen=True)
class _GroupOptions:
    """Options given to ``send`` itself (before the sub-command) that its sub-commands
    inherit when they do not give their own."""

    connect_timeout: float | None


def send_command(command: Callable[..., None]) -> Callable[..., None]:
    """``command(*, <own options>, opts: SendOptions)`` → a Typer callback that takes the
    command's own options followed by every :class:`SendOptions` field as an option, and
    calls ``command`` with those gathered into ``opts``.

    Typer reads parameters from ``__signature__``; it is built here from the two parts and
    Typer's context, whose ``obj`` carries what ``send`` itself was given
    (:class:`_GroupOptions`: ``send --connect-timeout 3 create …`` applies to ``create``)."""
    shared_types = get_type_hints(SendOptions, include_extras=True)
    shared = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                annotation=shared_types[f.name])
              for f in dataclasses.fields(SendOptions)]
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.name != "opts"]
    context = inspect.Parameter("send_context", inspect.Parameter.KEYWORD_ONLY,
                                annotation=typer.Context)
    signature = inspect.Signature([context, *own, *shared], return_annotation=None)

    @functools.wraps(command)
    def callback(**kwargs: Any) -> None:
        group = kwargs.pop(context.name).obj
        opts = SendOptions(**{p.name: kwargs.pop(p.name) for p in shared})
        if opts.connect_timeout is None and isinstance(group, _GroupOptions):
            opts = dataclasses.replace(opts, connect_timeout=group.connect_timeout)
        command(**kwargs, opts=opts)

    callback.__signature__ = signature  # type: ignore[attr-defined]
    callback.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return callback


def parse_config(entries: list[str] | None) -> dict[str, str] | None:
    if entries is None:
        return None
    config: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep:
            raise typer.BadParameter(f"{entry!r} is not KEY=VALUE", param_hint="--config")
        config[key] = value
    return config


def _publish(opts: SendOptions, build: Callable[[dict[str, Any]], AnyCommand]) -> None:
    """Publish ``build(command_fields)``; print the result; exit accordingly.

    The command is checked by the one validator (``wire/validation``) first, before any
    connection: exit 2, nothing sent. Then the broker (and with ``--wait --api-url`` the API)
    must answer within the connection timeout before anything is sent; a failure afterwards
    exits 6 only if a fresh check fails too (:mod:`.reach`)."""
    from phoenix_resources.client import CommandPublisher
    from phoenix_resources.client.commands import validate

    try:
        command = build(opts.command_fields())
        validate(command)
    except CommandInvalid as e:
        raise fail(f"invalid command, nothing sent: {e}", EXIT_USAGE) from e
    settings = load_settings(opts.wire_format)
    reach = Reach.of(opts.connect_timeout)
    console_logging()  # librdkafka's lines, one per problem, beside the error
    if opts.wait and opts.api_url:
        check_api(opts.api_url, reach)
    options = reach.kafka_options("producer", settings, delivery=True)
    try:
        with CommandPublisher(settings, api_url=opts.api_url,
                              producer_options=options) as publisher:
            publisher.check_topic(reach.seconds)
            sent = publisher.publish(command)
            outcome = publisher.wait_for_outcome(sent, opts.timeout) if opts.wait else None
    except CommandInvalid as e:
        raise fail(f"invalid command, nothing sent: {e}", EXIT_USAGE) from e
    except PhoenixError as e:  # OutcomeTimeout included: "no outcome in time" is an error
        _failed(e, opts, settings, reach)
    _print_sent(sent, outcome, opts.as_json)
    if outcome is not None and outcome.rejected:
        raise typer.Exit(EXIT_REJECTED)
    if outcome is not None and outcome.parked:
        raise typer.Exit(EXIT_PARKED)


def _failed(error: PhoenixError, opts: SendOptions, settings: Settings, reach: Reach
            ) -> NoReturn:
    """Exit 6 when what the command needed cannot be reached now, else 1 with ``error``."""
    if opts.wait and opts.api_url and isinstance(error, OutcomeTimeout):
        check_api(opts.api_url, reach)
        raise fail(str(error)) from error
    kafka_failed(error, settings, reach, settings.commands_topic)


def _print_sent(sent: Sent, outcome: Outcome | None, as_json: bool) -> None:
    if as_json:
        out: dict[str, Any] = {"command_id": str(sent), "resource_id": str(sent.resource_id)}
        if outcome is not None:
            out |= {k: v for k, v in outcome.to_json().items() if k != "resource_id"}
        typer.echo(json.dumps(out))
        return
    typer.echo(f"sent command_id={sent} resource_id={sent.resource_id}")
    if outcome is not None and outcome.applied:
        typer.echo(f"applied version={outcome.resulting_version}")
    elif outcome is not None:
        typer.echo(f"{outcome.outcome} {outcome.error_code}: {outcome.error_message}")


SEND_HELP = (
    "Publish create / update / delete commands: one (sub-command) or many (--file).\n\n"
    "Examples: phoenix-resources send create --name db-1 -c size=m --wait ; "
    "phoenix-resources send --file commands.jsonl\n\n"
    "Each line of the --file is one command object shaped like the JSON wire format, e.g. "
    '{"command_type": "CREATE", "name": "db-1", "config": {"size": "m"}}. command_id, '
    "issued_at and (for CREATE) resource_id are generated when missing. Bad lines are "
    "reported as 'line N: reason' on stderr and the other lines are still sent; the exit "
    "code is 1 when any line failed."
)


@send_app.callback(invoke_without_command=True, help=SEND_HELP)
def send(
    ctx: typer.Context,
    *,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Bulk: a JSON-lines file of commands ('-' = stdin).",
        allow_dash=True, dir_okay=False)] = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)."
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Bulk: print the summary as JSON.")]
    = False,
    wire_format: FormatOpt = None,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Publish one command (sub-command) or a JSON-lines file of them (--file)."""
    if ctx.invoked_subcommand is not None:
        if file is not None:
            raise fail("--file cannot be combined with a sub-command", EXIT_USAGE)
        ctx.obj = _GroupOptions(connect_timeout)
        return
    if file is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(EXIT_USAGE)
    show = sys.stderr.isatty() if progress is None else progress
    console_logging()  # librdkafka's lines, one per problem, beside the line reports
    summary = send_file(load_settings(wire_format), file, progress=show,
                        reach=Reach.of(connect_timeout))
    if as_json:
        typer.echo(json.dumps(summary.to_json()))
    else:
        typer.echo(f"sent {summary.sent}, failed {summary.failed} of {summary.lines} lines "
                   f"in {summary.seconds:.2f}s ({summary.rate:.0f} commands/s)")
    if summary.unreachable is not None:
        raise fail(summary.unreachable, EXIT_UNREACHABLE)
    if summary.failed:
        raise typer.Exit(EXIT_ERROR)


def _status_value(status: StatusChoice | None) -> str | None:
    return None if status is None else status.value


@send_app.command("create")
@send_command
def send_create(
    *,
    name: Annotated[str, typer.Option("--name", "-n", help="The resource's name.")],
    resource_id: Annotated[str | None, typer.Option(
        "--resource-id", help="UUID of the new resource (default: a new one).")] = None,
    config: ConfigOpt = None,
    status: StatusOpt = None,
    opts: SendOptions,
) -> None:
    """Create a resource. Prints its command id and resource id.

    Example: phoenix-resources send create --name db-1 -c size=m -c tier=gold --wait
    """
    rid = None if resource_id is None else uuid_arg(resource_id, "--resource-id")
    cfg = parse_config(config)
    from phoenix_resources.client.commands import create_command

    _publish(opts, lambda kw: create_command(name, resource_id=rid, config=cfg,
                                             status=_status_value(status), **kw))


@send_app.command("update")
@send_command
def send_update(
    *,
    resource_id: ResourceIdArg,
    name: Annotated[str | None, typer.Option("--name", "-n")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="KEY=VALUE; repeat for more. Replaces the whole config.")]
    = None,
    clear_config: Annotated[bool, typer.Option(
        "--clear-config", help="Replace the config with an empty one.")] = False,
    status: StatusOpt = None,
    opts: SendOptions,
) -> None:
    """Update a resource; fields not given stay unchanged.

    Example: phoenix-resources send update 3f1e…c2 --status active --expected-version 1 --wait
    """
    rid = uuid_arg(resource_id, "RESOURCE_ID")
    if clear_config and config:
        raise fail("--clear-config and --config exclude each other", EXIT_USAGE)
    cfg = {} if clear_config else parse_config(config)
    from phoenix_resources.client.commands import update_command

    _publish(opts, lambda kw: update_command(rid, name=name, config=cfg,
                                             status=_status_value(status), **kw))


@send_app.command("delete")
@send_command
def send_delete(*, resource_id: ResourceIdArg, opts: SendOptions) -> None:
    """Delete a resource (its id can never be reused).

    Example: phoenix-resources send delete 3f1e…c2 --wait
    """
    rid = uuid_arg(resource_id, "RESOURCE_ID")
    from phoenix_resources.client.commands import delete_command

    _publish(opts, lambda kw: delete_command(rid, **kw))
