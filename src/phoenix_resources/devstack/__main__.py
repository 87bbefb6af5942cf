"""``python -m phoenix_resources.devstack up|down|status|env|fetch|ephemeral -- CMD``.

``ephemeral`` starts a throwaway stack, runs CMD with the stack's variables exported, tears
the stack down and exits with CMD's status: this is how ``make test`` runs the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from phoenix_resources.devstack.kafka import ensure_jars
from phoenix_resources.devstack.stack import ephemeral_stack, local_stack
from phoenix_resources.errors import StackError


def _status() -> int:
    stack = local_stack()
    kafka = stack.broker.is_running()
    pg = stack.postgres.is_running()
    rss = stack.broker.rss_bytes()
    print(f"kafka     {'running' if kafka else 'stopped'}  {stack.broker.bootstrap_servers}"
          + (f"  rss={rss / 2**20:.0f} MiB" if rss else ""))
    print(f"postgres  {'running' if pg else 'stopped'}  {stack.postgres.url()}")
    return 0 if kafka and pg else 3


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "fetch":
            print(f"Kafka jars in {ensure_jars()}")
        elif cmd == "up":
            t = time.monotonic()
            timings = local_stack().up()
            print("local stack up in {:.1f}s ({})".format(
                time.monotonic() - t, ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())))
            return _status()
        elif cmd == "down":
            local_stack().down()
            print("local stack stopped")
        elif cmd == "status":
            return _status()
        elif cmd == "env":
            for k, v in local_stack().env().items():
                print(f"export {k}={v}")
        elif cmd == "ephemeral":
            if rest[:1] == ["--"]:
                rest = rest[1:]
            t = time.monotonic()
            with ephemeral_stack() as stack:
                print(f"ephemeral stack ready in {time.monotonic() - t:.1f}s: "
                      f"{stack.env()}", flush=True)
                return subprocess.run(rest, env={**os.environ, **stack.env()},
                                      check=False).returncode
        else:
            print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
            return 2
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
