"""What the kit's faults act on.

* :class:`Fleet` — the ``phoenix-resources`` processes the kit starts itself (workers, relays,
  an API), each in its own process group with its own log: SIGKILL, SIGSTOP / SIGCONT,
  start, stop. Workers get a static ``group.instance.id`` per slot, so a worker restarted in
  its slot rejoins without a rebalance.
* :class:`Services` — PostgreSQL and Kafka restarts: :class:`LocalServices` drives the local
  stack's objects (anything with ``stop()`` / ``start()``, e.g. the devstack's
  ``PostgresCluster`` and ``KafkaBroker``); :class:`HookServices` runs shell commands given
  by the operator for a deployment of their own. A fault with no way to inject it is
  reported as *not injected*, never silently counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from phoenix_resources.config import Settings

CLI = [sys.executable, "-m", "phoenix_resources.entrypoints.cli"]
LEADER = "relay is the leader"
LOST = "relay lost the lead"


def process_env(settings: Settings, kafka_extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this one's, minus every ``PHOENIX_`` variable,
    plus the settings (so a child runs exactly these)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    data = settings.model_dump()
    if kafka_extra:
        data["kafka_consumer_options"] = {**data["kafka_consumer_options"], **kafka_extra}
    for name, raw in data.items():
        if raw is None:
            continue
        value = raw.get_secret_value() if hasattr(raw, "get_secret_value") else raw
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"PHOENIX_{name.upper()}"] = text
    return env


@dataclass
class Member:
    """One process of the fleet."""

    kind: str
    slot: int
    proc: subprocess.Popen[bytes]
    log: Path
    stopped: bool = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def leading(self) -> bool:
        """A relay whose last word on leadership was that it leads."""
        text = self.output()
        return self.alive() and not self.stopped and text.rfind(LEADER) > text.rfind(LOST)


@dataclass
class Fleet:
    settings: Settings
    logs: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="phoenix-soak-")))
    members: list[Member] = field(default_factory=list)
    session_timeout_ms: int = 6000

    def start(self, kind: str, slot: int) -> Member:
        extra = {"session.timeout.ms": str(self.session_timeout_ms)}
        update: dict[str, object] = {"metrics_port": 0}
        if kind == "worker":
            update["group_instance_id"] = f"soak-worker-{slot}"
        settings = self.settings.model_copy(update=update)
        log = self.logs / f"{kind}-{slot}-{len(self.members)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*CLI, kind], env=process_env(settings, extra),
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        member = Member(kind, slot, proc, log)
        self.members.append(member)
        return member

    def live(self, kind: str) -> list[Member]:
        return [m for m in self.members if m.kind == kind and m.alive()]

    def kill(self, member: Member) -> None:
        """SIGKILL, and restart the slot at once (a supervisor would)."""
        member.signal(signal.SIGKILL)
        member.proc.wait(10)
        self.start(member.kind, member.slot)

    def leader(self) -> Member | None:
        found = [m for m in self.live("relay") if m.leading()]
        return found[0] if len(found) == 1 else None

    def stop_all(self, timeout: float = 30.0) -> None:
        for m in self.members:
            if m.stopped:
                m.signal(signal.SIGCONT)
            m.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for m in self.members:
            try:
                m.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                m.signal(signal.SIGKILL)
                m.proc.wait(10)


class Restartable(Protocol):
    def stop(self) -> None: ...
    def start(self) -> None: ...


class Services(Protocol):
    """Restarts of the deployment's PostgreSQL and Kafka; each returns whether it did."""

    def restart_postgres(self) -> bool: ...
    def restart_kafka(self) -> bool: ...


@runtime_checkable
class ClusterFaults(Protocol):
    """Services that can also inject a cluster's faults (:class:`.cluster.ClusterServices`)."""

    def inject(self, kind: str) -> bool: ...


@dataclass
class LocalServices:
    postgres: Restartable | None
    kafka: Restartable | None
    down_s: float = 1.0
    """How long a service stays down."""

    def restart_postgres(self) -> bool:
        return self._bounce(self.postgres)

    def restart_kafka(self) -> bool:
        return self._bounce(self.kafka)

    def _bounce(self, service: Restartable | None) -> bool:
        if service is None:
            return False
        service.stop()
        time.sleep(self.down_s)
        service.start()
        return True


@dataclass
class HookServices:
    """Shell commands (run with ``sh -c``) that restart the operator's own services; each
    must return once the service is back (or the kit's convergence wait covers it)."""

    postgres: str | None
    kafka: str | None

    def restart_postgres(self) -> bool:
        return self._run(self.postgres)

    def restart_kafka(self) -> bool:
        return self._run(self.kafka)

    @staticmethod
    def _run(command: str | None) -> bool:
        if not command:
            return False
        return subprocess.run(["sh", "-c", command], check=False).returncode == 0
