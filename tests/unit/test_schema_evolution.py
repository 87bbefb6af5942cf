"""Schema evolution is checked in CI: the current schemas must read data written with the
last released ones (backward compatible), using Avro schema resolution."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

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
