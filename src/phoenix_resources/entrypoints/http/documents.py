"""Rendered resource documents kept in memory, for pages of the listing (:class:`Documents`),
and the byte-bounded store beneath it (:class:`KeptBytes`, also the gRPC lookup's).

Guarantees:

* **A kept document is reused only for the same id at the same version.** A resource's
  version grows by one with every applied command and a deleted id is never used again, so
  ``(id, version)`` names one document — the API's ETag says as much: ``If-None-Match``
  answers 304 on the version alone. Whoever reuses a document has read that pair from
  the database in the same request.
* **Bounded by bytes**: what is kept adds up to at most ``max_bytes`` (the least recently used
  leave first); a value larger than the whole budget is not kept; ``0`` keeps nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar
from uuid import UUID

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

ENTRY_OVERHEAD = 200
"""Bytes an entry costs beyond its value's own size (the key, the tuple, the dict's slot)."""


class KeptBytes(Generic[K, V]):
    """Values by key, least recently used leaving first once their sizes pass ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._kept: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: K) -> V | None:
        kept = self._kept.get(key)
        if kept is None:
            return None
        self._kept.move_to_end(key)
        return kept[0]

    def put(self, key: K, value: V, size: int) -> None:
        """Keep ``value`` (``size`` bytes of payload) under ``key``, replacing what was."""
        size += ENTRY_OVERHEAD
        old = self._kept.pop(key, None)
        if old is not None:
            self.used -= old[1]
        if size > self.max_bytes:
            return
        self._kept[key] = (value, size)
        self.used += size
        while self.used > self.max_bytes:
            _, (_, freed) = self._kept.popitem(last=False)
            self.used -= freed


class Documents:
    """``RESOURCE_JSON`` documents by (id, version): ``ReadQueries``' ``DocumentStore``."""

    def __init__(self, max_bytes: int) -> None:
        self._kept: KeptBytes[UUID, tuple[int, str]] = KeptBytes(max_bytes)

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, resource_id: UUID, version: int) -> str | None:
        kept = self._kept.get(resource_id)
        return kept[1] if kept is not None and kept[0] == version else None

    def keep(self, resource_id: UUID, version: int, document: str) -> None:
        self._kept.put(resource_id, (version, document), len(document))
