"""deploy/k8s/ is valid Kubernetes and keeps the promises of issue 13.

Core kinds are validated with ``kubernetes-validate`` (the Kubernetes OpenAPI schemas it
ships, strict: unknown fields are errors). KEDA's ScaledObject and the Prometheus Operator's
ServiceMonitor are validated against the ``openAPIV3Schema`` of their upstream CRDs, vendored
in ``deploy/schemas/`` (see its README), with unknown fields made errors too.
"""

from __future__ import annotations

import json
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

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES_VERSION = "1.33.0"
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "keda.sh-scaledobject-v1alpha1.json",
               ("monitoring.coreos.com/v1", "ServiceMonitor"):
                   "monitoring.coreos.com-servicemonitor-v1.json"}
VERSION = phoenix_resources.__version__
IMAGE = f"phoenix-resources:{VERSION}"


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
        "phoenix-resources-api": [["api"]],
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
    for name in ("phoenix-resources-worker", "phoenix-resources-relay",
                 "phoenix-resources-api"):
        labels = _workloads()[name]["spec"]["template"]["metadata"]["labels"]
        assert budgets[name].items() <= labels.items(), name


def test_keda_scales_the_workers_on_their_groups_lag() -> None:
    scaled = _kinds()["ScaledObject"][0]["spec"]
    config = _kinds()["ConfigMap"][0]["data"]
    defaults = Settings()
    assert scaled["scaleTargetRef"]["name"] == "phoenix-resources-worker"
    assert scaled["scaleTargetRef"]["kind"] == _workloads()["phoenix-resources-worker"]["kind"]
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == defaults.consumer_group
    assert trigger["metadata"]["topic"] == defaults.commands_topic
    assert trigger["metadata"]["bootstrapServers"] == config["PHOENIX_KAFKA_BOOTSTRAP_SERVERS"]
    assert scaled["maxReplicaCount"] == int(config["PHOENIX_TOPIC_PARTITIONS"])


def test_the_service_monitor_scrapes_ports_the_services_have() -> None:
    monitor = _kinds()["ServiceMonitor"][0]["spec"]
    services = [s for s in _kinds()["Service"]
                if monitor["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in services} == {
        "phoenix-resources-worker", "phoenix-resources-relay", "phoenix-resources-api"}
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} == ports
    assert all(s["metadata"]["labels"][monitor["jobLabel"]] == "phoenix-resources"
               for s in services), "alerts.yml expects job=phoenix-resources"


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
