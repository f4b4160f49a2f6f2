"""``t3probe attribute``: parse the request, ask the source, print, map to an exit code."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import time
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from t3probe.attribute import incidents, mechanism_check, mechanisms, report, sources
from t3probe.attribute.http import base_url
from t3probe.attribute.model import BadInput, SourceError, SourceKind, Window, window_for
from t3probe.attribute.timeparse import parse_offset, parse_time
from t3probe.attribute.verdict import Finding, Outcome, judge
from t3probe.attribution import Policy, VerdictName
from t3probe.config_file import ConfigError, load_config

EXIT_CLEAN = 0
EXIT_SOURCE_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INFRA_FAULT = 3
EXIT_NO_DATA = 4
# Slow, not down: neither a hard fault (3) nor clean (0), which it must not read as.
EXIT_DEGRADED = 5
EXIT_CODES: dict[Outcome, int] = {
    "clean": EXIT_CLEAN,
    "infra_fault": EXIT_INFRA_FAULT,
    "degraded": EXIT_DEGRADED,
    "no_data": EXIT_NO_DATA,
}
# Every request has its own deadline; this bounds the whole answer, queued requests included.
OVERALL_DEADLINE_SECONDS = 60.0
_LOCALTIME = Path("/etc/localtime")


@dataclass(frozen=True)
class Request:
    window: Window
    tz: dt.tzinfo
    source: SourceKind
    url: str
    as_json: bool
    definitions: tuple[mechanisms.Definition, ...] = mechanisms.DEFAULTS
    policy: Policy = incidents.DEFAULT_POLICY
    # Leg → segments from the probe's config (Prometheus does not export them).
    segments: dict[str, tuple[str, ...]] | None = None


def load_zone(name: str, environ: Mapping[str, str] | None = None) -> dt.tzinfo:
    """An IANA zone, ``UTC``, ``local`` ($TZ, else /etc/localtime) or a ``+HH:MM`` offset."""
    offset = parse_offset(name)
    if offset is not None:
        return offset
    if name == "local":
        # $TZ is what the user's other tools (date, the lab's view) follow: so does this.
        tz_name = (os.environ if environ is None else environ).get("TZ", "").lstrip(":")
        if tz_name:
            return _named_zone(tz_name, f"$TZ {tz_name!r}")
        if _LOCALTIME.exists():
            with _LOCALTIME.open("rb") as file:
                return zoneinfo.ZoneInfo.from_file(file, key="localtime")
        local = dt.datetime.now().astimezone().tzinfo
        return local if local is not None else dt.UTC
    return _named_zone(name, f"--tz {name!r}")


def _named_zone(name: str, what: str) -> dt.tzinfo:
    if name.startswith("/"):
        # TZ=/usr/share/zoneinfo/Europe/Berlin is a valid POSIX spelling.
        name = name.split("zoneinfo/", 1)[-1]
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInput(
            f"{what} is not a time zone: use an IANA name (Europe/Berlin), UTC,"
            " local or an offset (+02:00)"
        ) from None


def build_request(args: argparse.Namespace, now: float) -> Request:
    tz = load_zone(args.tz)
    point = parse_time(args.at, now, tz)
    window = window_for(point, args.window, now)
    extra = _definitions(getattr(args, "evidence", None))
    policy, segments = _probe_config(getattr(args, "config", None))
    if args.prometheus is not None:
        url = base_url(args.prometheus, "--prometheus")
        return Request(window, tz, "prometheus", url, args.json, extra, policy, segments)
    if args.events is None:
        raise BadInput("give --prometheus URL or --events URL")
    # The runbook shows the /events URL itself; the probe's base URL works as well.
    url = base_url(args.events, "--events", strip_suffixes=("/events", "/verdict"))
    return Request(window, tz, "events", url, args.json, extra, policy, segments)


def _definitions(path: str | None) -> tuple[mechanisms.Definition, ...]:
    if path is None:
        return mechanisms.DEFAULTS
    try:
        raw = Path(path).read_bytes()[: mechanisms.MAX_FILE_BYTES + 1]
    except OSError as err:
        raise BadInput(f"--evidence {path}: cannot read: {err.strerror}") from None
    if len(raw) > mechanisms.MAX_FILE_BYTES:
        raise BadInput(f"--evidence {path}: larger than {mechanisms.MAX_FILE_BYTES} bytes")
    return mechanisms.parse(raw.decode("utf-8", errors="replace"), f"--evidence {path}")


def _probe_config(path: str | None) -> tuple[Policy, dict[str, tuple[str, ...]] | None]:
    if path is None:
        return incidents.DEFAULT_POLICY, None
    try:
        config = load_config(Path(path), environ={})
    except ConfigError as err:
        raise BadInput(f"--config: {err}") from None
    policy = Policy(
        window=config.attribution_window_seconds,
        flap_window=config.effective_flap_window,
        flap_drops=config.flap_drops,
    )
    return policy, {leg.name: tuple(leg.segments) for leg in config.legs}


async def attribute_command(
    args: argparse.Namespace,
    *,
    now: float | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The whole command as a coroutine, for callers that already run an event loop."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    as_json = bool(getattr(args, "json", False))
    started = time.time() if now is None else now
    try:
        request = build_request(args, started)
    except BadInput as problem:
        return _fail(EXIT_BAD_INPUT, str(problem), as_json, out, err)
    collect = sources.from_prometheus if request.source == "prometheus" else sources.from_events
    lead_in = incidents.lead_in(request.policy)
    checks: tuple[mechanism_check.Check, ...] = ()
    try:
        async with asyncio.timeout(OVERALL_DEADLINE_SECONDS):
            evidence = await collect(
                request.url, request.window, started, lead_in, request.segments
            )
            found = incidents.incidents(evidence, request.policy)
            if request.source == "prometheus" and found.lead is not None:
                step = evidence.scrape_interval or 1.0
                checks = await mechanism_check.check(
                    request.url, request.definitions, found.lead, step
                )
    except TimeoutError:
        message = f"{request.url} did not answer within {OVERALL_DEADLINE_SECONDS:g} s"
        return _fail(EXIT_SOURCE_ERROR, message, as_json, out, err)
    except SourceError as problem:
        return _fail(EXIT_SOURCE_ERROR, str(problem), as_json, out, err)
    finding = _answer(judge(evidence), found)
    code = EXIT_CODES[finding.outcome]
    if request.as_json:
        document = report.as_json(evidence, finding, code, request.tz, found, checks)
        out.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(report.text(evidence, finding, request.tz, found, checks))
    return code


def _answer(window_finding: Finding, found: incidents.Incidents) -> Finding:
    """The incident nearest TIME answers; the whole window only when there is none."""
    lead = found.lead
    if lead is None:
        return window_finding
    failing = tuple(leg.name for leg in lead.legs)
    statuses = window_finding.leg_status
    if lead.verdict is VerdictName.PROBE_UNHEALTHY:
        outcome: Outcome = "no_data"
    elif lead.verdict is VerdictName.DEGRADED:
        outcome = "degraded"
        # The window is judged up/down only: its slow legs read "healthy" there.
        slow = {leg.name: leg.status for leg in lead.legs}
        statuses = tuple((name, slow.get(name, status)) for name, status in statuses)
        failing = ()
    else:
        outcome = "infra_fault"
    return Finding(
        outcome,
        lead.verdict,
        incidents.sentence(lead),
        suspects=lead.suspects,
        failing=failing,
        leg_status=statuses,
    )


def _fail(code: int, message: str, as_json: bool, out: TextIO, err: TextIO) -> int:
    err.write(f"t3probe attribute: {message}\n")
    if as_json:
        # Scripts reading stdout get an object either way.
        out.write(json.dumps({"outcome": "error", "exit_code": code, "error": message}) + "\n")
    return code


def run_attribute(args: argparse.Namespace) -> int:
    return asyncio.run(attribute_command(args))
