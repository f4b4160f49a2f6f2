"""A four-namespace network made (and unmade) by the kernel-fault tests.

::

                    198.18.1.0/30           198.18.2.0/30
              ca .2 ------------ .1 ac  as .1 ------------ .2 sa
    client  <                        router_a                     >  server
              cb .2 ------------ .1 bc  bs .1 ------------ .2 sb
                    198.18.3.0/30    router_b (NAT)  198.18.4.0/30

* ``client`` runs ``t3probe run`` (its HTTP surface on the namespace's own 127.0.0.1);
* ``router_a`` forwards; ``router_b`` forwards *and masquerades* towards the server, with
  a stateful "drop invalid" filter, like a home or cloud edge;
* ``server`` runs three processes, three segments: ``t3probe echo`` on :8765 (segment
  ``server``), a second ``t3probe echo`` used as the HTTP backend on 198.18.2.2:8080
  (``backend``), and a TLS echo on :8443 (``tls_server``, :mod:`tests.kernel.tlsecho`).

Rules this module keeps (see the README's Development section):

* addresses only from 198.18.0.0/15, only on veth interfaces inside namespaces made
  here; no default route anywhere; nothing is added to the root namespace (each veth
  pair is created inside one of our namespaces with its peer in another);
* unique names per run: ``t3k-<pid>-<n>-<role>``;
* processes are started with the loopback guard *widened* to 198.18.0.0/15
  (``T3PROBE_LOOPBACK_ONLY=1`` + ``T3PROBE_ALLOWED_NETWORKS``), never without a guard;
* :meth:`Topology.close` is idempotent and also runs at interpreter exit: it stops only
  the processes it started, by PID, and deletes only its own namespaces.

The test process itself stays in the root namespace: it drives the network with
``ip``/``nft``/``tc``/``conntrack`` through ``ip netns exec`` and reads the probe's
JSON lines from its stdout.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ALLOWED_NETWORKS = "198.18.0.0/15"
REQUIRED_TOOLS = ("ip", "tc", "nft", "conntrack", "openssl")
COMMAND_TIMEOUT = 20.0

# Addresses: one /30 per link.
CLIENT_A, ROUTER_A_CLIENT = "198.18.1.2", "198.18.1.1"
ROUTER_A_SERVER, SERVER_A = "198.18.2.1", "198.18.2.2"
CLIENT_B, ROUTER_B_CLIENT = "198.18.3.2", "198.18.3.1"
ROUTER_B_SERVER, SERVER_B = "198.18.4.1", "198.18.4.2"

ECHO_PORT = 8765
BACKEND_PORT = 8080
TLS_PORT = 8443
PROBE_PORT = 9108

# Interface names, per namespace (so they may repeat across topologies).
IF_CLIENT_A, IF_A_CLIENT, IF_A_SERVER, IF_SERVER_A = "ca", "ac", "as", "sa"
IF_CLIENT_B, IF_B_CLIENT, IF_B_SERVER, IF_SERVER_B = "cb", "bc", "bs", "sb"

ROLES = ("client", "router_a", "router_b", "server")
SEGMENTS = ("router_a", "router_b", "server", "backend", "tls_server")


@dataclass(frozen=True)
class LegSpec:
    name: str
    kind: str
    url: str
    segments: tuple[str, ...]
    router: str
    tls: bool = False


LEGS: tuple[LegSpec, ...] = (
    LegSpec(
        "ws_a", "websocket", f"ws://{SERVER_A}:{ECHO_PORT}/probe/ws", ("router_a", "server"), "a"
    ),
    LegSpec(
        "ws_b", "websocket", f"ws://{SERVER_B}:{ECHO_PORT}/probe/ws", ("router_b", "server"), "b"
    ),
    LegSpec(
        "http_a",
        "http",
        f"http://{SERVER_A}:{BACKEND_PORT}/probe/healthz",
        ("router_a", "backend"),
        "a",
    ),
    LegSpec(
        "tls_a",
        "websocket",
        f"wss://{SERVER_A}:{TLS_PORT}/probe/ws",
        ("router_a", "tls_server"),
        "a",
        tls=True,
    ),
    LegSpec(
        "tls_b",
        "websocket",
        f"wss://{SERVER_B}:{TLS_PORT}/probe/ws",
        ("router_b", "tls_server"),
        "b",
        tls=True,
    ),
)
LEG_NAMES = tuple(leg.name for leg in LEGS)


@dataclass(frozen=True)
class Timings:
    """Compressed probe timings, in seconds (already multiplied by the time unit)."""

    heartbeat: float
    watchdog: float
    probe_stall: float
    window: float
    backoff_initial: float
    backoff_max: float

    @classmethod
    def scaled(cls, unit: float) -> Timings:
        return cls(
            heartbeat=0.5 * unit,
            watchdog=2.0 * unit,
            probe_stall=1.5 * unit,
            window=3.0 * unit,
            backoff_initial=0.2 * unit,
            backoff_max=1.0 * unit,
        )


class TopologyError(RuntimeError):
    """A command building or driving the topology failed."""


def missing_prerequisites() -> str | None:
    """Why these tests cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "kernel-fault tests need Linux network namespaces"
    if os.geteuid() != 0:
        return "kernel-fault tests need root (network namespaces, nftables, tc)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"kernel-fault tests need {', '.join(missing)}: `make test` installs Debian's"
            " nftables, iproute2, conntrack and openssl when root"
        )
    # Root in a container may still lack CAP_SYS_ADMIN/CAP_NET_ADMIN: try one namespace.
    name = f"t3k-{os.getpid()}-0-check"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


