"""The Java client's default partitioner: which partition a keyed record goes to.

:func:`partition_for` is Kafka's ``BuiltInPartitioner.partitionForKey`` (murmur2 of the key
bytes, sign bit cleared, modulo the partition count) — what librdkafka's ``murmur2_random``
does for keyed records and what every producer of this service is pinned to
(``kafka_options.PINNED``). So a resource's records land on one partition whoever publishes
them, and a reader that knows a resource id reads that partition alone. Pure functions.
"""

from __future__ import annotations

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
