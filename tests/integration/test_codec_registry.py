"""The codec with a schema registry, through ``confluent_kafka.schema_registry`` over real
HTTP(S): subjects, registration vs look-up, error classes, auth, TLS, caching.

The registry is the FAKE of ``tests/support/fake_registry.py`` (no real one can be installed
here; see that module). It runs in process, so these tests never skip. Set
``PHOENIX_TEST_SCHEMA_REGISTRY_URL`` to also run the protocol tests against a real registry.
"""

from __future__ import annotations

import os
import shutil
import ssl
import struct
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phoenix_resources.adapters import codecs
from phoenix_resources.adapters.registry import Registry
from phoenix_resources.config import Settings
from phoenix_resources.domain.commands import CreateResource, UpdateResource
from phoenix_resources.domain.events import ResourceDeleted, event_id_for
from phoenix_resources.domain.model import Status
from phoenix_resources.errors import ConfigurationError, DecodeError, RegistryUnavailable
from phoenix_resources.wire.commands import CommandCodec
from phoenix_resources.wire.events import EventCodec
from phoenix_resources.wire.framing import (
    COMMAND_SCHEMA,
    EVENT_SCHEMA,
    REJECTION_SCHEMA,
    load_schema,
    writer_schemas,
)
from tests.support.fake_registry import FakeRegistry, fake_registry
from tests.support.services import unavailable

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "writer_schemas"
COMMANDS_TOPIC = "phoenix.resources.commands.v1"


def _settings(url: str, **kw: Any) -> Settings:
    return Settings(**{"schema_registry_url": url, "schema_registry_timeout_s": 2.0, **kw})


def _command() -> CreateResource:
    return CreateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(), issued_at=NOW,
                          name="db-1", config={"size": "m"}, status=Status.ACTIVE)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    with fake_registry() as registry:
        yield registry


# --- against the fake or a real registry ----------------------------------------------------

def _registry_urls() -> list[Any]:
    urls: list[Any] = ["fake"]
    real = os.environ.get("PHOENIX_TEST_SCHEMA_REGISTRY_URL")
    if real:
        urls.append(pytest.param(real, id="real"))
    return urls


@pytest.fixture(params=_registry_urls())
def registry_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "fake":
        with fake_registry() as registry:
            yield registry.url
    else:
        yield request.param


def test_publisher_registers_and_the_worker_decodes_in_confluent_framing(
        registry_url: str) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"  # a fresh subject on a shared real registry
    settings = _settings(registry_url, commands_topic=topic)
    publisher, worker = codecs.command_codec(settings), codecs.command_codec(settings)
    command = _command()
    value, _ = publisher.encode(command)
    assert value[:1] == b"\x00"
    assert worker.decode(value) == command


def test_an_unknown_schema_id_is_dead_lettered(registry_url: str) -> None:
    codec = codecs.command_codec(_settings(registry_url))
    with pytest.raises(DecodeError) as info:
        codec.decode(struct.pack(">bI", 0, 2**31 - 7) + b"\x00" * 8)
    assert info.value.reason == "unknown-schema"


# --- subjects --------------------------------------------------------------------------------

@pytest.mark.parametrize(("strategy", "subject"), [
    ("topic", f"{COMMANDS_TOPIC}-value"),
    ("record", "phoenix.resources.v1.ResourceCommand"),
    ("topic-record", f"{COMMANDS_TOPIC}-phoenix.resources.v1.ResourceCommand"),
])
def test_subject_name_strategies(fake: FakeRegistry, strategy: str, subject: str) -> None:
    codec = codecs.command_codec(_settings(fake.url,
                                           schema_registry_subject_strategy=strategy))
    codec.encode(_command())
    assert fake.subjects() == [subject]


def test_the_publisher_does_not_register_when_told_not_to(fake: FakeRegistry) -> None:
    codec = codecs.command_codec(_settings(fake.url, schema_registry_auto_register=False))
    with pytest.raises(ConfigurationError, match=f"{COMMANDS_TOPIC}-value"):
        codec.encode(_command())
    assert fake.requests("POST", "/subjects/")
    assert fake.subjects() == []


# --- the worker's event codec: look up, never register --------------------------------------

def _event() -> ResourceDeleted:
    cid = uuid.uuid4()
    return ResourceDeleted(event_id=event_id_for(cid), resource_id=uuid.uuid4(), version=2,
                           occurred_at=NOW, command_id=cid, correlation_id=None,
                           changed_fields=(), resource=None)


