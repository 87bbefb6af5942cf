"""A single-node Apache Kafka broker in KRaft mode (broker + controller in one JVM).

The jars come from Maven Central through ``kafka-pom.xml`` (beside this module, so it ships in
the wheel); they are fetched once into ``<state dir>/kafka/libs`` and shared by every broker
this module starts.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from phoenix_resources.devstack._proc import (
    pid_alive,
    port_open,
    read_pid,
    require_tool,
    state_dir,
    tail,
    terminate,
)
from phoenix_resources.devstack.certs import Certificates
from phoenix_resources.errors import StackError

POM = Path(__file__).with_name("kafka-pom.xml")
JAVA_HINT = ("Install a Java runtime 17+: apt-get install -y default-jre-headless "
             "(other systems: see deploy/local/system-deps.sh)")
MVN_HINT = "Install Maven: apt-get install -y maven"

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {home}/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={home}/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
num.network.threads=2
num.io.threads=4
"""


SASL_SSL_PROPERTIES = """\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port},\
SASL_SSL://127.0.0.1:{sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location={home}/keystore.pem
"""
"""The extra listener of a broker with ``sasl_port``: SASL_SSL with SCRAM-SHA-512, the
certificate from ``tls``. The PLAINTEXT listener stays for the broker itself (and for tests
that set things up); the users come from ``scram_users`` at format time."""


def libs_dir() -> Path:
    return state_dir() / "kafka" / "libs"


def ensure_jars(quiet: bool = False) -> Path:
    """Fetch the broker jars once (Maven Central); later calls return at once."""
    libs = libs_dir()
    if any(libs.glob("kafka_2.13-*.jar")) and any(libs.glob("log4j-slf4j*-impl-*.jar")):
        return libs
    require_tool("java", JAVA_HINT)
    mvn = require_tool("mvn", MVN_HINT)
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
    if quiet:
        cmd.insert(1, "-q")
    result = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"fetching the Kafka jars failed:\n{result.stdout}\n{result.stderr}")
    return libs


@dataclass
class KafkaBroker:
    """One KRaft broker whose files all live under ``home``.

    ``start`` is idempotent: when the pid file names a live broker on ``port``, it returns.
    """

    home: Path
    port: int = 9092
    controller_port: int = 9093
    heap: tuple[str, ...] = ("-Xms256m", "-Xmx512m")
    sasl_port: int | None = None
    """When set (with ``tls``), a SASL_SSL listener (SCRAM-SHA-512) on this port."""
    tls: Certificates | None = None
    scram_users: dict[str, str] = field(default_factory=dict)
    """SCRAM-SHA-512 users (name → password) created when the storage is formatted."""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        return pid if pid is not None and pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    def _java(self) -> list[str]:
        java = require_tool("java", JAVA_HINT)
        return [java, *self.heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                "-cp", f"{ensure_jars(quiet=True)}/*"]

    def _prepare(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        text = SERVER_PROPERTIES.format(home=self.home, port=self.port,
                                        controller_port=self.controller_port)
        if self.sasl_port is not None:
            if self.tls is None:
                raise StackError("a SASL_SSL listener needs certificates (tls=)")
            (self.home / "keystore.pem").write_bytes(self.tls.key.read_bytes()
                                                     + self.tls.cert.read_bytes())
            keep = [line for line in text.splitlines()
                    if not line.startswith(("listeners=", "advertised.listeners=",
                                            "listener.security.protocol.map="))]
            text = "\n".join(keep) + "\n" + SASL_SSL_PROPERTIES.format(
                home=self.home, port=self.port, controller_port=self.controller_port,
                sasl_port=self.sasl_port)
        props.write_text(text)
        (self.home / "log4j2.properties").write_text(LOG4J2.format(home=self.home))
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            scram = [arg for name, password in self.scram_users.items()
                     for arg in ("--add-scram",
                                 f"SCRAM-SHA-512=[name={name},password={password}]")]
            fmt = subprocess.run(
                # --cluster-id=ID, not "-t ID": an id may start with "-" (base64url), which the
                # tool's argument parser would take for an option.
                [*self._java(), "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(props), *scram], capture_output=True, text=True, check=False)
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        return props

    def start(self, timeout: float = 90.0) -> None:
        if self.is_running():
            return
        if port_open(self.port):
            raise StackError(f"port {self.port} is taken by another process; "
                             "stop it or set another port")
        props = self._prepare()
        with (self.home / "console.log").open("ab") as console:
            self._process = subprocess.Popen(
                [*self._java(), "kafka.Kafka", str(props)],
                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.pid_file.write_text(str(self._process.pid))
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Return once the broker answers a metadata request (not merely an open port)."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(f"the Kafka broker exited during start; log tail:\n"
                                 f"{tail(self.home / 'console.log')}\n{tail(self.log_file)}")
            if port_open(self.port):
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers,
                                     "log_level": "0"})
                try:
                    meta = admin.list_topics(timeout=2)
                    if meta.brokers and meta.controller_id >= 0:
                        return
                except Exception:
                    pass
            time.sleep(0.2)
        raise StackError(f"the Kafka broker was not ready within {timeout:.0f}s; log tail:\n"
                         f"{tail(self.log_file)}")

    def stop(self, timeout: float = 30.0) -> None:
        self._end(timeout, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the broker dies with no clean shutdown (for fault tests)."""
        self._end(0.0, signal.SIGKILL)

    def _end(self, timeout: float, sig: int) -> None:
        pid = self.pid()
        if pid is not None:
            terminate(pid, timeout, sig=sig)
        if self._process is not None:
            self._process.wait()  # collects the status (ECHILD-safe) so nothing leaks
            self._process = None
        self.pid_file.unlink(missing_ok=True)

    def rss_bytes(self) -> int | None:
        pid = self.pid()
        if pid is None:
            return None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None


def local_broker() -> KafkaBroker:
    """The persistent broker of ``make run`` (ports from PHOENIX_LOCAL_KAFKA_PORT)."""
    port = int(os.environ.get("PHOENIX_LOCAL_KAFKA_PORT", "9092"))
    return KafkaBroker(home=state_dir() / "kafka" / "broker", port=port, controller_port=port + 1)
