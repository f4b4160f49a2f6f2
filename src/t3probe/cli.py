"""Command line: ``t3probe run | check-config | echo | lab | attribute``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import prometheus_client

from t3probe import __version__, netguard

EXIT_OK = 0
EXIT_RUNTIME_ERROR = 1
EXIT_CONFIG_ERROR = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

DESCRIPTION = """\
t3probe holds permanent probe legs to one backend over routes that differ in one
segment, exports per-leg Prometheus metrics and names the segment at fault.

Start with `t3probe lab` to watch it work on loopback, then write a config
(examples/reference.yaml is the production shape) and `t3probe run --config FILE`.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t3probe",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"t3probe {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("T3PROBE_LOG_LEVEL", "INFO").upper(),
        type=str.upper,
        choices=LOG_LEVELS,
        help="diagnostics on stderr (events go to stdout as JSON lines); default INFO",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the probe daemon",
        description="Run the probe. Config from FILE, overridden by T3PROBE_* environment"
        " variables (T3PROBE_<KEY>, e.g. T3PROBE_HEARTBEAT_SECONDS=5; T3PROBE_LEGS takes JSON)."
        " Exits 2 on a bad config before binding any port; SIGTERM/SIGINT close every"
        " WebSocket with 1001 and exit 0. SIGHUP or POST /-/reload re-read FILE and the"
        " environment: unchanged legs keep their connections, a bad config is rejected.",
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="YAML config file")

    check = commands.add_parser(
        "check-config",
        help="validate a config file and print the effective config",
        description="Validate FILE (with T3PROBE_* overrides applied) and print the"
        " effective config as YAML. Exits 2 naming the offending field on error.",
    )
    check.add_argument("file", type=Path, metavar="FILE")

    echo = commands.add_parser(
        "echo",
        help="serve the reference /probe/ws echo and /probe/healthz",
        description="The dispatch-side contract: /probe/ws echoes text frames, hardened"
        " against abuse (text only, small frames, a rate limit on every frame, connection"
        " caps per client address, idle timeout). A client address is the TCP peer (an"
        " IPv6 client counts by its /64); behind a reverse proxy or load balancer, name it"
        " with --trusted-proxy or every client shares the proxy's quota. Exits 2 on a bad"
        " option.",
    )
    echo.add_argument(
        "--listen",
        default="127.0.0.1:8765",
        metavar="HOST:PORT",
        help="where to serve (default 127.0.0.1:8765)",
    )
    echo.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open WebSockets in all; past it an upgrade gets 503 (default 1000)",
    )
    echo.add_argument(
        "--max-connections-per-client",
        type=int,
        metavar="N",
        help="WebSockets one client address may hold; past it an upgrade gets 429. Also"
        " caps its connections that have not upgraded yet (default 32)",
    )
    echo.add_argument(
        "--reserved-connections",
        type=int,
        metavar="N",
        help="the last N WebSocket slots go only to addresses holding fewer than"
        " --reserve-max-per-client, so greedy clients cannot lock a probe out"
        " (default: a tenth of --max-connections)",
    )
    echo.add_argument(
        "--reserve-max-per-client",
        type=int,
        metavar="N",
        help="an address holding this many WebSockets gets none from the reserve (default 4)",
    )
    echo.add_argument(
        "--max-pending-connections",
        type=int,
        metavar="N",
        help="TCP connections not yet upgraded (or plain HTTP); more are closed at accept"
        " (default: --max-connections)",
    )
    echo.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a proxy network whose X-Forwarded-For is believed (its right-most hop"
        " outside every trusted network is the client); repeatable; default none, so the"
        " header is ignored",
    )

    lab = commands.add_parser(
        "lab",
        help="run the whole topology on loopback with the probe against it",
        description="The embedded default: echo dispatch, LB and CDN edge as fault proxies,"
        " a DoH server and a backend, all on loopback, probed with compressed timings."
        " Without --scenario it runs until interrupted, with a live view and a control"
        " endpoint for injecting faults by hand.",
    )
    lab.add_argument("--scenario", metavar="NAME|all", help="run scripted faults and exit")
    lab.add_argument(
        "--listen", default="127.0.0.1:9108", metavar="HOST:PORT", help="probe's HTTP surface"
    )
    lab.add_argument(
        "--control",
        default="127.0.0.1:9109",
        metavar="HOST:PORT",
        help="HTTP API for injecting faults by hand (see the live view)",
    )
    lab.add_argument("--list", action="store_true", help="list the scenarios and exit")

    attribute = commands.add_parser(
        "attribute",
        help="answer a user's report: was the drop at TIME infra or their network?",
        description="Per-leg evidence around TIME and the verdict, from Prometheus or a"
        " probe's /events. Exit 0: all legs clean; 3: infra fault; 4: no data; 2: bad input;"
        " 1: the source could not be queried.",
    )
    attribute.add_argument(
        "--at",
        required=True,
        metavar="TIME",
        help="when the user dropped: RFC 3339, HH:MM[:SS] (today in --tz), a unix"
        " timestamp, or relative like -15m / -2h",
    )
    attribute.add_argument(
        "--window",
        type=float,
        metavar="SECONDS",
        help="evidence window, mostly before TIME (default 60: the watchdog plus a margin)",
    )
    attribute.add_argument(
        "--tz", default="UTC", metavar="ZONE", help="zone for HH:MM times (default UTC)"
    )
    source = attribute.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="Prometheus scraping the probe")
    source.add_argument("--events", metavar="URL", help="a live probe's base or /events URL")
    attribute.add_argument("--json", action="store_true", help="one JSON object instead")
    return parser


