"""``GetResource``'s answer: the read, in waves; the message, encoded once per document.

Guarantees:

* **Every call reads PostgreSQL.** Nothing is answered from memory without a read, so a
  lookup that starts after a write committed sees it, as the HTTP API's lookup does; an
  unknown id is ``NOT_FOUND`` RES-002, a tombstone ``NOT_FOUND`` RES-004 with ``deleted_at``
  and ``version``.
* **Lookups meet in waves** (:class:`LookupWaves`): one query runs at a time and lookups
  arriving meanwhile start together when it ends, as one query (``ReadQueries``' loader). At
  saturation that is 7-10 calls per query, against 3-4 with two queries at a time
  (docs/performance.md); a query that outlives its callers' deadlines holds nobody up, as
  the wave ends when its last caller leaves.
* **The encoded message is kept per document** (:class:`EncodedResources`): the bytes of a
  ``Resource`` are kept with the JSON document PostgreSQL rendered for it, and a later read
  that renders the very same text gets the same bytes. The message is a function of that
  text alone (``convert.resource_from_json``), so this is exact whatever changed and
  however (a new version, a failover, a restore): any difference in the document is a miss.
  At most ``grpc_lookup_cache_bytes`` are kept (``adapters.postgres.documents.KeptBytes``).
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from phoenix_resources.adapters.postgres.queries import ReadQueries, ResourceDoc
from phoenix_resources.entrypoints.grpc.convert import resource_from_json
from phoenix_resources.entrypoints.grpc.edge import within
from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.entrypoints.http.documents import KeptBytes


class EncodedResources:
    """Encoded ``Resource`` messages by id, each with the document it was built from."""

    def __init__(self, max_bytes: int) -> None:
        self._kept: KeptBytes[UUID, tuple[str, bytes]] = KeptBytes(max_bytes)

    def __len__(self) -> int:
        return len(self._kept)

    def encoded(self, resource_id: UUID, document: str) -> bytes:
        """The ``Resource`` message of ``document`` (a ``RESOURCE_JSON`` text), encoded."""
        kept = self._kept.get(resource_id)
        if kept is not None and kept[0] == document:
            return kept[1]
        encoded = resource_from_json(document).SerializeToString()
        self._kept.put(resource_id, (document, encoded), len(document) + len(encoded))
        return encoded


class _Wave:
    """Lookups released together; the wave ends with the last of them."""

    __slots__ = ("left",)

    def __init__(self, size: int) -> None:
        self.left = size


class LookupWaves:
    """Lookups by id in waves, so that ``ReadQueries``' loader can coalesce them.

    gRPC starts each call in an event-loop turn of its own, so lookups rarely meet in one
    turn and the loader (which coalesces per turn) would send one query per call. Here at
    most :attr:`limit` waves run at once; lookups arriving meanwhile wait, and when a wave
    ends all of them start together, in one turn: one query for the whole wave. An idle
    server adds no wait (a lone lookup is a wave of its own, at once). Each caller still
    gets its own row or its own error; a caller cancelled while waiting leaves its wave.
    """

    def __init__(self, queries: ReadQueries, limit: int = 2) -> None:
        self.queries = queries
        self.limit = limit
        self.running = 0
        self._waiting: list[asyncio.Future[_Wave]] = []

    async def resource(self, resource_id: UUID) -> ResourceDoc | None:
        if self.running < self.limit:
            self.running += 1
            wave = _Wave(1)
        else:
            gate: asyncio.Future[_Wave] = asyncio.get_running_loop().create_future()
            self._waiting.append(gate)
            try:
                wave = await gate
            except asyncio.CancelledError:
                if gate.done() and not gate.cancelled():
                    self._leave(gate.result())  # released, then cancelled before running
                raise
        try:
            return await self.queries.resource(resource_id)
        finally:
            self._leave(wave)

    def _leave(self, wave: _Wave) -> None:
        wave.left -= 1
        if wave.left == 0:
            self.running -= 1
            self._release()

    def _release(self) -> None:
        if self.running >= self.limit:
            return
        live = [g for g in self._waiting if not g.done()]
        self._waiting = []
        if not live:
            return
        wave = _Wave(len(live))
        self.running += 1
        for gate in live:
            gate.set_result(wave)


class ResourceLookup:
    """``GetResource`` minus the edge: the encoded ``Resource``, or the ``ApiProblem``."""

    def __init__(self, queries: ReadQueries, *, cache_bytes: int, waves: int = 1) -> None:
        self.waves = LookupWaves(queries, waves)
        self.messages = EncodedResources(cache_bytes)

    async def encoded(self, resource_id: UUID, budget: float) -> bytes:
        """Read ``resource_id`` within ``budget`` seconds (else ``TimeoutError``)."""
        doc = await within(budget, self.waves.resource(resource_id))
        if doc is None:
            raise p.ApiProblem(p.NOT_FOUND, f"no resource with id {resource_id}")
        if doc.deleted_at is not None:
            raise p.ApiProblem(p.DELETED, f"resource {resource_id} was deleted at "
                               f"{doc.deleted_at}", deleted_at=doc.deleted_at,
                               version=doc.version)
        return self.messages.encoded(resource_id, doc.json)
