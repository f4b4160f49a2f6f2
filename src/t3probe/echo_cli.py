"""``t3probe echo``: serve the reference /probe/ws contract until signalled."""

from __future__ import annotations

import asyncio
import logging
import sys

from t3probe.config import parse_listen
from t3probe.daemon import stop_on_signals
from t3probe.echo import EchoLimits, serve_echo

log = logging.getLogger(__name__)


async def _serve(host: str, port: int) -> int:
    try:
        server = await serve_echo(host, port, EchoLimits())
    except OSError as err:
        print(f"t3probe echo: cannot listen on {host}:{port}: {err.strerror}", file=sys.stderr)
        return 1
    log.info("echo serving /probe/ws and /probe/healthz on %s:%d", host, server.port)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def run_echo(listen: str) -> int:
    try:
        host, port = parse_listen(listen)
    except ValueError as err:
        print(f"t3probe echo: --listen: {err}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(host, port))
