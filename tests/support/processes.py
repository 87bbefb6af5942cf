"""Start the real ``phoenix-resources`` processes for fault tests (kill -9, restarts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phoenix_resources.config import Settings

CLI = [sys.executable, "-m", "phoenix_resources.entrypoints.cli"]


def env_for(settings: Settings, unset: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The process's environment: the settings as ``PHOENIX_*`` variables, except the
    settings named in ``unset`` (to come from a secrets dir instead), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    for name, value in settings.model_dump().items():
        if value is None or name in unset:
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"PHOENIX_{name.upper()}"] = text
    env.update(extra)
    return env


class Process:
    """One CLI process in its own process group; its output goes to a temp log file."""

    def __init__(self, command: str, settings: Settings, unset: tuple[str, ...] = (),
                 **env: str) -> None:
        self.command = command
        fd, path = tempfile.mkstemp(prefix=f"phoenix-{command}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([*CLI, command], env=env_for(settings, unset, **env),
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is committed on the way out."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"{self.command} never logged {text!r}:\n{self.output()[-3000:]}")
