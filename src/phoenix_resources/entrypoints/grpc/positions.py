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
* :func:`partition_for` is the Java client's default partitioner (``wire/partitioner.py``),
  which every producer of this service uses: one resource's events are read from that
  partition alone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import orjson

from phoenix_resources.entrypoints.http import problems as p
from phoenix_resources.wire.partitioner import murmur2, partition_for

__all__ = ["MAX_TOKEN", "VERSION", "decode_position", "encode_position", "murmur2",
           "partition_for"]

VERSION = 1
MAX_TOKEN = 4096


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
