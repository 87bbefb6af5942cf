"""Proto compatibility is checked in CI, as the Avro schemas' is (test_schema_evolution.py):
the current contracts (``proto/``) must stay wire- and API-compatible with the last released
ones (``proto/released/``). The check reads the compiled descriptors; no ``buf`` needed."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2 as d

pytestmark = pytest.mark.unit

PROTO = Path(__file__).resolve().parents[2] / "proto"
RELEASED = PROTO / "released"
F = d.FieldDescriptorProto


def compile_set(root: Path, skip_released: bool = True) -> d.FileDescriptorSet:
    """Every .proto under ``root`` compiled into one descriptor set (file names relative to
    ``root``, so current and released files line up)."""
    from grpc_tools import protoc

    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto")
                   if not (skip_released and "released" in p.relative_to(root).parts))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        well_known = resources.files("grpc_tools").joinpath("_proto")
        assert protoc.main(["protoc", f"-I{root}", f"-I{well_known}",
                            f"--descriptor_set_out={out}", *files]) == 0, files
        return d.FileDescriptorSet.FromString(out.read_bytes())


def _messages(prefix: str, messages: Iterator[d.DescriptorProto] | list[d.DescriptorProto],
              ) -> Iterator[tuple[str, d.DescriptorProto]]:
    for m in messages:
        name = f"{prefix}.{m.name}"
        yield name, m
        yield from _messages(name, list(m.nested_type))


def _index(fds: d.FileDescriptorSet) -> tuple[dict[str, d.DescriptorProto],
                                               dict[str, d.EnumDescriptorProto],
                                               dict[str, d.ServiceDescriptorProto]]:
    messages: dict[str, d.DescriptorProto] = {}
    enums: dict[str, d.EnumDescriptorProto] = {}
    services: dict[str, d.ServiceDescriptorProto] = {}
    for f in fds.file:
        for name, m in _messages(f.package, list(f.message_type)):
            messages[name] = m
            enums |= {f"{name}.{e.name}": e for e in m.enum_type}
        enums |= {f"{f.package}.{e.name}": e for e in f.enum_type}
        services |= {f"{f.package}.{s.name}": s for s in f.service}
    return messages, enums, services


def _reserved(number: int, ranges: list[d.DescriptorProto.ReservedRange]
              | list[d.EnumDescriptorProto.EnumReservedRange], end_inclusive: bool) -> bool:
    return any(r.start <= number < r.end + (1 if end_inclusive else 0) for r in ranges)


def _shape(f: d.FieldDescriptorProto) -> tuple[object, ...]:
    return (F.Type.Name(f.type), f.type_name, F.Label.Name(f.label), f.proto3_optional,
            f.HasField("oneof_index") and not f.proto3_optional)


def violations(old: d.FileDescriptorSet, new: d.FileDescriptorSet) -> list[str]:
    """Every incompatible change from ``old`` to ``new``, as readable sentences."""
    found: list[str] = []
    old_msgs, old_enums, old_svcs = _index(old)
    new_msgs, new_enums, new_svcs = _index(new)
    for name, om in old_msgs.items():
        nm = new_msgs.get(name)
        if nm is None:
            found.append(f"message {name} was removed")
            continue
        new_fields = {f.number: f for f in nm.field}
        ranges = list(nm.reserved_range)
        for of in om.field:
            nf = new_fields.get(of.number)
            where = f"{name}.{of.name} (= {of.number})"
            if nf is None:
                if not (_reserved(of.number, ranges, False) and of.name in nm.reserved_name):
                    found.append(f"field {where} was removed without reserving its number "
                                 "and name")
            elif nf.name != of.name:
                found.append(f"field {where} was renamed or its number reused by {nf.name}")
            elif _shape(nf) != _shape(of):
                found.append(f"field {where} changed type/label/presence: {_shape(of)} -> "
                             f"{_shape(nf)}")
        for nf in nm.field:
            if _reserved(nf.number, list(om.reserved_range), False) \
                    or nf.name in om.reserved_name:
                found.append(f"field {name}.{nf.name} (= {nf.number}) reuses a reserved "
                             "number or name")
    for name, oe in old_enums.items():
        ne = new_enums.get(name)
        if ne is None:
            found.append(f"enum {name} was removed")
            continue
        values = {v.number: v.name for v in ne.value}
        for ov in oe.value:
            if ov.number not in values:
                if not (_reserved(ov.number, list(ne.reserved_range), True)
                        and ov.name in ne.reserved_name):
                    found.append(f"enum value {name}.{ov.name} (= {ov.number}) was removed "
                                 "without reserving it")
            elif values[ov.number] != ov.name:
                found.append(f"enum value {name}.{ov.name} (= {ov.number}) was renamed to "
                             f"{values[ov.number]}")
    for name, osvc in old_svcs.items():
        nsvc = new_svcs.get(name)
        if nsvc is None:
            found.append(f"service {name} was removed")
            continue
        methods = {m.name: m for m in nsvc.method}
        for om_ in osvc.method:
            nm_ = methods.get(om_.name)
            sig = (om_.input_type, om_.output_type, om_.client_streaming, om_.server_streaming)
            if nm_ is None:
                found.append(f"method {name}/{om_.name} was removed")
            elif (nm_.input_type, nm_.output_type, nm_.client_streaming,
                  nm_.server_streaming) != sig:
                found.append(f"method {name}/{om_.name} changed its signature")
    return found


# --- the contracts ------------------------------------------------------------------------

def test_current_protos_are_compatible_with_the_released_ones() -> None:
    assert violations(compile_set(RELEASED), compile_set(PROTO)) == []


def test_every_current_proto_has_a_released_version() -> None:
    current = {p.relative_to(PROTO) for p in PROTO.rglob("*.proto")
               if "released" not in p.relative_to(PROTO).parts}
    assert current
    assert current == {p.relative_to(RELEASED) for p in RELEASED.rglob("*.proto")}


# --- the checker itself -------------------------------------------------------------------

BASE = """
syntax = "proto3";
package t.v1;
message M {
  string a = 1;
  int64 b = 2;
  optional string c = 3;
  repeated string d = 4;
  oneof o { string e = 5; int32 f = 6; }
  %s
}
enum E { E_UNSPECIFIED = 0; E_ONE = 1; %s }
service S { rpc Get(M) returns (M); rpc Watch(M) returns (stream M); }
"""


def _compile(text: str, tmp_path: Path, name: str) -> d.FileDescriptorSet:
    root = tmp_path / name
    (root / "t").mkdir(parents=True)
    (root / "t" / "t.proto").write_text(text)
    return compile_set(root)


@pytest.mark.parametrize(("new", "expected"), [
    (BASE % ("string g = 7;", "E_TWO = 2;"), None),  # additions are fine
    (BASE.replace("int64 b = 2;", "reserved 2; reserved \"b\";") % ("", ""), None),
    (BASE.replace("int64 b = 2;", "") % ("", ""), "field t.v1.M.b (= 2) was removed"),
    (BASE.replace("int64 b = 2;", "reserved 2;") % ("", ""), "field t.v1.M.b (= 2) was removed"),
    (BASE.replace("int64 b = 2;", "int32 b = 2;") % ("", ""), "changed type"),
    (BASE.replace("int64 b = 2;", "repeated int64 b = 2;") % ("", ""), "changed type"),
    (BASE.replace("optional string c = 3;", "string c = 3;") % ("", ""), "changed type"),
    (BASE.replace("string e = 5;", "").replace("int64 b = 2;", "int64 b = 2; string e = 5;")
     % ("", ""), "changed type"),
    (BASE.replace("int64 b = 2;", "int64 bee = 2;") % ("", ""), "renamed or its number reused"),
    (BASE.replace("E_ONE = 1;", "") % ("", ""), "enum value t.v1.E.E_ONE (= 1) was removed"),
    (BASE.replace("E_ONE = 1;", "reserved 1; reserved \"E_ONE\";") % ("", ""), None),
    (BASE.replace("rpc Get(M) returns (M);", "") % ("", ""), "method t.v1.S/Get was removed"),
    (BASE.replace("returns (stream M)", "returns (M)") % ("", ""), "changed its signature"),
])
def test_the_checker_catches_breaking_changes(tmp_path: Path, new: str,
                                              expected: str | None) -> None:
    old = _compile(BASE % ("", ""), tmp_path, "old")
    found = violations(old, _compile(new, tmp_path, "new"))
    if expected is None:
        assert found == []
    else:
        assert any(expected in v for v in found), found


def test_the_checker_catches_reuse_of_a_reserved_number(tmp_path: Path) -> None:
    old = _compile(BASE % ("reserved 9; reserved \"gone\";", ""), tmp_path, "old")
    new = _compile(BASE % ("string gone = 9;", ""), tmp_path, "new")
    assert any("reuses a reserved" in v for v in violations(old, new))
