"""PostgreSQL clusters from Debian's ``postgresql`` package, run by ``initdb`` + ``pg_ctl``.

PostgreSQL refuses to run as root; as root the cluster runs as the ``postgres`` user (created
by the package) and its directories are handed to that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from phoenix_resources.config import LOCAL_POSTGRES_PORT
from phoenix_resources.devstack._proc import port_open, state_dir, tail
from phoenix_resources.devstack.certs import Certificates
from phoenix_resources.errors import StackError

PG_HINT = "Install PostgreSQL: apt-get update && apt-get install -y postgresql"
APP_ROLE = "phoenix"
READER_ROLE = "phoenix_reader"
API_ROLE = "phoenix_api"

FAST_UNSAFE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
"""For throwaway test clusters only: durability is not what those tests are about."""


def pg_bin_dir() -> Path:
    """The newest installed server's bin directory (Debian keeps them off PATH)."""
    env = os.environ.get("PHOENIX_PG_BIN")
    if env:
        return Path(env)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0)
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise StackError(f"PostgreSQL server binaries (initdb, pg_ctl) were not found. {PG_HINT}")


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise StackError("running as root needs the 'postgres' user to own the cluster; "
                         f"it does not exist. {PG_HINT}") from e
    return ["runuser", "-u", "postgres", "--"]


def _hand_over(path: Path) -> None:
    """As root, give ``path`` to the postgres user and make its parents traversable."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam("postgres")
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)
    for p in [path, *path.rglob("*")]:
        os.chown(p, entry.pw_uid, entry.pw_gid)


@dataclass
class PostgresCluster:
    """A cluster whose data, socket and log live under ``home``; it listens on loopback.

    ``start`` is idempotent: a running cluster on ``port`` is left as it is.
    """

    home: Path
    port: int = LOCAL_POSTGRES_PORT
    settings: dict[str, str] | None = None
    tls: Certificates | None = None
    """When set, TCP connections must use TLS (``hostssl`` only) with this certificate, and
    :meth:`url` asks for ``sslmode=verify-full`` against its CA."""

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def url(self, user: str = APP_ROLE, database: str = "phoenix") -> str:
        url = f"postgresql://{user}@127.0.0.1:{self.port}/{database}"
        if self.tls is not None:
            url += f"?sslmode=verify-full&sslrootcert={self.tls.ca}"
        return url

    @property
    def admin_url(self) -> str:
        return self.url("postgres", "postgres")

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [*_run_as(), str(pg_bin_dir() / tool), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise StackError(f"{tool} failed ({result.returncode}):\n{result.stdout}"
                             f"{result.stderr}\nlog tail:\n{tail(self.log_file)}")
        return result

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        pg_bin_dir()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)
        _hand_over(self.home)
        self._pg("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions")
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                "unix_socket_directories": f"'{self.home / 'run'}'", "max_connections": "200",
                "shared_buffers": "'128MB'", "log_min_messages": "warning",
                **(self.settings or {})}
        if self.tls is not None:
            conf.update(self._tls_conf(self.tls))
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        _hand_over(self.home)
        if self.tls is not None:
            (self.home / "server.key").chmod(0o600)

    def _tls_conf(self, tls: Certificates) -> dict[str, str]:
        """TLS on, and TCP clients (not the local socket) must use it."""
        shutil.copyfile(tls.cert, self.home / "server.crt")
        shutil.copyfile(tls.key, self.home / "server.key")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text("\n".join("hostssl" + line[4:] if line.startswith("host ") else line
                                 for line in hba.read_text().splitlines()) + "\n")
        return {"ssl": "on", "ssl_cert_file": f"'{self.home / 'server.crt'}'",
                "ssl_key_file": f"'{self.home / 'server.key'}'"}

    def is_running(self) -> bool:
        return (self.initialised() and self._pg("pg_ctl", "status", "-D", str(self.data_dir),
                                                check=False).returncode == 0)

    def start(self, timeout: float = 60.0) -> None:
        first = not self.initialised()
        self.init()
        if not self.is_running():
            if port_open(self.port):
                raise StackError(f"port {self.port} is taken by another process; "
                                 "stop it or choose another port")
            self._pg("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                     "-w", "-t", str(int(timeout)))
        if first:
            self._create_roles()

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._pg("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.home, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = self._pg("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                       "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                       "-d", database, "-c", sql)
        return out.stdout.strip()

    def _create_roles(self) -> None:
        """The app's owner role, the read-only group role, and the API's login role."""
        deadline = time.monotonic() + 10
        while not port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.psql(f"CREATE ROLE {APP_ROLE} LOGIN CREATEDB CREATEROLE;"
                  f"CREATE ROLE {READER_ROLE} NOLOGIN;"
                  f"CREATE ROLE {API_ROLE} LOGIN IN ROLE {READER_ROLE};")
        self.psql(f"CREATE DATABASE phoenix OWNER {APP_ROLE}")


def local_cluster() -> PostgresCluster:
    """The persistent cluster of ``make run`` (durable settings)."""
    port = int(os.environ.get("PHOENIX_LOCAL_PG_PORT", str(LOCAL_POSTGRES_PORT)))
    return PostgresCluster(home=state_dir() / "postgres", port=port)
