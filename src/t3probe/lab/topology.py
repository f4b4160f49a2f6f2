"""The reference topology on loopback, with the probe running against it.

    probe ─cloudflare─▶ edge 127.0.0.2:P ─▶ lb 127.0.0.3:P ─▶ dispatch (TLS echo)
    probe ─internal──────────────────────▶ lb 127.0.0.3:P ─▶ dispatch
    probe ─t3serve──────────────────────────────────────────▶ backend (HTTP)

The edge and the LB listen on the same port at different loopback addresses, so the
DoH answer (edge) and the pinned address (LB) really decide where a leg goes, as in
production. TLS terminates at dispatch with a throw-away CA; the proxies pass it through.
"""

from __future__ import annotations

import contextlib
import errno
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from t3probe.config import ProbeConfig, build_config
from t3probe.daemon import Probe
from t3probe.echo import EchoLimits, EchoServer, serve_echo
from t3probe.lab.backend import BackendServer, serve_backend
from t3probe.lab.dohserver import DohServer
from t3probe.lab.faultproxy import FaultProxy
from t3probe.lab.pki import Pki, make_pki

LAB_HOST = "lab.t3probe.test"
EDGE_ADDRESS = "127.0.0.2"
LB_ADDRESS = "127.0.0.3"
SERVICE_ADDRESS = "127.0.0.1"
PORT_ATTEMPTS = 20

# Compressed timings: the production 10 s / 20 s protocol, ten times faster.
LAB_TIMINGS: dict[str, float] = {
    "heartbeat_seconds": 1.0,
    "watchdog_seconds": 2.0,
    "attribution_window_seconds": 3.0,
    "probe_stall_seconds": 1.0,
    "backoff_initial_seconds": 0.2,
    "backoff_max_seconds": 1.0,
}
DOH_TTL_SECONDS = 1


@dataclass
class LabParts:
    dispatch: EchoServer
    lb: FaultProxy
    edge: FaultProxy
    doh: DohServer
    backend: BackendServer
    pki: Pki


def lab_config(parts: LabParts, listen: str, connections: int = 1) -> ProbeConfig:
    """The reference legs against the lab; each WebSocket leg holds ``connections``."""
    url = f"wss://{LAB_HOST}:{parts.lb.port}/probe/ws"
    ca_file = str(parts.pki.ca_cert)
    return build_config(
        {
            "listen": listen,
            **LAB_TIMINGS,
            "legs": [
                {
                    "name": "cloudflare",
                    "kind": "websocket",
                    "url": url,
                    "resolver": {
                        "kind": "doh",
                        "servers": [parts.doh.url],
                        "ca_file": ca_file,
                        "timeout_seconds": 0.5,
                        "min_ttl_seconds": DOH_TTL_SECONDS,
                    },
                    "segments": ["wan", "cf_edge", "cf_tunnel", "traefik", "dispatch"],
                    "ca_file": ca_file,
                    # The LB's address in a DoH answer would mean the CDN leg collapsed
                    # onto the internal route.
                    "forbid_addresses": [f"{LB_ADDRESS}/32"],
                    "connections": connections,
                },
                {
                    "name": "internal",
                    "kind": "websocket",
                    "url": url,
                    "resolver": {"kind": "pinned", "address": LB_ADDRESS},
                    "segments": ["traefik", "dispatch"],
                    "ca_file": ca_file,
                    "connections": connections,
                },
                {
                    "name": "t3serve",
                    "kind": "http",
                    "url": f"http://{SERVICE_ADDRESS}:{parts.backend.port}/api/auth/session",
                    "segments": ["t3serve"],
                },
            ],
        }
    )


async def _proxies_on_one_port(dispatch_port: int) -> tuple[FaultProxy, FaultProxy]:
    """Bind the LB on a free port, then the edge on the same port at its own address."""
    for _ in range(PORT_ATTEMPTS):
        lb = FaultProxy(LB_ADDRESS, 0, SERVICE_ADDRESS, dispatch_port, name="lb")
        await lb.start()
        # The edge reaches the LB from its own address, as a CDN's egress does: the LB
        # (and its share faults) tells the CDN leg's connections from the internal ones.
        edge = FaultProxy(
            EDGE_ADDRESS, lb.port, LB_ADDRESS, lb.port, name="edge", source_host=EDGE_ADDRESS
        )
        try:
            await edge.start()
        except OSError as err:
            await lb.stop()
            if err.errno != errno.EADDRINUSE:
                raise
            continue
        return lb, edge
    raise OSError(errno.EADDRINUSE, "no port free on both 127.0.0.2 and 127.0.0.3")


class Lab:
    """Every part of the topology plus the probe; start() and stop() own their lifetimes."""

    def __init__(
        self,
        listen: str = "127.0.0.1:9108",
        emit_line: Callable[[str], None] | None = None,
        connections: int = 1,
    ) -> None:
        self._listen = listen
        # Connections per WebSocket leg.
        self.connections = connections
        self._emit_line = emit_line
        self._stack = contextlib.AsyncExitStack()
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self.parts: LabParts | None = None
        self.probe: Probe | None = None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self._tempdir = tempfile.TemporaryDirectory(prefix="t3probe-lab-")
        pki = make_pki(Path(self._tempdir.name), [LAB_HOST], [SERVICE_ADDRESS])
        # Generous echo limits: the lab's own probe must never trip the abuse caps.
        dispatch = await serve_echo(
            SERVICE_ADDRESS, 0, EchoLimits(idle_timeout_seconds=3600), pki.server_context()
        )
        self._stack.push_async_callback(dispatch.stop)
        lb, edge = await _proxies_on_one_port(dispatch.port)
        self._stack.push_async_callback(lb.stop)
        self._stack.push_async_callback(edge.stop)
        doh = DohServer({LAB_HOST: [EDGE_ADDRESS]}, ttl=DOH_TTL_SECONDS)
        await doh.start(SERVICE_ADDRESS, 0, pki.server_context())
        self._stack.push_async_callback(doh.stop)
        backend = await serve_backend(SERVICE_ADDRESS, 0)
        self._stack.push_async_callback(backend.stop)
        self.parts = LabParts(dispatch, lb, edge, doh, backend, pki)
        self.probe = Probe(
            lab_config(self.parts, self._listen, self.connections),
            registry=CollectorRegistry(),
            emit_line=self._emit_line,
        )
        await self.probe.start()
        self._stack.push_async_callback(self.probe.stop)

    async def use_connections(self, connections: int) -> bool:
        """Reload the probe with ``connections`` per WebSocket leg (those legs restart);
        False when it already holds that many."""
        assert self.probe is not None and self.parts is not None
        if connections == self.connections:
            return False
        await self.probe.apply(lab_config(self.parts, self._listen, connections))
        self.connections = connections
        return True

    async def stop(self) -> None:
        await self._stack.aclose()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
