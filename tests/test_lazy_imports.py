"""``t3probe run`` with a plain WebSocket leg loads only what it runs: not the lab, not
``t3probe attribute``, not the DoH client's HTTP/2 stack (start-up is mostly imports)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import yaml

from tests.support.harness import Peer, free_port

# Run as the child: `python -m t3probe` as usual, writing its sys.modules at exit.
CHILD = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "t3probe"
runpy.run_module("t3probe", run_name="__main__")
"""
NOT_FOR_A_PLAIN_LEG = ("t3probe.lab", "t3probe.attribute", "httpcore2", "h2")


async def test_run_with_a_plain_ws_leg_imports_no_lab_attribute_or_doh(
    peer: Peer, tmp_path: Path
) -> None:
    config = tmp_path / "t3probe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": f"127.0.0.1:{free_port()}",
                "legs": [
                    {
                        "name": "ws",
                        "kind": "websocket",
                        "url": f"ws://127.0.0.1:{peer.port}/probe/ws",
                        "segments": ["path"],
                    }
                ],
            }
        )
    )
    modules_file = tmp_path / "modules.json"
    env = {**os.environ, "T3PROBE_LOOPBACK_ONLY": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(modules_file),
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            while True:
                line = await process.stdout.readline()
                assert line, (await process.stderr.read()).decode()  # type: ignore[union-attr]
                if json.loads(line).get("kind") == "up":
                    break
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    loaded = json.loads(modules_file.read_text())
    assert "t3probe.daemon" in loaded  # the child did run the probe
    unwanted = [
        m
        for m in loaded
        if m.split(".")[0] in NOT_FOR_A_PLAIN_LEG or m.startswith(NOT_FOR_A_PLAIN_LEG)
    ]
    assert unwanted == []
