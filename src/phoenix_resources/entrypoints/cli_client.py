"""``phoenix-resources send | watch | get | list``: the client library from a shell.

Exit codes (stable; scripts may rely on them):

* 0 — done (sent / applied / found / watched);
* 1 — error: broker or API unreachable, delivery failed, no outcome in time, a bulk file
  with at least one failed line;
* 2 — usage: bad flags, or a command that fails local validation (nothing was sent);
* 4 — the command was **rejected** by the service (``--wait``), or the resource is **not
  found** (``get``).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from phoenix_resources.config import Settings
from phoenix_resources.errors import (
    CommandInvalid,
    DecodeError,
    DeliveryFailed,
    OutcomeTimeout,
    PhoenixError,
)

if TYPE_CHECKING:
    import httpx

    from phoenix_resources.client import Delivery, Outcome, Sent
    from phoenix_resources.domain.model import Resource

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 4
EXIT_NOT_FOUND = EXIT_REJECTED

send_app = typer.Typer(no_args_is_help=False)


class Format(StrEnum):
    avro = "avro"
    json = "json"


class StatusChoice(StrEnum):
    pending = "pending"
    active = "active"
    inactive = "inactive"


def register(app: typer.Typer) -> None:
    """Add ``send`` (with its sub-commands), ``watch``, ``get`` and ``list`` to ``app``."""
    app.add_typer(send_app, name="send")
    app.command("watch")(watch)
    app.command("get")(get)
    app.command("list")(list_resources)


def _fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _settings(wire_format: Format | None = None) -> Settings:
    try:
        settings = Settings()
    except ValueError as e:  # pydantic's ValidationError: the message names the variable
        raise _fail(f"invalid settings: {e}", EXIT_USAGE) from e
    if wire_format is not None:
        settings = settings.model_copy(update={"wire_format": wire_format.value})
    return settings


def default_api_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    return f"http://{host}:{settings.http_port}"


# --- send ----------------------------------------------------------------------------------

CommandIdOpt = Annotated[str | None, typer.Option(
    "--command-id", help="Idempotency key (UUID); reuse it when retrying a send.")]
CorrelationOpt = Annotated[str | None, typer.Option("--correlation-id")]
IssuedByOpt = Annotated[str | None, typer.Option("--issued-by")]
ExpectedOpt = Annotated[int | None, typer.Option(
    "--expected-version", min=0, help="Refuse unless the resource is at this version.")]
WaitOpt = Annotated[bool, typer.Option(
    "--wait", help="Wait for the outcome and print it (exit 4 when rejected).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="Seconds to wait for the outcome.")]
OutcomeApiOpt = Annotated[str | None, typer.Option(
    "--api-url", envvar="PHOENIX_API_URL",
    help="Ask this HTTP API for the outcome (default: read the events/rejections topics).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
FormatOpt = Annotated[Format | None, typer.Option(
    "--format", help="Wire format (default: PHOENIX_WIRE_FORMAT, avro).")]
ConfigOpt = Annotated[list[str] | None, typer.Option(
    "--config", "-c", help="A config entry KEY=VALUE; repeat for more.")]
StatusOpt = Annotated[StatusChoice | None, typer.Option("--status")]


@dataclass(frozen=True)
class SendOptions:
    command_id: str | None
    correlation_id: str | None
    issued_by: str | None
    expected_version: int | None
    wait: bool
    timeout: float
    api_url: str | None
    as_json: bool
    wire_format: Format | None


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


def _uuid_arg(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as e:
        raise typer.BadParameter(f"{value!r} is not a UUID", param_hint=what) from e


def _publish(opts: SendOptions, send: Any) -> None:
    """Run ``send(publisher, common_kwargs) -> Sent``; print the result; exit accordingly."""
    from phoenix_resources.client import CommandPublisher

    common: dict[str, Any] = {"command_id": opts.command_id,
                              "correlation_id": opts.correlation_id,
                              "issued_by": opts.issued_by,
                              "expected_version": opts.expected_version}
    try:
        with CommandPublisher(_settings(opts.wire_format), api_url=opts.api_url) as publisher:
            sent: Sent = send(publisher, common)
            outcome = publisher.wait_for_outcome(sent, opts.timeout) if opts.wait else None
    except CommandInvalid as e:
        raise _fail(f"invalid command, nothing sent: {e}", EXIT_USAGE) from e
    except OutcomeTimeout as e:
        raise _fail(str(e)) from e
    except PhoenixError as e:
        raise _fail(str(e)) from e
    _print_sent(sent, outcome, opts.as_json)
    if outcome is not None and outcome.rejected:
        raise typer.Exit(EXIT_REJECTED)


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
        typer.echo(f"rejected {outcome.error_code}: {outcome.error_message}")


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
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", help="Bulk: a JSON-lines file of commands ('-' = stdin).",
        allow_dash=True, dir_okay=False)] = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Progress bar (default: when stderr is a terminal)."
    )] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Bulk: print the summary as JSON.")]
    = False,
    wire_format: FormatOpt = None,
) -> None:
    """Publish one command (sub-command) or a JSON-lines file of them (--file)."""
    if ctx.invoked_subcommand is not None:
        if file is not None:
            raise _fail("--file cannot be combined with a sub-command", EXIT_USAGE)
        return
    if file is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(EXIT_USAGE)
    show = sys.stderr.isatty() if progress is None else progress
    summary = send_file(_settings(wire_format), file, progress=show)
    if as_json:
        typer.echo(json.dumps(summary.to_json()))
    else:
        typer.echo(f"sent {summary.sent}, failed {summary.failed} of {summary.lines} lines "
                   f"in {summary.seconds:.2f}s ({summary.rate:.0f} commands/s)")
    if summary.failed:
        raise typer.Exit(EXIT_ERROR)


@send_app.command("create")
def send_create(
    *,
    name: Annotated[str, typer.Option("--name", "-n", help="The resource's name.")],
    resource_id: Annotated[str | None, typer.Option(
        "--resource-id", help="UUID of the new resource (default: a new one).")] = None,
    config: ConfigOpt = None,
    status: StatusOpt = None,
    command_id: CommandIdOpt = None, correlation_id: CorrelationOpt = None,
    issued_by: IssuedByOpt = None, expected_version: ExpectedOpt = None,
    wait: WaitOpt = False, timeout: TimeoutOpt = 30.0, api_url: OutcomeApiOpt = None,
    as_json: JsonOpt = False, wire_format: FormatOpt = None,
) -> None:
    """Create a resource. Prints its command id and resource id.

    Example: phoenix-resources send create --name db-1 -c size=m -c tier=gold --wait
    """
    rid = None if resource_id is None else _uuid_arg(resource_id, "--resource-id")
    cfg = parse_config(config)
    opts = SendOptions(command_id, correlation_id, issued_by, expected_version, wait, timeout,
                       api_url, as_json, wire_format)
    _publish(opts, lambda p, kw: p.create(name, resource_id=rid, config=cfg,
                                          status=None if status is None else status.value,
                                          **kw))


@send_app.command("update")
def send_update(
    *,
    resource_id: Annotated[str, typer.Argument(help="UUID of the resource.")],
    name: Annotated[str | None, typer.Option("--name", "-n")] = None,
    config: Annotated[list[str] | None, typer.Option(
        "--config", "-c", help="KEY=VALUE; repeat for more. Replaces the whole config.")]
    = None,
    clear_config: Annotated[bool, typer.Option(
        "--clear-config", help="Replace the config with an empty one.")] = False,
    status: StatusOpt = None,
    command_id: CommandIdOpt = None, correlation_id: CorrelationOpt = None,
    issued_by: IssuedByOpt = None, expected_version: ExpectedOpt = None,
    wait: WaitOpt = False, timeout: TimeoutOpt = 30.0, api_url: OutcomeApiOpt = None,
    as_json: JsonOpt = False, wire_format: FormatOpt = None,
) -> None:
    """Update a resource; fields not given stay unchanged.

    Example: phoenix-resources send update 3f1e…c2 --status active --expected-version 1 --wait
    """
    rid = _uuid_arg(resource_id, "RESOURCE_ID")
    if clear_config and config:
        raise _fail("--clear-config and --config exclude each other", EXIT_USAGE)
    cfg = {} if clear_config else parse_config(config)
    opts = SendOptions(command_id, correlation_id, issued_by, expected_version, wait, timeout,
                       api_url, as_json, wire_format)
    _publish(opts, lambda p, kw: p.update(rid, name=name, config=cfg,
                                          status=None if status is None else status.value,
                                          **kw))


@send_app.command("delete")
def send_delete(
    *,
    resource_id: Annotated[str, typer.Argument(help="UUID of the resource.")],
    command_id: CommandIdOpt = None, correlation_id: CorrelationOpt = None,
    issued_by: IssuedByOpt = None, expected_version: ExpectedOpt = None,
    wait: WaitOpt = False, timeout: TimeoutOpt = 30.0, api_url: OutcomeApiOpt = None,
    as_json: JsonOpt = False, wire_format: FormatOpt = None,
) -> None:
    """Delete a resource (its id can never be reused).

    Example: phoenix-resources send delete 3f1e…c2 --wait
    """
    rid = _uuid_arg(resource_id, "RESOURCE_ID")
    opts = SendOptions(command_id, correlation_id, issued_by, expected_version, wait, timeout,
                       api_url, as_json, wire_format)
    _publish(opts, lambda p, kw: p.delete(rid, **kw))


# --- send --file ---------------------------------------------------------------------------


@dataclass
class BulkSummary:
    lines: int = 0
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else float(self.sent)

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "sent": self.sent, "failed": self.failed,
                "seconds": round(self.seconds, 3), "rate": round(self.rate, 1)}


def command_from_line(text: str) -> Any:
    """One JSON line → a command; missing ``command_id``/``issued_at`` (and a CREATE's
    ``resource_id``) are generated. Raises :class:`DecodeError` with the reason."""
    from phoenix_resources.adapters.codec.commands import command_from_record

    try:
        record = json.loads(text)
    except ValueError as e:
        raise DecodeError("malformed-json", str(e)) from e
    if not isinstance(record, dict):
        raise DecodeError("malformed-json", "a command must be a JSON object")
    # Not setdefault: it would build the default (a uuid4, a clock read) on every line.
    if "command_id" not in record:
        record["command_id"] = uuid.uuid4()
    if "issued_at" not in record:
        record["issued_at"] = datetime.now(UTC)
    if "resource_id" not in record and record.get("command_type") == "CREATE":
        record["resource_id"] = uuid.uuid4()
    return command_from_record(record)


def _lines(source: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text


def send_file(settings: Settings, path: Path, *, progress: bool) -> BulkSummary:
    """Send every command of a JSON-lines file: enqueue all, flush once at the end.

    Bad lines and failed deliveries are reported on stderr as ``line N: reason``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from phoenix_resources.client import CommandPublisher

    summary = BulkSummary()

    def report(number: int, reason: str) -> None:
        summary.failed += 1
        summary.errors.append((number, reason))
        # Plain writes: one unwrapped line per error, for grep (the live bar reprints below).
        sys.stderr.write(f"line {number}: {reason}\n")

    total = None if str(path) == "-" else _count_lines(path)
    bar = Progress(TextColumn("sending"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:>8.0f}/s"), console=Console(stderr=True),
                   disable=not progress, transient=False)
    started = time.monotonic()
    try:
        with (CommandPublisher(settings) as publisher, bar,
              (sys.stdin if str(path) == "-" else path.open(encoding="utf-8")) as source):
            publisher.check_topic()
            task = bar.add_task("send", total=total, rate=0.0)

            def delivered_for(number: int) -> Any:
                def done(_sent: Sent, err: PhoenixError | None) -> None:
                    if err is None:
                        summary.sent += 1
                    else:
                        report(number, f"not delivered: {err}")
                return done

            for number, text in _lines(source):
                summary.lines += 1
                try:
                    publisher.submit(command_from_line(text), delivered_for(number))
                except (DecodeError, CommandInvalid) as e:
                    report(number, str(e))
                if summary.lines % 1000 == 0:
                    publisher.poll(0)
                    _advance(bar, task, summary, number, started)
            if publisher.flush() > 0:
                raise DeliveryFailed("some commands had no delivery report in time")
            _advance(bar, task, summary, total or summary.lines, started)
    except OSError as e:
        raise _fail(f"cannot read {path}: {e}") from e
    summary.seconds = time.monotonic() - started
    summary.errors.sort()
    return summary