def _run(config_path: Path | None) -> int:
    from t3probe.config_file import ConfigError, load_config
    from t3probe.daemon import ListenError, Probe, run_until_signalled

    try:
        config = load_config(config_path)
    except ConfigError as err:
        print(f"t3probe: invalid config: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        probe = Probe(config, config_source=lambda: load_config(config_path))
        return asyncio.run(run_until_signalled(probe))
    except ListenError as err:
        # The config named an address this host cannot bind: a config error, like any.
        print(f"t3probe: invalid config: listen: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def _check_config(path: Path) -> int:
    from t3probe.config_file import ConfigError, dump_config, load_config

    try:
        config = load_config(path)
    except ConfigError as err:
        print(f"t3probe: invalid config: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    sys.stdout.write(dump_config(config))
    return EXIT_OK


def _join_relative_times(argv: Sequence[str]) -> list[str]:
    """Let ``--at -15m`` work: argparse would read ``-15m`` as an unknown option."""
    joined: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else ""
        if arg == "--at" and following.startswith("-"):
            joined.append(f"--at={following}")
            index += 2
            continue
        joined.append(arg)
        index += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    # Tests and benchmarks set T3PROBE_LOOPBACK_ONLY=1 so a child can only reach loopback;
    # the kernel-fault tests add T3PROBE_ALLOWED_NETWORKS=198.18.0.0/15 for processes in
    # the network namespaces they make (the guard is widened, never dropped).
    try:
        netguard.install_from_environment(os.environ)
    except ValueError as err:
        print(f"t3probe: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    # *_created series double the exposition and no t3probe query or alert uses them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    raw = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(_join_relative_times(raw))
    if args.log_level not in LOG_LEVELS:
        print(
            f"t3probe: T3PROBE_LOG_LEVEL={args.log_level!r} is not one of {', '.join(LOG_LEVELS)}",
            file=sys.stderr,
        )
        return EXIT_CONFIG_ERROR
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from t3probe import logfilters

    logfilters.install()
    if args.command == "run":
        return _run(args.config)
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "echo":
        from t3probe.echo_cli import run_echo

        return run_echo(args)
    if args.command == "lab":
        from t3probe.lab.cli import run_lab

        return run_lab(
            scenario=args.scenario, listen=args.listen, list_only=args.list, control=args.control
        )
    from t3probe.attribute.cli import run_attribute

    return run_attribute(args)
