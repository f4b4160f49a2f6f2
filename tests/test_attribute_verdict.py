"""Evidence → verdict → table/JSON, table-driven over the reference legs. Pure."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from t3probe.attribute.model import Drop, Evidence, LegEvidence, Percentiles, SourceKind, Window
from t3probe.attribute.report import as_json, text
from t3probe.attribute.verdict import CLEAN_SENTENCE, NO_DATA_SENTENCE, Outcome, judge
from t3probe.reasons import Reason
from tests.support.reference import SEGMENTS

WINDOW = Window(at=1_000_000.0, start=999_955.0, end=1_000_015.0, requested_end=1_000_015.0)


def clean(name: str, segments: bool = True) -> LegEvidence:
    return LegEvidence(
        name, True, True, "up", segments=SEGMENTS[name] if segments else (),
        rtt_during=Percentiles(0.012, 0.04),
    )  # fmt: skip


def dropped(name: str, *reasons: Reason, segments: bool = True, up: bool = False) -> LegEvidence:
    counts: dict[Reason, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return LegEvidence(
        name,
        True,
        False,
        "up" if up else "down",
        None if up else reasons[-1],
        drop_counts=tuple(sorted(counts.items())),
        drops=tuple(Drop(r, at=WINDOW.at - 10 + i) for i, r in enumerate(reasons)),
        segments=SEGMENTS[name] if segments else (),
    )


def unobserved(name: str) -> LegEvidence:
    return LegEvidence(name, False, None, "unknown", gaps=((WINDOW.start, WINDOW.end),))


def evidence(
    *legs: LegEvidence,
    source: SourceKind = "events",
    probe_suspects: tuple[str, ...] | None = None,
) -> Evidence:
    return Evidence(source, "http://127.0.0.1:9", WINDOW, legs, probe_suspects)


ALL_CLEAN = (clean("cloudflare"), clean("internal"), clean("t3serve"))

TABLE: list[tuple[str, Evidence, Outcome, tuple[str, ...], str]] = [
    ("all clean", evidence(*ALL_CLEAN), "clean", (), CLEAN_SENTENCE),
    ("no legs at all", evidence(), "no_data", (), NO_DATA_SENTENCE),
    (
        "nothing observed",
        evidence(unobserved("cloudflare"), unobserved("internal")),
        "no_data",
        (),
        NO_DATA_SENTENCE,
    ),
    (
        "cloudflare dropped, segments from /verdict",
        evidence(dropped("cloudflare", Reason.RESET), clean("internal"), clean("t3serve")),
        "infra_fault",
        ("wan", "cf_edge", "cf_tunnel"),
        "infra fault — suspect segments wan, cf_edge, cf_tunnel (failing: leg cloudflare)",
    ),
    (
        "both websocket legs, recovered by the end",
        evidence(
            dropped("cloudflare", Reason.RTT_TIMEOUT, up=True),
            dropped("internal", Reason.RTT_TIMEOUT, up=True),
            clean("t3serve"),
        ),
        "infra_fault",
        ("traefik", "dispatch"),
        "infra fault — suspect segments traefik, dispatch (failing: legs cloudflare, internal)",
    ),
    (
        "prometheus: segments from t3probe_segment_suspected",
        evidence(
            dropped("cloudflare", Reason.RESET, segments=False),
            clean("internal", segments=False),
            source="prometheus",
            probe_suspects=("cf_tunnel",),
        ),
        "infra_fault",
        ("cf_tunnel",),
        "infra fault — suspect segment cf_tunnel (failing: leg cloudflare)",
    ),
    (
        "prometheus: failing leg, but the probe convicted nothing",
        evidence(
            dropped("t3serve", Reason.HTTP_ERROR, segments=False),
            source="prometheus",
            probe_suspects=(),
        ),
        "infra_fault",
        (),
        "infra fault on the route of leg t3serve — segments unknown:"
        " the probe convicted no segment in the window",
    ),
    (
        "events from an older probe without segments in /verdict",
        evidence(dropped("t3serve", Reason.HTTP_ERROR, segments=False)),
        "infra_fault",
        (),
        "infra fault on the route of leg t3serve — segments unknown: /verdict does not list"
        " the legs' segments; ask Prometheus (--prometheus) or read the probe's config",
    ),
    (
        "prometheus: down since before the window, convicted by the probe",
        evidence(
            LegEvidence("internal", True, False, "down"),
            clean("t3serve", segments=False),
            source="prometheus",
            probe_suspects=("traefik", "dispatch"),
        ),
        "infra_fault",
        ("traefik", "dispatch"),
        "infra fault — suspect segments traefik, dispatch",
    ),
    (
        "prometheus: down since before the window, nothing convicted",
        evidence(
            LegEvidence("internal", True, False, "down"),
            clean("t3serve", segments=False),
            source="prometheus",
            probe_suspects=(),
        ),
        "no_data",
        (),
        "no verdict — leg internal down in the window for a reason that says nothing about"
        " the path or that lies before the window (cannot exonerate)",
    ),
    (
        "a probe stall convicts nobody",
        evidence(dropped("cloudflare", Reason.PROBE_STALL), dropped("internal", Reason.RESET)),
        "no_data",
        (),
        "no verdict — the probe itself stalled (probe_stall on leg cloudflare):"
        " it can neither convict nor exonerate",
    ),
    (
        "a dns_failed drop measured nothing meanwhile",
        evidence(dropped("cloudflare", Reason.DNS_FAILED, up=True), clean("internal")),
        "no_data",
        (),
        "no verdict — leg cloudflare down in the window for a reason that says nothing about"
        " the path or that lies before the window (cannot exonerate)",
    ),
    (
        "a leg not observed through the whole window",
        evidence(clean("cloudflare"), unobserved("internal")),
        "no_data",
        (),
        "no verdict — leg internal not observed through the whole window (cannot exonerate)",
    ),
    (
        "a fault is a fault even with a leg unobserved",
        evidence(dropped("cloudflare", Reason.RESET), unobserved("internal")),
        "infra_fault",
        ("wan", "cf_edge", "cf_tunnel", "traefik", "dispatch"),
        "infra fault — suspect segments wan, cf_edge, cf_tunnel, traefik, dispatch"
        " (failing: leg cloudflare)",
    ),
]


@pytest.mark.parametrize(
    ("evidence_", "outcome", "suspects", "sentence"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_judge(
    evidence_: Evidence, outcome: Outcome, suspects: tuple[str, ...], sentence: str
) -> None:
    finding = judge(evidence_)
    assert (finding.outcome, finding.suspects, finding.sentence) == (outcome, suspects, sentence)


def test_text_report_is_an_aligned_table_then_the_verdict() -> None:
    ev = evidence(
        dropped("cloudflare", Reason.RESET, Reason.CONNECT_REFUSED, Reason.CONNECT_REFUSED),
        clean("internal"),
        unobserved("t3serve"),
    )
    lines = text(ev, judge(ev), dt.UTC).rstrip().splitlines()
    assert lines[0].startswith("window 1970-01-12 13:45:55 → 13:46:55 UTC (at 13:46:40, 60 s)")
    header, cloudflare, internal, t3serve = lines[1:5]
    assert header.split("  ")[0] == "LEG" and header.index("CONNECTED") == cloudflare.index("no")
    assert "3: connect_refused x2, reset" in cloudflare
    assert internal.split()[:3] == ["internal", "yes", "0"] and "12ms/40ms" in internal
    assert t3serve.split()[:3] == ["t3serve", "no", "data"]
    assert lines[5] == "drops:" and "13:46:30.000  cloudflare  reset" in lines[6]
    assert lines[-1].startswith("verdict: infra fault — suspect segments wan, cf_edge, cf_tunnel")


def test_json_report_carries_the_same_answer() -> None:
    ev = evidence(dropped("cloudflare", Reason.RESET), clean("internal"), clean("t3serve"))
    finding = judge(ev)
    document = json.loads(json.dumps(as_json(ev, finding, 3, dt.UTC)))
    assert document["outcome"] == "infra_fault" and document["exit_code"] == 3
    assert document["summary"] == finding.sentence
    assert document["suspects"] == ["wan", "cf_edge", "cf_tunnel"]
    assert document["failing_legs"] == ["cloudflare"]
    assert document["window"]["seconds"] == 60.0
    assert document["window"]["start"]["time"] == "1970-01-12T13:45:55.000+00:00"
    legs = {leg["leg"]: leg for leg in document["legs"]}
    assert legs["cloudflare"]["status"] == "failing" and legs["cloudflare"]["drops"] == {"reset": 1}
    assert legs["cloudflare"]["drop_events"][0]["reason"] == "reset"
    assert legs["internal"]["rtt_seconds"] == {
        "before": None,
        "during": {"p50": 0.012, "p99": 0.04},
    }


def test_json_has_no_nan_or_infinity() -> None:
    leg = LegEvidence(
        "t3serve", True, True, "up", rtt_during=Percentiles(float("nan"), float("inf"))
    )
    document = as_json(evidence(leg), judge(evidence(leg)), 0, dt.UTC)
    assert document["legs"][0]["rtt_seconds"]["during"] == {"p50": None, "p99": None}
    json.dumps(document, allow_nan=False)


def test_failing_legs_nothing_explains_are_inconclusive_not_an_empty_suspicion() -> None:
    # internal dropped while cloudflare, crossing the same LB and dispatch, stayed clean.
    finding = judge(evidence(clean("cloudflare"), dropped("internal", Reason.RESET)))
    assert (finding.outcome, finding.verdict, finding.suspects) == (
        "infra_fault",
        "inconclusive",
        (),
    )
