"""``python -m phoenix_resources.devstack up|down|status|env|fetch|ephemeral
[--topology single|cluster] [-- CMD]``.

``ephemeral`` starts a throwaway stack, runs CMD with the stack's variables exported, tears
the stack down and exits with CMD's status: this is how ``make test`` runs the suite.
``--topology cluster`` is production's shape (three Kafka brokers and a controller, a
synchronous PostgreSQL primary/standby pair), kept under ``.local/cluster/`` on its own ports
(Kafka 19092-19095, PostgreSQL 55442-55443); the default, ``single``, is one of each.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from phoenix_resources.devstack.kafka import ensure_jars
from phoenix_resources.devstack.stack import (
    TOPOLOGIES,
    ClusterStack,
    Stack,
    ephemeral_cluster_stack,
    ephemeral_stack,
    local_cluster_stack,
    local_stack,
)
from phoenix_resources.errors import StackError


def _cluster_status(stack: ClusterStack) -> int:
    up = True
    for node in stack.kafka.nodes.values():
        running = node.is_running()
        up &= running
        rss = node.rss_bytes()
        print(f"kafka {node.role:<10} {node.node_id}  {'running' if running else 'stopped'}  "
              f"127.0.0.1:{node.port}" + (f"  rss={rss / 2**20:.0f} MiB" if rss else ""))
    for name, pg in stack.postgres.nodes.items():
        state = {True: "standby", False: "primary", None: "stopped"}[
            stack.postgres.in_recovery(pg)]
        up &= state != "stopped"
        print(f"postgres {name:<10}  {state:<7}  127.0.0.1:{pg.port}")
    print(f"database url  {stack.postgres.url()}")
    return 0 if up else 3


def _status(topology: str = "single") -> int:
    if topology == "cluster":
        return _cluster_status(local_cluster_stack())
    stack = local_stack()
    kafka = stack.broker.is_running()
    pg = stack.postgres.is_running()
    rss = stack.broker.rss_bytes()
    print(f"kafka     {'running' if kafka else 'stopped'}  {stack.broker.bootstrap_servers}"
          + (f"  rss={rss / 2**20:.0f} MiB" if rss else ""))
    print(f"postgres  {'running' if pg else 'stopped'}  {stack.postgres.url()}")
    return 0 if kafka and pg else 3


def _topology(rest: list[str]) -> tuple[str, list[str]]:
    """``--topology X`` / ``--topology=X`` before any ``--``; the default is ``single``."""
    if rest[:1] == ["--topology"] and len(rest) > 1:
        topology, rest = rest[1], rest[2:]
    elif rest[:1] and rest[0].startswith("--topology="):
        topology, rest = rest[0].partition("=")[2], rest[1:]
    else:
        topology = "single"
    if topology not in TOPOLOGIES:
        raise StackError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")
    return topology, rest


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd = argv[0]
    try:
        topology, rest = _topology(argv[1:])
        local: Stack | ClusterStack = local_cluster_stack() if topology == "cluster" \
            else local_stack()
        if cmd == "fetch":
            print(f"Kafka jars in {ensure_jars()}")
        elif cmd == "up":
            t = time.monotonic()
            timings = local.up()
            print("local {} stack up in {:.1f}s ({})".format(
                topology, time.monotonic() - t,
                ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())))
            return _status(topology)
        elif cmd == "down":
            local.down()
            print(f"local {topology} stack stopped")
        elif cmd == "status":
            return _status(topology)
        elif cmd == "env":
            for k, v in local.env().items():
                print(f"export {k}={shlex.quote(v)}")
        elif cmd == "ephemeral":
            if rest[:1] == ["--"]:
                rest = rest[1:]
            t = time.monotonic()
            throwaway = ephemeral_cluster_stack() if topology == "cluster" else ephemeral_stack()
            with throwaway as stack:
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
