"""A TCP proxy that injects network faults on real sockets, for the lab and the tests.

Each proxied connection is two pumps (client->target "upstream", target->client
"downstream"). A pump is a delay line: a reader stamps each chunk with its arrival time
and puts it on a small bounded queue, a writer forwards it once the configured latency
has passed and awaits the destination's drain. Memory per connection is therefore
bounded by the reader's buffer, the queue and the transport's write high-water mark,
whatever the peers do; a slow side is throttled by TCP back-pressure, not buffered.

Faults (one at a time per proxy) apply at once to existing *and* new connections and
are reverted on exit. The ``*_share`` faults take only every n-th connection of each
client address (in the order they were accepted, and every n-th new one while active):
an LB that spreads each client's connections over its backends and lost some of them, so
a probe holding several connections sees what share of users it hurts.
They are context managers for scripts, and ``set_fault`` /
``clear_fault`` for a hand-driven control endpoint.

Listening is a plain non-blocking socket with ``loop.add_reader`` rather than an
``asyncio.Server``: ``refuse`` must stop and resume listening from a synchronous
``with`` block, and a bare socket makes both synchronous (bind errors included).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FAULT_NAMES", "Direction", "Fault", "FaultProxy", "ProxyFault"]

log = logging.getLogger(__name__)


class ProxyFault(enum.StrEnum):
    """What the proxy can do to the connections it carries (names of the lab's API)."""

    LATENCY = "latency"
    BLACKHOLE = "blackhole"
    RESET = "reset"
    REFUSE = "refuse"
    HALF_OPEN = "half_open"
    CLOSE = "close"
    RESET_SHARE = "reset_share"
    BLACKHOLE_SHARE = "blackhole_share"


FAULT_NAMES = frozenset(fault.value for fault in ProxyFault)
Direction = Literal["upstream", "downstream"]

CHUNK_BYTES = 16 * 1024
QUEUE_CHUNKS = 8
MAX_LATENCY_MS = 60_000.0
MAX_SHARE_EVERY = 64
CONNECT_TIMEOUT_SECONDS = 10.0
BACKLOG = 128
_LINGER_RST = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Fault:
    name: ProxyFault
    params: Mapping[str, float | str] = field(default_factory=dict)


_PARAMETERS: dict[ProxyFault, set[str]] = {
    ProxyFault.LATENCY: {"ms"},
    ProxyFault.HALF_OPEN: {"direction"},
    ProxyFault.RESET_SHARE: {"every"},
    ProxyFault.BLACKHOLE_SHARE: {"every"},
}
_SHARED = frozenset({ProxyFault.RESET_SHARE, ProxyFault.BLACKHOLE_SHARE})
# Faults that RST every connection, existing and new.
_RESETTING = frozenset({ProxyFault.RESET, ProxyFault.REFUSE})


def _validate(raw_name: str, params: Mapping[str, object]) -> Fault:
    # A name comes from scripts and from the lab's HTTP API: checked once, here.
    if raw_name not in FAULT_NAMES:
        raise ValueError(f"unknown fault {raw_name!r}; known: {', '.join(sorted(FAULT_NAMES))}")
    name = ProxyFault(raw_name)
    expected = _PARAMETERS.get(name, set())
    if set(params) != expected:
        wanted = ", ".join(sorted(expected)) or "no parameters"
        raise ValueError(f"fault {name.value!r} takes {wanted}, got {sorted(params)}")
    if name is ProxyFault.LATENCY:
        raw = params["ms"]
        # Strings are accepted because a control endpoint hands over query parameters.
        if not isinstance(raw, int | float | str) or isinstance(raw, bool):
            raise ValueError(f"latency ms must be a number, got {raw!r}")
        try:
            ms = float(raw)
        except ValueError:
            raise ValueError(f"latency ms must be a number, got {raw!r}") from None
        if not 0 <= ms <= MAX_LATENCY_MS:
            raise ValueError(f"latency ms must be within 0..{MAX_LATENCY_MS:g}, got {ms:g}")
        return Fault(name, {"ms": ms})
    if name is ProxyFault.HALF_OPEN:
        direction = params["direction"]
        if direction not in ("upstream", "downstream"):
            raise ValueError(
                f"half_open direction must be upstream or downstream, got {direction!r}"
            )
        return Fault(name, {"direction": direction})
    if name in _SHARED:
        raw = params["every"]
        text = str(raw)
        if isinstance(raw, bool) or not text.isdigit() or not 2 <= int(text) <= MAX_SHARE_EVERY:
            raise ValueError(
                f"{name.value} every must be a whole number within 2..{MAX_SHARE_EVERY}"
                f" (every n-th connection), got {raw!r}"
            )
        return Fault(name, {"every": int(text)})
    return Fault(name)


def _rst_socket(sock: socket.socket) -> None:
    # SO_LINGER (on, 0 s) turns close() into an immediate RST instead of a FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()


def _rst_writer(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


def _fin_writer(writer: asyncio.StreamWriter) -> None:
    if writer.transport.is_closing():
        return
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
    writer.close()


class _Link:
    """One proxied connection."""

    def __init__(self, client: asyncio.StreamWriter, serial: int = 0, peer: str = "") -> None:
        self.client = client
        # The client's address: a share fault counts each client's connections apart.
        self.peer = peer
        # Its place in accept order: a share fault picks connections by it.
        self.serial = serial
        # Cleared while a blackhole_share holds this connection alone.
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.target: asyncio.StreamWriter | None = None
        self.done = asyncio.Event()
        self.queued_bytes = 0
        self.eofs = 0

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.target) if w is not None]

    def reset(self) -> None:
        for writer in self.writers():
            _rst_writer(writer)
        self.done.set()

    def close(self) -> None:
        for writer in self.writers():
            _fin_writer(writer)
        self.done.set()

    def buffered_bytes(self) -> int:
        return self.queued_bytes + sum(
            w.transport.get_write_buffer_size() for w in self.writers() if not w.is_closing()
        )


