"""Every entry validates alike (DESIGN promise 10): the same generated input — valid and
hostile (NUL, lone surrogates, oversize fields, huge configs, odd ids, times at the edges,
epoch integers in other units) — goes to every entry and to the worker, and their verdicts
are compared.

Entries: the client library (its command builders, then what ``submit`` runs before
sending: ``encode_checked``), the gRPC API (request message → command, then the same
publisher check), the CLI's ``send --file`` (a JSON line → command, then the same check).
The worker: its decoder (``CommandCodec.decode``) applied to what the client would publish
without any check — Avro and JSON — or to the CLI line itself, then ``decide`` for the
stateless rules.

The property: an entry accepts exactly what the worker applies (never what it dead-letters
or refuses by a stateless rule), and when an entry refuses, the worker refuses too, with the
same code unless it stops earlier (the worker checks the size before decoding: ``too-large``)
or the text cannot even be written (a lone surrogate has no valid JSON or Avro form).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from phoenix_resources.client.commands import (
    create_command,
    delete_command,
    encode_checked,
    update_command,
)
from phoenix_resources.domain.commands import AnyCommand, CreateResource, UpdateResource
from phoenix_resources.domain.decide import Rejected, decide
from phoenix_resources.domain.model import Resource, Status
from phoenix_resources.entrypoints.cli import app
from phoenix_resources.entrypoints.cli.bulk import command_from_line
from phoenix_resources.entrypoints.grpc.convert import create_from, delete_from, update_from
from phoenix_resources.errors import CommandInvalid, DecodeError
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.framing import Framing
from phoenix_resources.wire.validation import ISSUED_AT_MAX, ISSUED_AT_MIN

pytestmark = pytest.mark.unit

MAX_BYTES = 16 * 1024
"""The worker's size limit in this test: small, so that huge configs cross it."""
CODEC = CommandCodec(Framing(), max_bytes=MAX_BYTES)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ACCEPTED = "accepted"
STATELESS_RULES = frozenset({"CMD-001", "CMD-002", "CMD-006"})

# --- generated input --------------------------------------------------------------------------

HOSTILE = st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\udcff", "é", "💥",
                           " ", "", "\u2028", "%", "_", "\\"])
TEXT = st.one_of(st.text(max_size=12), HOSTILE,
                 st.builds(lambda a, b: a + b, st.text(max_size=4), HOSTILE),
                 st.integers(250, 300).map(lambda n: "c" * n),
                 st.integers(4090, 4100).map(lambda n: "v" * n))
NAMES = st.one_of(TEXT, st.just("db-1"), st.integers(250, 260).map(lambda n: "n" * n))
CONFIGS = st.one_of(
    st.dictionaries(TEXT, TEXT, max_size=4),
    st.integers(250, 262).map(lambda n: {f"k{i}": "v" for i in range(n)}),      # entry count
    st.integers(1, 6).map(lambda n: {f"k{i}": "v" * 4000 for i in range(n)}),   # bytes
    st.just({"k" * 256: "v"}), st.just({"k": "v" * 4097}))
IDS = st.one_of(st.none(), st.uuids().map(str), st.uuids().map(lambda u: u.hex),
                st.uuids().map(lambda u: "{" + str(u).upper() + "}"),
                st.sampled_from(["", "nope", "\x00", "\ud800", "0" * 36, "urn:uuid:x"]))
VERSIONS = st.one_of(st.none(), st.integers(-3, 5),
                     st.sampled_from([2**63 - 1, 2**63, -(2**63), 2**64]))
TIMES = st.one_of(
    st.none(),
    st.sampled_from([ISSUED_AT_MIN, ISSUED_AT_MIN - timedelta(microseconds=1), ISSUED_AT_MAX,
                     datetime(1970, 1, 1, tzinfo=UTC), datetime(1971, 6, 1, tzinfo=UTC),
                     datetime(2026, 11, 24, 12, 0),   # naive: UTC
                     datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
                     datetime(1973, 3, 3, 10, 46, 40, tzinfo=timezone(timedelta(hours=1)))]),
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(9999, 12, 31),
                 timezones=st.none() | st.just(UTC)))
