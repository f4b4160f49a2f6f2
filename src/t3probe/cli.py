"""Command line: ``t3probe run | check-config | echo | lab | attribute | healthcheck``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import prometheus_client

from t3probe import __version__, eventloop, netguard

EXIT_OK = 0
EXIT_RUNTIME_ERROR = 1
EXIT_CONFIG_ERROR = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# ProbeConfig's default `listen` (a test keeps them equal): the healthcheck does not
# import the config model, which costs half a second at every container health check.
HEALTHCHECK_DEFAULT_LISTEN = "0.0.0.0:9108"
HEALTHCHECK_TIMEOUT_SECONDS = 4.0

DESCRIPTION = """\
t3probe holds permanent probe legs to one backend over routes that differ in one
segment, exports per-leg Prometheus metrics and names the segment at fault.

Start with `t3probe lab` to watch it work on loopback, then write a config
(examples/reference.yaml is the production shape) and `t3probe run --config FILE`.
"""


def _log_level_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--log-level",
        default=default,
        type=str.upper,
        choices=LOG_LEVELS,
        help="diagnostics on stderr (events go to stdout as JSON lines); default"
        " $T3PROBE_LOG_LEVEL, else INFO",
    )


def _log_level_parent() -> argparse.ArgumentParser:
    """``--log-level`` after the subcommand too. SUPPRESS: a subcommand that is not
    given one must not overwrite the value given before it with a default."""
    parent = argparse.ArgumentParser(add_help=False)
    _log_level_option(parent, argparse.SUPPRESS)
    return parent


def _config_file_options(parser: argparse.ArgumentParser) -> None:
    # Both forms work: `run FILE` is what a newcomer types, `--config FILE` what the
    # image and the manifests say.
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML config file (same as FILE)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t3probe",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"t3probe {__version__}")
    _log_level_option(parser, os.environ.get("T3PROBE_LOG_LEVEL", "INFO").upper())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_log_level_parent()]

    run = commands.add_parser(
        "run",
        parents=common,
        help="run the probe daemon",
        description="Run the probe. Config from FILE, overridden by T3PROBE_* environment"
        " variables (T3PROBE_<KEY>, e.g. T3PROBE_HEARTBEAT_SECONDS=5; T3PROBE_LEGS takes JSON)."
        " Exits 2 on a bad config before binding any port; SIGTERM/SIGINT close every"
        " WebSocket with 1001 and exit 0. SIGHUP or POST /-/reload re-read FILE and the"
        " environment: unchanged legs keep their connections, a bad config is rejected."
        " Without FILE the config comes from the environment alone.",
    )
    _config_file_options(run)

    check = commands.add_parser(
        "check-config",
        parents=common,
        help="validate a config file and print the effective config",
        description="Validate FILE (with T3PROBE_* overrides applied) and print the"
        " effective config as YAML, derived defaults filled in. Exits 2 naming the"
        " offending field on error.",
    )
    _config_file_options(check)

    echo = commands.add_parser(
        "echo",
        parents=common,
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
        help="where to serve (default: %(default)s)",
    )
    echo.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open WebSockets in all; past it an upgrade gets 503 (default: 1000)",
    )
    echo.add_argument(
        "--max-connections-per-client",
        type=int,
        metavar="N",
        help="WebSockets one client address may hold; past it an upgrade gets 429. Also"
        " caps its connections that have not upgraded yet (default: 32)",
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
        help="an address holding this many WebSockets gets none from the reserve (default: 4)",
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
        parents=common,
        help="run the whole topology on loopback with the probe against it",
        description="The embedded default: echo dispatch, LB and CDN edge as fault proxies,"
        " a DoH server and a backend, all on loopback, probed with compressed timings."
        " Without --scenario it runs until interrupted, with a live view and a control"
        " endpoint for injecting faults by hand.",
    )
    lab.add_argument(
        "--scenario",
        action="append",
        metavar="NAME|all",
        help="run scripted faults and exit; repeat to run several (see --list)",
    )
    lab.add_argument(
        "--listen",
        default="127.0.0.1:9108",
        metavar="HOST:PORT",
        help="probe's HTTP surface (default: %(default)s)",
    )
    lab.add_argument(
        "--control",
        default="127.0.0.1:9109",
        metavar="HOST:PORT",
        help="HTTP API for injecting faults by hand, GET /lab for how (default: %(default)s)",
    )
    lab.add_argument(
        "--connections",
        type=int,
        default=1,
        metavar="N",
        help="connections per WebSocket leg, 1..64; with several, inject"
        " lb/reset_share to see a partial fault's blast radius (default: %(default)s)",
    )
    lab.add_argument("--list", action="store_true", help="list the scenarios and exit")

    attribute = commands.add_parser(
        "attribute",
        parents=common,
        help="answer a user's report: was the drop at TIME infra or their network?",
        description="Per-leg evidence around TIME, the probe's verdict replayed over it and"
        " split into incidents, answering with the incident at (or nearest) TIME and the"
        " evidence queries that fired for its suspect segments; from Prometheus or a"
        " probe's /events. Exit 0: all legs clean; 3: infra fault; 5: infra degraded (slow,"
        " not down); 4: no data; 2: bad input; 1: the source could not be queried.",
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
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="zone of HH:MM times and of the output: IANA name, UTC (default), local ($TZ)"
        " or +HH:MM; a time carrying its own zone (14:03:05+01:00) keeps it",
    )
    attribute.add_argument(
        "--config",
        metavar="FILE",
        help="the probe's config: the legs' segments and attribution windows"
        " (Prometheus does not carry them; without it the probe's own convictions name"
        " the suspects)",
    )
    attribute.add_argument(
        "--evidence",
        metavar="FILE",
        help="YAML evidence queries per segment, replacing the defaults"
        " (print them: python -m t3probe.attribute.mechanisms --yaml)",
    )
    source = attribute.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="Prometheus scraping the probe")
    source.add_argument("--events", metavar="URL", help="a live probe's base or /events URL")
    attribute.add_argument("--json", action="store_true", help="one JSON object instead")

    health = commands.add_parser(
        "healthcheck",
        help="exit 0 if the probe on this host answers /healthz (the image's HEALTHCHECK)",
        description="GET /healthz of the probe at the config's `listen` address (T3PROBE_LISTEN"
        f" overrides it; default {HEALTHCHECK_DEFAULT_LISTEN}), a wildcard address on loopback."
        " Exit 0 on 200, 1 on anything else. Reads only `listen` from FILE.",
    )
    health.add_argument("--config", type=Path, metavar="FILE", help="the probe's config file")
    return parser


def _run(config_path: Path | None) -> int:
    from t3probe.config_file import ConfigError, load_config
    from t3probe.daemon import ListenError, Probe, run_until_signalled

    try:
        _, loop_factory = eventloop.choose(os.environ)
    except ValueError as err:
        print(f"t3probe: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        config = load_config(config_path)
    except ConfigError as err:
        print(f"t3probe: invalid config: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        probe = Probe(config, config_source=lambda: load_config(config_path), freeze_gc=True)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(run_until_signalled(probe))
    except ListenError as err:
        # The config named an address this host cannot bind: a config error, like any.
        print(f"t3probe: invalid config: listen: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


def _config_path(command: str, file: Path | None, option: Path | None) -> Path | None:
    if file is not None and option is not None:
        raise ValueError(f"{command}: give the config as FILE or --config FILE, not both")
    return file if file is not None else option


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


def _healthcheck(config_path: Path | None) -> int:
    # Only `listen` is read: a file broken elsewhere (its reload was rejected and the old
    # config runs on) must not make a healthy probe look dead and get it restarted.
    import http.client

    import yaml

    listen: object = HEALTHCHECK_DEFAULT_LISTEN
    if config_path is not None:
        try:
            data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            print(f"t3probe healthcheck: cannot read {config_path}: {err}", file=sys.stderr)
            return EXIT_RUNTIME_ERROR
        if isinstance(data, dict) and "listen" in data:
            listen = data["listen"]
    listen = os.environ.get("T3PROBE_LISTEN", listen)
    host, sep, port_text = str(listen).rpartition(":")
    host = host.strip("[]")
    if not (sep and host and port_text.isdigit() and int(port_text) <= 65535):
        print(f"t3probe healthcheck: listen: {listen!r} is not HOST:PORT", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    # A wildcard bind answers on loopback, which needs no route out of the container.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port_text}/healthz"
    connection = http.client.HTTPConnection(host, int(port_text), HEALTHCHECK_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as err:
        print(f"t3probe healthcheck: GET {url} failed: {err}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    finally:
        connection.close()
    if status != 200:
        print(f"t3probe healthcheck: GET {url} answered {status}", file=sys.stderr)
        return EXIT_RUNTIME_ERROR
    return EXIT_OK


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
    if args.command in ("run", "check-config"):
        try:
            path = _config_path(args.command, args.file, args.config)
        except ValueError as err:
            print(f"t3probe {err}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        if args.command == "run":
            # No file: the config comes from T3PROBE_* alone (README: Configuration).
            return _run(path)
        if path is None:
            print("t3probe check-config: give the config as FILE or --config FILE", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        return _check_config(path)
    if args.command == "healthcheck":
        return _healthcheck(args.config)
    if args.command == "echo":
        from t3probe.echo_cli import run_echo

        return run_echo(args)
    if args.command == "lab":
        from t3probe.lab.cli import run_lab

        return run_lab(
            scenarios=args.scenario,
            listen=args.listen,
            list_only=args.list,
            control=args.control,
            connections=args.connections,
        )
    from t3probe.attribute.cli import run_attribute

    return run_attribute(args)
