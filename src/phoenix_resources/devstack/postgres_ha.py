"""A PostgreSQL primary with one synchronous streaming standby, like production's pair
(Patroni, RDS Multi-AZ, Cloud SQL HA), and the failovers tests need.

Two nodes, ``home/pg1`` and ``home/pg2``, each a :class:`PostgresCluster` (its data, socket
and log); either may be the primary. The standby is a ``pg_basebackup`` of the primary that
streams through a physical replication slot named after it, and the primary names it in
``synchronous_standby_names`` with ``synchronous_commit=on``: a commit is acknowledged only
once the standby has flushed its WAL, so an acknowledged commit survives a promotion.
``wal_log_hints=on`` lets ``pg_rewind`` turn a demoted or crashed primary into a standby.

Each node's own settings (port, socket directory, ``primary_conninfo``, slot name, the
peer's name in ``synchronous_standby_names``) live in its ``postgresql.auto.conf`` and are
written again after every base backup or rewind, which copy the other node's files.
Roles and databases are :class:`PostgresCluster`'s, made once on the first primary and
replicated: migrations and the read-only API role work unchanged.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from phoenix_resources.devstack._pg_node import (
    HANode,
    controldata,
    is_standby_on_disk,
    kill_tree,
    literal,
    make_standby_files,
    quote,
    wait_reaped,
)
from phoenix_resources.devstack._proc import state_dir
from phoenix_resources.devstack.postgres import API_ROLE, APP_ROLE, PostgresCluster, _hand_over
from phoenix_resources.errors import StackError

NAMES = ("pg1", "pg2")
"""Node names: directories, ``application_name`` of the standby, and its slot's name."""

HA_SETTINGS = {"wal_level": "replica", "wal_log_hints": "on", "full_page_writes": "on",
               "synchronous_commit": "on", "hot_standby": "on", "max_wal_senders": "10",
               "max_replication_slots": "10", "wal_keep_size": "'256MB'",
               "wal_receiver_status_interval": "'1s'", "wal_sender_timeout": "'10s'",
               "wal_receiver_timeout": "'10s'", "wal_retrieve_retry_interval": "'500ms'"}
"""Always applied over ``settings``: a pair whose replication is not synchronous, or that
``pg_rewind`` cannot rewind (it needs ``full_page_writes``), tests nothing."""

HA_FAST_UNSAFE = {"fsync": "off"}
"""For throwaway test pairs: no fsync. A killed *process* loses nothing by it (only an OS
crash would); replication stays synchronous."""