def _advance(bar: Any, task: Any, summary: BulkSummary, line: int, started: float) -> None:
    elapsed = time.monotonic() - started
    bar.update(task, completed=line, rate=summary.sent / elapsed if elapsed > 0 else 0.0)


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None  # reported when opened for reading


# --- watch ---------------------------------------------------------------------------------


def resource_json(resource: Resource | None) -> dict[str, Any] | None:
    if resource is None:
        return None
    return {"id": str(resource.id), "name": resource.name, "config": dict(resource.config),
            "status": resource.status.value, "version": resource.version,
            "created_at": resource.created_at.isoformat(),
            "updated_at": resource.updated_at.isoformat()}


def delivery_json(d: Delivery) -> dict[str, Any]:
    e = d.event
    return {"event_id": str(e.event_id), "event_type": e.event_type.value,
            "resource_id": str(e.resource_id), "version": e.version,
            "occurred_at": e.occurred_at.isoformat(), "command_id": str(e.command_id),
            "correlation_id": e.correlation_id, "changed_fields": list(e.changed_fields),
            "resource": resource_json(e.resource), "ce": d.ce, "traceparent": d.traceparent,
            "partition": d.partition, "offset": d.offset}


def delivery_line(d: Delivery) -> str:
    e = d.event
    text = (f"{e.occurred_at.isoformat(timespec='milliseconds')}  {e.event_type.value:<7}  "
            f"{e.resource_id}  v{e.version}")
    if e.resource is not None:
        text += f"  name={e.resource.name!r} status={e.resource.status.value}"
    if e.changed_fields:
        text += f"  changed={','.join(e.changed_fields)}"
    return text


