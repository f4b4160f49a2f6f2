"""Real DoH server software from Debian, run on 127.0.0.1 with local data only.

dnsdist, unbound and knot-resolver each answer the same few names from their own
configuration: no upstream, no recursion, no trust-anchor updates, nothing written
outside the directory they are given. They run in the foreground as children of the test
process (never daemonized) on free ports, and are stopped by their PID. ``hung()``
freezes one with SIGSTOP: the kernel still accepts connections, nothing answers, which is
what a hung server looks like from outside.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from t3probe.lab.pki import Pki
from tests.support.harness import free_port

HOST = "t3.lab.test"
ADDRESS = "127.0.0.1"
TTL = 60
ALIAS = "alias.lab.test"  # a CNAME to HOST, answered without HOST's records
ALIAS_TTL = 30
NODATA = "v6only.lab.test"  # an AAAA and no A
INTERNAL = "internal.lab.test"  # an address a forbid_addresses rule refuses
INTERNAL_ADDRESS = "10.0.20.203"
MISSING = "missing.lab.test"  # NXDOMAIN
SERVFAIL = "servfail.lab.test"  # SERVFAIL where the server can be told to (dnsdist)
# unbound only, where each answer holds one link: chains spread over several queries.
LOOP = "loop.lab.test"  # a CNAME to loop2, which is a CNAME back to loop
CHAIN_LINKS = 9  # hop0 -> hop1 -> ... -> hop8 -> HOST: one link more than allowed
PATH = "/dns-query"
_START_SECONDS = 15.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_STOP_SECONDS = 5.0

# The Debian package that ships each server's binary.
PACKAGES = {"dnsdist": "dnsdist", "unbound": "unbound", "knot-resolver": "knot-resolver"}
_BINARIES = {
    "dnsdist": "dnsdist",
    "unbound": "unbound",
    "knot-resolver": "kresd",
}


@dataclass
class RealDohServer:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    paused: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{PATH}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """Frozen: connections are accepted by the kernel and never answered."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True
        # kill() returns before the stop takes effect: a thread busy on the other core
        # can still answer the next query (seen once in CI). Frozen means every thread
        # of the server has reached the stopped state.
        _wait_until_stopped(self.pid)
        try:
            yield
        finally:
            os.kill(self.pid, signal.SIGCONT)
            self.paused = False

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        if self.paused:
            os.kill(self.pid, signal.SIGCONT)
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(_STOP_SECONDS)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


def binary(name: str) -> str:
    """The server's executable, or a loud skip naming the package that provides it."""
    found = shutil.which(_BINARIES[name]) or shutil.which(_BINARIES[name], path="/usr/sbin")
    if found is None:
        pytest.skip(
            f"{_BINARIES[name]} is not installed: `scripts/bootstrap.sh --system` installs"
            f" Debian's {PACKAGES[name]} when run as root (sudo apt-get install"
            f" {PACKAGES[name]} otherwise); the DoH interop tests need it"
        )
    return found


def start(name: str, directory: Path, pki: Pki) -> RealDohServer:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = _COMMANDS[name](binary(name), directory, pki, port)
    log = directory / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches the test, which stops
            # the server by its PID, rather than killing it mid-test.
            start_new_session=True,
            # And if the test process dies without its teardown, the server goes with it.
            preexec_fn=_die_with_parent,
        )
    server = RealDohServer(name, process, port, log)
    try:
        _wait_listening(server)
    except BaseException:
        server.stop()
        raise
    return server


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_listening(server: RealDohServer) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), 0.2),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"{server.name} did not listen within {_START_SECONDS:g}s:\n{server.log_tail()}"
    )


# -- each server's configuration --------------------------------------------------------


def _dnsdist(executable: str, directory: Path, pki: Pki, port: int) -> list[str]:
    config = directory / "dnsdist.conf"
    config.write_text(
        f"""\
-- No security-status query (it would go to the public DNS), no console, no backends.
setSecurityPollSuffix("")
setLocal("127.0.0.1:{free_port()}")
addDOHLocal("127.0.0.1:{port}", "{pki.cert}", "{pki.key}", "{PATH}")
addAction(AndRule({{QNameRule("{HOST}."), QTypeRule(DNSQType.A)}}),
          SpoofAction({{"{ADDRESS}"}}, {{ttl={TTL}}}))
addAction(AndRule({{QNameRule("{INTERNAL}."), QTypeRule(DNSQType.A)}}),
          SpoofAction({{"{INTERNAL_ADDRESS}"}}, {{ttl={TTL}}}))
addAction(QNameRule("{ALIAS}."), SpoofCNAMEAction("{HOST}.", {{ttl={ALIAS_TTL}}}))
addAction(QNameRule("{NODATA}."), RCodeAction(DNSRCode.NOERROR))
addAction(QNameRule("{SERVFAIL}."), RCodeAction(DNSRCode.SERVFAIL))
addAction(AllRule(), RCodeAction(DNSRCode.NXDOMAIN))
"""
    )
    return [executable, "--supervised", "--disable-syslog", "-C", str(config)]


