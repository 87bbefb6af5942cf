"""The Dockerfile, .dockerignore and docker-compose.yml, checked without a Docker engine:
the compose file against the Compose specification's JSON schema (vendored in
deploy/schemas/), its PHOENIX_* variables against the settings model, and the Dockerfile's
instructions against what the image promises."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from phoenix_resources.config import Settings
from phoenix_resources.config_docs import OTHER_VARIABLES
from phoenix_resources.entrypoints.grpc.server import SERVICE_NAME

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
SETTINGS = {f"PHOENIX_{name.upper()}" for name in Settings.model_fields}
PHOENIX_SERVICES = ("migrate", "worker", "relay", "api", "grpc")


def _instructions() -> list[tuple[str, str]]:
    logical = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
            for line in (raw.strip() for raw in logical.splitlines())
            if line and not line.startswith("#")]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "deploy" / "schemas" / "compose-spec.json").read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(COMPOSE)]
    assert errors == []


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_every_phoenix_variable_in_compose_is_a_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    known = SETTINGS | {v.name for v in OTHER_VARIABLES}
    for name in PHOENIX_SERVICES:
        env = _environment(COMPOSE["services"][name])
        unknown = {k for k in env if k.startswith("PHOENIX_")} - known
        assert unknown == set(), name
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        Settings()  # and their values parse
        for key in env:
            monkeypatch.delenv(key)


def test_workers_scale_and_the_api_reads_through_the_reader_role() -> None:
    services = COMPOSE["services"]
    for name in ("worker", "relay"):
        assert "container_name" not in services[name], "--scale needs generated names"
        assert "ports" not in services[name], "--scale would collide on a host port"
    for name in ("api", "grpc"):
        env = _environment(services[name])
        assert "phoenix_api" in env["PHOENIX_READ_DATABASE_URL"], name
        assert "PHOENIX_DATABASE_URL" not in env, f"{name} gets the read-only role only"
    roles = (ROOT / "deploy" / "compose" / "postgres-roles.sql").read_text()
    assert "phoenix_api LOGIN" in roles
    assert "IN ROLE phoenix_reader" in roles


def test_every_service_has_a_healthcheck_and_waits_for_what_it_needs() -> None:
    services = COMPOSE["services"]
    for name, service in services.items():
        if name != "migrate":
            assert "healthcheck" in service, name
    for name in ("worker", "relay", "api", "grpc"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}


def test_the_grpc_server_publishes_its_port_to_the_host_only() -> None:
    grpc_service = COMPOSE["services"]["grpc"]
    env = _environment(grpc_service)
    assert grpc_service["command"] == ["grpc"]
    assert env["PHOENIX_GRPC_HOST"] == "0.0.0.0", "reachable from outside the container"
    port = env["PHOENIX_GRPC_PORT"]
    assert grpc_service["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert _environment(COMPOSE["services"]["worker"])["PHOENIX_KAFKA_BOOTSTRAP_SERVERS"] == (
        env["PHOENIX_KAFKA_BOOTSTRAP_SERVERS"]), "commands go to the workers' brokers"
    assert grpc_service["depends_on"]["kafka"] == {"condition": "service_healthy"}


class _Channel:
    def __init__(self, target: str) -> None:
        self.target = target

    def __enter__(self) -> _Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.mark.parametrize(("status", "exit_code"), [
    (health_pb2.HealthCheckResponse.SERVING, 0),
    (health_pb2.HealthCheckResponse.NOT_SERVING, 1),
    (health_pb2.HealthCheckResponse.SERVICE_UNKNOWN, 1)])
def test_the_grpc_healthcheck_asks_the_health_service_for_resource_service(
        monkeypatch: pytest.MonkeyPatch, status: int, exit_code: int) -> None:
    """The compose healthcheck's code, run with the service's environment against a stand-in
    for the health service: healthy only when it answers SERVING for ResourceService on
    PHOENIX_GRPC_PORT (the name the server reports; docs/interfaces.md)."""
    grpc_service = COMPOSE["services"]["grpc"]
    kind, executable, flag, code = grpc_service["healthcheck"]["test"]
    assert (kind, executable, flag) == ("CMD", "python", "-c")
    env = _environment(grpc_service)
    monkeypatch.setenv("PHOENIX_GRPC_PORT", env["PHOENIX_GRPC_PORT"])
    asked: list[tuple[str, str, float]] = []

    class Stub:
        def __init__(self, channel: _Channel) -> None:
            self.channel = channel

        def Check(self, request: health_pb2.HealthCheckRequest,
                  timeout: float) -> health_pb2.HealthCheckResponse:
            asked.append((self.channel.target, request.service, timeout))
            return health_pb2.HealthCheckResponse(status=status)

    monkeypatch.setattr(grpc, "insecure_channel", _Channel)
    monkeypatch.setattr(health_pb2_grpc, "HealthStub", Stub)
    with pytest.raises(SystemExit) as exited:
        exec(compile(code, "healthcheck", "exec"), {})
    assert exited.value.code == exit_code
    [(target, service, timeout)] = asked
    assert target == f"127.0.0.1:{env['PHOENIX_GRPC_PORT']}"
    assert service == SERVICE_NAME
    assert timeout < float(grpc_service["healthcheck"]["timeout"].removesuffix("s"))


def test_the_monitoring_profile_provisions_prometheus_and_grafana() -> None:
    services = COMPOSE["services"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    provider = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" /
                               "phoenix-resources.yml").read_text())
    assert mounts["./deploy/grafana"] == provider["providers"][0]["options"]["path"]
    for source in [*mounts, *(v.split(":")[0] for v in services["prometheus"]["volumes"])]:
        assert (ROOT / source).exists(), source
    scrape = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["job_name"] == "phoenix-resources"


def test_the_image_runs_as_a_numeric_user_with_a_healthcheck_and_labels() -> None:
    final = _final_stage()
    users = [arg for op, arg in final if op == "USER"]
    assert users, "a USER"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "a numeric USER"
    assert int(users[-1].split(":")[0]) != 0
    assert any(op == "HEALTHCHECK" and "healthcheck.py" in arg for op, arg in final)
    labels = " ".join(arg for op, arg in final if op == "LABEL")
    for key in ("title", "version", "revision", "created", "licenses", "description"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_the_image_installs_its_dependencies_from_the_lock() -> None:
    runs = " ".join(arg for op, arg in _instructions() if op == "RUN")
    assert "--require-hashes" in runs
    assert "server.lock" in runs
    assert "pip install --no-deps ." in runs, "the package itself adds no unpinned dependency"
    assert "pip check" in runs


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions (``FROM … AS name``)."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for op, arg in _instructions():
        if op == "FROM":
            current = stages.setdefault(arg.split()[-1] if " AS " in arg.upper() else "", [])
        current.append((op, arg))
    return stages


def test_the_image_carries_the_compiled_hot_path_but_no_rust_toolchain() -> None:
    """The extension is built in a stage of its own (cargo and maturin there only) and its
    wheel installed into the image's environment; the final stage copies only that
    environment."""
    stages = _stages()
    native = stages["native"]
    assert native[0][1].startswith("${RUST_IMAGE}")
    assert any(op == "COPY" and arg.split()[0] == "native" for op, arg in native)
    assert any(op == "RUN" and "maturin build --release --locked" in arg for op, arg in native)
    build = " ".join(arg for op, arg in stages["build"] if op in ("COPY", "RUN"))
    assert "--from=native /wheels" in build
    assert "pip install --no-deps /tmp/wheels/phoenix_resources_native-" in build
    final = _final_stage()
    assert final[0][1].startswith("${PYTHON_IMAGE}")
    assert [arg.split()[0] for op, arg in final if op == "COPY" and "--from" in arg] == [
        "--from=build"]
    assert not any("cargo" in arg or "rust" in arg.lower() for _, arg in final)


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for line in patterns:
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern) \
                or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_every_file_the_image_copies_is_in_the_build_context() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = [arg.split()[:-1] for op, arg in _instructions()
              if op == "COPY" and "--from" not in arg]
    sources = [s for group in copied for s in group]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
    assert _ignored(".local/kafka", patterns)
    assert _ignored(".venv/bin/python", patterns)
    assert _ignored("native/target/release/x", patterns)
    assert not _ignored("native/src/lib.rs", patterns)
