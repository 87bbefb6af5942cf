"""Locked doors, exercised: Kafka over SASL_SSL (SCRAM-SHA-512, a CA and broker certificate
made here with openssl), PostgreSQL with ``sslmode=verify-full`` against a certificate made
here, and known secret values that must never show in logs, metrics, error bodies or a
child's environment."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from phoenix_resources.adapters.postgres import schema
from phoenix_resources.client.publisher import CommandPublisher
from phoenix_resources.config import Settings
from phoenix_resources.devstack import KafkaBroker, PostgresCluster
from phoenix_resources.devstack.certs import Certificates, make_certificates
from phoenix_resources.devstack.postgres import FAST_UNSAFE
from phoenix_resources.errors import StackError
from phoenix_resources.soak import check as soak_check
from phoenix_resources.soak.targets import process_env
from tests.support.kafka import Topics, create_topics
from tests.support.net import free_port
from tests.support.pipeline import outcomes, wait_until
from tests.support.processes import Process
from tests.support.services import unavailable

pytestmark = pytest.mark.e2e

KAFKA_PASSWORD = f"kafka-pw-{secrets.token_hex(8)}"
DB_PASSWORD = f"db-pw-{secrets.token_hex(8)}"
REGISTRY_PASSWORD = f"reg-pw-{secrets.token_hex(8)}"
SECRETS = (KAFKA_PASSWORD, DB_PASSWORD, REGISTRY_PASSWORD)


@pytest.fixture(scope="module")
def certs() -> Certificates:
    return make_certificates(Path(tempfile.mkdtemp(prefix="phoenix-certs-")))


@pytest.fixture(scope="module")
def tls_postgres(certs: Certificates) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="phoenix-tls-pg-")),
                              port=free_port(), settings=FAST_UNSAFE, tls=certs)
    try:
        cluster.start()
    except StackError as e:
        unavailable("a TLS PostgreSQL", str(e))
    cluster.psql(f"ALTER ROLE phoenix PASSWORD '{DB_PASSWORD}'")
    hba = cluster.data_dir / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("trust", "scram-sha-256").replace(
        "local   all             all                                     scram-sha-256",
        "local   all             all                                     trust"))
    cluster.psql("SELECT pg_reload_conf()")
    schema.upgrade(_with_password(cluster.url()))
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def sasl_broker(certs: Certificates) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="phoenix-sasl-kafka-")),
                         port=free_port(), controller_port=free_port(), sasl_port=free_port(),
                         tls=certs, scram_users={"phoenix": KAFKA_PASSWORD})
    try:
        broker.start()
    except StackError as e:
        unavailable("a SASL_SSL Kafka broker", str(e))
    yield broker
    broker.stop()


def _with_password(url: str) -> str:
    return url.replace("phoenix@", f"phoenix:{DB_PASSWORD}@", 1)


def _kafka_options(certs: Certificates, password: str) -> dict[str, str]:
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "phoenix", "sasl.password": password,
            "ssl.ca.location": str(certs.ca)}


@pytest.fixture
def secure(tls_postgres: PostgresCluster, sasl_broker: KafkaBroker, certs: Certificates,
           settings: Settings) -> Settings:
    """This test's settings, over TLS both ways, with its own database and topics."""
    topics = Topics.unique()
    create_topics(sasl_broker.bootstrap_servers,  # the PLAINTEXT listener, set-up only
                  {topics.commands: 3, topics.events: 3, topics.rejections: 1, topics.dlq: 1})
    return settings.model_copy(update={
        "database_url": _with_password(tls_postgres.url()),
        "kafka_bootstrap_servers": f"127.0.0.1:{sasl_broker.sasl_port}",
        "kafka_options": _kafka_options(certs, KAFKA_PASSWORD),
        "commands_topic": topics.commands, "events_topic": topics.events,
        "rejections_topic": topics.rejections, "dlq_topic": topics.dlq,
        "consumer_group": f"g-{topics.commands}", "log_format": "json",
        "schema_registry_basic_auth": f"user:{REGISTRY_PASSWORD}"})


def test_postgres_verify_full_accepts_our_ca_and_refuses_others(
        tls_postgres: PostgresCluster, tmp_path: Path) -> None:
    url = _with_password(tls_postgres.url())
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row == (True,)
    other = make_certificates(tmp_path, "other")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(url.replace(str(tls_postgres.tls.ca), str(other.ca)))  # type: ignore[union-attr]
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|SSL off"):
        psycopg.connect(url.split("?")[0] + "?sslmode=disable")


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "phoenix_resources.entrypoints.cli", *args],
                          env=process_env(settings), capture_output=True, text=True,
                          timeout=120, check=False)


