"""``phoenix-resources watch | get | list``: read what the service did.

``watch`` tails the events topic with the client's :class:`EventSubscriber`; ``get`` and
``list`` ask the HTTP API (exit 4 when ``get`` finds nothing). A broker or API that does not
answer within ``--connect-timeout`` exits 6 (:mod:`.reach`). Kafka and HTTP clients are
imported when a command runs.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.cli.common import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ResourceIdArg,
    StatusOpt,
    console_logging,
    fail,
    load_settings,
    uuid_arg,
)
from phoenix_resources.entrypoints.cli.reach import (
    ConnectTimeoutOpt,
    Reach,
    api_unreachable,
    is_unreachable,
)
from phoenix_resources.errors import BrokerUnreachable, PhoenixError

if TYPE_CHECKING:
    import httpx

    from phoenix_resources.client import Delivery
    from phoenix_resources.domain.model import Resource


class OnErrorChoice(StrEnum):
    """``watch --on-error``: the subscriber's policies (``EventSubscriber(on_error=...)``)."""

    raise_ = "raise"
    skip = "skip"
    dead_letter = "dead-letter"


def register(app: typer.Typer) -> None:
    """Add ``watch``, ``get`` and ``list`` to ``app``."""
    app.command("watch")(watch)
    app.command("get")(get)
    app.command("list")(list_resources)


def default_api_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    return f"http://{host}:{settings.http_port}"


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
    on_error: Annotated[OnErrorChoice, typer.Option(
        "--on-error", help="A record that is not an event: stop with exit 1 (raise), warn "
        "on stderr and go on (skip), or copy it to --dead-letter-topic and go on.")]
    = OnErrorChoice.skip,
    dead_letter_topic: Annotated[str | None, typer.Option(
        "--dead-letter-topic", help="Where --on-error dead-letter copies undecodable "
        "records (an existing topic).")] = None,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Tail change events from the events topic.

    The broker must answer within --connect-timeout, at the start and again whenever every
    broker went down; otherwise watch stops with exit 6.

    Example: phoenix-resources watch --from-beginning --json --max 10 --timeout 30
    """
    from phoenix_resources.client import EventSubscriber

    if (on_error is OnErrorChoice.dead_letter) != (dead_letter_topic is not None):
        raise fail("--dead-letter-topic goes with --on-error dead-letter (and only with it)",
                   EXIT_USAGE)
    settings = load_settings()
    reach = Reach.of(connect_timeout)
    # Skipped / dead-lettered records (and librdkafka's lines, one per problem) are
    # reported as warnings on stderr, beside the tail.
    console_logging("WARNING")
    seen = 0
    try:
        with EventSubscriber(settings, group, from_beginning=from_beginning,
                             dedupe=dedupe,
                             on_error=on_error.value,
                             dead_letter_topic=dead_letter_topic,
                             consumer_options=_watch_options(settings, reach, group),
                             unreachable_after_s=reach.seconds) as events:
            events.check_connection(reach.seconds)
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
    except BrokerUnreachable as e:
        raise fail(str(e), EXIT_UNREACHABLE) from e
    except PhoenixError as e:
        raise fail(str(e)) from e
    if max_events is not None and seen < max_events:
        raise fail(f"timeout: saw {seen} of {max_events} events in {timeout:g}s")


def _watch_options(settings: Settings, reach: Reach, group: str | None) -> dict[str, Any]:
    """The consumer options of ``watch``: what ``--connect-timeout`` governs, and for the
    private throw-away group no commits. Its offsets are never read again, and a consumer
    with offsets to commit waits out ``session.timeout.ms`` (45 s by default) when it is
    closed after the brokers went away."""
    options: dict[str, Any] = {**reach.kafka_options("consumer", settings)}
    if group is None:
        options["enable.auto.commit"] = False
    return options


# --- get / list ----------------------------------------------------------------------------

ApiUrlOpt = Annotated[str | None, typer.Option(
    "--api-url", envvar="PHOENIX_API_URL",
    help="Base URL of the HTTP API (default: http://PHOENIX_HTTP_HOST:PHOENIX_HTTP_PORT).")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="PHOENIX_API_TOKEN", help="Bearer token, when the API requires one.")]


def _http_client(api_url: str | None, token: str | None, reach: Reach) -> httpx.Client:
    import httpx

    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=api_url or default_api_url(load_settings()), headers=headers,
                        timeout=reach.http_timeout())


def _api_get(client: httpx.Client, path: str, reach: Reach,
             params: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Status and body of ``GET path``; exit 6 when the API does not answer in time."""
    import httpx

    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as e:
        if is_unreachable(e):
            api_unreachable(str(client.base_url).rstrip("/"), reach, e)
        raise fail(f"the API at {client.base_url} failed: {e}") from e
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
    resource_id: ResourceIdArg,
    api_url: ApiUrlOpt = None, token: TokenOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON body.")] = False,
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """Look a resource up over the HTTP API (exit 4 when not found, 6 when the API does not
    answer).

    Example: phoenix-resources get 3f1e…c2 --json
    """
    rid = uuid_arg(resource_id, "RESOURCE_ID")
    reach = Reach.of(connect_timeout)
    with _http_client(api_url, token, reach) as client:
        status, body = _api_get(client, f"/api/v1/resources/{rid}", reach)
    if status == 404:
        raise fail(f"resource {rid} not found ({_problem(status, body)})", EXIT_NOT_FOUND)
    if status != 200:
        raise fail(f"the API answered {status}: {_problem(status, body)}")
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
    status: StatusOpt = None,
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
    connect_timeout: ConnectTimeoutOpt = None,
) -> None:
    """List resources over the HTTP API (the next page's cursor goes to stderr; exit 6 when
    the API does not answer).

    Example: phoenix-resources list --status active --limit 50 --json
    """
    params: dict[str, Any] = {"limit": limit}
    if status is not None:
        params["status"] = status.value
    if name_prefix:
        params["name_prefix"] = name_prefix
    reach = Reach.of(connect_timeout)
    with _http_client(api_url, token, reach) as client:
        while True:
            if cursor:
                params["cursor"] = cursor
            code, body = _api_get(client, "/api/v1/resources", reach, params)
            if code != 200:
                raise fail(f"the API answered {code}: {_problem(code, body)}",
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
