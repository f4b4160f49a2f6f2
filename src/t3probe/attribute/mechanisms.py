"""Evidence queries: what to ask Prometheus about a suspect segment's mechanism. Pure.

One source of definitions: :data:`DEFAULTS` (matching the runbook's known root causes)
is what ``attribute`` runs unless ``--evidence FILE`` replaces it, and
:func:`markdown` renders it into the runbook (a test keeps that section equal).

A definition is a PromQL expression evaluated over the incident (``query_range``), a
threshold its value must exceed to count as fired, and ``requires``: a selector whose
series must exist at all, so that "no node_exporter" reads "not available", never clean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from t3probe.attribute.model import BadInput

MAX_DEFINITIONS = 64
MAX_FILE_BYTES = 256 * 1024
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_UNITS = ("ratio", "count")
_FIELDS = ("name", "segments", "query", "requires", "threshold", "unit", "says")


@dataclass(frozen=True)
class Definition:
    name: str
    segments: tuple[str, ...]
    query: str
    requires: str
    threshold: float
    # ratio: a share of wall time, printed as %; count: a number of events.
    unit: str
    # What a fired query means, for "t3serve suspected — <says> …".
    says: str


_BACKEND = ("t3serve",)
# The in-cluster segments and the workload behind each (kube-state-metrics labels):
# evidence about one workload must not convict another.
WORKLOADS = {"traefik": "traefik", "dispatch": "dispatch", "cf_tunnel": "cloudflared"}


def _workload(segment: str, workload: str) -> tuple[Definition, ...]:
    pods = f'container=~"{workload}.*"'
    return (
        Definition(
            f"pod_restarts_{segment}",
            (segment,),
            f"sum by (namespace, pod, container)"
            f" (increase(kube_pod_container_status_restarts_total{{{pods}}}[2m]))",
            f"kube_pod_container_status_restarts_total{{{pods}}}",
            0.0,
            "count",
            f"{workload} pods restarted",
        ),
        Definition(
            f"oom_killed_{segment}",
            (segment,),
            f"max by (namespace, pod, container)"
            f' (kube_pod_container_status_last_terminated_reason{{reason="OOMKilled", {pods}}})'
            f" and on (namespace, pod, container)"
            f" (increase(kube_pod_container_status_restarts_total{{{pods}}}[2m]) > 0)",
            f"kube_pod_container_status_restarts_total{{{pods}}}",
            0.0,
            "count",
            f"{workload} containers were OOMKilled",
        ),
        Definition(
            f"rollout_{segment}",
            (segment,),
            f'changes(kube_deployment_status_observed_generation{{deployment=~"{workload}.*"}}[2m])',
            f'kube_deployment_status_observed_generation{{deployment=~"{workload}.*"}}',
            0.0,
            "count",
            f"the {workload} deployment rolled out",
        ),
    )


DEFAULTS: tuple[Definition, ...] = (
    Definition(
        "memory_pressure",
        _BACKEND,
        'rate(node_pressure_memory_stalled_seconds_total{job="node"}[1m])',
        'node_pressure_memory_stalled_seconds_total{job="node"}',
        0.1,
        "ratio",
        "memory pressure on the backend host stalled",
    ),
    Definition(
        "io_pressure",
        _BACKEND,
        'rate(node_pressure_io_stalled_seconds_total{job="node"}[1m])',
        'node_pressure_io_stalled_seconds_total{job="node"}',
        0.1,
        "ratio",
        "I/O pressure on the backend host stalled",
    ),
    Definition(
        "oom_kills",
        _BACKEND,
        'increase(node_vmstat_oom_kill{job="node"}[2m])',
        'node_vmstat_oom_kill{job="node"}',
        0.0,
        "count",
        "the kernel OOM-killed processes on the backend host",
    ),
    *(d for segment, workload in WORKLOADS.items() for d in _workload(segment, workload)),
)


def for_segment(definitions: Sequence[Definition], segment: str) -> list[Definition]:
    return [d for d in definitions if segment in d.segments]


def parse(text: str, source: str) -> tuple[Definition, ...]:
    """Definitions from YAML (a list, or ``{evidence: [...]}``); BadInput names the field."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BadInput(f"{source}: not valid YAML: {err}") from None
    if isinstance(document, Mapping) and "evidence" in document:
        document = document["evidence"]
    if not isinstance(document, list) or not document:
        raise BadInput(f"{source}: expected a non-empty list of evidence queries")
    if len(document) > MAX_DEFINITIONS:
        raise BadInput(f"{source}: at most {MAX_DEFINITIONS} evidence queries")
    definitions = [_definition(item, f"{source}: evidence[{i}]") for i, item in enumerate(document)]
    names = [d.name for d in definitions]
    for name in names:
        if names.count(name) > 1:
            raise BadInput(f"{source}: evidence name {name!r} appears more than once")
    return tuple(definitions)


def _definition(item: Any, where: str) -> Definition:
    if not isinstance(item, Mapping):
        raise BadInput(f"{where}: expected a mapping with {', '.join(_FIELDS)}")
    unknown = sorted(set(map(str, item)) - set(_FIELDS))
    if unknown:
        raise BadInput(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_FIELDS)})")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadInput(f"{where}.name: {name!r} must be lower_snake_case, at most 64 characters")
    where = f"{where} ({name})"
    segments = item.get("segments")
    if (
        not isinstance(segments, list)
        or not segments
        or not all(isinstance(s, str) and s for s in segments)
    ):
        raise BadInput(f"{where}.segments: expected a non-empty list of segment names")
    texts = {}
    for field in ("query", "requires", "says"):
        value = item.get(field)
        if not isinstance(value, str) or not value.strip():
            raise BadInput(f"{where}.{field}: expected a non-empty string")
        texts[field] = value.strip()
    threshold = item.get("threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise BadInput(f"{where}.threshold: expected a number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise BadInput(f"{where}.threshold: must be finite")
    unit = item.get("unit", "count")
    if unit not in _UNITS:
        raise BadInput(f"{where}.unit: {unit!r} is not one of {', '.join(_UNITS)}")
    return Definition(
        name,
        tuple(segments),
        texts["query"],
        texts["requires"],
        float(threshold),
        str(unit),
        texts["says"],
    )


def markdown(definitions: Sequence[Definition]) -> str:
    """The runbook's table of evidence queries."""
    lines = [
        "| segments | name | fires when | PromQL |",
        "|---|---|---|---|",
    ]
    for d in definitions:
        limit = f"> {d.threshold:g}" + (" (share of wall time)" if d.unit == "ratio" else "")
        query = d.query.replace("|", "\\|")
        lines.append(
            f"| {', '.join(f'`{s}`' for s in d.segments)} | `{d.name}` | {d.says}: {limit}"
            f" | `{query}` |"
        )
    return "\n".join(lines) + "\n"


def yaml_text(definitions: Sequence[Definition]) -> str:
    """The definitions as an ``--evidence`` file, to copy and adapt."""
    items = [
        {
            "name": d.name,
            "segments": list(d.segments),
            "query": d.query,
            "requires": d.requires,
            "threshold": d.threshold,
            "unit": d.unit,
            "says": d.says,
        }
        for d in definitions
    ]
    return yaml.safe_dump({"evidence": items}, sort_keys=False, width=1000)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m t3probe.attribute.mechanisms [--yaml|--markdown]``: print the defaults."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(markdown(DEFAULTS) if args == ["--markdown"] else yaml_text(DEFAULTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
