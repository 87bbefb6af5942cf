"""Where a ``WatchResources`` stream stands in the events topic, and which partition holds a
resource's events. Pure functions: no I/O.

Guarantees:

* A **position** names, for every partition the stream reads, the next offset to read. The
  position sent with an event is the one *after* that event, so resuming from it continues
  with the next record: nothing is skipped and nothing is repeated.
* Positions are opaque to clients: base64url (unpadded) of ``[1, scope, [[partition,
  offset], ...]]``, where ``scope`` is the watched resource id, or ``""`` for all resources.
  A position is valid only for the scope that issued it; anything this server did not issue
  is refused with ``RES-001``.
* :func:`partition_for` is the Java client's default partitioner (murmur2 of the key bytes,
  sign bit cleared, modulo the partition count), which is what librdkafka's
  ``murmur2_random`` does for keyed records and what every producer of this service uses
  (``adapters/kafka.py``): one resource's events are read from that partition alone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import orjson

from phoenix_resources.entrypoints.http import problems as p

VERSION = 1
MAX_TOKEN = 4096
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: a signed 32-bit hash, bit for bit like the Java client."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & _MASK
        k ^= k >> r
        k = (k * m) & _MASK
        h = (h * m) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & _MASK
    h ^= h >> 13
    h = (h * m) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to among ``partitions`` (Java's default)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def encode_position(scope: str, offsets: Mapping[int, int]) -> str:
    """The opaque token for ``offsets`` (partition → next offset) in ``scope``."""
    raw = orjson.dumps([VERSION, scope, sorted([part, off] for part, off in offsets.items())])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_position(token: str, scope: str) -> dict[int, int]:
    """The offsets a token encodes; ``ApiProblem`` RES-001 for a token this server did not
    issue, or one issued for another scope (another resource, or all resources)."""
    valid, issued_for, offsets = False, "", {}
    try:
        if len(token) <= MAX_TOKEN:
            raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            version, issued_for, pairs = raw
            offsets = {int(part): int(off) for part, off in pairs}
            valid = bool(version == VERSION and isinstance(issued_for, str) and offsets
                         and all(isinstance(x, int) and x >= 0 for pair in pairs for x in pair)
                         and len(offsets) == len(pairs))
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        valid = False
    if not valid:
        raise p.ApiProblem(p.INVALID_REQUEST, "invalid position: pass back the `position` "
                           "of an event (or the `phoenix-position` metadata) unchanged")
    if issued_for != scope:
        raise p.ApiProblem(p.INVALID_REQUEST, "the position was issued for "
                           + (f"resource {issued_for}" if issued_for else "all resources")
                           + "; resume with the same resource_id (or none) that issued it")
    return offsets