def _unbound(executable: str, directory: Path, pki: Pki, port: int) -> list[str]:
    config = directory / "unbound.conf"
    config.write_text(
        f"""\
server:
    interface: 127.0.0.1@{port}
    port: {port}
    https-port: {port}
    http-endpoint: "{PATH}"
    tls-service-key: "{pki.key}"
    tls-service-pem: "{pki.cert}"
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{directory}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    num-threads: 1
    # Idle connections closed after 1 s, not 30: the tests see that case quickly.
    tcp-idle-timeout: 1000
    # Local data only: every other name is NXDOMAIN, nothing is ever iterated.
    module-config: "iterator"
    outgoing-interface: 127.0.0.1
    local-zone: "." static
    local-zone: "lab.test." static
    local-data: "{HOST}. {TTL} IN A {ADDRESS}"
    local-data: "{INTERNAL}. {TTL} IN A {INTERNAL_ADDRESS}"
    local-data: "{ALIAS}. {ALIAS_TTL} IN CNAME {HOST}."
    local-data: "{NODATA}. {TTL} IN AAAA ::1"
    local-data: "{LOOP}. {TTL} IN CNAME loop2.lab.test."
    local-data: "loop2.lab.test. {TTL} IN CNAME {LOOP}."
{_chain()}
remote-control:
    control-enable: no
"""
    )
    return [executable, "-d", "-c", str(config)]


def _chain() -> str:
    names = [f"hop{index}.lab.test" for index in range(CHAIN_LINKS)] + [HOST]
    return "\n".join(
        f'    local-data: "{source}. {TTL} IN CNAME {target}."'
        for source, target in itertools.pairwise(names)
    )


def _knot(executable: str, directory: Path, pki: Pki, port: int) -> list[str]:
    config = directory / "kresd.conf"
    config.write_text(
        f"""\
-- No trust-anchor updates, root priming or time checks: they would query the Internet.
trust_anchors.remove('.')
modules.unload('ta_update')
modules.unload('ta_signal_query')
modules.unload('priming')
modules.unload('detect_time_skew')
modules.unload('detect_time_jump')
net.outgoing_v4('127.0.0.1')
cache.open(10 * MB, 'lmdb://{directory}/cache')
net.tls('{pki.cert}', '{pki.key}')
net.listen('127.0.0.1', {port}, {{ kind = 'doh2' }})
local function answer(name, rtype, rdata)
    policy.add(policy.domains(
        policy.ANSWER({{ [rtype] = {{ rdata = rdata, ttl = {TTL} }} }}, true),
        policy.todnames({{ name }})))
end
answer('{HOST}', kres.type.A, kres.str2ip('{ADDRESS}'))
answer('{INTERNAL}', kres.type.A, kres.str2ip('{INTERNAL_ADDRESS}'))
answer('{NODATA}', kres.type.AAAA, kres.str2ip('::1'))
-- policy.ANSWER answers only the query's own type; a CNAME needs an action of its own.
local function alias_to(target, ttl)
    return function(_, req)
        local qry = req:current()
        local answer = req:ensure_answer()
        if answer == nil then return nil end
        answer:rcode(kres.rcode.NOERROR)
        answer:begin(kres.section.ANSWER)
        answer:put(qry.sname, ttl, qry.sclass, kres.type.CNAME, kres.str2dname(target))
        return kres.DONE
    end
end
policy.add(policy.domains(alias_to('{HOST}', {ALIAS_TTL}), policy.todnames({{ '{ALIAS}' }})))
-- Everything else is NXDOMAIN, answered here: no recursion.
policy.add(policy.all(policy.DENY))
"""
    )
    # -n: no interactive console on stdin; the positional argument is the run directory,
    # where kresd keeps its control socket.
    return [executable, "-n", "-c", str(config), str(directory)]


_COMMANDS: dict[str, Callable[[str, Path, Pki, int], list[str]]] = {
    "dnsdist": _dnsdist,
    "unbound": _unbound,
    "knot-resolver": _knot,
}
SERVERS = tuple(_COMMANDS)


def _thread_states(pid: int) -> list[str]:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            # The state follows the command name, which is in parentheses and may hold spaces.
            stat = (task / "stat").read_text()
            states.append(stat.rsplit(")", 1)[1].split()[0])
    return states


def _wait_until_stopped(pid: int, timeout: float = _STOP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = _thread_states(pid)
        if states and all(state in ("T", "t") for state in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} not stopped after {timeout} s: {states}")
        time.sleep(0.002)