_counter = itertools.count(1)
_counter_lock = threading.Lock()
_live: set[Topology] = set()
_live_lock = threading.Lock()


def _close_all_at_exit() -> None:
    with _live_lock:
        live = list(_live)
    for topology in live:
        topology.close()


atexit.register(_close_all_at_exit)


def process_env() -> dict[str, str]:
    """Environment for every process started inside our namespaces.

    The loopback guard stays on; only 198.18.0.0/15 is added to it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("T3PROBE_")}
    env["T3PROBE_LOOPBACK_ONLY"] = "1"
    env["T3PROBE_ALLOWED_NETWORKS"] = ALLOWED_NETWORKS
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return env


class Process:
    """A process we started in one of our namespaces; stopped only by its PID."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.alive():
            self.popen.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
            # A SIGSTOPped process only acts on SIGTERM once continued.
            os.kill(self.pid, signal.SIGCONT)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout)

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


class ProbeProcess(Process):
    """``t3probe run`` in the client namespace, its stdout parsed line by line."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        super().__init__("probe", popen, log)
        self.lines: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        assert popen.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(popen.stdout,), name="probe-stdout", daemon=True
        )
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            line["_received"] = time.time()
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self.lines)

    def wait_until(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float) -> bool:
        """Wait until ``predicate(lines)`` holds; False on timeout or if the probe exited."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if predicate(list(self.lines)):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (not self.alive() and not self._reader.is_alive()):
                    return False
                self._changed.wait(min(remaining, 0.2))

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._reader.join(timeout)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def leg_states(lines: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Each leg's last state ("up"/"down") according to the event lines."""
    states: dict[str, str] = {}
    for line in lines:
        if line.get("kind") in ("up", "down") and "leg" in line:
            states[str(line["leg"])] = str(line["kind"])
    return states


def last_verdict(lines: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    verdicts = [line for line in lines if line.get("kind") == "verdict"]
    return verdicts[-1] if verdicts else None


class Topology:
    """Client, two routers and a server, each a network namespace; see the module doc."""

    def __init__(self, workdir: Path, timings: Timings, tls_files: tuple[Path, Path, Path]):
        with _counter_lock:
            number = next(_counter)
        self.tag = f"t3k-{os.getpid()}-{number}"
        self.ns = {role: f"{self.tag}-{role}" for role in ROLES}
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timings = timings
        self.ca_file, self.tls_cert, self.tls_key = tls_files
        self.processes: list[Process] = []
        self.echo: Process | None = None
        self.backend: Process | None = None
        self.tls: Process | None = None
        self.probe: ProbeProcess | None = None
        self._created: list[str] = []
        self._closed = False
        self._lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    # -- commands -----------------------------------------------------------------

    def run(
        self, role: str, *command: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside one of our namespaces and wait for it."""
        argv = ["ip", "netns", "exec", self.ns[role], *command]
        done = subprocess.run(
            argv,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise TopologyError(
                f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}"
            )
        return done

    def ip(self, role: str, *args: str) -> None:
        _host_ip("-n", self.ns[role], *args)

    def nft(self, role: str, script: str) -> None:
        self.run(role, "nft", "-f", "-", input_text=script)

    def sysctl(self, role: str, key: str, value: str | int) -> str:
        """Set a sysctl inside the namespace; returns the previous value."""
        old = self.run(role, "sysctl", "-n", key).stdout.strip()
        self.run(role, "sysctl", "-qw", f"{key}={value}")
        return old

    # -- building -----------------------------------------------------------------

    def create(self) -> None:
        for role in ROLES:
            _host_ip("netns", "add", self.ns[role])
            self._created.append(self.ns[role])
            self.ip(role, "link", "set", "lo", "up")
        self._veth("client", IF_CLIENT_A, "router_a", IF_A_CLIENT)
        self._veth("router_a", IF_A_SERVER, "server", IF_SERVER_A)
        self._veth("client", IF_CLIENT_B, "router_b", IF_B_CLIENT)
        self._veth("router_b", IF_B_SERVER, "server", IF_SERVER_B)
        for role, ifname, address in (
            ("client", IF_CLIENT_A, CLIENT_A),
            ("router_a", IF_A_CLIENT, ROUTER_A_CLIENT),
            ("router_a", IF_A_SERVER, ROUTER_A_SERVER),
            ("server", IF_SERVER_A, SERVER_A),
            ("client", IF_CLIENT_B, CLIENT_B),
            ("router_b", IF_B_CLIENT, ROUTER_B_CLIENT),
            ("router_b", IF_B_SERVER, ROUTER_B_SERVER),
            ("server", IF_SERVER_B, SERVER_B),
        ):
            self.ip(role, "addr", "add", f"{address}/30", "dev", ifname)
            self.ip(role, "link", "set", ifname, "up")
        self.add_routes()
        for router in ("router_a", "router_b"):
            self.sysctl(router, "net.ipv4.ip_forward", 1)
            # Deterministic ICMP: no per-destination or global rate limit in the routers.
            self.sysctl(router, "net.ipv4.icmp_ratelimit", 0)
            self.sysctl(router, "net.ipv4.icmp_ratemask", 0)
        # Router A tracks connections from the start, so a fault can mark existing flows.
        self.nft(
            "router_a",
            "table inet t3k_track {\n"
            "  chain forward { type filter hook forward priority filter; policy accept;\n"
            "    ct state established,related counter accept\n  }\n}\n",
        )
        # Router B: a NAT edge that drops what its connection table does not know.
        self.nft(
            "router_b",
            "table ip t3k_nat {\n"
            "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n"
            f'    oifname "{IF_B_SERVER}" masquerade\n  }}\n}}\n'
            "table inet t3k_state {\n"
            "  chain forward { type filter hook forward priority filter; policy accept;\n"
            "    ct state invalid counter drop\n  }\n"
            "  chain input { type filter hook input priority filter; policy accept;\n"
            "    ct state invalid counter drop\n  }\n}\n",
        )

    def _veth(self, role: str, ifname: str, peer_role: str, peer_ifname: str) -> None:
        # Created inside one of our namespaces, its peer moved straight into another:
        # no end ever exists in the root namespace.
        self.ip(
            role,
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            peer_ifname,
            "netns",
            self.ns[peer_role],
        )

    def add_routes(self) -> None:
        """Static routes (idempotent): no default route anywhere."""
        self.ip("client", "route", "replace", "198.18.2.0/30", "via", ROUTER_A_CLIENT)
        self.ip("client", "route", "replace", "198.18.4.0/30", "via", ROUTER_B_CLIENT)
        # Router B masquerades, so the server needs a way back through router A only.
        self.ip("server", "route", "replace", "198.18.1.0/30", "via", ROUTER_A_SERVER)

    # -- processes ----------------------------------------------------------------

    def _spawn(self, role: str, name: str, argv: Sequence[str], *, stdout: Any = None) -> Any:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as log_file:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", self.ns[role], *argv],
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log_file,
                stderr=log_file,
                env=process_env(),
                cwd=REPO,
                start_new_session=True,
            )
        return popen, log

    def _start(self, role: str, name: str, argv: Sequence[str], ready: str) -> Process:
        # A restart appends to the same log: only what the new process wrote says ready.
        log_path = self.workdir / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        popen, log = self._spawn(role, name, argv)
        process = Process(name, popen, log)
        self.processes.append(process)
        deadline = time.monotonic() + 20.0
        while ready.encode() not in log.read_bytes()[offset:]:
            if not process.alive():
                raise TopologyError(f"{name} exited {popen.returncode}: {process.log_tail()}")
            if time.monotonic() > deadline:
                raise TopologyError(f"{name} not ready after 20 s: {process.log_tail()}")
            time.sleep(0.05)
        return process

    def start_echo(self) -> Process:
        self.echo = self._start(
            "server",
            "echo",
            [str(VENV_BIN / "t3probe"), "echo", "--listen", f"0.0.0.0:{ECHO_PORT}"],
            "echo serving",
        )
        return self.echo

    def start_backend(self) -> Process:
        self.backend = self._start(
            "server",
            "backend",
            [str(VENV_BIN / "t3probe"), "echo", "--listen", f"{SERVER_A}:{BACKEND_PORT}"],
            "echo serving",
        )
        return self.backend

    def start_tls(self) -> Process:
        self.tls = self._start(
            "server",
            "tls",
            [
                str(VENV_BIN / "python"),
                "-m",
                "tests.kernel.tlsecho",
                "--listen",
                f"0.0.0.0:{TLS_PORT}",
                "--cert",
                str(self.tls_cert),
                "--key",
                str(self.tls_key),
            ],
            "tls echo serving",
        )
        return self.tls

    def start_servers(self) -> None:
        self.start_echo()
        self.start_backend()
        self.start_tls()

    def probe_config(self) -> dict[str, Any]:
        t = self.timings
        legs: list[dict[str, Any]] = []
        for leg in LEGS:
            entry: dict[str, Any] = {
                "name": leg.name,
                "kind": leg.kind,
                "url": leg.url,
                "segments": list(leg.segments),
            }
            if leg.tls:
                entry["ca_file"] = str(self.ca_file)
            legs.append(entry)
        return {
            "listen": f"127.0.0.1:{PROBE_PORT}",
            "heartbeat_seconds": t.heartbeat,
            "watchdog_seconds": t.watchdog,
            "probe_stall_seconds": t.probe_stall,
            "attribution_window_seconds": t.window,
            "backoff_initial_seconds": t.backoff_initial,
            "backoff_max_seconds": t.backoff_max,
            "legs": legs,
        }

    def start_probe(self) -> ProbeProcess:
        config = self.workdir / "probe.yaml"
        config.write_text(yaml.safe_dump(self.probe_config(), sort_keys=False))
        popen, log = self._spawn(
            "client",
            "probe",
            [str(VENV_BIN / "t3probe"), "run", "--config", str(config)],
            stdout=subprocess.PIPE,
        )
        self.probe = ProbeProcess(popen, log)
        self.processes.append(self.probe)
        return self.probe

    def fetch(self, path: str) -> str:
        """GET the probe's own surface from inside the client namespace (loopback)."""
        script = (
            "import sys, urllib.request\n"
            "from t3probe import netguard\n"
            "netguard.install()\n"
            "with urllib.request.urlopen(sys.argv[1], timeout=5) as r:\n"
            "    sys.stdout.write(r.read().decode())\n"
        )
        url = f"http://127.0.0.1:{PROBE_PORT}{path}"
        return self.run("client", str(VENV_BIN / "python"), "-c", script, url).stdout

    # -- teardown -----------------------------------------------------------------

    def close(self) -> None:
        """Stop our processes by PID, delete our namespaces. Safe to call repeatedly."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()
        for name in reversed(self._created):
            if Path("/run/netns", name).exists():
                subprocess.run(
                    ["ip", "netns", "del", name],
                    capture_output=True,
                    timeout=COMMAND_TIMEOUT,
                    check=False,
                )
        with _live_lock:
            _live.discard(self)


def _host_ip(*args: str) -> None:
    argv = ["ip", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise TopologyError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")


@contextlib.contextmanager
def topology(
    workdir: Path, timings: Timings, tls_files: tuple[Path, Path, Path]
) -> Iterator[Topology]:
    """A created topology with its three servers running; closed on exit, whatever happens."""
    topo = Topology(workdir, timings, tls_files)
    try:
        topo.create()
        topo.start_servers()
        yield topo
    finally:
        topo.close()
