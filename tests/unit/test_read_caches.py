"""What the read paths keep in memory: bounded by bytes, least recently used first out, and
reused only for what the database names (the listing's documents by version, the gRPC
lookup's encoded messages by the very document text); the gRPC handlers registered with
the lookup's pass-through serializer; the port claim of several gRPC server processes;
identical listings of one event-loop turn read once."""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid

import orjson
import pytest

from phoenix_resources.adapters.postgres.queries import SharedReads
from phoenix_resources.config import Settings
from phoenix_resources.entrypoints.grpc.convert import resource_from_json
from phoenix_resources.entrypoints.grpc.lookup import EncodedResources
from phoenix_resources.entrypoints.grpc.processes import claim_port
from phoenix_resources.entrypoints.grpc.server import server_options
from phoenix_resources.entrypoints.grpc.service import method_handlers
from phoenix_resources.entrypoints.http.documents import ENTRY_OVERHEAD, Documents, KeptBytes
from phoenix_resources.errors import ConfigurationError, DatabaseUnavailable
from phoenix_resources.grpc_gen.phoenix.resources.v1 import resources_pb2 as pb

pytestmark = pytest.mark.unit


def _doc(rid: uuid.UUID, name: str = "db-1", version: int = 1) -> str:
    return orjson.dumps({
        "id": str(rid), "name": name, "config": {"cpu": "2"}, "status": "active",
        "version": version, "created_at": "2026-11-26T10:00:00.000000Z",
        "updated_at": "2026-11-26T10:00:01.500000Z",
        "last_command_id": str(uuid.UUID(int=version))}).decode()


# --- the byte-bounded store -----------------------------------------------------------------

def test_kept_bytes_stay_within_the_budget_and_the_least_recently_used_leave_first() -> None:
    kept: KeptBytes[str, str] = KeptBytes(3 * (100 + ENTRY_OVERHEAD))
    for key in "abc":
        kept.put(key, key * 100, 100)
    assert kept.get("a") == "a" * 100  # now the most recently used
    kept.put("d", "d" * 100, 100)
    assert (kept.get("b"), len(kept)) == (None, 3)
    assert [kept.get(k) is not None for k in "acd"] == [True, True, True]
    assert kept.used <= kept.max_bytes


def test_a_value_larger_than_the_budget_is_not_kept_and_a_replacement_frees_its_bytes() -> None:
    kept: KeptBytes[str, str] = KeptBytes(1000)
    kept.put("a", "small", 5)
    kept.put("a", "x" * 5000, 5000)  # replaces, but cannot be kept
    assert (kept.get("a"), len(kept), kept.used) == (None, 0, 0)
    nothing: KeptBytes[str, str] = KeptBytes(0)
    nothing.put("a", "v", 1)
    assert nothing.get("a") is None


def test_documents_are_reused_only_for_the_version_they_were_read_at() -> None:
    docs = Documents(1 << 20)
    rid = uuid.uuid4()
    docs.keep(rid, 3, _doc(rid, version=3))
    assert docs.get(rid, 3) == _doc(rid, version=3)
    assert docs.get(rid, 4) is None
    assert docs.get(uuid.uuid4(), 3) is None
    docs.keep(rid, 4, _doc(rid, "renamed", 4))
    assert (docs.get(rid, 3), docs.get(rid, 4)) == (None, _doc(rid, "renamed", 4))


# --- the gRPC lookup's encoded messages -----------------------------------------------------

@pytest.mark.parametrize("budget", [0, 1 << 20])
def test_an_encoded_resource_is_exactly_the_message_of_the_document_read(budget: int) -> None:
    encoded = EncodedResources(budget)
    rid = uuid.uuid4()
    for doc in [_doc(rid), _doc(rid), _doc(rid, "renamed", 2), _doc(rid, "renamed", 2),
                _doc(rid)]:
        assert pb.Resource.FromString(encoded.encoded(rid, doc)) == resource_from_json(doc)


def test_the_same_document_text_reuses_the_bytes_and_any_change_builds_anew() -> None:
    encoded = EncodedResources(1 << 20)
    rid = uuid.uuid4()
    first = encoded.encoded(rid, _doc(rid))
    assert encoded.encoded(rid, _doc(rid)) is first
    later = _doc(rid).replace("2026-11-26T10:00:01.5", "2026-11-26T10:00:01.6")
    changed = encoded.encoded(rid, later)
    assert changed is not first
    assert pb.Resource.FromString(changed).updated_at.nanos == 600_000_000


