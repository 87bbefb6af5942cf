"""One node of a PostgreSQL HA pair: its files (while it is stopped), its processes (to kill
them the hard way) and its control data. The SQL side of the pair lives in
:mod:`.postgres_ha`."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from phoenix_resources.devstack._proc import pid_alive
from phoenix_resources.devstack.postgres import PostgresCluster


def _own(path: Path) -> None:
    """As root, give a file in a data directory to the postgres user (and leave the
    directory's mode alone: the server refuses a data directory others may enter)."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def literal(value: str) -> str:
    """A SQL string literal (``standard_conforming_strings`` is on)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class HANode(PostgresCluster):
    """A node of the pair: a :class:`PostgresCluster` whose ``initdb`` skips its final fsync
    when the settings turn fsync off (two of the three seconds a throwaway pair takes to
    start on a small machine)."""

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if tool == "initdb" and (self.settings or {}).get("fsync") == "off":
            args = (*args, "--no-sync")
        return super()._pg(tool, *args, check=check)


def controldata(node: PostgresCluster) -> dict[str, str]:
    """``pg_controldata`` of a node, as a dict of its lines."""
    out = node._pg("pg_controldata", "-D", str(node.data_dir)).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition(":")
                                                  for line in out.splitlines())}


def quote(value: str) -> str:
    """A configuration value as ``postgresql.auto.conf`` writes it."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def write_auto_conf(node: PostgresCluster, values: dict[str, str]) -> None:
    """Set ``values`` (already quoted) in the node's ``postgresql.auto.conf``, keeping the
    other entries. Only while the node is stopped: a running one owns the file (ALTER SYSTEM).
    Settings here win over ``postgresql.conf``, which a base backup or a rewind copies from
    the other node, its port included."""
    path = node.data_dir / "postgresql.auto.conf"
    keep = [line for line in path.read_text().splitlines()
            if line.split("=", 1)[0].strip() not in values] if path.exists() else []
    path.write_text("\n".join([*keep, *(f"{k} = {v}" for k, v in values.items())]) + "\n")
    _own(path)


def make_standby_files(node: PostgresCluster, own: dict[str, str]) -> None:
    """Turn a stopped node's data directory into a standby's: its own settings, the
    ``standby.signal`` file, and no replication slots of its own (a standby's leftover slot
    would hold WAL back forever; the slot it needs lives on the primary)."""
    write_auto_conf(node, own)
    signal_file = node.data_dir / "standby.signal"
    signal_file.touch()
    _own(signal_file)
    slots = node.data_dir / "pg_replslot"
    for slot in slots.iterdir() if slots.exists() else []:
        shutil.rmtree(slot, ignore_errors=True)


def is_standby_on_disk(node: PostgresCluster) -> bool:
    return (node.data_dir / "standby.signal").exists()


def postmaster_pid(node: PostgresCluster) -> int | None:
    """The live postmaster of ``node`` (first line of ``postmaster.pid``), else ``None``."""
    try:
        pid = int((node.data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may hold spaces and parentheses: the ppid follows the last ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_tree(node: PostgresCluster, timeout: float = 10.0) -> None:
    """SIGKILL the postmaster and every server process of ``node`` at once, as a power cut
    would (left alone, orphaned backends would go on holding the shared memory), and wait
    until they are dead. ``postmaster.pid`` stays behind, as after a crash. The dead may
    still be zombies: see :func:`wait_reaped` before starting the node again."""
    pid = postmaster_pid(node)
    if pid is None:
        return
    victims = [pid, *_children(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while not all(_gone(v) for v in victims) and time.monotonic() < deadline:
        time.sleep(0.02)


def wait_reaped(node: PostgresCluster, timeout: float = 30.0) -> None:
    """Until the postmaster named in ``postmaster.pid`` is no longer a zombie: PostgreSQL
    takes a zombie's pid for a running server and refuses to start (and ``pg_ctl stop``
    would wait for it). Orphans are reaped by pid 1, which in a container may take a second.
    Returns at once for a running server or no server; gives up after ``timeout``."""
    try:
        pid = int((node.data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while _state(pid) == "Z" and time.monotonic() < deadline:
        time.sleep(0.05)


def _state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (``Z``: zombie), ``None`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _gone(pid: int) -> bool:
    """Exited, zombies included: a zombie holds no memory any more."""
    return _state(pid) in (None, "Z", "X")