LINE_TIMES = st.one_of(
    TIMES.map(lambda t: None if t is None else t.isoformat()),
    st.sampled_from([1_764_000_000_000, 1_764_000_000, 1_764_000_000_000_000,
                     1_764_000_000_000_000_000, 0, 10**14, 10**14 - 1, -1, 1.7e15, True]))


@dataclass(frozen=True)
class Spec:
    """One command as a caller asks for it."""

    kind: str
    name: Any = None
    config: Any = None
    status: Status | None = None
    command_id: str | None = None
    resource_id: str | None = None
    correlation_id: str | None = None
    issued_by: str | None = None
    expected_version: int | None = None
    issued_at: datetime | None = None


SPECS = st.builds(
    Spec, kind=st.sampled_from(["create", "update", "delete"]), name=st.none() | NAMES,
    config=st.none() | CONFIGS, status=st.none() | st.sampled_from(list(Status)),
    command_id=IDS, resource_id=IDS, correlation_id=st.none() | TEXT,
    issued_by=st.none() | TEXT, expected_version=VERSIONS, issued_at=TIMES)

# --- verdicts ---------------------------------------------------------------------------------

Verdict = tuple[str, str]
"""(``accepted``, ``""``), (``refused``, code) for an entry; for the worker
(``dead-letter``, reason), (``rejected``, code) or (``applied``, "")."""


def _entry(build: Callable[[], AnyCommand], fmt: str = "avro"
           ) -> tuple[Verdict, AnyCommand | None]:
    """An entry's verdict: its own checks, then the publisher's (in ``fmt``, the format it
    publishes in: the size limit applies to those bytes)."""
    try:
        command = build()
        encode_checked(CODEC, command, fmt, MAX_BYTES)
    except CommandInvalid as e:
        return ("refused", e.code), None
    return (ACCEPTED, ""), command


def _state_for(command: AnyCommand) -> Resource | None:
    if isinstance(command, CreateResource):
        return None
    version = command.expected_version if command.expected_version is not None else 1
    return Resource(id=command.resource_id, name="n", config={}, status=Status.PENDING,
                    version=version, created_at=NOW, updated_at=NOW,
                    last_command_id=uuid.uuid4())


def _worker(value: bytes, content_type: str) -> tuple[Verdict, AnyCommand | None]:
    try:
        command = CODEC.decode(value, content_type)
    except DecodeError as e:
        return ("dead-letter", e.reason), None
    decision = decide(_state_for(command), command, NOW)
    if isinstance(decision, Rejected) and decision.code.value in STATELESS_RULES:
        return ("rejected", decision.code.value), command
    return ("applied", ""), command


def _worker_on(command: AnyCommand, fmt: str) -> Verdict:
    """What the worker does with ``command`` published without any check."""
    try:
        value, content_type = CODEC.encode(command, fmt)
    except (ValueError, TypeError, OverflowError, AttributeError):
        return ("unwritable", "")  # no bytes for it exist: nothing could reach the worker
    return _worker(value, content_type)[0]


def assert_agree(entry: Verdict, worker: Verdict, about: object) -> None:
    __tracebackhide__ = True
    try:
        _agree(entry, worker)
    except AssertionError as e:
        raise AssertionError(f"{entry} vs the worker's {worker} for {about!r}") from e


def _agree(entry: Verdict, worker: Verdict) -> None:
    kind, code = entry
    if kind == ACCEPTED:
        assert worker == ("applied", ""), (entry, worker)
        return
    assert worker[0] != "applied", (entry, worker)
    if worker[0] == "unwritable" or worker[1] == "too-large":
        return  # the worker stops before it could judge what the entry judged
    if code.startswith("CMD-"):
        assert worker == ("rejected", code), (entry, worker)
    else:  # a value the worker cannot store: it dead-letters, for that value
        assert worker[0] == "dead-letter", (entry, worker)
        assert worker[1] in {code, "invalid-field", "issued-at-unit", "malformed-json"}


def _normal(command: AnyCommand) -> tuple[Any, ...]:
    at = command.issued_at
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    fields: tuple[Any, ...] = (type(command), command.command_id, command.resource_id, at,
                               command.expected_version, command.correlation_id or None,
                               command.issued_by)
    if isinstance(command, CreateResource | UpdateResource):
        fields += (command.name, None if command.config is None else dict(command.config),
                   command.status)
    return fields


# --- the entries ------------------------------------------------------------------------------

