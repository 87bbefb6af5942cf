"""Profile the worker: ``python -m bench.profile [--n 50000] [--top 25]``.

Pre-loads the benchmark workload, runs ``phoenix-resources worker`` under py-spy (every
thread is sampled: the worker loop runs in a thread, which pyinstrument does not follow; the
relay runs beside it, unprofiled) until every command has an outcome, stops it, and prints
the functions with the most samples, inclusive and self. Idle time (blocked in poll/wait) is
not sampled. The summary goes to ``bench/results/profile-worker.md``, the collapsed stacks to
``.local/bench-logs/profile-worker.collapsed`` (feed them to any flame-graph tool). Needs
``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg

from bench.common import Proc, progress, stack_target
from bench.ours import LOGS, Pipeline
from bench.workload import generate, produce

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    out = LOGS / "profile-worker.collapsed"
    LOGS.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # never summarise an earlier run's stacks
    with stack_target(False) as target:
        try:
            wl = generate(args.n)
            topic = f"bench.{target.run_id}.commands"
            target.create_topics([topic], args.partitions)
            produce(target.bootstrap, topic, wl.messages)
            pipe = Pipeline(target, topic, args.partitions)
            env = pipe.env()
            exe = Path(sys.executable)
            spy = exe.with_name("py-spy")
            relay = Proc([str(exe.with_name("phoenix-resources")), "relay"], env,
                         LOGS / "profile-relay.log")
            worker = Proc([str(spy), "record", "--format", "raw", "--rate", "200",
                           "--output", str(out), "--",
                           str(exe.with_name("phoenix-resources")), "worker"], env,
                          LOGS / "profile-worker.log")
            pipe.procs = [relay, worker]
            t = time.monotonic()
            with psycopg.connect(pipe.db_url, autocommit=True) as conn:
                while True:
                    pipe.check_alive()
                    done = conn.execute("SELECT count(*) FROM processed_commands"
                                        ).fetchone()[0]  # type: ignore[index]
                    if done >= wl.commands or time.monotonic() - t > 300:
                        break
                    time.sleep(0.2)
            progress(f"{done:,} commands in {time.monotonic() - t:.1f} s under the profiler")
            # stop the worker itself, not py-spy: py-spy writes its file when its child exits
            # py-spy may fork from any of its threads: each thread lists its own children.
            kids = [kid for task in Path(f"/proc/{worker.pid}/task").iterdir()
                    for kid in (task / "children").read_text().split()]
            if not kids:
                progress("the profiled worker was not found under py-spy; no profile")
            # Again every 2 s: a signal that arrives while py-spy holds the worker stopped
            # for a sample can be lost (the worker then never logs "stopping").
            for _ in range(30):
                for kid in kids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(kid), signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.p.wait(2)
                    break
            pipe.stop()
        finally:
            target.cleanup()
    if not out.exists():
        print("no profile written: see .local/bench-logs/profile-worker.log")
        return 1
    summary = top_functions(out.read_text(), args.top)
    (RESULTS / "profile-worker.md").write_text(
        f"# Worker profile (py-spy, {args.n:,} messages)\n\n{summary}\n")
    print(summary)
    progress(f"collapsed stacks: {out}; summary: {RESULTS / 'profile-worker.md'}")
    return 0


IDLE = ("Condition.wait", "Event.wait", "lock.acquire", "Thread._wait_for_tstate_lock")


def top_functions(collapsed: str, top: int) -> str:
    """Inclusive and self sample shares per function from py-spy's collapsed stacks."""
    incl: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        if frames[-1].startswith(IDLE):
            idle += n  # a thread parked on a lock / condition: not work
            continue
        total += n
        for f in set(frames):
            incl[f] += n
        own[frames[-1]] += n
    lines = [f"{total} busy samples ({idle} more parked in lock/condition waits, left out)",
             "", "| inclusive | self | function |",
             "|---:|---:|---|"]
    for f, n in incl.most_common(top):
        lines.append(f"| {100 * n / total:.1f}% | {100 * own[f] / total:.1f}% | `{f}` |")
    lines += ["", "heaviest self time:", ""]
    lines += [f"- {100 * n / total:.1f}% `{f}`" for f, n in own.most_common(top // 2)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
