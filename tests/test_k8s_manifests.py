"""deploy/k8s: schema-valid manifests, a hardened pod, a tight NetworkPolicy, the shipped config.

kubernetes-validate checks the core objects; the custom resources it has no schema for
(PodMonitor, PrometheusRule) are checked here field by field.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.artifacts import (
    GENERATOR,
    K8S,
    PROBE_PORT,
    PROBE_UID,
    REFERENCE_CONFIG,
    load_yaml,
    rule_groups,
)
from tests.support.tools import promtool, require_tool, run_tool

# Custom resources kubernetes-validate has no schema for; their content is checked here.
CRD_KINDS = {"PodMonitor", "PrometheusRule"}


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def k8s_manifests() -> dict[str, list[Any]]:
    """Top-level manifests of deploy/k8s (kustomization.yaml excluded) by file name."""
    return {
        path.name: load_yaml_docs(path)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def k8s_object(kind: str) -> dict[str, Any]:
    found = [doc for docs in k8s_manifests().values() for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected exactly one {kind} in deploy/k8s, found {len(found)}"
    obj: dict[str, Any] = found[0]
    return obj


def probe_config() -> dict[str, Any]:
    """The config the ConfigMap generator ships (deploy/k8s/config/config.yaml)."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    (generator,) = kustomization["configMapGenerator"]
    (entry,) = generator["files"]
    key, _, source = entry.partition("=")
    assert key == "config.yaml", "the ConfigMap key must be config.yaml (mounted file name)"
    config: dict[str, Any] = load_yaml(K8S / source)
    return config


