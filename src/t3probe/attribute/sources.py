"""Asking a source about a window: Prometheus' HTTP API, or a probe's /events + /verdict."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import aiohttp

from t3probe.attribute import eventsource, promhistory, promql
from t3probe.attribute.http import get_json, session
from t3probe.attribute.model import Evidence, SourceError, Window
from t3probe.attribute.prometheus import PrometheusAPI

# /events holds at most event_buffer_size (≤ 100 000) small objects, served in pages.
MAX_EVENT_PAGES = 200
MAX_EVENTS_BYTES = 32 * 1024 * 1024
MAX_VERDICT_BYTES = 4 * 1024 * 1024


async def from_prometheus(
    base: str,
    window: Window,
    now: float,
    lead: float = 0.0,
    segments: Mapping[str, tuple[str, ...]] | None = None,
) -> Evidence:
    # The history reaches past the window too, so an incident in it gets its real end.
    history_end = min(now, window.end + lead)
    history = promql.duration(history_end - window.start + lead)
    async with session() as client:
        api = PrometheusAPI(client, base)
        data, warnings = await api.query(promql.connected_query(window), window.end)
        connected = promql.parse_matrix(data)
        interval = promql.scrape_interval(connected)
        reach_back = interval or 0.0
        wanted = {
            "drops": (promql.drops_query(window, reach_back), window.end),
            "drop_times": (promql.drop_times_query(window, reach_back), window.end),
            "restarts": (promql.restarts_query(window, reach_back), window.end),
            "suspects": (promql.suspects_query(window), window.end),
        }
        for quantile in promql.QUANTILES:
            query = promql.rtt_query(window, quantile)
            wanted[f"before{quantile}"] = (query, window.start)
            wanted[f"during{quantile}"] = (query, window.end)
        for name, metric in (
            ("h_connected", "t3probe_connected"),
            ("h_counters", "t3probe_disconnects_total"),
            ("h_stamps", "t3probe_last_disconnect_timestamp_seconds"),
            ("h_suspected", "t3probe_segment_suspected"),
            ("h_degraded", "t3probe_leg_degraded"),
            ("h_slow", "t3probe_segment_degraded"),
        ):
            wanted[name] = (f"{metric}[{history}]", history_end)
        if not connected:
            wanted["present"] = (promql.PRESENCE_QUERY, now)
        names = list(wanted)
        answers = await asyncio.gather(*(api.query(*wanted[name]) for name in names))
    results: dict[str, Any] = {}
    all_warnings = list(warnings)
    for name, (result, more) in zip(names, answers, strict=True):
        results[name] = result
        all_warnings.extend(more)
    present = promql.parse_vector(results["present"]) if "present" in results else None
    parsed = promql.PrometheusAnswers(
        connected=connected,
        drops=promql.parse_vector(results["drops"]),
        drop_times=promql.parse_matrix(results["drop_times"]),
        restarts=promql.parse_vector(results["restarts"]),
        rtt_before={q: promql.parse_vector(results[f"before{q}"]) for q in promql.QUANTILES},
        rtt_during={q: promql.parse_vector(results[f"during{q}"]) for q in promql.QUANTILES},
        suspects=promql.parse_vector(results["suspects"]),
        warnings=tuple(dict.fromkeys(all_warnings)),
        present_now=None if present is None else int(sum(s.value for s in present)),
    )
    found = promql.evidence(base, window, parsed)
    h_connected = promql.parse_matrix(results["h_connected"])
    h_interval = promql.scrape_interval(h_connected) or interval
    start = window.start - lead
    legs = promhistory.histories(
        h_connected,
        promql.parse_matrix(results["h_counters"]),
        promql.parse_matrix(results["h_stamps"]),
        start,
        history_end,
        h_interval,
        segments or {},
        promql.parse_matrix(results["h_degraded"]),
    )
    convictions = _flagged(results["h_suspected"])
    return dataclasses.replace(
        found,
        histories=legs,
        history_start=start,
        history_end=history_end,
        probe_convictions=convictions,
        probe_slow=_flagged(results["h_slow"]),
        scrape_interval=h_interval,
    )


def _flagged(data: Any) -> tuple[tuple[str, float], ...]:
    """(segment, time) of each sample where a per-segment 0/1 gauge was 1."""
    return tuple(
        (one.labels.get("segment", ""), at)
        for one in promql.parse_matrix(data)
        for at, value in one.samples
        if value == 1
    )


async def from_events(
    base: str,
    window: Window,
    now: float,
    lead: float = 0.0,
    segments: Mapping[str, tuple[str, ...]] | None = None,
) -> Evidence:
    async with session() as client:
        # /verdict first: a change landing between the two fetches then shows in /events.
        verdict = await _probe_json(client, f"{base}/verdict", {}, MAX_VERDICT_BYTES)
        events = await _all_events(client, f"{base}/events")
    return eventsource.evidence(base, window, verdict, events, now, lead, segments or {})


async def _all_events(client: aiohttp.ClientSession, url: str) -> Any:
    """Every buffered event, page by page (a probe answers at most a page at a time).

    Pages follow the events' ids (``after_id=``): paging by time would skip the events
    sharing the millisecond a page ends on. A probe too old to give ids is paged by time.
    """
    collected: list[Any] = []
    params = {"since": "0"}  # every probe answers this with its oldest page
    for _ in range(MAX_EVENT_PAGES):
        page = await _probe_json(client, url, params, MAX_EVENTS_BYTES)
        events = page.get("events") if isinstance(page, dict) else None
        if not isinstance(events, list):
            return page  # not a t3probe document: the parser says what is wrong
        collected.extend(events)
        last = events[-1] if events and isinstance(events[-1], dict) else {}
        if not page.get("more"):
            break
        if isinstance(last.get("id"), int) and not isinstance(last.get("id"), bool):
            params = {"after_id": str(last["id"])}
        elif isinstance(last.get("at"), int | float):
            params = {"since": repr(float(last["at"]))}
        else:
            break
    return {"events": collected}


async def _probe_json(
    client: aiohttp.ClientSession, url: str, params: dict[str, str], max_bytes: int
) -> Any:
    answer = await get_json(client, url, params, max_bytes=max_bytes, what="the probe")
    if answer.status != 200 or answer.body is None:
        snippet = answer.text[:200].strip()
        raise SourceError(
            f"{url} answered HTTP {answer.status}, not a t3probe JSON document: {snippet!r}"
        )
    return answer.body
