"""The native decoder reads a batch of records exactly as ``Worker._decode`` does: the same
headers, the same commands (every field, the key check), the same ``DecodeError`` reasons and
details; and it hands to the Python codec only the records it is not built for (JSON, other
writer schemas, registry ids it was not told about)."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import Message
from hypothesis import given
from hypothesis import strategies as st

from tests.native.reference import (
    V2,
    CommandCodec,
    Framing,
    InProcessRegistry,
    Record,
    codec_options,
    decode_natively,
    decode_reference,
    native_decoding,
)
from tests.native.strategies import COMMAND, PARITY, avro_body, records

pytestmark = pytest.mark.unit

MIB = 1 << 20
CODECS = {
    "single-object": (CommandCodec(Framing(), writers=(V2,)), ()),
    "registry": (CommandCodec(Framing(InProcessRegistry()), max_bytes=MIB, writers=(V2,)), (1,)),
    "registry, no ids known": (CommandCodec(Framing(InProcessRegistry()), writers=(V2,)), ()),
    "small limit": (CommandCodec(Framing(), max_bytes=150), ()),
}


def route(codec: CommandCodec, registry_ids: tuple[int, ...], r: Record,
          content_type: str | None) -> str:
    """Which decoder the record is meant for: ``native`` or ``python``."""
    value = r.value
    if not value or len(value) > codec.max_bytes:
        return "native"
    if value[:1] == b"{" or (content_type is not None and (
            content_type == "application/json" or content_type.endswith("+json"))):
        return "python"
    if value[:2] == b"\xc3\x01" and len(value) >= 10:
        fp = value[2:10]
        known = set(codec_options(codec)["known_fingerprints"])
        return "python" if fp != COMMAND.fingerprint and fp in known else "native"
    if value[:1] == b"\x00" and len(value) >= 5 and codec.framing.registry is not None:
        (sid,) = struct.unpack(">I", value[1:5])
        return "native" if sid in registry_ids else "python"
    return "native"


def check_batch(native: ModuleType, which: str, batch_records: list[Record]) -> None:
    codec, registry_ids = CODECS[which]
    batch, fell_back = decode_natively(native, codec, batch_records, registry_ids)
    assert len(batch) == len(batch_records)
    decoded = []
    for i, r in enumerate(batch_records):
        seen, expected, command = decode_reference(codec, r)
        if command is not None:
            decoded.append(command)
        assert batch.headers(i) == seen
        assert native_decoding(batch, i) == expected, (i, r)
        assert (i in fell_back) == (route(codec, registry_ids, r, seen[0]) == "python")
        command = batch.command(i)
        if command is not None:
            assert (command["partition"], command["offset"], command["traceparent"]) == (
                r.partition, r.offset, seen[1])
    counts: dict[str, int] = {}
    for i in range(len(batch_records)):
        for name in batch.headers(i)[2]:
            counts[name] = counts.get(name, 0) + 1
    assert batch.invalid_header_counts() == counts
    exclude = {c.command_id for c in decoded[::2]}
    assert batch.issued_seconds(exclude) == [c.issued_at.timestamp() for c in decoded
                                             if c.command_id not in exclude]
    assert batch.issued_seconds([str(i) for i in exclude]) == batch.issued_seconds(exclude)


@PARITY
@given(batch=st.lists(records(), min_size=1, max_size=6), which=st.sampled_from(sorted(CODECS)))
def test_a_batch_decodes_as_the_worker_decodes_it(native: ModuleType, batch: list[Record],
                                                  which: str) -> None:
    check_batch(native, which, batch)


def _command(**fields: Any) -> dict[str, Any]:
    record = {"command_id": "6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21", "command_type": "CREATE",
              "resource_id": "0b8e7c4a-91d2-4f3e-8a0c-5c2d7e9f1b33", "expected_version": None,
              "name": "n", "config": None, "status": None, "issued_at": 1_700_000_000_000_000,
              "correlation_id": None, "issued_by": None}
    return record | fields


EDGES = [
    _command(),
    _command(command_id="6F1C1D6E-2B7A-4C55-9A64-3D1B8F0E5A21"),
    _command(command_id="{6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21}"),
    _command(command_id="urn:uuid:6f1c1d6e2b7a4c559a643d1b8f0e5a21"),
    _command(command_id="6f1c1d6e2b7a4c559a64_3d1b8f0e5a2"),
    _command(command_id=" 6f1c1d6e2b7a4c559a643d1b8f0e5a21\t"),
    _command(command_id="١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠١٢"),
    _command(command_id="ab'cd\"é\x00\u2028" * 8),
    _command(resource_id="it's"),
    _command(issued_at=-1), _command(issued_at=0), _command(issued_at=10**11 - 1),
    _command(issued_at=10**11), _command(issued_at=10**14 - 1), _command(issued_at=10**14),
    _command(issued_at=253_402_300_799_999_999),
    _command(issued_at=253_402_300_799_999_999 + 1),
    _command(expected_version=-(2**63)), _command(expected_version=2**63 - 1),
    _command(correlation_id="é" * 255), _command(correlation_id="é" * 256),
    _command(correlation_id="a\x00"), _command(issued_by="x" * 256),
    _command(name="a\x00"), _command(command_type="DELETE", name="a\x00", config={"\x00": ""}),
    _command(config={"a": "\x00"}), _command(config={"b": "1", "a": "2"}),
    _command(command_type="UPDATE", name=None, config=None, status="inactive"),
]


@pytest.mark.parametrize("record", EDGES)
def test_edges_of_each_field(native: ModuleType, record: dict[str, Any]) -> None:
    value = COMMAND.header + avro_body(record)
    key = record["resource_id"].encode()
    check_batch(native, "single-object", [Record(value, key, None, 0, 0)])


def _map(*blocks: bytes) -> bytes:
    return b"".join(blocks) + b"\x00"


@pytest.mark.parametrize("body", [
    # a map block with a negative count (and a byte size), a key given twice, a varint of
    # ten bytes, one of eleven, strings that are not UTF-8 in each way CPython names
    b"config",
    b"dup",
    b"varint10",
    b"varint11",
    b"\xc3\x28", b"\xe2\x28\xa1", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"\xf0\x90\x80", b"\x80", b"\xc0\xaf", b"\xff",
])
def test_hand_made_bodies(native: ModuleType, body: bytes) -> None:
    ids = b"\x48" + b"6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21"
    head = ids + b"\x00" + ids + b"\x00"
    if body == b"config":
        config = b"\x01\x08" + b"\x02a\x02b" + b"\x00"  # count -1, 4 bytes
        value = head + b"\x02\x02n" + b"\x02" + config + b"\x00\x02\x00\x00"
    elif body == b"dup":
        config = _map(b"\x04\x02a\x021\x02b\x022", b"\x02\x02a\x023")
        value = head + b"\x02\x02n" + b"\x02" + config + b"\x00\x02\x00\x00"
    elif body.startswith(b"varint"):
        long = b"\xff" * 9 + b"\x01" if body == b"varint10" else b"\xff" * 10 + b"\x00"
        value = head + b"\x02\x02n\x00\x00" + long + b"\x00\x00"
    else:
        value = head + b"\x02" + bytes([len(body) * 2]) + body + b"\x00\x00\x02\x00\x00"
    check_batch(native, "single-object", [Record(COMMAND.header + value, None, None, 0, 0)])


def test_messages_decode_like_their_parts(native: ModuleType) -> None:
    codec, _ = CODECS["single-object"]
    value = COMMAND.header + avro_body(_command())
    parts = [Record(value, b"0b8e7c4a-91d2-4f3e-8a0c-5c2d7e9f1b33",
                    [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
                    3, 9),
             Record(b"\x01", None, None, 4, 10)]
    messages = [Message(topic="t", partition=r.partition, offset=r.offset, key=r.key,
                        value=r.value, headers=r.headers) for r in parts]
    from_messages = native.decode_messages(messages, **codec_options(codec))
    from_parts, _ = decode_natively(native, codec, parts)
    assert [from_messages.command(i) for i in range(2)] == [from_parts.command(i)
                                                            for i in range(2)]
    assert from_messages.dead_letters() == from_parts.dead_letters() == [
        (1, "unknown-format", "neither Avro single-object (C3 01), Confluent (00) nor JSON")]


def test_a_record_decoded_natively_cannot_be_supplied(native: ModuleType) -> None:
    codec, _ = CODECS["single-object"]
    batch, _ = decode_natively(native, codec, [Record(b"\x01", None, None, 0, 0)])
    with pytest.raises(ValueError, match="does not wait"):
        batch.refuse(0, "x", "y")
