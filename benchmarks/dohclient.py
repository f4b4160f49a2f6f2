"""What the DoH client costs: import time and memory, httpcore2 (HTTP/2) vs aiohttp.

Each figure comes from a fresh interpreter that imports one client, times the import,
reads its RSS, then makes N lookups against the lab's DoH server (HTTP/1.1, which both
clients speak) and reads its RSS again. ``aiohttp`` is the client before #19 (an
aiohttp session POSTing RFC 8484 messages); ``httpcore2`` is t3probe's DohClient. The
daemon imports aiohttp anyway for its legs, so the figure that matters in production is
``httpcore2 on top of aiohttp``: the import of the new client in an interpreter that has
already imported aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import LOOPBACK, child_env, fmt_ms, fmt_num, print_table, summary
from t3probe.lab.dohserver import DohServer
from t3probe.lab.pki import make_pki

HOST = "t3.lab.test"

# The child: argv = [client, url, ca_file, lookups]; prints one JSON object.
_CHILD = r"""
import asyncio, json, sys, time

def rss_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

client, url, ca_file, lookups = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
baseline = rss_kib()
if client == "httpcore2 on top of aiohttp":
    import aiohttp, dns.message, dns.rdatatype
    baseline = rss_kib()
started = time.perf_counter()
if client == "aiohttp":
    import aiohttp, dns.message, dns.rdatatype
else:
    import dns.message, dns.rdatatype
    from t3probe.resolvers.dohclient import DohClient
imported = time.perf_counter() - started
after_import = rss_kib()

async def main():
    import ssl
    context = ssl.create_default_context(cafile=ca_file)
    wire = dns.message.make_query("t3.lab.test", dns.rdatatype.A).to_wire()
    headers = {"Content-Type": "application/dns-message", "Accept": "application/dns-message"}
    first = None
    started = time.perf_counter()
    if client == "aiohttp":
        timeout = aiohttp.ClientTimeout(total=None)
        options = {"timeout": timeout, "auto_decompress": False, "trust_env": False}
        async with aiohttp.ClientSession(**options) as session:
            for index in range(lookups):
                async with session.post(url, data=wire, headers=headers, ssl=context) as response:
                    await response.read()
                if first is None:
                    first = time.perf_counter() - started
    else:
        client_ = DohClient(context)
        try:
            for index in range(lookups):
                await client_.exchange(url, wire)
                if first is None:
                    first = time.perf_counter() - started
        finally:
            await client_.aclose()
    return first, time.perf_counter() - started

first, total = asyncio.run(main())
print(json.dumps({"import_s": imported, "first_lookup_s": first, "lookups_s": total,
                  "rss_before_kib": baseline, "rss_import_kib": after_import,
                  "rss_after_kib": rss_kib()}))
"""

CLIENTS = ("aiohttp", "httpcore2", "httpcore2 on top of aiohttp")


@dataclass(frozen=True)
class DohClientOptions:
    repetitions: int = 10
    lookups: int = 1000


FULL = DohClientOptions()
QUICK = DohClientOptions(repetitions=1, lookups=20)


async def _child(client: str, url: str, ca_file: Path, lookups: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, client, url, str(ca_file), str(lookups),
        env=child_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{client} child exited {process.returncode}: {stderr.decode()[-500:]}")
    result: dict[str, float] = json.loads(stdout)
    return result


async def run(options: DohClientOptions, workdir: Path) -> dict[str, Any]:
    pki = make_pki(workdir / "pki", [HOST], [LOOPBACK])
    server = DohServer({HOST: ["127.0.0.2"]})
    await server.start(LOOPBACK, 0, pki.server_context())
    samples: dict[str, list[dict[str, float]]] = {client: [] for client in CLIENTS}
    try:
        for _ in range(options.repetitions):
            for client in CLIENTS:
                sample = await _child(client, server.url, pki.ca_cert, options.lookups)
                samples[client].append(sample)
    finally:
        await server.stop()
    figures: dict[str, dict[str, Any]] = {}
    for client, runs in samples.items():
        figures[client] = {
            "import_s": summary(r["import_s"] for r in runs),
            "first_lookup_s": summary(r["first_lookup_s"] for r in runs),
            "lookups_s": summary(r["lookups_s"] for r in runs),
            "rss_import_delta_kib": summary(
                r["rss_import_kib"] - r["rss_before_kib"] for r in runs
            ),
            "rss_after_kib": summary(r["rss_after_kib"] for r in runs),
            "rss_after_delta_kib": summary(r["rss_after_kib"] - r["rss_before_kib"] for r in runs),
        }
    rows = [
        [
            client,
            fmt_ms(f["import_s"]["median"]),
            fmt_ms(f["first_lookup_s"]["median"]),
            fmt_num(f["rss_import_delta_kib"]["median"] / 1024),
            fmt_num(f["rss_after_delta_kib"]["median"] / 1024),
            fmt_num(f["rss_after_kib"]["median"] / 1024),
        ]
        for client, f in figures.items()
    ]
    print_table(
        f"DoH client cost (median of {options.repetitions}; {options.lookups} lookups)",
        ["client", "import ms", "1st lookup ms", "+MiB import", "+MiB after", "RSS MiB"],
        rows,
    )
    return {"options": asdict(options), "figures": figures, "samples": samples}
