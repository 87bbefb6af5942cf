"""Schema evolution is checked in CI: the current schemas must read data written with the
last released ones (backward compatible), using Avro schema resolution."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import fastavro
import pytest

from phoenix_resources.adapters import codecs
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import UpdateResource
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import ConfigurationError, DecodeError
from phoenix_resources.wire.commands import ISSUED_AT_MIN, CommandCodec
from phoenix_resources.wire.framing import (
    COMMAND_SCHEMA,
    AvroSchema,
    Framing,
    load_schema,
    schema_from_json,
    writer_schemas,
)

pytestmark = pytest.mark.unit

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
RELEASED = sorted((SCHEMAS / "released" / "v1").glob("*.avsc"))


def _sample(schema: Any) -> Any:
    """A value for every field, nulls avoided where a union allows something else."""
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(schema, list):
        return _sample(next(s for s in schema if s != "null"))
    if isinstance(kind, dict | list):
        return _sample(kind)
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical == "uuid":
        return "6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21"
    samples: dict[str, Any] = {"string": "s", "long": 3, "int": 2, "boolean": True,
                               "double": 1.5, "bytes": b"b"}
    if kind in samples:
        return samples[kind]
    if kind == "enum":
        return schema["symbols"][-1]
    if kind == "map":
        return {"k": _sample(schema["values"])}
    if kind == "array":
        return [_sample(schema["items"])]
    if kind == "record":
        return {f["name"]: _sample(f["type"]) for f in schema["fields"]}
    raise AssertionError(f"no sample for {schema!r}")


@pytest.mark.parametrize("released", RELEASED, ids=lambda p: p.name)
def test_current_schema_reads_what_the_released_one_wrote(released: Path) -> None:
    old = json.loads(released.read_text())
    new = json.loads((SCHEMAS / released.name).read_text())
    assert new["namespace"] == old["namespace"] == "phoenix.resources.v1"
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), _sample(old))
    buf.seek(0)
    record = fastavro.schemaless_reader(buf, fastavro.parse_schema(old),
                                        fastavro.parse_schema(new))
    assert isinstance(record, dict)


def test_every_current_schema_has_a_released_version() -> None:
    current = {p.name for p in SCHEMAS.glob("*.avsc")}
    assert current == {p.name for p in RELEASED}


# --- end to end through the codec: released writers and a newer compatible writer ---------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "writer_schemas"
_UUID = "6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21"
_RECORD = {"command_id": _UUID, "command_type": "UPDATE", "resource_id": _UUID,
           "expected_version": 3, "name": "n", "config": {"k": "v"}, "status": "active",
           "issued_at": 1_795_521_600_000_000, "correlation_id": "c", "issued_by": "svc",
           "priority": 5}


def _single_object(schema: AvroSchema) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.plain, _RECORD)
    return bytes(schema.header + buf.getvalue())


def _expected() -> UpdateResource:
    return UpdateResource(command_id=UUID(_UUID), resource_id=UUID(_UUID),
                          issued_at=ISSUED_AT_MIN + timedelta(microseconds=1_795_521_600_000_000),
                          expected_version=3, name="n", config={"k": "v"},
                          status=Status.ACTIVE, correlation_id="c", issued_by="svc")


@pytest.mark.parametrize("version", sorted(p.name for p in (SCHEMAS / "released").iterdir()
                                            if p.is_dir()))
def test_the_codec_reads_commands_of_every_released_version(version: str) -> None:
    released = load_schema(COMMAND_SCHEMA, version)
    assert CommandCodec(Framing()).decode(_single_object(released)) == _expected()


def test_a_newer_writer_is_unknown_until_the_worker_is_told_about_it() -> None:
    """Single-object encoding names the writer by fingerprint only: a worker that does not
    know v2 dead-letters it (unknown-schema); given v2's file it reads it (the extra field
    is dropped by schema resolution)."""
    (v2,) = writer_schemas(FIXTURES)
    value = _single_object(v2)
    with pytest.raises(DecodeError) as info:
        CommandCodec(Framing()).decode(value)
    assert info.value.reason == "unknown-schema"
    assert CommandCodec(Framing(), writers=(v2,)).decode(value) == _expected()
    told = codecs.command_codec(Settings(avro_writer_schemas_dir=str(FIXTURES)))
    assert told.decode(value) == _expected()


def test_json_commands_of_a_newer_writer_are_read_too() -> None:
    doc = {**_RECORD, "issued_at": "2026-11-24T12:00:00+00:00"}
    command = CommandCodec(Framing()).decode(json.dumps(doc).encode(), "application/json")
    assert command.expected_version == 3


def test_an_incompatible_writer_is_refused_with_its_own_reason() -> None:
    raw = json.loads((SCHEMAS / "resource_command.avsc").read_text())
    raw["fields"] = [f if f["name"] != "issued_at" else {**f, "type": "string"}
                     for f in raw["fields"]]
    changed = schema_from_json(raw)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, changed.plain, {**_RECORD, "issued_at": "yesterday"})
    with pytest.raises(DecodeError) as info:
        CommandCodec(Framing(), writers=(changed,)).decode(changed.header + buf.getvalue())
    assert info.value.reason == "incompatible-schema"


def test_unusable_writer_schema_directories_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        writer_schemas(tmp_path / "missing")
    (tmp_path / "bad.avsc").write_text('{"type": "record", "name": "X", "fields": [{}]}')
    with pytest.raises(ConfigurationError, match=r"bad\.avsc"):
        writer_schemas(tmp_path)
    assert writer_schemas(None) == []