SECRET_FIELDS = ("database_url", "kafka_options", "schema_registry_basic_auth")


def _from_secret_files(settings: Settings, folder: Path) -> tuple[Settings, dict[str, str]]:
    """The settings minus the secret ones, and the environment naming a secrets dir that
    holds them (one file per setting, as a mounted Kubernetes Secret would)."""
    folder.mkdir(mode=0o700)
    data = settings.model_dump()
    for name in SECRET_FIELDS:
        value = data[name]
        text = json.dumps(value) if isinstance(value, dict) else (
            value.get_secret_value() if hasattr(value, "get_secret_value") else str(value))
        (folder / f"PHOENIX_{name.upper()}").write_text(text)
    public = settings.model_copy(update={"database_url": "postgresql://nobody@localhost/x",
                                         "kafka_options": {},
                                         "schema_registry_basic_auth": None})
    env = {"PHOENIX_SECRETS_DIR": str(folder)}
    return public, env


def _start(command: str, settings: Settings, folder: Path) -> Process:
    """The process with its secrets in files only (the files count only where the
    environment is silent, so the secret settings are left out of it)."""
    public, env = _from_secret_files(settings, folder)
    return Process(command, public, SECRET_FIELDS, **env)


def test_worker_relay_client_cli_and_api_work_over_tls_and_never_show_a_secret(
        secure: Settings, tls_postgres: PostgresCluster, tmp_path: Path) -> None:
    api_port = free_port()
    served = secure.model_copy(update={"http_port": api_port, "http_workers": 2})
    worker = _start("worker", secure, tmp_path / "w")
    relay = _start("relay", secure, tmp_path / "r")
    api = _start("api", served, tmp_path / "a")
    try:
        rid = uuid.uuid4()
        with CommandPublisher(secure, wire_format="json") as publisher:
            publisher.create("over-tls", resource_id=rid)
        sent = _cli(secure, "send", "update", str(rid), "--name", "from-cli", "--json")
        assert sent.returncode == 0, sent.stderr
        url = secure.database_url
        wait_until(lambda: len(outcomes(url)) == 2, 90, "both commands applied over TLS")
        wait_until(lambda: len(soak_check.read_to_end(secure.kafka_common(),
                                                      secure.events_topic)) == 2, 60,
                   "both events published over SASL_SSL")
        bodies = _api_answers(api_port, rid)
        tls_postgres.stop("fast")  # a 503 must name the database, not where it is
        down = httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=10)
        assert down.status_code == 503
        assert down.json()["detail"] == "the database is unavailable"
        bodies.append(down.text)
        tls_postgres.start()
        environments = [Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                        for pid in _children(api.pid)]
        assert environments, "the API forked no worker process"
    finally:
        outputs = [p.output() for p in (worker, relay, api) if p.terminate() is not None]
    for text in [*outputs, *bodies, sent.stdout, sent.stderr]:
        for secret in SECRETS:
            assert secret not in text
    for env in environments:
        for secret in SECRETS:
            assert secret not in env, "a secret reached a child's environment"
    for body in bodies:
        assert "127.0.0.1" not in body
        assert "phoenix_api" not in body


def _api_answers(port: int, rid: uuid.UUID) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/healthz"), 60, "the API up")
    out = []
    for path in ("/readyz", "/metrics", f"/api/v1/resources/{rid}", "/api/v1/nope",
                 f"/api/v1/resources/{uuid.uuid4()}"):
        out.append(httpx.get(base + path, timeout=10).text)
    assert "from-cli" in out[2] or "over-tls" in out[2]
    return out


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                         check=False).stdout.split()
    return [int(p) for p in out]


def test_wrong_kafka_credentials_give_a_clear_error_and_no_retry_storm(
        secure: Settings, certs: Certificates) -> None:
    wrong = secure.model_copy(update={"kafka_options": _kafka_options(certs, "not-it")})
    worker = Process("worker", wrong)
    try:
        worker.wait_for_log("Authentication failed", timeout=60)
        time.sleep(10)  # watch the worker keep failing for a while
        text = worker.output()
    finally:
        worker.terminate()
    failures = text.count("Authentication failed")
    assert "invalid credentials" in text or "SCRAM" in text
    # librdkafka backs off between attempts (reconnect.backoff up to 10 s): a handful of
    # failures in ten seconds, not thousands.
    assert failures <= 30, f"{failures} authentication failures: a retry storm"
    assert "not-it" not in text
    assert json.dumps(KAFKA_PASSWORD) not in text
