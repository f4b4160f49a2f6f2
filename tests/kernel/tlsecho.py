"""``python -m tests.kernel.tlsecho``: the reference echo behind TLS, for the server ns.

``t3probe echo`` has no TLS option, so the kernel-fault topology runs the same hardened
echo (:func:`t3probe.echo.serve_echo`) with a leaf certificate from the throw-away CA of
:mod:`t3probe.lab.pki`. Like every process in those namespaces it keeps the network
guard, widened to 198.18.0.0/15 through the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from t3probe import netguard
from t3probe.config import parse_listen
from t3probe.daemon import stop_on_signals
from t3probe.echo import EchoLimits, serve_echo
from t3probe.lab.pki import LeafCert

log = logging.getLogger("tlsecho")


async def _serve(host: str, port: int, leaf: LeafCert) -> int:
    server = await serve_echo(host, port, EchoLimits(), ssl_context=leaf.server_context())
    log.info("tls echo serving /probe/ws on %s:%d", host, server.port)
    stop = stop_on_signals()
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    netguard.install_from_environment(os.environ)
    parser = argparse.ArgumentParser(prog="python -m tests.kernel.tlsecho")
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--cert", required=True, type=Path)
    parser.add_argument("--key", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    host, port = parse_listen(args.listen)
    return asyncio.run(_serve(host, port, LeafCert(args.cert, args.key)))


if __name__ == "__main__":
    sys.exit(main())
