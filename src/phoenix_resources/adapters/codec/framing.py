"""Avro framing: which schema wrote a payload, and the bytes in front of it.

* single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint, little endian) — the default,
  no registry needed;
* the Confluent framing (``00`` + big-endian schema id) when a registry is configured.

A reader accepts both framings and every writer schema it was told about (the current one,
each released version, and whatever the registry serves). Decoding raises nothing but
:class:`~phoenix_resources.errors.DecodeError`.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

import fastavro

from phoenix_resources.errors import DecodeError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0

COMMAND_SCHEMA = "resource_command.avsc"
EVENT_SCHEMA = "resource_changed.avsc"
REJECTION_SCHEMA = "command_rejected.avsc"


@dataclass(frozen=True)
class AvroSchema:
    name: str
    raw: Mapping[str, Any]
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little endian, as single-object encoding wants
    plain: Any
    """The same schema without ``logicalType`` annotations: identical canonical form,
    fingerprint and bytes, but fastavro skips its per-field conversions. Writers that
    already hold strings and epoch micros use it on hot paths."""

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MAGIC + self.fingerprint


@cache
def load_schema(filename: str, release: str | None = None) -> AvroSchema:
    """The current schema ``filename``, or the one of a released version (``"v1"``...)."""
    folder = resources.files("phoenix_resources").joinpath("schemas")
    if release is not None:
        folder = folder.joinpath("released", release)
    raw = json.loads(folder.joinpath(filename).read_text())
    parsed = fastavro.parse_schema(raw)
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    fp = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    plain = fastavro.parse_schema(_without_logical_types(raw))
    return AvroSchema(raw["name"], raw, parsed, canonical, fp, plain)


def released_versions() -> list[str]:
    """The released contract versions shipped with the package (``schemas/released/v*``)."""
    folder = resources.files("phoenix_resources").joinpath("schemas", "released")
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name.startswith("v"))


def released_schemas(filename: str) -> list[AvroSchema]:
    """Every released version of schema ``filename`` (older writers a reader must accept)."""
    found = []
    for version in released_versions():
        if resources.files("phoenix_resources").joinpath(
                "schemas", "released", version, filename).is_file():
            found.append(load_schema(filename, version))
    return found


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


class SchemaRegistry(Protocol):
    """What the codec needs of a Confluent-compatible registry (see ``adapters.registry``)."""

    def id_for(self, subject: str, schema: AvroSchema) -> int: ...

    def schema_for(self, schema_id: int) -> Any: ...


class Framing:
    """Writes one framing; reads all of them. One instance per process, shared by threads."""

    def __init__(self, registry: SchemaRegistry | None = None,
                 subject_for: Callable[[AvroSchema], str] | None = None) -> None:
        self.registry = registry
        self._subject_for = subject_for or (lambda s: f"phoenix.resources.v1.{s.name}")
        self._known: dict[bytes, Any] = {}
        self._ids: dict[str, int] = {}

    def remember(self, *schemas: AvroSchema) -> None:
        """Accept payloads written with these schemas (e.g. released versions) when reading
        in single-object encoding."""
        for schema in schemas:
            self._known[schema.fingerprint] = schema.parsed

    def prefix(self, schema: AvroSchema) -> bytes:
        if self.registry is None:
            return schema.header
        sid = self._ids.get(schema.name)
        if sid is None:
            sid = self._ids[schema.name] = self.registry.id_for(self._subject_for(schema), schema)
        return struct.pack(">bI", CONFLUENT_MAGIC, sid)

    def encode(self, schema: AvroSchema, record: Mapping[str, Any], *,
               plain: bool = False) -> bytes:
        """``plain``: ``record`` already holds wire values (UUIDs as strings, times as
        epoch micros), so the logical-type-free schema is used (same bytes, less work)."""
        buf = io.BytesIO()
        buf.write(self.prefix(schema))
        fastavro.schemaless_writer(buf, schema.plain if plain else schema.parsed, record)
        return buf.getvalue()

    def decode(self, schema: AvroSchema, value: bytes) -> dict[str, Any]:
        """Read an Avro payload in either framing into ``schema``'s shape."""
        if value[:2] == SINGLE_OBJECT_MAGIC:
            fp = value[2:10]
            writer = schema.parsed if fp == schema.fingerprint else self._known.get(fp)
            if writer is None:
                raise DecodeError("unknown-schema",
                                  f"no schema with fingerprint {fp.hex()} is known")
            body = value[10:]
        elif value[:1] == b"\x00" and len(value) >= 5:
            if self.registry is None:
                raise DecodeError("unknown-schema", "Confluent-framed payload but no schema "
                                  "registry is configured (PHOENIX_SCHEMA_REGISTRY_URL)")
            (sid,) = struct.unpack(">I", value[1:5])
            try:
                writer = self.registry.schema_for(sid)
            except Exception as e:
                raise DecodeError("unknown-schema", f"schema id {sid}: {e}") from e
            body = value[5:]
        else:
            raise DecodeError("unknown-format", "neither Avro single-object (C3 01), "
                              "Confluent (00) nor JSON")
        try:
            # Same writer and reader: skip schema resolution, it is the hot path.
            reader = None if writer is schema.parsed else schema.parsed
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, reader)
        except Exception as e:
            raise DecodeError("malformed-avro", f"{type(e).__name__}: {e}") from e
        if not isinstance(record, dict):
            raise DecodeError("malformed-avro", "the payload is not a record")
        return record


