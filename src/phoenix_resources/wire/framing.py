"""Avro framing: which schema wrote a payload, and the bytes in front of it.

* single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint, little endian) — the default,
  no registry needed;
* the Confluent framing (``00`` + big-endian schema id) when a registry is configured.

A reader accepts both framings and every writer schema it was told about: the current one,
each released version, the files of ``PHOENIX_AVRO_WRITER_SCHEMAS_DIR``, and — in the
Confluent framing — whatever the registry serves for the id (``docs/wire-format.md``).

Guarantee: :meth:`Framing.decode` raises nothing but
:class:`~phoenix_resources.errors.DecodeError` and, while the registry cannot answer,
:class:`~phoenix_resources.errors.RegistryUnavailable`.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import fastavro
from fastavro.read import SchemaResolutionError

from phoenix_resources.errors import ConfigurationError, DecodeError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0

COMMAND_SCHEMA = "resource_command.avsc"
EVENT_SCHEMA = "resource_changed.avsc"
REJECTION_SCHEMA = "command_rejected.avsc"


@dataclass(frozen=True)
class AvroSchema:
    name: str
    """The record's full name (``namespace.name``), as the record name strategies want it."""
    raw: Mapping[str, Any]
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little endian, as single-object encoding wants
    plain: Any
    """The same schema without ``logicalType`` annotations: identical canonical form,
    fingerprint and bytes, but fastavro skips its per-field conversions. Writers that
    already hold strings and epoch micros use it on hot paths, and the command reader uses
    it so that it checks UUIDs and times itself (fastavro's conversions raise whatever
    they raise, e.g. OverflowError for a year past 9999)."""

    @property
    def header(self) -> bytes:
        return SINGLE_OBJECT_MAGIC + self.fingerprint


def schema_from_json(raw: Any) -> AvroSchema:
    """An :class:`AvroSchema` from its JSON form (a parsed ``.avsc``, or a registry's
    answer). For something that is not an Avro record schema it raises whatever fastavro
    raises (or :class:`ConfigurationError`): callers translate it for their context."""
    if not isinstance(raw, dict) or raw.get("type") != "record":
        raise ConfigurationError("not an Avro record schema")
    parsed = fastavro.parse_schema(raw)
    canonical = fastavro.schema.to_parsing_canonical_form(raw)
    fp = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    plain = fastavro.parse_schema(_without_logical_types(raw))
    namespace = raw.get("namespace")
    name = raw["name"] if "." in raw["name"] or not namespace else f"{namespace}.{raw['name']}"
    return AvroSchema(name, raw, parsed, canonical, fp, plain)


@cache
def load_schema(filename: str, release: str | None = None) -> AvroSchema:
    """The current schema ``filename``, or the one of a released version (``"v1"``...)."""
    folder = resources.files("phoenix_resources").joinpath("schemas")
    if release is not None:
        folder = folder.joinpath("released", release)
    return schema_from_json(json.loads(folder.joinpath(filename).read_text()))


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


def writer_schemas(folder: str | Path | None) -> list[AvroSchema]:
    """Every ``*.avsc`` in ``folder`` (``PHOENIX_AVRO_WRITER_SCHEMAS_DIR``): writer schemas,
    newer than this build, that single-object readers must accept. Read once at start; an
    unreadable file is a :class:`ConfigurationError`, not a surprise at the first record."""
    if not folder:
        return []
    path = Path(folder)
    if not path.is_dir():
        raise ConfigurationError(f"PHOENIX_AVRO_WRITER_SCHEMAS_DIR={folder}: not a directory")
    found = []
    for file in sorted(path.glob("*.avsc")):
        try:
            found.append(schema_from_json(json.loads(file.read_text())))
        except Exception as e:  # any parse failure of a file is the same operator mistake
            raise ConfigurationError(f"{file}: not a usable Avro record schema: "
                                     f"{type(e).__name__}: {e}") from e
    return found


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


class SchemaRegistry(Protocol):
    """What the codec needs of a Confluent-compatible registry (see ``adapters.registry``)."""

    def id_for(self, subject: str, schema: AvroSchema) -> int:
        """The id of ``schema`` under ``subject`` (registered, or looked up). Raises
        :class:`RegistryUnavailable` or :class:`ConfigurationError`."""
        ...

    def writer_for(self, schema_id: int) -> AvroSchema:
        """The schema with this id. Raises :class:`DecodeError` (``unknown-schema``) or
        :class:`RegistryUnavailable`, nothing else."""
        ...


