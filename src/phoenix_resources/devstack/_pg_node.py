"""What a PostgreSQL HA pair does to one node's files and processes (while it is stopped, or
to stop it the hard way). The SQL side of the pair lives in :mod:`.postgres_ha`."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import time
from pathlib import Path

from phoenix_resources.devstack._proc import pid_alive
from phoenix_resources.devstack.postgres import PostgresCluster


def _own(path: Path) -> None:
    """As root, give a file in a data directory to the postgres user (and leave the
    directory's mode alone: the server refuses a data directory others may enter)."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


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
    would, and wait until they are gone (left alone, orphans would hold the shared memory).
    ``postmaster.pid`` stays behind, as after a crash."""
    pid = postmaster_pid(node)
    if pid is None:
        return
    victims = [pid, *_children(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(pid_alive(v) for v in victims) and time.monotonic() < deadline:
        time.sleep(0.02)