# --- the handlers a server registers ----------------------------------------------------------

class _Service:
    """Stands in for ResourceService: ``method_handlers`` only reads its bound methods."""

    def __getattr__(self, name: str) -> object:
        return name


def test_every_rpc_of_the_service_is_registered_and_get_resource_passes_bytes_through() -> None:
    handlers = method_handlers(_Service())  # type: ignore[arg-type]
    service = pb.DESCRIPTOR.services_by_name["ResourceService"]
    assert set(handlers) == {m.name for m in service.methods}
    get = handlers["GetResource"]
    assert get.unary_unary == "get_resource_encoded"
    assert get.response_serializer is not None
    assert get.response_serializer(b"\x0a\x01x") == b"\x0a\x01x"  # type: ignore[arg-type]
    assert handlers["WatchResources"].response_streaming
    for name, handler in handlers.items():
        method = service.methods_by_name[name]
        assert handler.request_deserializer is not None
        assert handler.request_deserializer(b"").DESCRIPTOR is method.input_type
        output = getattr(pb, method.output_type.name)(**(
            {"command_id": "c"} if name.endswith("Resource") and name != "GetResource" else {}))
        assert handler.response_serializer is not None
        if name != "GetResource":
            assert handler.response_serializer(output) == output.SerializeToString()


# --- several server processes on one port -----------------------------------------------------

def test_one_process_binds_exclusively_and_the_processes_of_one_command_share() -> None:
    assert dict(server_options(Settings()))["grpc.so_reuseport"] == 0
    assert dict(server_options(Settings(), reuse_port=True))["grpc.so_reuseport"] == 1


linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT: Linux")


@linux
def test_a_claimed_port_is_refused_to_a_second_claim_and_to_a_plain_listener() -> None:
    claim = claim_port("127.0.0.1", 0)
    try:
        assert claim.port > 0
        with pytest.raises(ConfigurationError, match="in use"):
            claim_port("127.0.0.1", claim.port)
        plain = socket.socket()
        with pytest.raises(OSError, match="in use"):
            plain.bind(("127.0.0.1", claim.port))
        plain.close()
        shared = socket.socket()  # what a server of this command does
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        shared.bind(("127.0.0.1", claim.port))
        shared.listen()
        shared.close()
    finally:
        claim.release()
    again = claim_port("127.0.0.1", claim.port)  # released: free again
    again.release()


@linux
def test_a_port_another_program_listens_on_cannot_be_claimed() -> None:
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    try:
        with pytest.raises(ConfigurationError, match="in use"):
            claim_port("127.0.0.1", other.getsockname()[1])
    finally:
        other.close()


# --- identical reads of one turn --------------------------------------------------------------

def test_identical_reads_of_one_turn_run_once_and_a_later_turn_reads_again() -> None:
    runs: list[str] = []

    async def read(key: str) -> str:
        runs.append(key)
        await asyncio.sleep(0)
        return f"page {key} #{runs.count(key)}"

    async def main() -> None:
        shared: SharedReads[str] = SharedReads()
        first = await asyncio.gather(*(shared.read(k, lambda k=k: read(k))
                                       for k in ["a", "a", "b", "a"]))
        assert first == ["page a #1", "page a #1", "page b #1", "page a #1"]
        assert await shared.read("a", lambda: read("a")) == "page a #2"

    asyncio.run(main())
    assert runs == ["a", "b", "a"]


def test_a_shared_read_fails_for_each_caller_and_survives_one_giving_up() -> None:
    async def failing() -> str:
        await asyncio.sleep(0)
        raise DatabaseUnavailable("down")

    async def main() -> None:
        shared: SharedReads[str] = SharedReads()
        results = await asyncio.gather(shared.read("k", failing), shared.read("k", failing),
                                       return_exceptions=True)
        assert all(isinstance(r, DatabaseUnavailable) for r in results)
        opened = asyncio.Event()

        async def slow() -> str:
            await opened.wait()
            return "page"

        quitter = asyncio.ensure_future(shared.read("s", slow))
        stayer = asyncio.ensure_future(shared.read("s", slow))
        await asyncio.sleep(0)
        quitter.cancel()
        await asyncio.sleep(0)
        opened.set()
        assert await stayer == "page"
        assert quitter.cancelled()

    asyncio.run(main())