def clip(text: str, limit: int = 300) -> str:
    """``text`` fit for the ``dlq.detail`` header: ASCII (escapes for the rest), bounded.
    Messages of parsers may quote the offending input, which is anything."""
    return text.encode("ascii", "backslashreplace").decode("ascii")[:limit]


def _record_name(schema: AvroSchema) -> str:
    return schema.name


class Framing:
    """Writes one framing; reads all of them. One instance per process, shared by threads."""

    def __init__(self, registry: SchemaRegistry | None = None,
                 subject_for: Callable[[AvroSchema], str] | None = None) -> None:
        self.registry = registry
        self._subject_for = subject_for or _record_name
        self._known: dict[bytes, AvroSchema] = {}
        self._ids: dict[str, int] = {}

    def remember(self, *schemas: AvroSchema) -> None:
        """Accept payloads written with these schemas (e.g. released versions) when reading
        in single-object encoding."""
        for schema in schemas:
            self._known.setdefault(schema.fingerprint, schema)

    def known_fingerprints(self) -> set[bytes]:
        """The fingerprints of every schema :meth:`remember` was given."""
        return set(self._known)

    def prepare(self, schemas: Iterable[AvroSchema]) -> None:
        """Resolve the registry ids of ``schemas`` now (at start) rather than at the first
        encode, so that a missing subject stops the process with a clear message."""
        for schema in schemas:
            self.prefix(schema)

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

    def writer(self, schema: AvroSchema, value: bytes) -> tuple[AvroSchema, int]:
        """The schema that wrote ``value`` and where its body starts."""
        if value[:2] == SINGLE_OBJECT_MAGIC:
            if len(value) < 10:
                raise DecodeError("malformed-avro", "truncated single-object header")
            fp = value[2:10]
            writer = schema if fp == schema.fingerprint else self._known.get(fp)
            if writer is None:
                raise DecodeError("unknown-schema",
                                  f"no schema with fingerprint {fp.hex()} is known (see "
                                  "PHOENIX_AVRO_WRITER_SCHEMAS_DIR)")
            return writer, 10
        if value[:1] == b"\x00":
            if len(value) < 5:
                raise DecodeError("malformed-avro", "truncated Confluent header")
            if self.registry is None:
                raise DecodeError("unknown-schema", "Confluent-framed payload but no schema "
                                  "registry is configured (PHOENIX_SCHEMA_REGISTRY_URL)")
            (sid,) = struct.unpack(">I", value[1:5])
            writer = self.registry.writer_for(sid)
            # The registry's copy of our own schema: read it on the resolution-free path.
            return (schema if writer.fingerprint == schema.fingerprint else writer), 5
        raise DecodeError("unknown-format", "neither Avro single-object (C3 01), "
                          "Confluent (00) nor JSON")

    def decode(self, schema: AvroSchema, value: bytes, *, plain: bool = False,
               specialised: Callable[[bytes, int], dict[str, Any]] | None = None
               ) -> dict[str, Any]:
        """Read an Avro payload in either framing into ``schema``'s shape. ``plain``: leave
        logical types as their wire values (UUIDs as text, times as epoch micros).
        ``specialised(value, start)``: a reader of ``schema``'s own bodies, in the shape
        ``plain`` asks for, used instead of fastavro when ``schema`` itself wrote the payload;
        it must raise nothing but :class:`DecodeError`."""
        writer, start = self.writer(schema, value)
        if specialised is not None and writer is schema:
            return specialised(value, start)
        reader = schema.plain if plain else schema.parsed
        body = io.BytesIO(value)
        body.seek(start)
        try:
            # Same writer and reader: skip schema resolution, it is the hot path.
            record = fastavro.schemaless_reader(
                body, writer.plain if plain else writer.parsed,
                None if writer is schema else reader)
        except SchemaResolutionError as e:
            raise DecodeError("incompatible-schema", clip(
                f"the writer schema {writer.name} ({writer.fingerprint.hex()}) cannot be "
                f"read as {schema.name}: {e}")) from e
        except Exception as e:  # fastavro raises whatever the bytes provoke (EOF, Index...)
            raise DecodeError("malformed-avro", clip(f"{type(e).__name__}: {e}")) from e
        if not isinstance(record, dict):
            raise DecodeError("malformed-avro", "the payload is not a record")
        if body.tell() != len(value):
            raise DecodeError("malformed-avro", f"{len(value) - body.tell()} bytes after "
                              "the record (a writer schema other than the one announced?)")
        return record