def _client(spec: Spec) -> AnyCommand:
    common: dict[str, Any] = {"command_id": spec.command_id,
                              "correlation_id": spec.correlation_id,
                              "issued_by": spec.issued_by,
                              "expected_version": spec.expected_version}
    if spec.kind == "create":
        command: AnyCommand = create_command(
            spec.name if spec.name is not None else "db", resource_id=spec.resource_id or None,
            config=spec.config, status=spec.status, **common)
    elif spec.kind == "update":
        command = update_command(spec.resource_id or "", name=spec.name, config=spec.config,
                                 status=spec.status, **common)
    else:
        command = delete_command(spec.resource_id or "", **common)
    if spec.issued_at is not None:  # a caller's own time, e.g. a command built by hand
        command = dataclasses.replace(command, issued_at=spec.issued_at)
    return command


_PB_STATUS = {Status.PENDING: pb.RESOURCE_STATUS_PENDING, Status.ACTIVE: pb.RESOURCE_STATUS_ACTIVE,
              Status.INACTIVE: pb.RESOURCE_STATUS_INACTIVE}


def _grpc_request(spec: Spec) -> Any:
    """The request message, or None when the message cannot even hold the values (a lone
    surrogate, an integer past int64): no client can send it."""
    common: dict[str, Any] = {"command_id": spec.command_id or "",
                              "resource_id": spec.resource_id or "",
                              "correlation_id": spec.correlation_id or ""}
    try:
        if spec.kind == "create":
            return pb.CreateResourceRequest(
                name=spec.name if spec.name is not None else "db", config=spec.config or {},
                status=_PB_STATUS.get(spec.status, 0), **common)  # type: ignore[arg-type]
        version = ({} if spec.expected_version is None
                   else {"expected_version": spec.expected_version})
        if spec.kind == "update":
            extra: dict[str, Any] = {} if spec.name is None else {"name": spec.name}
            if spec.config is not None:
                extra["config"] = pb.Config(entries=spec.config)
            return pb.UpdateResourceRequest(status=_PB_STATUS.get(spec.status, 0),  # type: ignore[arg-type]
                                            **extra, **version, **common)
        return pb.DeleteResourceRequest(**version, **common)
    except (ValueError, TypeError):
        return None


def _grpc(request: Any) -> AnyCommand:
    if isinstance(request, pb.CreateResourceRequest):
        return create_from(request)
    if isinstance(request, pb.UpdateResourceRequest):
        return update_from(request)
    return delete_from(request)


def _line(spec: Spec, issued_at: Any) -> str:
    doc: dict[str, Any] = {"command_type": spec.kind.upper(),
                           "command_id": spec.command_id or str(uuid.uuid4()),
                           "resource_id": spec.resource_id or str(uuid.uuid4()),
                           "issued_at": NOW.isoformat() if issued_at is None else issued_at}
    for field in ("name", "config", "correlation_id", "issued_by", "expected_version"):
        if getattr(spec, field) is not None:
            doc[field] = getattr(spec, field)
    if spec.status is not None:
        doc["status"] = spec.status.value
    return json.dumps(doc)


# --- the properties ---------------------------------------------------------------------------

