"""`pip install phoenix-resources` without extras, for real: the wheel built from this tree,
installed into a fresh virtual environment (dependencies from the package index, or pip's
cache), gives the client library, the client commands and the AsyncAPI document, and the
server commands refuse with a message naming the extra. The local stack's Maven POM ships in
the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.services import unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # pip may download the base deps

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULES = ("psycopg", "psycopg_pool", "sqlalchemy", "alembic", "fastapi", "starlette",
                  "uvicorn", "prometheus_client", "tenacity", "fastapi_offline",
                  "phoenix_resources.bootstrap", "phoenix_resources.entrypoints.http",
                  "phoenix_resources.observability", "phoenix_resources.adapters.postgres")


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.root / "bin" / "phoenix-resources"

    def run(self, *args: str | Path, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("PHOENIX_", "PYTHON", "VIRTUAL_ENV"))}
        return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              check=False, env={**clean, **(env or {})}, cwd=cwd)


def _check(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    tmp = tmp_path_factory.mktemp("install")
    dist = tmp / "dist"
    # The dev environment's setuptools builds it: no build-time download.
    _check(subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
                          capture_output=True, text=True, check=False))
    wheel = next(dist.glob("phoenix_resources-*.whl"))
    venv = Venv(tmp / "venv")
    _check(subprocess.run([sys.executable, "-m", "venv", str(venv.root)],
                          capture_output=True, text=True, check=False))
    _check(venv.run(venv.python, "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", wheel))
    yield venv
    shutil.rmtree(tmp, ignore_errors=True)


def test_the_client_library_imports_with_the_base_install_only(base_install: Venv) -> None:
    code = ("import importlib.util, sys, phoenix_resources.client\n"
            "print('loaded:' + ','.join(sorted(sys.modules)))\n"
            f"print('installed:' + ','.join(m for m in {SERVER_MODULES[:10]!r} "
            "if importlib.util.find_spec(m)))\n")
    out = _check(base_install.run(base_install.python, "-c", code, cwd=Path("/")))
    lines = dict(line.split(":", 1) for line in out.splitlines())
    loaded = lines["loaded"].split(",")
    assert "phoenix_resources.client.publisher" in loaded
    assert [m for m in loaded if m.startswith(SERVER_MODULES)] == []
    assert lines["installed"] == "", "the base install pulled in server dependencies"


def test_the_client_commands_run_and_the_server_commands_refuse(base_install: Venv) -> None:
    for command in (["send", "--help"], ["watch", "--help"], ["get", "--help"],
                    ["list", "--help"], ["config", "show"]):
        _check(base_install.run(base_install.cli, *command, cwd=Path("/")))
    nobody = f"127.0.0.1:{free_port()}"
    # Past --help: the commands' bodies import what they need, then fail to reach anyone.
    for command, says in ((["watch", "--max", "1", "--timeout", "1"], "timeout: saw 0"),
                          (["get", str(uuid.uuid4()), "--api-url", f"http://{nobody}"],
                           "cannot reach the API")):
        result = base_install.run(base_install.cli, *command, cwd=Path("/"),
                                  env={"PHOENIX_KAFKA_BOOTSTRAP_SERVERS": nobody})
        assert result.returncode == 1, (command, result.stderr)
        assert says in result.stderr, result.stderr
    for command in (["worker"], ["relay"], ["api"], ["run"], ["migrate", "upgrade", "--sql"],
                    ["parked", "list"], ["outbox", "list"]):
        result = base_install.run(base_install.cli, *command, cwd=Path("/"))
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert "pip install 'phoenix-resources[server]'" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_the_asyncapi_document_needs_no_server_extra(base_install: Venv) -> None:
    # The defaults' document is the committed one, byte for byte.
    out = _check(base_install.run(base_install.cli, "asyncapi", "--defaults", cwd=Path("/")))
    assert out == (ROOT / "schemas" / "asyncapi.yaml").read_text(encoding="utf-8")
    doc = json.loads(_check(base_install.run(base_install.cli, "asyncapi", "--format", "json",
                                             cwd=Path("/"))))
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "phoenix-resources"
    assert {c["address"] for c in doc["channels"].values()} >= {
        "phoenix.resources.commands.v1", "phoenix.resources.events.v1"}


def test_the_local_stack_fetches_its_jars_from_an_installed_package(
        base_install: Venv, tmp_path: Path) -> None:
    if shutil.which("mvn") is None:
        unavailable("Maven", "mvn is not on PATH (make deps installs it)")
    state = tmp_path / "stack"
    # Maven's local repository (~/.m2) holds the jars after `make jars`; else Maven Central.
    result = base_install.run(base_install.python, "-m", "phoenix_resources.devstack", "fetch",
                              env={"PHOENIX_STACK_DIR": str(state)}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any((state / "kafka" / "libs").glob("kafka_2.13-*.jar"))