def watch(
    *,
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="Start at the oldest event (for a group without offsets).")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    group: Annotated[str | None, typer.Option(
        "--group", help="Consumer group; offsets are committed for it (default: a private "
        "throw-away group).")] = None,
    max_events: Annotated[int | None, typer.Option(
        "--max", min=1, help="Stop after this many events.")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.0, help="Stop after this many seconds (exit 1 if --max events "
        "were not seen by then).")] = None,
    dedupe: Annotated[bool, typer.Option(
        "--dedupe/--no-dedupe", help="Drop repeats by (resource_id, version).")] = True,
) -> None:
    """Tail change events from the events topic.

    Example: phoenix-resources watch --from-beginning --json --max 10 --timeout 30
    """
    from phoenix_resources.client import EventSubscriber

    seen = 0
    try:
        with EventSubscriber(_settings(), group, from_beginning=from_beginning,
                             dedupe=dedupe) as events:
            for delivery in events.deliveries(timeout=timeout):
                typer.echo(json.dumps(delivery_json(delivery)) if as_json
                           else delivery_line(delivery))
                sys.stdout.flush()
                events.ack()
                seen += 1
                if max_events is not None and seen >= max_events:
                    return
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except PhoenixError as e:
        raise _fail(str(e)) from e
    if max_events is not None and seen < max_events:
        raise _fail(f"timeout: saw {seen} of {max_events} events in {timeout:g}s")


