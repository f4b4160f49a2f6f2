"""Driving ``t3probe attribute`` in-process, and the probe topology its tests attribute."""

from __future__ import annotations

import argparse
import io
import json
import time
from typing import Any

from t3probe.attribute.cli import attribute_command
from t3probe.reasons import NON_PATH_REASONS, Reason
from tests.support.harness import Peer, RunningProbe

PATH_REASONS = {str(reason) for reason in Reason if reason not in NON_PATH_REASONS}


def namespace(at: str | float, **options: Any) -> argparse.Namespace:
    """The Namespace src/t3probe/cli.py hands to run_attribute."""
    values: dict[str, Any] = {
        "at": str(at),
        "window": None,
        "tz": "UTC",
        "prometheus": None,
        "events": None,
        "json": False,
        "config": None,
        "evidence": None,
    }
    values.update(options)
    return argparse.Namespace(**values)


async def invoke(args: argparse.Namespace) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await attribute_command(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


async def invoke_json(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    args.json = True
    code, out, err = await invoke(args)
    document: dict[str, Any] = json.loads(out)
    assert document["exit_code"] == code, (document, err)
    return code, document


class Topology:
    """Two peers: ``edge`` crosses wan+edge+core, ``core`` and ``backend`` only their own."""

    def __init__(self, edge: Peer, core: Peer, probe: RunningProbe, started: float) -> None:
        self.edge = edge
        self.core = core
        self.probe = probe
        self.started = started

    @property
    def probe_url(self) -> str:
        return f"http://127.0.0.1:{self.probe.probe.port}"


async def inject_edge_fault(topology: Topology) -> float:
    """Stop the edge peer; returns the time just before the fault."""
    before = time.time()
    after = len(topology.probe.events)
    await topology.edge.stop()
    await topology.probe.wait_for("edge", "down", after=after)
    return before