@dataclass
class PostgresHA:
    """A synchronous primary/standby pair on 127.0.0.1 whose files live under ``home``.

    Every method that changes roles returns only once the pair is in the state it names, or
    raises :class:`StackError` after its ``timeout`` (seconds).
    """

    home: Path
    ports: tuple[int, int] = (55442, 55443)
    settings: dict[str, str] | None = None
    nodes: dict[str, PostgresCluster] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        conf = {**(self.settings or {}), **HA_SETTINGS}
        self.nodes = {name: HANode(self.home / name, port=port, settings=conf)
                      for name, port in zip(NAMES, self.ports, strict=True)}

    # --- addresses --------------------------------------------------------------------------

    def _multi_host(self, user: str, database: str, attrs: str) -> str:
        # libpq's query form of a multi-host URL (``host=a,b&port=1,2``), not the netloc
        # form (``a:1,b:2``): SQLAlchemy, hence the migrations, parses only this one.
        hosts = ",".join("127.0.0.1" for _ in self.nodes)
        ports = ",".join(str(n.port) for n in self.nodes.values())
        return (f"postgresql://{user}@/{database}?host={hosts}&port={ports}"
                f"&target_session_attrs={attrs}")

    def url(self, user: str = APP_ROLE, database: str = "phoenix") -> str:
        """Both nodes, ``target_session_attrs=read-write``: libpq connects to whichever is the
        primary now (what the worker, the relay and migrations use)."""
        return self._multi_host(user, database, "read-write")

    def read_url(self, user: str = API_ROLE, database: str = "phoenix") -> str:
        """Both nodes, ``target_session_attrs=prefer-standby`` (the read-only API's): the
        standby while it runs, else the primary."""
        return self._multi_host(user, database, "prefer-standby")

    def admin_url(self, node: str | PostgresCluster) -> str:
        """The superuser's URL of one node (by name or object), whatever its role."""
        return (self.nodes[node] if isinstance(node, str) else node).admin_url

    def name_of(self, node: PostgresCluster) -> str:
        return node.home.name

    def peer(self, node: PostgresCluster) -> PostgresCluster:
        return next(n for n in self.nodes.values() if n is not node)

    # --- who is who -------------------------------------------------------------------------

    def _query(self, node: PostgresCluster, query: str, plain: bool = False,
               check: bool = True) -> list[list[str]]:
        """One statement through ``psql`` as the superuser, in its own session; rows of
        text. The session is never read only (unless ``plain``), so :meth:`set_read_only`
        does not lock the pair's own management out. (``psql``, not a driver: the local
        stack runs from the base install, which has no PostgreSQL driver.)"""
        conninfo = (f"host=127.0.0.1 port={node.port} user=postgres dbname=postgres "
                    "connect_timeout=5")
        if not plain:
            conninfo += " options='-c default_transaction_read_only=off'"
        out = node._pg("psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                       "-d", conninfo, "-c", query, check=check)
        if out.returncode != 0:
            return []
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def in_recovery(self, node: PostgresCluster) -> bool | None:
        """``pg_is_in_recovery()`` of ``node``: True on a standby, False on a primary, None
        when it does not answer."""
        rows = self._query(node, "SELECT pg_is_in_recovery()", check=False)
        return rows[0][0] == "t" if rows else None

    def primary(self) -> PostgresCluster:
        """The one node that runs out of recovery; StackError when there is none or two."""
        states = {name: self.in_recovery(n) for name, n in self.nodes.items()}
        primaries = [name for name, s in states.items() if s is False]
        if len(primaries) != 1:
            raise StackError(f"expected one primary, the nodes are {self._describe(states)}")
        return self.nodes[primaries[0]]

    def standby(self) -> PostgresCluster:
        """The node that runs in recovery; StackError when none does."""
        states = {name: self.in_recovery(n) for name, n in self.nodes.items()}
        standbys = [name for name, s in states.items() if s is True]
        if len(standbys) != 1:
            raise StackError(f"expected one standby, the nodes are {self._describe(states)}")
        return self.nodes[standbys[0]]

    @staticmethod
    def _describe(states: dict[str, bool | None]) -> str:
        words = {True: "standby", False: "primary", None: "down"}
        return ", ".join(f"{name} {words[s]}" for name, s in states.items())

    def replication(self, primary: PostgresCluster) -> dict[str, tuple[str, str]]:
        """``application_name`` → (``state``, ``sync_state``) from ``pg_stat_replication``."""
        rows = self._query(primary, "SELECT application_name, state, sync_state "
                                    "FROM pg_stat_replication")
        return {name: (state, sync) for name, state, sync in rows}

    # --- the whole pair ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start both nodes (idempotent) and return once the standby streams synchronously.
        The first start makes the primary (``initdb``, roles, database) and the standby
        (``pg_basebackup``). A node left behind as a second primary (a crash that was never
        rejoined) is rewound into the standby."""
        if not any(n.initialised() for n in self.nodes.values()):
            # initdb, roles and the database; asynchronous until a standby attaches.
            self.nodes[NAMES[0]].start(timeout)
        primary = self._primary_at_start()
        primary.start(timeout)
        standby = self.peer(primary)
        if not standby.initialised():
            self._clone(standby, primary)
        elif not standby.is_running() and not is_standby_on_disk(standby):
            self._rewind_or_clone(standby, primary)
        self._attach(standby, primary, timeout)

    def _primary_at_start(self) -> PostgresCluster:
        running = [n for n in self.nodes.values() if self.in_recovery(n) is False]
        if running:
            return running[0]
        candidates = [n for n in self.nodes.values()
                      if n.initialised() and not is_standby_on_disk(n)]
        if not candidates:
            raise StackError(f"neither node under {self.home} is a primary (both have "
                             "standby.signal); remove one node's directory to re-clone it")
        return max(candidates, key=self._timeline)

    def _timeline(self, node: PostgresCluster) -> int:
        return int(controldata(node)["Latest checkpoint's TimeLineID"])

    def stop(self) -> None:
        """Stop both nodes cleanly (``fast``), the primary first so the standby receives its
        shutdown checkpoint: the next :meth:`start` finds them in the same roles."""
        order = sorted(self.nodes.values(), key=lambda n: self.in_recovery(n) is not False)
        for node in order:
            wait_reaped(node)
            node.stop("fast")

    def destroy(self) -> None:
        for node in self.nodes.values():
            wait_reaped(node)
            node.stop("immediate")
        shutil.rmtree(self.home, ignore_errors=True)

    def stop_node(self, node: PostgresCluster) -> None:
        """Stop one node cleanly (``fast``). Stopping the standby makes every commit on the
        primary wait until :meth:`start_node` brings it back."""
        node.stop("fast")

    def start_node(self, node: PostgresCluster, timeout: float = 60.0) -> None:
        """Start a node stopped by :meth:`stop_node`; a standby is back only once it streams
        synchronously again (what releases the commits that waited for it). A node that
        would come up as a second primary is refused: use :meth:`rejoin`."""
        peer_is_primary = self.in_recovery(self.peer(node)) is False
        if not peer_is_primary:
            node.start(timeout)
            return
        if not is_standby_on_disk(node):
            raise StackError(f"{self.name_of(node)} would start as a second primary; "
                             "use rejoin()")
        self._attach(node, self.peer(node), timeout)

    def wait_synchronous(self, timeout: float = 60.0) -> None:
        """Until the standby streams and the primary counts it as its synchronous standby."""
        primary = self.primary()
        self._attach(self.peer(primary), primary, timeout)

    # --- failovers --------------------------------------------------------------------------

    def switchover(self, timeout: float = 60.0) -> None:
        """Planned: the standby becomes the primary and the primary its synchronous standby.

        The primary stops cleanly (``fast``: sessions are ended), which ships every record up
        to its shutdown checkpoint to the standby; the standby is promoted once it has
        replayed that checkpoint (so nothing is lost and no rewind is needed), and the old
        primary is rewound (a no-op here) and started as the standby. Synchronous
        replication stays on throughout: commits on the new primary wait, for the few
        seconds until the old one streams again, rather than be acknowledged by one node.
        Returns once the pair is synchronous again; if the old primary cannot come back,
        the new primary drops to asynchronous commits (so writes go on) and StackError says
        why."""
        old = self.primary()
        new = self.peer(old)
        self._attach(new, old, timeout)  # promote only a standby that has every commit
        old.stop("fast")
        checkpoint = controldata(old)["Latest checkpoint location"]
        replayed = f"SELECT pg_last_wal_replay_lsn() > {literal(checkpoint)}::pg_lsn"
        self._wait(lambda: self._query(new, replayed) == [["t"]],
                   timeout, f"{self.name_of(new)} to replay the shutdown checkpoint")
        self._promote(new, timeout)
        try:
            self._rewind_or_clone(old, new)
            self._attach(old, new, timeout)
        except StackError:
            self._set(new, "synchronous_standby_names", "")
            raise

    def crash_promote(self, timeout: float = 60.0) -> None:
        """Unplanned: SIGKILL the primary (every server process, as a power cut would) and
        promote the standby. Returns once the new primary accepts writes.

        Like Patroni's (non-strict) ``synchronous_mode``, the promoted node starts with an
        empty ``synchronous_standby_names`` so its commits do not hang for a standby that is
        gone; :meth:`rejoin` turns synchronous replication back on once the old node streams
        again. The trade-off: until then a commit lives on one node only, and losing that
        node too would lose it (strict mode would block every write instead). Every commit
        acknowledged before the crash was already flushed on the standby and survives."""
        dead = self.primary()
        new = self.standby()
        kill_tree(dead)
        self._set(new, "synchronous_standby_names", "")
        self._promote(new, timeout)

    def rejoin(self, timeout: float = 120.0) -> str:
        """Bring the node that is down back as the synchronous standby of the primary:
        ``pg_rewind`` (it replays its own crash first), or a fresh ``pg_basebackup`` when the
        rewind fails or the rewound node cannot stream. Returns once synchronous replication
        is on again; returns how: ``"rewind"``, ``"basebackup"`` or ``"running"`` (it was
        already the standby)."""
        primary = self.primary()
        node = self.peer(primary)
        if self.in_recovery(node) is True:
            self._attach(node, primary, timeout)
            return "running"
        how = self._rewind_or_clone(node, primary)
        try:
            self._attach(node, primary, timeout)
        except StackError:
            if how == "basebackup":
                raise
            node.stop("immediate")
            how = self._rewind_or_clone(node, primary, rewind=False)
            self._attach(node, primary, timeout)
        return how

    def set_read_only(self, on: bool) -> None:
        """``default_transaction_read_only`` on the primary (``ALTER SYSTEM`` and a reload):
        what clients of a demoted node see. Open sessions get ``ReadOnlySqlTransaction`` on
        their next write; new connections through :meth:`url` find no read-write node.
        Returns once a new session sees the setting. Only the current primary is changed."""
        self._set(self.primary(), "default_transaction_read_only", "on" if on else "off")

    # --- steps ------------------------------------------------------------------------------

    def _own_conf(self, node: PostgresCluster) -> dict[str, str]:
        """What a node that becomes the standby writes into its ``postgresql.auto.conf``:
        its own addresses, whom it follows, whom it will wait for once promoted, and
        writable (a :meth:`set_read_only` of its time as primary does not follow it)."""
        peer = self.peer(node)
        return {"port": str(node.port),
                "unix_socket_directories": quote(str(node.home / "run")),
                "primary_conninfo": quote(f"host=127.0.0.1 port={peer.port} user=postgres "
                                          f"application_name={self.name_of(node)}"),
                "primary_slot_name": quote(self.name_of(node)),
                "synchronous_standby_names": quote(self.name_of(peer)),
                "default_transaction_read_only": "off"}

    def _set(self, node: PostgresCluster, name: str, value: str, timeout: float = 15) -> None:
        """``ALTER SYSTEM SET`` (allowed on a standby too), reload, and wait until a new
        session sees it."""
        self._query(node, f"ALTER SYSTEM SET {name} = {literal(value)}")
        self._query(node, "SELECT pg_reload_conf()")
        self._wait(lambda: self._query(node, f"SELECT current_setting({literal(name)}) = "
                                             f"{literal(value)}", plain=True) == [["t"]],
                   timeout, f"{name} = {value!r} on {self.name_of(node)}")

    def _promote(self, node: PostgresCluster, timeout: float) -> None:
        node._pg("pg_ctl", "promote", "-D", str(node.data_dir), "-w", "-t", str(int(timeout)))
        self._wait(lambda: self.in_recovery(node) is False, timeout,
                   f"{self.name_of(node)} to leave recovery")

    def _ensure_slot(self, primary: PostgresCluster, slot: str) -> None:
        self._query(primary, f"SELECT pg_create_physical_replication_slot({literal(slot)}) "
                             "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots "
                             f"WHERE slot_name = {literal(slot)})")

    def _no_sync(self) -> list[str]:
        return ["--no-sync"] if (self.settings or {}).get("fsync") == "off" else []

    def _clone(self, node: PostgresCluster, source: PostgresCluster) -> None:
        """A fresh base backup of ``source`` into ``node`` (stopped), as its standby."""
        shutil.rmtree(node.data_dir, ignore_errors=True)
        (node.home / "run").mkdir(parents=True, exist_ok=True)
        _hand_over(node.home)
        name = self.name_of(node)
        self._ensure_slot(source, name)
        node._pg("pg_basebackup", "-D", str(node.data_dir), "-h", "127.0.0.1",
                 "-p", str(source.port), "-U", "postgres", "-X", "stream", "-c", "fast",
                 "-S", name, *self._no_sync())
        make_standby_files(node, self._own_conf(node))

    def _rewind_or_clone(self, node: PostgresCluster, source: PostgresCluster,
                         rewind: bool = True) -> str:
        """Make the stopped ``node`` a standby of ``source``: ``pg_rewind``, else a clone.

        A just-promoted source is checkpointed first: until its end-of-recovery checkpoint
        is done (promotion only requests it) its control file still names the old timeline,
        and ``pg_rewind`` would find both nodes on one timeline, rewind nothing, and leave
        a crashed primary whose WAL runs past the fork unable to follow (what Patroni does
        before a rewind too)."""
        wait_reaped(node)
        if rewind:
            self._query(source, "CHECKPOINT")
            result = node._pg("pg_rewind", "-D", str(node.data_dir), *self._no_sync(),
                              f"--source-server=host=127.0.0.1 port={source.port} "
                              "user=postgres dbname=postgres", check=False)
            if result.returncode == 0:
                make_standby_files(node, self._own_conf(node))
                return "rewind"
        self._clone(node, source)
        return "basebackup"

    def _attach(self, standby: PostgresCluster, primary: PostgresCluster,
                timeout: float) -> None:
        """Start ``standby`` if needed, wait until it streams, make it the synchronous
        standby of ``primary`` if it is not, and wait until the primary says ``sync``."""
        name = self.name_of(standby)
        self._ensure_slot(primary, name)
        standby.start(timeout)
        if self._query(primary, "SHOW synchronous_standby_names") != [[name]]:
            self._wait(lambda: self.replication(primary).get(name, ("", ""))[0] == "streaming",
                       timeout, f"{name} to stream from {self.name_of(primary)}")
            self._set(primary, "synchronous_standby_names", name)
        self._wait(lambda: self.replication(primary).get(name) == ("streaming", "sync"),
                   timeout, f"{name} to be the synchronous standby of {self.name_of(primary)}")

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise StackError(f"waited {timeout:.0f}s for {what}; "
                                 + "; ".join(f"{n.home.name} log: {n.log_file}"
                                             for n in self.nodes.values()))
            time.sleep(0.05)


def local_postgres_ha() -> PostgresHA:
    """The persistent pair of ``up --topology cluster``: PHOENIX_LOCAL_CLUSTER_PG_PORT
    (55442) and the port after it."""
    base = int(os.environ.get("PHOENIX_LOCAL_CLUSTER_PG_PORT", "55442"))
    return PostgresHA(state_dir() / "cluster" / "postgres", ports=(base, base + 1))