# --- get / list ----------------------------------------------------------------------------

ApiUrlOpt = Annotated[str | None, typer.Option(
    "--api-url", envvar="PHOENIX_API_URL",
    help="Base URL of the HTTP API (default: http://PHOENIX_HTTP_HOST:PHOENIX_HTTP_PORT).")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="PHOENIX_API_TOKEN", help="Bearer token, when the API requires one.")]


def _http_client(api_url: str | None, token: str | None) -> httpx.Client:
    import httpx

    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=api_url or default_api_url(_settings()), headers=headers,
                        timeout=10.0)


def _api_get(client: httpx.Client, path: str, params: dict[str, Any] | None = None
             ) -> tuple[int, Any]:
    import httpx

    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as e:
        raise _fail(f"cannot reach the API at {client.base_url}: {e}") from e
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    return response.status_code, body


def _problem(status: int, body: Any) -> str:
    if isinstance(body, dict):
        code = body.get("code")
        detail = body.get("detail") or body.get("title") or ""
        return f"{code or status}: {detail}".strip(": ")
    return f"HTTP {status}"


def get(
    *,
    resource_id: Annotated[str, typer.Argument(help="UUID of the resource.")],
    api_url: ApiUrlOpt = None, token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON body.")] = False,
) -> None:
    """Look a resource up over the HTTP API (exit 4 when not found).

    Example: phoenix-resources get 3f1e…c2 --json
    """
    rid = _uuid_arg(resource_id, "RESOURCE_ID")
    with _http_client(api_url, token) as client:
        status, body = _api_get(client, f"/api/v1/resources/{rid}")
    if status == 404:
        raise _fail(f"resource {rid} not found ({_problem(status, body)})", EXIT_NOT_FOUND)
    if status != 200:
        raise _fail(f"the API answered {status}: {_problem(status, body)}")
    if as_json:
        typer.echo(json.dumps(body))
        return
    for key in ("id", "name", "status", "version", "created_at", "updated_at"):
        if key in body:
            typer.echo(f"{key:<11} {body[key]}")
    for key, value in sorted((body.get("config") or {}).items()):
        typer.echo(f"config.{key:<4} {value}")


