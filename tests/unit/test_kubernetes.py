"""deploy/k8s/ is valid Kubernetes and keeps its promises: every process runs, probed on its own
port (the gRPC server through the standard gRPC health service); every Secret a pod needs is
one the docs tell the operator to create; pods spread over zones and nodes; the brokers'
address is written once, in the ConfigMap.

Core kinds are validated with ``kubernetes-validate`` (the Kubernetes OpenAPI schemas it
ships, strict: unknown fields are errors). KEDA's ScaledObject and the Prometheus Operator's
ServiceMonitor are validated against the ``openAPIV3Schema`` of their upstream CRDs, vendored
in ``deploy/schemas/`` (see its README), with unknown fields made errors too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

import phoenix_resources
from phoenix_resources.config import Settings
from phoenix_resources.config_docs import OTHER_VARIABLES
from phoenix_resources.entrypoints.grpc.server import SERVICE_NAME

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES_VERSION = "1.33.0"
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "keda.sh-scaledobject-v1alpha1.json",
               ("monitoring.coreos.com/v1", "ServiceMonitor"):
                   "monitoring.coreos.com-servicemonitor-v1.json"}
OPERATIONS = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
VERSION = phoenix_resources.__version__
IMAGE = f"phoenix-resources:{VERSION}"
WORKER, RELAY, API, GRPC = (f"phoenix-resources-{p}" for p in ("worker", "relay", "api", "grpc"))
SETTINGS = {f"PHOENIX_{n.upper()}" for n in Settings.model_fields}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml"))
            if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _kinds() -> dict[str, list[dict[str, Any]]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, doc in _documents():
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def _workloads() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _documents()
            if d["kind"] in ("Deployment", "StatefulSet", "Job")}


def _pod(name: str) -> dict[str, Any]:
    pod: dict[str, Any] = _workloads()[name]["spec"]["template"]["spec"]
    return pod


def _config() -> dict[str, str]:
    [config] = _kinds()["ConfigMap"]
    data: dict[str, str] = config["data"]
    return data


def _service(name: str) -> dict[str, Any]:
    [service] = [s for s in _kinds()["Service"] if s["metadata"]["name"] == name]
    return service


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others (the API
    server would prune unknown fields silently; a typo should fail here instead)."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    return schema


@cache
def _crd_schema(file: str) -> dict[str, Any]:
    schema: dict[str, Any] = _closed(json.loads((SCHEMAS / file).read_text()))
    return schema


def test_every_core_manifest_is_valid_kubernetes() -> None:
    checked = 0
    for file, doc in _documents():
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{file}: {doc['kind']} {doc['metadata']['name']}: {e.message}")
        checked += 1
    assert checked >= 10


def test_custom_resources_match_their_vendored_crd_schemas() -> None:
    found = set()
    for file, doc in _documents():
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            errors = list(jsonschema.Draft7Validator(_crd_schema(CRD_SCHEMAS[key]))
                          .iter_errors(doc))
            assert errors == [], f"{file}: {[e.message for e in errors]}"
            found.add(key)
    assert found == set(CRD_SCHEMAS)


def test_the_crd_check_catches_a_typo() -> None:
    scaled = _kinds()["ScaledObject"][0]
    typo = {**scaled, "spec": {**scaled["spec"], "maxReplicaCont": 6}}
    assert not jsonschema.Draft7Validator(
        _crd_schema(CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")])).is_valid(typo)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_each_process_runs_its_command_with_the_release_image() -> None:
    commands = {name: [c["args"] for c in w["spec"]["template"]["spec"]["containers"]]
                for name, w in _workloads().items()}
    assert commands == {
        "phoenix-resources-worker": [["worker"]], "phoenix-resources-relay": [["relay"]],
        "phoenix-resources-api": [["api"]], "phoenix-resources-grpc": [["grpc"]],
        f"phoenix-resources-migrate-{VERSION.replace('.', '-')}": [["migrate", "upgrade"]]}
    images = {c["image"] for w in _workloads().values()
              for c in w["spec"]["template"]["spec"]["containers"]}
    assert images == {IMAGE}


def test_every_container_is_locked_down_and_sized() -> None:
    for name, w in _workloads().items():
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert isinstance(pod["securityContext"]["runAsUser"], int), name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert "memory" in c["resources"]["limits"], name
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, "writable /tmp"


def test_every_long_running_process_has_probes_on_its_own_port() -> None:
    expected = {"phoenix-resources-worker": "metrics", "phoenix-resources-relay": "metrics",
                "phoenix-resources-api": "http"}
    for name, port in expected.items():
        container = _workloads()[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}


def test_workers_are_static_members_named_after_their_pods() -> None:
    worker = _workloads()["phoenix-resources-worker"]
    assert worker["kind"] == "StatefulSet", "stable pod names across restarts"
    env = worker["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PHOENIX_GROUP_INSTANCE_ID",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    assert "PHOENIX_GROUP_INSTANCE_ID" in {f"PHOENIX_{n.upper()}" for n in Settings.model_fields}


def test_the_relay_runs_an_active_and_a_standby() -> None:
    assert _workloads()["phoenix-resources-relay"]["spec"]["replicas"] == 2


def test_every_workload_has_a_disruption_budget_that_selects_it() -> None:
    budgets = {b["metadata"]["name"]: b["spec"]["selector"]["matchLabels"]
               for b in _kinds()["PodDisruptionBudget"]}
    for name in (WORKER, RELAY, API, GRPC):
        labels = _workloads()[name]["spec"]["template"]["metadata"]["labels"]
        assert budgets[name].items() <= labels.items(), name


def test_keda_scales_the_workers_on_their_groups_lag() -> None:
    scaled = _kinds()["ScaledObject"][0]["spec"]
    config = _config()
    defaults = Settings()
    assert scaled["scaleTargetRef"]["name"] == WORKER
    assert scaled["scaleTargetRef"]["kind"] == _workloads()[WORKER]["kind"]
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == defaults.consumer_group
    assert trigger["metadata"]["topic"] == defaults.commands_topic
    assert scaled["maxReplicaCount"] == int(config["PHOENIX_TOPIC_PARTITIONS"])


def test_keda_reads_the_brokers_from_the_workers_environment() -> None:
    scaled = _kinds()["ScaledObject"][0]["spec"]
    metadata = scaled["triggers"][0]["metadata"]
    assert "bootstrapServers" not in metadata
    variable = metadata["bootstrapServersFromEnv"]
    assert variable == "PHOENIX_KAFKA_BOOTSTRAP_SERVERS"
    # KEDA resolves it in the scale target's first container (no envSourceContainerName).
    assert "envSourceContainerName" not in scaled["scaleTargetRef"]
    container = _pod(WORKER)["containers"][0]
    sources = {e["configMapRef"]["name"] for e in container.get("envFrom", [])
               if "configMapRef" in e}
    [config] = _kinds()["ConfigMap"]
    assert config["metadata"]["name"] in sources
    assert variable in config["data"]
    assert variable not in {e["name"] for e in container.get("env", [])}, "one source only"


_ADDRESS = re.compile(r"[A-Za-z0-9.-]+:[0-9]{2,5}(,[A-Za-z0-9.-]+:[0-9]{2,5})*")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def test_the_brokers_address_is_written_only_in_the_config_map() -> None:
    brokers = _config()["PHOENIX_KAFKA_BOOTSTRAP_SERVERS"].split(",")
    assert brokers
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "config.yaml":
            text = path.read_text()
            assert [b for b in brokers if b in text] == [], path.name
    for file, doc in _documents():
        if doc["kind"] != "ConfigMap":
            addresses = [s for s in _strings(doc) if _ADDRESS.fullmatch(s)]
            assert addresses == [], f"{file}: an address belongs in the ConfigMap"


def test_the_grpc_server_listens_and_is_probed_on_one_port() -> None:
    config = _config()
    port = int(config["PHOENIX_GRPC_PORT"])
    assert config["PHOENIX_GRPC_HOST"] == "0.0.0.0", "reachable from outside the pod"
    container = _pod(GRPC)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == port
    assert ports["metrics"] == int(config["PHOENIX_METRICS_PORT"])
    # Kubernetes' gRPC probe takes a number; the service is the name the server reports
    # SERVING for while its read database answers.
    assert container["readinessProbe"]["grpc"] == {"port": port, "service": SERVICE_NAME}
    # Liveness must not follow the database (every health name does): the port answers.
    liveness = container["livenessProbe"]
    assert "grpc" not in liveness
    assert liveness["tcpSocket"]["port"] in ("grpc", port)
    service = _service(GRPC)
    assert service["spec"]["selector"].items() <= (
        _workloads()[GRPC]["spec"]["template"]["metadata"]["labels"].items())
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert targets["grpc"] in ("grpc", port)


def _referenced(pod: dict[str, Any]) -> dict[str, set[str]]:
    """The Secrets and ConfigMaps a pod reads: volumes (projected too), envFrom, env."""
    found: dict[str, set[str]] = {"Secret": set(), "ConfigMap": set()}
    for volume in pod.get("volumes", []):
        sources = [volume, *volume.get("projected", {}).get("sources", [])]
        for source in sources:
            if "secret" in source:
                found["Secret"].add(source["secret"].get("secretName")
                                    or source["secret"]["name"])
            if "configMap" in source:
                found["ConfigMap"].add(source["configMap"]["name"])
    for container in pod.get("initContainers", []) + pod["containers"]:
        for source in container.get("envFrom", []):
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if key in source:
                    found[kind].add(source[key]["name"])
        for env in container.get("env", []):
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if key in env.get("valueFrom", {}):
                    found[kind].add(env["valueFrom"][key]["name"])
    return found


def _secrets_created_in(text: str) -> dict[str, set[str]]:
    """``kubectl create secret generic NAME --from-literal=KEY=…`` commands: name -> keys."""
    commands = re.findall(r"kubectl create secret generic (\S+)((?:\s*\\?\s*--from-\S+)+)",
                          text)
    return {name: set(re.findall(r"--from-literal=([A-Z_]+)=", rest))
            for name, rest in commands}


NEEDS = {WORKER: {"PHOENIX_DATABASE_URL"}, RELAY: {"PHOENIX_DATABASE_URL"},
         API: {"PHOENIX_READ_DATABASE_URL", "PHOENIX_API_TOKEN_HASHES"},
         GRPC: {"PHOENIX_READ_DATABASE_URL", "PHOENIX_API_TOKEN_HASHES"}}
"""The settings each long-running process takes from its Secrets (the migrate Job: as the
worker)."""


def test_every_secret_a_pod_reads_is_in_the_kit_or_created_as_documented() -> None:
    in_kit = {kind: {d["metadata"]["name"] for d in _kinds().get(kind, [])}
              for kind in ("Secret", "ConfigMap")}
    operations, readme = OPERATIONS.read_text(), README.read_text()
    documented = _secrets_created_in(operations)
    kustomization = (K8S / "kustomization.yaml").read_text()
    referenced: set[str] = set()
    for name in _workloads():
        pod = _pod(name)
        refs = _referenced(pod)
        assert refs["ConfigMap"] <= in_kit["ConfigMap"], name
        from_operator = refs["Secret"] - in_kit["Secret"]
        referenced |= from_operator
        missing = from_operator - set(documented)
        assert missing == set(), f"{name}: no `kubectl create secret` in operations.md"
        assert from_operator <= set(_secrets_created_in(readme)), f"{name}: README quick start"
        assert all(s in kustomization for s in from_operator), "kustomization.yaml names them"
        keys = set().union(*(documented[s] for s in from_operator))
        assert keys <= SETTINGS, name
        process = name if name in NEEDS else WORKER
        assert NEEDS[process] <= keys, name
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert _config()["PHOENIX_SECRETS_DIR"] in mounts, name
    assert set(documented) == referenced, "operations.md creates only Secrets that are used"


def test_the_service_monitor_scrapes_ports_the_services_have() -> None:
    monitor = _kinds()["ServiceMonitor"][0]["spec"]
    services = [s for s in _kinds()["Service"]
                if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in services} == {WORKER, RELAY, API, GRPC}
    scraped = {e["port"] for e in monitor["endpoints"]}
    for service in services:
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert scraped <= ports | {"http", "metrics"}
        assert len(scraped & ports) == 1, service["metadata"]["name"]
    assert "grpc" not in scraped, "the gRPC port serves no /metrics"
    assert all(s["metadata"]["labels"][monitor["jobLabel"]] == "phoenix-resources"
               for s in services), "alerts.yml expects job=phoenix-resources"


def test_api_worker_and_grpc_pods_spread_over_zones_and_nodes() -> None:
    for name in (API, WORKER, GRPC):
        labels = _workloads()[name]["spec"]["template"]["metadata"]["labels"]
        spread = {c["topologyKey"]: c for c in _pod(name)["topologySpreadConstraints"]}
        assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
        assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
        for constraint in spread.values():
            assert constraint["maxSkew"] == 1, name
            assert constraint["labelSelector"]["matchLabels"].items() <= labels.items(), name


def test_the_migrate_job_is_per_release_and_cleans_up() -> None:
    job = _kinds()["Job"][0]
    assert job["metadata"]["name"].endswith(VERSION.replace(".", "-"))
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_every_phoenix_variable_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {f"PHOENIX_{n.upper()}" for n in Settings.model_fields} | {
        v.name for v in OTHER_VARIABLES}
    used = set(_kinds()["ConfigMap"][0]["data"])
    for w in _workloads().values():
        for c in w["spec"]["template"]["spec"]["containers"]:
            used |= {e["name"] for e in c.get("env", [])}
    assert {v for v in used if v.startswith("PHOENIX_")} - known == set()
    for key, value in _kinds()["ConfigMap"][0]["data"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PHOENIX_SECRETS_DIR", str(K8S))  # stands in for the mounted Secret
    Settings()  # the ConfigMap's values parse