AGREE = settings(max_examples=300, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@AGREE
@given(SPECS)
@example(Spec("create", name="a\x00b"))
@example(Spec("create", name="db", correlation_id="c" * 300))
@example(Spec("create", name="\ud800"))
@example(Spec("update", resource_id=str(uuid.UUID(int=1)), config={"k": "\x00"}))
@example(Spec("create", name="db", config={f"k{i}": "v" * 4000 for i in range(6)}))
@example(Spec("delete", resource_id=str(uuid.UUID(int=2)), expected_version=-1))
@example(Spec("create", name="db", issued_at=datetime(1971, 6, 1, tzinfo=UTC)))
def test_the_client_library_accepts_exactly_what_the_worker_applies(spec: Spec) -> None:
    try:
        command = _client(spec)
    except CommandInvalid:
        return  # not even a command (an id that is no UUID): nothing could be published
    for fmt in ("avro", "json"):
        entry, _ = _entry(lambda: command, fmt)
        worker = _worker_on(command, fmt)
        assert_agree(entry, worker, (spec, fmt))
        if entry[0] == ACCEPTED:
            value, content_type = CODEC.encode(command, fmt)
            decoded = _worker(value, content_type)[1]
            assert decoded is not None
            assert _normal(decoded) == _normal(command)


@AGREE
@given(SPECS.map(lambda s: dataclasses.replace(  # what a request can carry
    s, issued_by=None, issued_at=None, command_id=s.command_id or None,
    expected_version=None if s.kind == "create" else s.expected_version,
    resource_id=s.resource_id or None, correlation_id=s.correlation_id or None)))
@example(Spec("create", name="a\x00b"))
@example(Spec("create", name="db", correlation_id="c" * 300))
@example(Spec("update", resource_id=str(uuid.UUID(int=1)), expected_version=-1))
def test_grpc_requests_get_the_client_librarys_verdict(spec: Spec) -> None:
    request = _grpc_request(spec)
    if request is None:
        return  # unrepresentable in the message: refused by protobuf before any call
    for fmt in ("avro", "json"):
        grpc_verdict, grpc_command = _entry(lambda: _grpc(request), fmt)
        client_verdict, _ = _entry(lambda: _client(spec), fmt)
        assert grpc_verdict == client_verdict, (grpc_verdict, client_verdict, spec)
        if grpc_command is not None:
            assert_agree(grpc_verdict, _worker_on(grpc_command, fmt), (request, fmt))


@AGREE
@given(SPECS, LINE_TIMES)
@example(Spec("create", name="db"), 1_764_000_000_000)       # Date.now()
@example(Spec("create", name="db"), 1_764_000_000)           # time()
@example(Spec("update", name="a\x00b"), None)
@example(Spec("create", name="\ud800"), None)
def test_send_file_lines_get_the_workers_verdict_on_the_same_line(spec: Spec,
                                                                 issued_at: Any) -> None:
    line = _line(spec, issued_at)
    entry, command = _entry(lambda: command_from_line_or_invalid(line))
    if len(line.encode()) <= MAX_BYTES:  # else only the CLI's own encoding is published
        assert_agree(entry, _worker(line.encode(), "application/json")[0], line)
    if command is not None:
        value, content_type = CODEC.encode(command, "avro")
        assert _worker(value, content_type)[0] == ("applied", "")


def command_from_line_or_invalid(line: str) -> AnyCommand:
    """The CLI's reading of a line; a line it cannot read is refused like the worker's
    decoder refuses it (``send --file`` reports it as ``line N: <reason>``)."""
    try:
        command: AnyCommand = command_from_line(line)
    except DecodeError as e:
        raise CommandInvalid(e.reason, e.detail) from e
    return command


def test_the_defects_that_started_it() -> None:
    """A NUL in a name and a 300-character correlation_id were accepted by gRPC and the
    client library, then dead-lettered by the worker."""
    for request in (pb.CreateResourceRequest(name="a\x00b"),
                    pb.CreateResourceRequest(name="db", correlation_id="c" * 300)):
        with pytest.raises(CommandInvalid) as e:
            create_from(request)
        assert e.value.code == "invalid-field"
    with pytest.raises(CommandInvalid) as e:
        encode_checked(CODEC, create_command("db", issued_by="\ud800"), "avro", MAX_BYTES)
    assert e.value.code == "invalid-field"


def test_a_json_time_in_milliseconds_names_the_unit_expected() -> None:
    line = _line(Spec("create", name="db"), 1_764_000_000_000)
    with pytest.raises(DecodeError) as e:
        command_from_line(line)
    assert (e.value.reason, "microseconds" in e.value.detail) == ("issued-at-unit", True)
    assert _worker(line.encode(), "application/json")[0] == ("dead-letter", "issued-at-unit")


@pytest.mark.parametrize("args", [
    ["send", "create", "--name", "a\x00b"],
    ["send", "create", "--name", "db", "--correlation-id", "c" * 300],
    ["send", "create", "--name", "db", "-c", "k=\udcff"],   # argv bytes that are not UTF-8
    ["send", "update", str(uuid.UUID(int=3)), "--issued-by", "x\x00"],
])
def test_the_cli_refuses_what_the_worker_would_dead_letter(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, env={
        "PHOENIX_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "PHOENIX_ENV_FILE": "/nonexistent"})
    assert result.exit_code == 2, result.output
    assert "invalid command, nothing sent: invalid-field" in result.output
