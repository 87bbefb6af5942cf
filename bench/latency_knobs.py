"""Where the latency at 1,000 commands/s goes, by setting: ``python -m bench.latency_knobs
[--seconds 10] [--rounds 3] [--ephemeral] [--only NAME ...]``.

Runs ``bench.ours.latency`` (creates produced at 1,000/s; ``produce()`` → event received by
a subscriber, and → the worker's decision, ``processed_at``, stamped before its
transaction) once per variant per round, variants rotated round by round so load from other
work hits all alike, and prints medians.
A variant changes one waiting setting of the path a command takes:

* the publisher's ``linger.ms`` (the client library's producer: 5 ms);
* ``PHOENIX_BATCH_MAX_WAIT_MS`` (the worker's longest wait to fill a batch: 5 ms);
* the consumers' ``fetch.wait.max.ms`` (50 ms; the worker's, through
  ``PHOENIX_KAFKA_CONSUMER_OPTIONS``).

(The relay's producer lingers 2 ms, but the relay flushes each batch at once, and a flush
sends without waiting for the linger.)

Nothing is asserted; see docs/performance.md ("Latency").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass, field

from bench.common import progress, stack_target
from bench.ours import LatencyResult, latency


@dataclass(frozen=True)
class Variant:
    name: str
    batch_wait_ms: int | None = None
    publisher_linger_ms: float = 5
    env: dict[str, str] = field(default_factory=dict)


VARIANTS = [
    Variant("defaults"),
    Variant("batch wait 1 ms", batch_wait_ms=1),
    Variant("publisher linger 1 ms", publisher_linger_ms=1),
    Variant("consumers fetch.wait.max.ms 5",
            env={"PHOENIX_KAFKA_CONSUMER_OPTIONS": json.dumps({"fetch.wait.max.ms": 5})}),
    Variant("all of them", batch_wait_ms=1, publisher_linger_ms=1,
            env={"PHOENIX_KAFKA_CONSUMER_OPTIONS": json.dumps({"fetch.wait.max.ms": 5})}),
]


def _med(values: list[float]) -> str:
    good = [v for v in values if not math.isnan(v)]
    if not good:
        return "n/a"
    mid = statistics.median(good)
    return f"{mid:.1f}" if len(good) == 1 else f"{mid:.1f} ({min(good):.1f}-{max(good):.1f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--ephemeral", action="store_true",
                    help="a throwaway durable stack instead of the local one")
    ap.add_argument("--only", nargs="*", help="variant names (default: all)")
    args = ap.parse_args(argv)
    variants = [v for v in VARIANTS if not args.only or v.name in args.only]
    found: dict[str, list[LatencyResult]] = {v.name: [] for v in variants}
    with stack_target(args.ephemeral) as target:
        try:
            for r in range(args.rounds):
                for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                    progress(f"round {r + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f}): "
                             f"{v.name}")
                    res = latency(target, args.partitions, rate=1000, seconds=args.seconds,
                                  batch_wait_ms=v.batch_wait_ms,
                                  publisher_linger_ms=v.publisher_linger_ms, extra_env=v.env)
                    found[v.name].append(res)
                    progress(f"  -> p50 {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms; to the "
                             f"worker's decision p50 {res.to_db_p50_ms:.1f} ms "
                             f"({res.received:,}/{res.sent:,} received)")
        finally:
            target.cleanup()
    print()
    print(f"medians of {args.rounds} round(s) (min-max), {args.seconds:.0f} s at 1,000 "
          f"commands/s each; load average now {os.getloadavg()[0]:.2f}")
    print("| variant | p50 ms | p95 ms | p99 ms | produce → worker's decision p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, results in found.items():
        print(f"| {name} | {_med([x.p50_ms for x in results])} | "
              f"{_med([x.p95_ms for x in results])} | {_med([x.p99_ms for x in results])} | "
              f"{_med([x.to_db_p50_ms for x in results])} | "
              f"{_med([x.to_db_p99_ms for x in results])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