@pytest.mark.parametrize("k8s_version", ["1.30.0", "1.37.0"])
def test_kubernetes_validate_strict(k8s_version: str) -> None:
    validator = require_tool(
        "kubernetes-validate", "PyPI: kubernetes-validate, in the dev dependency group"
    )
    files = [
        str(K8S / name)
        for name, docs in k8s_manifests().items()
        if not any(doc["kind"] in CRD_KINDS for doc in docs)
    ]
    assert len(files) >= 5
    run_tool([validator, "--strict", "-k", k8s_version, *files])


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = set(k8s_manifests())
    assert listed == present, f"unlisted: {present - listed}, missing: {listed - present}"
    kinds = {doc["kind"] for docs in k8s_manifests().values() for doc in docs}
    assert {
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds
    for generator in kustomization["configMapGenerator"]:
        for entry in generator["files"]:
            assert (K8S / entry.partition("=")[2]).is_file(), entry


def test_kustomize_build_renders_valid_objects(tmp_path: Path) -> None:
    kubectl = require_tool("kubectl", "kubectl ships kustomize (`kubectl kustomize`)")
    rendered = run_tool([kubectl, "kustomize", str(K8S)]).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    by_kind = {doc["kind"]: doc for doc in docs}
    assert {"ConfigMap", "Deployment", "PrometheusRule", "PodMonitor"} <= set(by_kind)
    assert all(
        doc["metadata"].get("namespace") == "t3probe" for doc in docs if doc["kind"] != "Namespace"
    )
    configmap = by_kind["ConfigMap"]
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == probe_config()
    volumes = by_kind["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert configmap["metadata"]["name"] in [v.get("configMap", {}).get("name") for v in volumes]
    core = tmp_path / "rendered.yaml"
    core.write_text(
        yaml.safe_dump_all([d for d in docs if d["kind"] not in CRD_KINDS]), encoding="utf-8"
    )
    validator = require_tool("kubernetes-validate", "PyPI: kubernetes-validate")
    run_tool([validator, "--strict", str(core)])


@pytest.mark.e2e
def test_prometheusrule_carries_exactly_the_rule_file_groups(tmp_path: Path) -> None:
    run_tool([sys.executable, str(GENERATOR), "--check"])
    rule = k8s_object("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == rule_groups()
    extracted = tmp_path / "prometheusrule-groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    run_tool([promtool(), "check", "rules", str(extracted)])


def test_deployment_is_hardened() -> None:
    deployment = k8s_object("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert 5 < pod["terminationGracePeriodSeconds"] <= 30, "SIGTERM exits within 5 s"
    pod_sc = pod["securityContext"]
    sc = container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == PROBE_UID
    assert sc["runAsUser"] == PROBE_UID
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": PROBE_PORT}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    assert container["args"] == ["run", "--config", "/etc/t3probe/config.yaml"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/t3probe"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/t3probe"]["name"]]["configMap"]["name"] == "t3probe-config"


def test_service_and_podmonitor_select_the_probe_pod() -> None:
    deployment = k8s_object("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = k8s_object("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("metrics", PROBE_PORT)]
    monitor = k8s_object("PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    # The job label comes from this pod label: it must be what the rules select on.
    assert pod_labels[monitor["spec"]["jobLabel"]] == "t3probe"
    policy = k8s_object("NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def _egress_allows(policy: dict[str, Any], address: str, port: int) -> bool:
    ip = ipaddress.ip_address(address)
    for rule in policy["spec"]["egress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        if port not in ports:
            continue
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block and ip in ipaddress.ip_network(block["cidr"]):
                return True
    return False


def _url_endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    default = 443 if parts.scheme in ("https", "wss") else 80
    assert parts.hostname
    return parts.hostname, parts.port or default


def test_networkpolicy_allows_the_legs_and_nothing_else() -> None:
    policy = k8s_object("NetworkPolicy")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for rule in policy["spec"]["egress"]:
        assert rule.get("to"), "an egress rule without `to` allows every destination"
        assert rule.get("ports"), "an egress rule without `ports` allows every port"
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen >= 13, peer
    (ingress,) = policy["spec"]["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [PROBE_PORT]
    assert ingress.get("from"), "scrapes only from Prometheus"
    dns_ports = {
        (p["protocol"], p["port"])
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if "podSelector" in peer
        for p in rule["ports"]
    }
    assert dns_ports == {("UDP", 53), ("TCP", 53)}

    for leg in probe_config()["legs"]:
        host, port = _url_endpoint(leg["url"])
        resolver = leg.get("resolver", {"kind": "system"})
        if resolver["kind"] == "doh":
            for server in resolver["servers"]:
                server_host, server_port = _url_endpoint(server)
                assert _egress_allows(policy, server_host, server_port), server
            # The leg's own address comes from public DNS: Cloudflare's anycast edge.
            assert _egress_allows(policy, "104.16.0.1", port), leg["name"]
        elif resolver["kind"] == "pinned":
            assert _egress_allows(policy, resolver["address"], port), leg["name"]
        else:
            ipaddress.ip_address(host)  # a system-resolved name cannot be pinned here
            assert _egress_allows(policy, host, port), leg["name"]


def test_configmap_ships_the_reference_config() -> None:
    config = probe_config()
    if REFERENCE_CONFIG.exists():
        assert config == load_yaml(REFERENCE_CONFIG), (
            "deploy/k8s/config/config.yaml and examples/reference.yaml differ"
        )
    assert config["listen"] == f"0.0.0.0:{PROBE_PORT}"
    legs = {leg["name"]: leg for leg in config["legs"]}
    assert list(legs) == ["cloudflare", "internal", "t3serve"]
    assert legs["cloudflare"]["resolver"]["kind"] == "doh"
    assert legs["internal"]["resolver"] == {"kind": "pinned", "address": "10.0.20.203"}
    assert legs["t3serve"]["kind"] == "http"


@pytest.mark.skipif(
    importlib.util.find_spec("t3probe.__main__") is None,
    reason="t3probe's CLI is not built yet (python -m t3probe)",
)
def test_configmap_config_passes_check_config() -> None:
    # check-config only validates: it resolves and connects nowhere.
    kustomization = load_yaml(K8S / "kustomization.yaml")
    source = kustomization["configMapGenerator"][0]["files"][0].partition("=")[2]
    run_tool([sys.executable, "-m", "t3probe", "check-config", str(K8S / source)])