def list_resources(
    *,
    status: Annotated[StatusChoice | None, typer.Option("--status")] = None,
    name_prefix: Annotated[str | None, typer.Option("--name-prefix")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000,
                                       help="Page size.")] = 100,
    cursor: Annotated[str | None, typer.Option("--cursor", help="From a previous page.")]
    = None,
    follow: Annotated[bool, typer.Option("--all", help="Follow next_cursor to the end.")]
    = False,
    api_url: ApiUrlOpt = None, token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
    = False,
) -> None:
    """List resources over the HTTP API (the next page's cursor goes to stderr).

    Example: phoenix-resources list --status active --limit 50 --json
    """
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status.value
    if name_prefix:
        params["name_prefix"] = name_prefix
    with _http_client(api_url, token) as client:
        while True:
            if cursor:
                params["cursor"] = cursor
            code, body = _api_get(client, "/api/v1/resources", params)
            if code != 200:
                raise _fail(f"the API answered {code}: {_problem(code, body)}",
                            EXIT_USAGE if code == 400 else EXIT_ERROR)
            for item in body.get("items", []):
                typer.echo(json.dumps(item) if as_json else
                           f"{item.get('id')}  {item.get('status', ''):<8}  "
                           f"v{item.get('version')}  {item.get('name')}")
            cursor = body.get("next_cursor")
            if not cursor or not follow:
                break
    if cursor:
        typer.echo(f"next cursor: {cursor}", err=True)
