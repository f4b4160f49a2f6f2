"""deploy/k8s: schema-valid manifests, a hardened pod, a tight NetworkPolicy, the shipped config.

kubernetes-validate checks the core objects; the custom resources it has no schema for
(PodMonitor, PrometheusRule) are checked here field by field.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import shutil
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
    fenced_blocks,
    load_yaml,
    rule_groups,
)
from tests.support.tools import promtool, require_tool, run_tool

# Custom resources kubernetes-validate has no schema for; their content is checked here.
CRD_KINDS = {"PodMonitor", "PrometheusRule"}
CLUSTER_SCOPED_KINDS = {"Namespace", "PriorityClass"}
COMPONENTS = K8S / "components"
KPS_RELEASE = "kube-prometheus-stack"
# docs/benchmarks.md: the probe's RSS with the HTTP/2 DoH client loaded (3 to 100 legs).
MEASURED_RSS_MIB = 62
ECHO_PORT = 8765


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
        doc["metadata"].get("namespace") == "t3probe"
        for doc in docs
        if doc["kind"] not in CLUSTER_SCOPED_KINDS
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


# The Traefik Helm chart's websecure container port (its Service maps 443 to it).
TRAEFIK_CONTAINER_PORT = 8443


def _traefik_peer(
    policy: dict[str, Any],
) -> tuple[dict[str, str], dict[str, str], set[tuple[str, int]]]:
    """The egress rule selecting Traefik pods: (namespace labels, pod labels, ports)."""
    found = [
        (
            peer["namespaceSelector"]["matchLabels"],
            peer["podSelector"]["matchLabels"],
            {(p["protocol"], p["port"]) for p in rule["ports"]},
        )
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "traefik"
        and "namespaceSelector" in peer
    ]
    assert len(found) == 1, "exactly one egress rule selects the Traefik pods"
    return found[0]


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
        if peer.get("podSelector", {}).get("matchLabels", {}).get("k8s-app") == "kube-dns"
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
            if leg["segments"][0] == "traefik":
                # In-cluster, the LB address is rewritten to a Traefik pod's IP and
                # container port before the policy sees the packet.
                namespace, pods, ports = _traefik_peer(policy)
                assert namespace and pods, leg["name"]
                assert ("TCP", TRAEFIK_CONTAINER_PORT) in ports, leg["name"]
                assert ("TCP", port) not in ports, "the Service port never reaches the policy"
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


def _mib(quantity: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi)", quantity)
    assert match, f"memory quantity {quantity!r}: use Ki, Mi or Gi"
    factor = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}[match.group(2)]
    return float(match.group(1)) * factor


def _pod() -> dict[str, Any]:
    pod: dict[str, Any] = k8s_object("Deployment")["spec"]["template"]["spec"]
    return pod


def test_resources_are_guaranteed_and_sized_from_measurement() -> None:
    pod = _pod()
    (container,) = pod["containers"]
    resources = container["resources"]
    # requests == limits for every container: Guaranteed QoS, evicted last under pressure.
    assert resources["requests"] == resources["limits"]
    memory = _mib(resources["limits"]["memory"])
    # A memory-backed emptyDir is charged to the container's memory: add it on top.
    tmp = {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]
    assert tmp["medium"] == "Memory"
    assert memory >= 1.5 * MEASURED_RSS_MIB + _mib(tmp["sizeLimit"]), "headroom over measured"
    assert memory <= 4 * MEASURED_RSS_MIB, "a limit far above use is a request nobody gets"


def test_priority_class_outranks_workloads_but_not_the_system() -> None:
    priority = k8s_object("PriorityClass")
    assert _pod()["priorityClassName"] == priority["metadata"]["name"]
    # 1e9 and above is reserved for system-cluster-critical and system-node-critical.
    assert 0 < priority["value"] < 1_000_000_000
    assert priority["globalDefault"] is False


def test_anti_affinity_keeps_the_probe_off_the_nodes_it_measures() -> None:
    anti = _pod()["affinity"]["podAntiAffinity"]
    # Preferred, not required: a Traefik DaemonSet on every node would leave no node at all.
    assert set(anti) == {"preferredDuringSchedulingIgnoredDuringExecution"}
    terms = [t["podAffinityTerm"] for t in anti["preferredDuringSchedulingIgnoredDuringExecution"]]
    assert len(terms) >= 2, "traefik and the backend"
    assert {t["topologyKey"] for t in terms} == {"kubernetes.io/hostname"}
    namespace, pods, _ = _traefik_peer(k8s_object("NetworkPolicy"))
    assert any(
        t["labelSelector"]["matchLabels"] == pods
        and t["namespaceSelector"]["matchLabels"] == namespace
        for t in terms
    ), "the same Traefik pods the NetworkPolicy lets the internal leg reach"


def _render(tmp_path: Path, *components: str) -> list[dict[str, Any]]:
    """deploy/k8s rendered by kubectl kustomize with the named components added."""
    overlay = tmp_path / "overlay"
    overlay.mkdir(parents=True)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(K8S, overlay)],
        "components": [os.path.relpath(COMPONENTS / name, overlay) for name in components],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), "utf-8")
    return _render_dir(overlay)


def _validate_core(tmp_path: Path, docs: list[dict[str, Any]]) -> None:
    core = tmp_path / "core.yaml"
    core.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in CRD_KINDS]), "utf-8")
    validator = require_tool("kubernetes-validate", "PyPI: kubernetes-validate")
    run_tool([validator, "--strict", str(core)])


def _by_kind_and_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def test_kube_prometheus_stack_component(tmp_path: Path) -> None:
    base = _by_kind_and_name(_render(tmp_path / "base"))
    docs = _render(tmp_path / "kps", "kube-prometheus-stack")
    rendered = _by_kind_and_name(docs)
    assert set(rendered) == set(base)
    monitor = rendered[("PodMonitor", "t3probe")]
    rule = rendered[("PrometheusRule", "t3probe")]
    # kube-prometheus-stack's podMonitorSelector and ruleSelector want release: <name>.
    assert monitor["metadata"]["labels"]["release"] == KPS_RELEASE
    assert rule["metadata"]["labels"]["release"] == KPS_RELEASE
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (vantage,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "vantage"]
    assert vantage["action"] == "replace"
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", vantage["replacement"])
    # Everything else is the base, untouched.
    for key, doc in base.items():
        if key[0] not in CRD_KINDS:
            assert rendered[key] == doc, key
    assert rule["spec"] == base[("PrometheusRule", "t3probe")]["spec"]
    _validate_core(tmp_path, docs)


def test_echo_component(tmp_path: Path) -> None:
    base = _by_kind_and_name(_render(tmp_path / "base"))
    docs = _render(tmp_path / "echo", "echo")
    rendered = _by_kind_and_name(docs)
    added = {key: doc for key, doc in rendered.items() if key not in base}
    assert {kind for kind, _ in added} == {"Deployment", "Service", "NetworkPolicy", "Ingress"}
    echo = added[("Deployment", "t3probe-echo")]
    pod = echo["spec"]["template"]["spec"]
    labels = echo["spec"]["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    probe = base[("Deployment", "t3probe")]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == probe["image"], "one image, one tag to set"
    assert container["args"] == ["echo", "--listen", f"0.0.0.0:{ECHO_PORT}"]
    assert container["securityContext"] == probe["securityContext"]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/probe/healthz"
    # The probe's own selectors must not pick up the echo's pods.
    for key in (("Service", "t3probe"), ("NetworkPolicy", "t3probe"), ("PodMonitor", "t3probe")):
        spec = rendered[key]["spec"]
        selector = spec.get("selector", spec.get("podSelector", {}))
        selector = selector.get("matchLabels", selector)
        assert not selector.items() <= labels.items(), key
    service = added[("Service", "t3probe-echo")]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    # Traefik routes the legs' /probe/ws (on the service's host) to the echo.
    ingress = added[("Ingress", "t3probe-echo")]
    assert ingress["spec"]["ingressClassName"] == "traefik"
    legs = {leg["name"]: leg for leg in probe_config()["legs"]}
    host, _ = _url_endpoint(legs["internal"]["url"])
    (route,) = ingress["spec"]["rules"]
    assert route["host"] == host
    (path,) = route["http"]["paths"]
    assert urlsplit(legs["internal"]["url"]).path.startswith(path["path"] + "/")
    assert path["backend"]["service"] == {
        "name": "t3probe-echo",
        "port": {"number": service_port["port"]},
    }
    # Only Traefik's pods may reach it: the same ones the probe's internal leg reaches.
    policy = added[("NetworkPolicy", "t3probe-echo")]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    (ingress_rule,) = policy["spec"]["ingress"]
    namespace, pods, _ = _traefik_peer(k8s_object("NetworkPolicy"))
    (peer,) = ingress_rule["from"]
    assert peer == {
        "namespaceSelector": {"matchLabels": namespace},
        "podSelector": {"matchLabels": pods},
    }
    assert [p["port"] for p in ingress_rule["ports"]] == [ECHO_PORT]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not policy["spec"].get("egress"), "the echo answers, it never connects out"
    _validate_core(tmp_path, docs)


def _render_dir(directory: Path) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl", "kubectl ships kustomize (`kubectl kustomize`)")
    rendered = run_tool([kubectl, "kustomize", str(directory)]).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _images_and_namespaces(docs: list[dict[str, Any]]) -> tuple[set[str], set[str | None]]:
    images = {
        container["image"]
        for doc in docs
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    namespaces = {
        doc["metadata"].get("namespace") for doc in docs if doc["kind"] not in CLUSTER_SCOPED_KINDS
    }
    return images, namespaces


def test_components_enabled_in_the_base(tmp_path: Path) -> None:
    # The commented block in kustomization.yaml, uncommented as the docs say.
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    path = copy / "kustomization.yaml"
    text = path.read_text(encoding="utf-8")
    block = "# components:\n#   - components/kube-prometheus-stack\n#   - components/echo\n"
    assert block in text
    path.write_text(text.replace(block, block.replace("# ", "")), encoding="utf-8")
    docs = _render_dir(copy)
    assert {"t3probe-echo", "t3probe"} <= {d["metadata"]["name"] for d in docs}
    assert _images_and_namespaces(docs) == ({"ghcr.io/t3probe/t3probe:0.1.0"}, {"t3probe"})


def test_documented_overlay_renders_as_described(tmp_path: Path) -> None:
    text = (K8S.parents[1] / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    (overlay_text,) = [
        body
        for language, body in fenced_blocks(text)
        if language == "yaml" and body.startswith("# overlays/fra1/kustomization.yaml")
    ]
    overlay = tmp_path / "overlays" / "fra1"
    overlay.mkdir(parents=True)
    base = os.path.relpath(K8S, overlay)
    (overlay / "kustomization.yaml").write_text(
        overlay_text.replace("../../deploy/k8s", base), encoding="utf-8"
    )
    docs = _render_dir(overlay)
    assert _images_and_namespaces(docs) == ({"registry.example.com/t3probe:0.1.0"}, {"t3probe"})
    by_kind = _by_kind_and_name(docs)
    monitor = by_kind[("PodMonitor", "t3probe")]
    assert monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0] == {
        "action": "replace",
        "targetLabel": "vantage",
        "replacement": "k8s-fra1",
    }
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert by_kind[("PrometheusRule", "t3probe")]["metadata"]["labels"]["release"] == "prometheus"
    assert ("Ingress", "t3probe-echo") in by_kind