def test_worker_refuses_to_start_when_its_subjects_are_missing(fake: FakeRegistry) -> None:
    codec = codecs.event_codec(_settings(fake.url))
    with pytest.raises(ConfigurationError) as info:
        codec.prepare()
    assert "phoenix.resources.events.v1-value" in str(info.value)
    assert "does not register" in str(info.value)
    assert fake.subjects() == []


def test_worker_looks_its_schemas_up_and_writes_with_their_ids(fake: FakeRegistry) -> None:
    import json

    event_id = fake.register("phoenix.resources.events.v1-value",
                             json.dumps(load_schema(EVENT_SCHEMA).raw))
    fake.register("phoenix.resources.rejections.v1-value",
                  json.dumps(load_schema(REJECTION_SCHEMA).raw))
    worker = codecs.event_codec(_settings(fake.url))
    worker.prepare()
    event = _event()
    value = worker.encode_event(event)
    assert value[:5] == struct.pack(">bI", 0, event_id)
    assert codecs.event_codec(_settings(fake.url)).decode_event(value) == event


# --- errors: wait for the registry, dead-letter only what is wrong with the record -----------

@pytest.mark.parametrize("fault", ["unavailable", "slow", "html", "wrong-path"])
def test_registry_faults_are_transient_not_dead_letters(fake: FakeRegistry, fault: Any
                                                        ) -> None:
    command = _command()
    value, _ = codecs.command_codec(_settings(fake.url)).encode(command)
    fake.fault(fault, slow_s=3.0)
    worker = codecs.command_codec(_settings(fake.url, schema_registry_timeout_s=0.5))
    with pytest.raises(RegistryUnavailable):
        worker.decode(value)
    # Writing: a 404 that is not the registry's own answer means a wrong URL — said at once.
    expected = ConfigurationError if fault == "wrong-path" else RegistryUnavailable
    with pytest.raises(expected):
        codecs.command_codec(_settings(fake.url, schema_registry_timeout_s=0.5)).encode(
            command)
    fake.fault(None)
    assert worker.decode(value) == command  # and it heals by itself


def test_an_unreachable_registry_is_transient() -> None:
    with fake_registry() as gone:
        url = gone.url
    worker = codecs.command_codec(_settings(url))
    with pytest.raises(RegistryUnavailable):
        worker.decode(struct.pack(">bI", 0, 1) + b"\x00")
    with pytest.raises(RegistryUnavailable):
        worker.encode(_command())


def test_writer_schemas_are_cached_by_id(fake: FakeRegistry) -> None:
    command = _command()
    value, _ = codecs.command_codec(_settings(fake.url)).encode(command)
    worker = codecs.command_codec(_settings(fake.url))
    assert worker.decode(value) == command
    fake.fault("unavailable")
    for _ in range(3):
        assert worker.decode(value) == command
    assert len(fake.requests("GET", "/schemas/ids/")) == 1


def test_unknown_ids_are_remembered_for_a_while(fake: FakeRegistry) -> None:
    worker = codecs.command_codec(_settings(fake.url))
    for _ in range(5):
        with pytest.raises(DecodeError):
            worker.decode(struct.pack(">bI", 0, 999) + b"\x00")
    assert len(fake.requests("GET", "/schemas/ids/999")) == 1


def test_a_writer_that_cannot_be_resolved_is_dead_lettered(fake: FakeRegistry) -> None:
    import json

    events = codecs.event_codec(_settings(fake.url))
    fake.register("phoenix.resources.events.v1-value",
                  json.dumps(load_schema(EVENT_SCHEMA).raw))
    fake.register("phoenix.resources.rejections.v1-value",
                  json.dumps(load_schema(REJECTION_SCHEMA).raw))
    value = events.encode_event(_event())  # an event on the commands topic
    with pytest.raises(DecodeError) as info:
        codecs.command_codec(_settings(fake.url)).decode(value)
    assert info.value.reason == "incompatible-schema"


def test_a_schema_that_is_not_avro_is_dead_lettered(fake: FakeRegistry) -> None:
    sid = fake.register("other-value", 'syntax = "proto3"; message M {}', "PROTOBUF")
    with pytest.raises(DecodeError) as info:
        codecs.command_codec(_settings(fake.url)).decode(struct.pack(">bI", 0, sid) + b"\x00")
    assert info.value.reason == "unknown-schema"


# --- schema evolution through the registry -------------------------------------------------

