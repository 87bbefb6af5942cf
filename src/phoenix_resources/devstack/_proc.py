"""Small process and network helpers shared by the Kafka and PostgreSQL launchers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from phoenix_resources.errors import StackError

PROJECT_ROOT = Path(__file__).resolve().parents[3]
"""The source checkout this module lives in, if it lives in one (see :func:`in_checkout`)."""


def in_checkout() -> bool:
    """True when running from a source checkout (``pip install -e .``, ``make``), False from
    an installed wheel, whose ``parents[3]`` is somewhere inside the environment."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and \
        (PROJECT_ROOT / "src" / "phoenix_resources").is_dir()


def state_dir() -> Path:
    """Where the persistent local stack keeps jars, data and logs: ``PHOENIX_STACK_DIR``, else
    ``.local/`` of the checkout, else (an installed package)
    ``$XDG_DATA_HOME/phoenix-resources`` (``~/.local/share/phoenix-resources``)."""
    explicit = os.environ.get("PHOENIX_STACK_DIR")
    if explicit:
        return Path(explicit).resolve()
    if in_checkout():
        return (PROJECT_ROOT / ".local").resolve()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return (Path(data) / "phoenix-resources").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def terminate(pid: int, timeout: float, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the process group of ``pid``; SIGKILL it if it outlives ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.05)


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"'{name}' was not found on PATH. {hint}")
    return path


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
