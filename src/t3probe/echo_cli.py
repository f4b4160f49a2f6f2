"""``t3probe echo``: serve the reference /probe/ws contract until signalled."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from t3probe.config import parse_listen
from t3probe.daemon import stop_on_signals
from t3probe.echo import EchoLimits, serve_echo
from t3probe.echo_clients import parse_networks

log = logging.getLogger(__name__)

# EchoLimits field -> the option that sets it, so an error names what the user typed.
OPTIONS = {
    "max_connections": "--max-connections",
    "max_connections_per_client": "--max-connections-per-client",
    "reserved_connections": "--reserved-connections",
    "reserve_max_per_client": "--reserve-max-per-client",
    "max_pending_connections": "--max-pending-connections",
    "trusted_proxies": "--trusted-proxy",
}


def limits_from_args(args: argparse.Namespace) -> EchoLimits:
    """The limits the options ask for; ValueError naming the option on a bad value."""
    parse_networks(args.trusted_proxy, "--trusted-proxy")
    given: dict[str, Any] = {
        field: getattr(args, option[2:].replace("-", "_"))
        for field, option in OPTIONS.items()
        if field != "trusted_proxies"
    }
    chosen = {field: value for field, value in given.items() if value is not None}
    try:
        return EchoLimits(trusted_proxies=tuple(args.trusted_proxy), **chosen)
    except ValueError as err:
        message = str(err)
        # Longest first: max_connections is a prefix of max_connections_per_client.
        for field in sorted(OPTIONS, key=len, reverse=True):
            message = message.replace(f"EchoLimits.{field}", OPTIONS[field])
        raise ValueError(message) from None


async def _serve(host: str, port: int, limits: EchoLimits) -> int:
    try:
        server = await serve_echo(host, port, limits)
    except OSError as err:
        print(f"t3probe echo: cannot listen on {host}:{port}: {err.strerror}", file=sys.stderr)
        return 1
    log.info(
        "echo serving /probe/ws and /probe/healthz on %s:%d (%d WebSockets, %d per client"
        " address, %d reserved; trusted proxies: %s)",
        host,
        server.port,
        limits.max_connections,
        limits.max_connections_per_client,
        limits.reserve,
        ", ".join(limits.trusted_proxies) or "none",
    )
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def run_echo(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
    except ValueError as err:
        print(f"t3probe echo: --listen: {err}", file=sys.stderr)
        return 2
    try:
        limits = limits_from_args(args)
    except ValueError as err:
        print(f"t3probe echo: {err}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(host, port, limits))
