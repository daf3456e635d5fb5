"""deploy/kubernetes/: schema-valid manifests that fit together, and a config healthd accepts.

Schemas: the Kubernetes OpenAPI schemas that the PyPI package kubernetes-validate ships
(strict: unknown fields are errors), and the Prometheus Operator's CRD models from
cloudcoil-models-prometheus-operator for the PodMonitor. Debian's promtool is built
without Kubernetes service discovery, so the kubernetes_sd scrape config is checked by
promtool with its discovery swapped for a static one, and its discovery block by shape.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import PodMonitor
from healthd.config import load

from tests.deploy.conftest import need
from tests.deploy.live import REPO

K8S = REPO / "deploy/kubernetes"
CORE = ("statefulset.yaml", "service.yaml", "configmap.yaml")


def manifest(name: str) -> Any:
    return yaml.safe_load((K8S / name).read_text())


def container() -> dict[str, Any]:
    (only,) = manifest("statefulset.yaml")["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.mark.parametrize("name", CORE)
def test_manifests_pass_the_kubernetes_schemas(name: str) -> None:
    kubernetes_validate.validate(manifest(name), kubernetes_validate.latest_version(), strict=True)


def test_the_schema_check_is_sharp() -> None:
    broken = manifest("statefulset.yaml")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_pod_monitor_matches_the_operator_crd() -> None:
    data = manifest("podmonitor.yaml")
    model = PodMonitor.model_validate(data)
    # the models ignore unknown fields: a round trip shows any the CRD does not have
    assert unknown_fields(data, model.model_dump(mode="json", by_alias=True, exclude_none=True)) == []
    data["spec"]["podMetricsEndpoints"][0]["scrapeTimeot"] = "5s"
    assert unknown_fields(data, PodMonitor.model_validate(data).model_dump(by_alias=True)) == [
        "spec.podMetricsEndpoints[0].scrapeTimeot"
    ]


def unknown_fields(given: Any, known: Any, path: str = "") -> list[str]:
    """Keys of `given` that `known` (the model's dump, defaults filled in) lacks."""
    if isinstance(given, dict) and isinstance(known, dict):
        return [
            item
            for key, value in given.items()
            for item in (
                unknown_fields(value, known[key], f"{path}.{key}".lstrip("."))
                if key in known
                else [f"{path}.{key}"]
            )
        ]
    if isinstance(given, list) and isinstance(known, list):
        return [
            item
            for i, (a, b) in enumerate(zip(given, known, strict=True))
            for item in unknown_fields(a, b, f"{path}[{i}]")
        ]
    return []


def test_the_kustomization_lists_every_manifest() -> None:
    listed = set(manifest("kustomization.yaml")["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_the_pieces_fit_together() -> None:
    sts, service, monitor = (
        manifest("statefulset.yaml"),
        manifest("service.yaml"),
        manifest("podmonitor.yaml"),
    )
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert (
        sts["spec"]["serviceName"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    )
    main = container()
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= set(ports)
    assert main["args"][main["args"].index("--listen") + 1] == f"0.0.0.0:{ports['http']}"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_shard_comes_from_the_pod_ordinal_and_the_count_from_replicas() -> None:
    env = {e["name"]: e for e in container()["env"]}
    assert (
        env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert int(env["HEALTHD_SHARD_COUNT"]["value"]) == manifest("statefulset.yaml")["spec"]["replicas"]


def test_the_pod_is_locked_down() -> None:
    spec = manifest("statefulset.yaml")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in manifest("statefulset.yaml")["spec"]["volumeClaimTemplates"]}
    assert "state" in claims and "state" in mounts and mounts["config"]["readOnly"] is True


def test_the_config_map_is_a_config_directory_healthd_accepts(tmp_path: Path) -> None:
    main = container()
    (mount,) = [m["mountPath"] for m in main["volumeMounts"] if m["name"] == "config"]
    assert main["args"][main["args"].index("-c") + 1] == mount
    for key, text in manifest("configmap.yaml")["data"].items():
        (tmp_path / key).write_text(text)
    loaded = load(tmp_path, {})
    assert loaded.config.watch is True
    fleet = {s.name: s for s in loaded.config.services}["fleet"]
    assert [c.name for c in fleet.checks][:2] == [
        "web-0.web.default.svc_8080",
        "web-0.web.default.svc-health",
    ]
    assert tmp_path / "fleet-targets.json" in loaded.watched


def test_the_kubernetes_sd_scrape_config(tmp_path: Path) -> None:
    config = yaml.safe_load((K8S / "prometheus-scrape.yml").read_text())
    (job,) = config["scrape_configs"]
    (sd,) = job.pop("kubernetes_sd_configs")
    assert sd["role"] == "pod" and set(sd) <= {"role", "namespaces", "selectors"}
    assert all(set(s) == {"role", "label"} and s["role"] == "pod" for s in sd["selectors"])
    pod_labels = manifest("statefulset.yaml")["spec"]["template"]["metadata"]["labels"]
    assert {s["label"] for s in sd["selectors"]} == {f"{k}={v}" for k, v in pod_labels.items()}
    job["static_configs"] = [{"targets": ["healthd-0.healthd:9180"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [need("promtool"), "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
