"""The reference config's legs and segments: ground truth for the attribution tables."""

from __future__ import annotations

from pathlib import Path

from t3probe.config_file import load_config

REFERENCE = load_config(Path(__file__).resolve().parents[2] / "examples" / "reference.yaml")
SEGMENTS = {leg.name: tuple(leg.segments) for leg in REFERENCE.legs}