class FaultProxy:
    """Listen on ``listen_host:listen_port`` (0 picks a port) and forward to the target."""

    def __init__(
        self,
        listen_host: str,
        listen_port: int,
        target_host: str,
        target_port: int,
        *,
        name: str = "proxy",
        source_host: str | None = None,
    ) -> None:
        self.name = name
        # The address connections to the target come from (an edge's egress address), so
        # the next hop can tell this proxy's connections from others'.
        self._source = None if source_host is None else (source_host, 0)
        self._listen_host = listen_host
        self._port = listen_port
        self._target = (target_host, target_port)
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._total_accepted = 0
        # Per client address, connections accepted while the current share fault is active.
        self._accepted_in_fault: dict[str, int] = {}
        self._fault: Fault | None = None
        self._one_way_delay = 0.0
        # Set while the direction may flow; cleared by blackhole / half_open.
        self._upstream_open = asyncio.Event()
        self._downstream_open = asyncio.Event()
        self._upstream_open.set()
        self._downstream_open.set()

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Bind and listen; bind errors (e.g. EADDRINUSE) propagate."""
        if self._loop is not None:
            raise RuntimeError(f"{self.name}: already started")
        self._loop = asyncio.get_running_loop()
        try:
            self._listen()
        except BaseException:
            self._loop = None
            raise

    async def stop(self) -> None:
        """Stop listening, reset every connection, and wait for their tasks."""
        self._fault = None  # not clear_fault(): reverting "refuse" would listen again
        self._unlisten()
        for link in list(self._links):
            link.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def host(self) -> str:
        return self._listen_host

    @property
    def port(self) -> int:
        return self._port

    @property
    def listening(self) -> bool:
        return self._listener is not None

    @property
    def active_connections(self) -> int:
        return len(self._links)

    @property
    def total_accepted(self) -> int:
        return self._total_accepted

    @property
    def buffered_bytes(self) -> int:
        """Bytes the proxy holds in user space and transport buffers, all connections."""
        return sum(link.buffered_bytes() for link in self._links)

    @property
    def fault(self) -> Fault | None:
        return self._fault

    # --- manual control ----------------------------------------------------------

    def set_fault(self, name: str, **params: object) -> None:
        """Replace the active fault (if any) by ``name``; ValueError if unknown/invalid."""
        fault = _validate(name, params)
        self.clear_fault()
        self._apply(fault)

    def clear_fault(self) -> None:
        """Revert the active fault; a no-op without one. Re-listening may raise OSError."""
        fault, self._fault = self._fault, None
        if fault is None:
            return
        self._one_way_delay = 0.0
        self._upstream_open.set()
        self._downstream_open.set()
        for link in self._links:
            link.flowing.set()
        if fault.name is ProxyFault.REFUSE and self._loop is not None:
            self._listen()

    # --- faults as context managers ------------------------------------------------

    @contextlib.contextmanager
    def latency(self, ms: float) -> Iterator[None]:
        """Add ``ms`` to the round trip: each direction is delayed by half of it."""
        with self._scoped(ProxyFault.LATENCY, ms=ms):
            yield

    @contextlib.contextmanager
    def blackhole(self) -> Iterator[None]:
        """Forward nothing, keep every socket open, accept new connections (which
        reach the target only when the fault ends, as a dropped SYN would)."""
        with self._scoped(ProxyFault.BLACKHOLE):
            yield

    @contextlib.contextmanager
    def reset(self) -> Iterator[None]:
        """RST both sides of every connection now, and every new one while active."""
        with self._scoped(ProxyFault.RESET):
            yield

    @contextlib.contextmanager
    def refuse(self) -> Iterator[None]:
        """Stop listening (connects get ECONNREFUSED) and reset existing connections;
        listen again on the same address and port on exit."""
        with self._scoped(ProxyFault.REFUSE):
            yield

    @contextlib.contextmanager
    def half_open(self, direction: Direction) -> Iterator[None]:
        """Forward only ``direction``: "upstream" is client->target, "downstream" the
        reverse. The other direction is held, as by a one-way blackhole."""
        with self._scoped(ProxyFault.HALF_OPEN, direction=direction):
            yield

    @contextlib.contextmanager
    def close(self) -> Iterator[None]:
        """Close every connection cleanly (FIN to both sides), new ones at once."""
        with self._scoped(ProxyFault.CLOSE):
            yield

    @contextlib.contextmanager
    def reset_share(self, every: int) -> Iterator[None]:
        """RST every ``every``-th connection now, and every ``every``-th new one while
        active: a share of the LB's backends dying (2: half the connections)."""
        with self._scoped(ProxyFault.RESET_SHARE, every=every):
            yield

    @contextlib.contextmanager
    def blackhole_share(self, every: int) -> Iterator[None]:
        """Forward nothing on every ``every``-th connection, existing and new, keeping
        its sockets open; the rest flow as before."""
        with self._scoped(ProxyFault.BLACKHOLE_SHARE, every=every):
            yield

    @contextlib.contextmanager
    def _scoped(self, name: ProxyFault, **params: object) -> Iterator[None]:
        if self._fault is not None:
            # Scripts stack faults by mistake; silently replacing one would hide it.
            raise RuntimeError(f"{self.name}: fault {self._fault.name.value!r} is already active")
        fault = _validate(name, params)
        self._apply(fault)
        try:
            yield
        finally:
            if self._fault is fault:
                self.clear_fault()

    def _apply(self, fault: Fault) -> None:
        self._fault = fault
        if fault.name is ProxyFault.LATENCY:
            self._one_way_delay = float(fault.params["ms"]) / 2000.0
        elif fault.name is ProxyFault.BLACKHOLE:
            self._upstream_open.clear()
            self._downstream_open.clear()
        elif fault.name is ProxyFault.HALF_OPEN:
            if fault.params["direction"] == "upstream":
                self._downstream_open.clear()
            else:
                self._upstream_open.clear()
        elif fault.name in _RESETTING:
            if fault.name is ProxyFault.REFUSE:
                self._unlisten()
            for link in list(self._links):
                link.reset()
        elif fault.name is ProxyFault.CLOSE:
            for link in list(self._links):
                link.close()
        elif fault.name in _SHARED:
            self._accepted_in_fault = {}
            every = int(fault.params["every"])
            by_peer: dict[str, list[_Link]] = {}
            for link in sorted(self._links, key=lambda link: link.serial):
                by_peer.setdefault(link.peer, []).append(link)
            chosen = [link for links in by_peer.values() for link in links[::every]]
            for link in chosen:
                if fault.name is ProxyFault.RESET_SHARE:
                    link.reset()
                else:
                    link.flowing.clear()

    def _share_takes_next(self, peer: str) -> ProxyFault | None:
        """Whether the active share fault takes the connection just accepted from ``peer``."""
        fault = self._fault
        if fault is None or fault.name not in _SHARED:
            return None
        if peer not in self._accepted_in_fault and len(self._accepted_in_fault) >= BACKLOG:
            self._accepted_in_fault.clear()  # bounded: a scan from many addresses
        count = self._accepted_in_fault.get(peer, 0)
        self._accepted_in_fault[peer] = count + 1
        return fault.name if count % int(fault.params["every"]) == 0 else None

    # --- listening -----------------------------------------------------------------

    def _listen(self) -> None:
        assert self._loop is not None
        family, kind, proto, _, address = socket.getaddrinfo(
            self._listen_host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
        try:
            # Lets "refuse" re-bind the port at once although its connections linger.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(BACKLOG)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._accept_ready)

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(listener.fileno())
        # Connections still in the accept queue get a RST from the kernel, as refused.
        listener.close()

    def _accept_ready(self) -> None:
        assert self._loop is not None
        for _ in range(BACKLOG):
            if self._listener is None:
                return
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # EMFILE and friends: the connection stays queued; try again on the next
                # readiness callback instead of spinning.
                log.warning("%s: accept failed", self.name, exc_info=True)
                return
            self._total_accepted += 1
            fault = self._fault.name if self._fault is not None else None
            peer = str(address[0])
            share = self._share_takes_next(peer)
            if fault in _RESETTING or share is ProxyFault.RESET_SHARE:
                _rst_socket(sock)
                continue
            if fault is ProxyFault.CLOSE:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                sock.close()
                continue
            sock.setblocking(False)
            task = self._loop.create_task(
                self._serve(sock, peer, held=share is ProxyFault.BLACKHOLE_SHARE)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # --- forwarding ----------------------------------------------------------------

    async def _serve(self, sock: socket.socket, peer: str, held: bool = False) -> None:
        try:
            client_reader, client_writer = await asyncio.open_connection(
                sock=sock, limit=CHUNK_BYTES
            )
        except BaseException:
            sock.close()
            raise
        link = _Link(client_writer, self._total_accepted, peer)
        if held:
            link.flowing.clear()
        self._links.add(link)
        pumps: list[asyncio.Task[None]] = []
        try:
            # A blackholed or one-way path would drop the SYN to the target as well.
            await self._upstream_open.wait()
            await link.flowing.wait()
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    target_reader, target_writer = await asyncio.open_connection(
                        *self._target, limit=CHUNK_BYTES, local_addr=self._source
                    )
            except (OSError, TimeoutError):
                link.reset()  # the client learns at once that the target is gone
                return
            link.target = target_writer
            if link.done.is_set():  # a reset/close fault hit while we were connecting
                _rst_writer(target_writer)
                return
            pumps = [
                asyncio.create_task(
                    self._pump(link, client_reader, target_writer, self._upstream_open)
                ),
                asyncio.create_task(
                    self._pump(link, target_reader, client_writer, self._downstream_open)
                ),
            ]
            await link.done.wait()
        finally:
            self._links.discard(link)
            if not link.done.is_set():  # cancelled by stop()
                link.reset()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(
        self,
        link: _Link,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        gate: asyncio.Event,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        reader = asyncio.create_task(self._read_side(link, src, queue, gate))
        try:
            await self._write_side(link, dst, queue, gate)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_side(
        self,
        link: _Link,
        src: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        gate: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await gate.wait()
                await link.flowing.wait()
                data = await src.read(CHUNK_BYTES)
                link.queued_bytes += len(data)
                await queue.put((loop.time(), data))
                if not data:
                    return
        except OSError:
            link.reset()  # a RST from one side is passed on to the other

    async def _write_side(
        self,
        link: _Link,
        dst: asyncio.StreamWriter,
        queue: asyncio.Queue[tuple[float, bytes]],
        gate: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                stamp, data = await queue.get()
                # Read at forwarding time, so a latency change reaches queued chunks too.
                wait = stamp + self._one_way_delay - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await gate.wait()
                await link.flowing.wait()
                link.queued_bytes -= len(data)
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()  # pass the half-close on
                    link.eofs += 1
                    if link.eofs == 2:
                        link.close()
                    return
                dst.write(data)
                await dst.drain()
        except OSError:
            link.reset()