def test_a_newer_compatible_writer_is_resolved_through_the_registry(fake: FakeRegistry
                                                                    ) -> None:
    """A v2 publisher (one more optional field) registers v2; a v1 worker reads it."""
    from phoenix_resources.wire.framing import Framing

    v2 = writer_schemas(FIXTURES)[0]
    registry = Registry.from_settings(_settings(fake.url), auto_register=True)
    v2_framing = Framing(registry, lambda s: f"{COMMANDS_TOPIC}-value")
    command = UpdateResource(command_id=uuid.uuid4(), resource_id=uuid.uuid4(),
                             issued_at=NOW, expected_version=4, name="renamed")
    record = {"command_id": str(command.command_id), "command_type": "UPDATE",
              "resource_id": str(command.resource_id), "expected_version": 4,
              "name": "renamed", "config": None, "status": None,
              "issued_at": 1_795_521_600_000_000, "correlation_id": None, "issued_by": None,
              "priority": 7}
    value = v2_framing.encode(v2, record, plain=True)
    decoded = codecs.command_codec(_settings(fake.url)).decode(value)
    assert decoded == command
    assert len(fake.state.subjects[f"{COMMANDS_TOPIC}-value"]) == 1
    assert load_schema(COMMAND_SCHEMA).fingerprint != v2.fingerprint


# --- auth and TLS --------------------------------------------------------------------------

def test_basic_auth() -> None:
    with fake_registry(credentials="phoenix:s3cret") as fake:
        good = _settings(fake.url, schema_registry_basic_auth="phoenix:s3cret")
        command = _command()
        value, _ = codecs.command_codec(good).encode(command)
        assert codecs.command_codec(good).decode(value) == command
        in_url = fake.url.replace("://", "://phoenix:s3cret@")
        assert codecs.command_codec(_settings(in_url)).decode(value) == command
        wrong = _settings(fake.url, schema_registry_basic_auth="phoenix:nope")
        with pytest.raises(ConfigurationError, match="401"):
            codecs.command_codec(wrong).encode(command)
        # Reading waits (the worker pauses and says why) rather than dead-lettering.
        with pytest.raises(RegistryUnavailable, match="401"):
            codecs.command_codec(wrong).decode(value)


def test_malformed_registry_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        codecs.command_codec(_settings("http://127.0.0.1:1",
                                       schema_registry_basic_auth="no-colon"))
    with pytest.raises(ConfigurationError):
        codecs.command_codec(_settings("https://127.0.0.1:1",
                                       schema_registry_ca_location="/nonexistent/ca.pem"))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for localhost, and a client certificate."""
    if shutil.which("openssl") is None:
        unavailable("openssl", "needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=phoenix-test-ca", cwd=d)
    for name, cn in (("server", "localhost"), ("client", "phoenix-client")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj",
                 f"/CN={cn}", cwd=d)
        (d / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile",
                 f"{name}.ext", cwd=d)
    return d


def _server_tls(pki: Path, *, client_certs: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    if client_certs:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki / "ca.pem")
    return ctx


def test_tls_with_a_private_ca(pki: Path) -> None:
    with fake_registry(tls=_server_tls(pki, client_certs=False)) as fake:
        command = _command()
        trusted = _settings(fake.url, schema_registry_ca_location=str(pki / "ca.pem"))
        value, _ = codecs.command_codec(trusted).encode(command)
        assert codecs.command_codec(trusted).decode(value) == command
        untrusted = _settings(fake.url)  # the system CAs do not know ours
        with pytest.raises(RegistryUnavailable):
            codecs.command_codec(untrusted).decode(value)


def test_mutual_tls(pki: Path) -> None:
    with fake_registry(tls=_server_tls(pki, client_certs=True)) as fake:
        command = _command()
        with_cert = _settings(fake.url, schema_registry_ca_location=str(pki / "ca.pem"),
                              schema_registry_certificate_location=str(pki / "client.pem"),
                              schema_registry_key_location=str(pki / "client.key"))
        value, _ = codecs.command_codec(with_cert).encode(command)
        assert codecs.command_codec(with_cert).decode(value) == command
        without = _settings(fake.url, schema_registry_ca_location=str(pki / "ca.pem"))
        with pytest.raises(RegistryUnavailable):
            codecs.command_codec(without).decode(value)


def test_codecs_without_a_registry_need_none() -> None:
    assert isinstance(codecs.command_codec(Settings()), CommandCodec)
    assert isinstance(codecs.event_codec(Settings()), EventCodec)
    codecs.event_codec(Settings()).prepare()  # nothing to look up
