"""Evidence query definitions: the defaults parse, render into the runbook, load from YAML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from t3probe.attribute import mechanisms
from t3probe.attribute.model import BadInput
from tests.support.artifacts import RUNBOOK
from tests.support.tools import promtool_check_queries

_SECTION = re.compile(
    r"<!-- evidence-queries:begin[^>]*-->\n(.*?)<!-- evidence-queries:end -->", re.S
)


def test_runbook_section_is_the_rendering_of_the_defaults() -> None:
    found = _SECTION.search(RUNBOOK.read_text(encoding="utf-8"))
    assert found, "the runbook lost its generated evidence-queries section"
    assert found[1] == mechanisms.markdown(mechanisms.DEFAULTS), (
        "regenerate: python -m t3probe.attribute.mechanisms --markdown"
    )


def test_defaults_cover_the_runbook_segments_and_parse(tmp_path: Path) -> None:
    names = {d.name for d in mechanisms.DEFAULTS}
    assert {"memory_pressure", "io_pressure", "oom_kills"} <= names
    for segment in ("traefik", "dispatch", "cf_tunnel"):
        assert {f"pod_restarts_{segment}", f"oom_killed_{segment}", f"rollout_{segment}"} <= names
    queries = [q for d in mechanisms.DEFAULTS for q in (d.query, d.requires)]
    promtool_check_queries(queries, tmp_path, "evidence")


def test_yaml_round_trip_equals_the_defaults() -> None:
    text = mechanisms.yaml_text(mechanisms.DEFAULTS)
    assert mechanisms.parse(text, "f") == mechanisms.DEFAULTS


GOOD = {"name": "q", "segments": ["s"], "query": "up", "requires": "up", "says": "it"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({**GOOD, "name": "Bad Name"}, "evidence[0].name: 'Bad Name' must be lower_snake_case"),
        ({**GOOD, "segments": []}, "evidence[0] (q).segments: expected a non-empty list"),
        ({**GOOD, "threshold": "high"}, "evidence[0] (q).threshold: expected a number"),
        ({**GOOD, "unit": "bytes"}, "evidence[0] (q).unit: 'bytes' is not one of ratio, count"),
        ({**GOOD, "colour": 1}, "evidence[0]: unknown field 'colour'"),
    ],
)
def test_bad_definitions_name_the_field(item: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=re.escape(f"f: {message}")):
        mechanisms.parse(yaml.safe_dump([item]), "f")


def test_bad_documents() -> None:
    for text, message in (
        ("[", "not valid YAML"),
        ("{}", "expected a non-empty list"),
        ("- " + "\n- ".join(["x"] * 2), "expected a mapping"),
    ):
        with pytest.raises(BadInput, match=message):
            mechanisms.parse(text, "f")
    duplicate = yaml.safe_dump([GOOD, GOOD])
    with pytest.raises(BadInput, match="'q' appears more than once"):
        mechanisms.parse(duplicate, "f")
