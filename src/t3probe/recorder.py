"""The one place that turns what legs report into metrics, events and the verdict."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from t3probe.attribution import LegObservation, Policy, Verdict, VerdictName, compute_verdict
from t3probe.bursts import BurstTracker
from t3probe.clock import Clock
from t3probe.config import AnyLegConfig, ProbeConfig
from t3probe.degradation import RttTracker
from t3probe.events import EventLog, LegEvent
from t3probe.legstate import LegRecord
from t3probe.metrics import ProbeMetrics
from t3probe.reasons import Classified, DnsFailure
from t3probe.redact import redact_text

log = logging.getLogger(__name__)


class Recorder:
    def __init__(
        self,
        config: ProbeConfig,
        metrics: ProbeMetrics,
        clock: Clock,
        emit_line: Callable[[str], None],
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._emit_line = emit_line
        self.events = EventLog(config.event_buffer_size)
        self._legs: dict[str, LegRecord] = {}
        self._aged_legs: set[str] = set()
        self._bursts = BurstTracker(config.burst_window_seconds)
        for leg in config.legs:
            self._track(leg)
        self._policy = _policy_of(config)
        # config.segments walks every leg: once per config, not per refresh.
        self._segments = tuple(config.segments)
        self._verdict = Verdict(VerdictName.UNKNOWN)
        self._verdict_stale = False
        self._listeners: list[Callable[[LegEvent], None]] = []
        self._emit_failed = False
        # The worst loop lag within the last N seconds (the daemon's LoopLagMonitor): a
        # round trip the probe's own stall explains says nothing about the path.
        self.loop_lag: Callable[[float], float] = lambda seconds: 0.0

    def _track(self, leg: AnyLegConfig) -> None:
        self._legs[leg.name] = LegRecord.with_connections(
            leg.name,
            tuple(leg.segments),
            leg.connections,
            since=self._clock.wall(),
            rtts=RttTracker(self._config.degradation_policy(leg)),
        )
        if leg.holds_connection:
            self._aged_legs.add(leg.name)

    def reconfigure(
        self, config: ProbeConfig, retired: Iterable[str], launched: Iterable[AnyLegConfig]
    ) -> None:
        """Take a reloaded config: retired legs (stopped already) and their series go,
        launched ones start afresh, and segments no leg crosses any more leave the
        verdict and its metric."""
        for name in retired:
            self._legs.pop(name, None)
            self._aged_legs.discard(name)
            self._bursts.forget(name)
            self._metrics.remove_leg(name)
        for leg in launched:
            self._track(leg)
            self._metrics.add_leg(leg)
        old_segments, new_segments = set(self._config.segments), set(config.segments)
        for segment in old_segments - new_segments:
            self._metrics.remove_segment(segment)
        for segment in config.segments:
            if segment not in old_segments:
                self._metrics.add_segment(segment)
        self._config = config
        self._policy = _policy_of(config)
        self._bursts.interval = config.burst_window_seconds
        for leg in config.legs:
            # A kept leg keeps its baseline; only the rule it is judged by may change.
            self._legs[leg.name].rtts.policy = config.degradation_policy(leg)
        self._segments = tuple(config.segments)
        self.events.resize(config.event_buffer_size)
        self._verdict_stale = True  # other legs, other segments: a clean verdict may not hold
        self.refresh_verdict()

    def subscribe(self, listener: Callable[[LegEvent], None]) -> None:
        self._listeners.append(listener)

    def _emit(self, payload: dict[str, Any]) -> None:
        self._emit_text(json.dumps(payload, separators=(",", ":")))

    def _emit_text(self, line: str) -> None:
        # Called from inside legs: a failing sink must never look like a network fault.
        try:
            self._emit_line(line)
        except Exception:
            if not self._emit_failed:
                log.exception("writing an event line failed; events stay on /events")
            self._emit_failed = True

    def _publish(self, event: LegEvent) -> None:
        # One gate for every detail: exception texts quote URLs with their secrets.
        event = self.events.append(dataclasses.replace(event, detail=redact_text(event.detail)))
        self._emit_text(self.events.line_of(event))
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("an event listener failed")
        # Recomputing over every leg per event would block the loop for seconds when a
        # thousand legs drop together; the daemon refreshes twice a second instead.
        self._verdict_stale = True

    def _count_connections(self, record: LegRecord) -> None:
        up, total = record.connections_up, len(record.connections)
        self._metrics.connected.labels(leg=record.name).set(up / total)
        self._metrics.connections_up.labels(leg=record.name).set(up)

    def leg_up(self, leg: str, detail: str = "", connection: int = 0) -> None:
        record = self._legs.get(leg)
        if record is None:
            return  # retired by a reload while its last report was in flight
        now = self._clock.wall()
        was_up = record.state == "up"
        if not record.mark_up(now, self._clock.monotonic(), connection):
            return
        self._count_connections(record)
        self._publish(
            LegEvent(
                leg,
                "up",
                None,
                now,
                last_rtt_seconds=record.last_rtt,
                detail=detail,
                connection=connection,
            )
        )
        if not was_up and record.state == "up" and record.rtts.degraded:
            # Its other connections kept measuring while it was partly down (or not yet
            # whole): a leg whole again but slow says so, as its down ended the last.
            self._metrics.leg_degraded.labels(leg=leg).set(1)
            self._publish_slowness(record)

    def leg_down(
        self,
        leg: str,
        failure: Classified,
        age_seconds: float | None,
        attempt_started: float | None = None,
        connection: int = 0,
    ) -> None:
        record = self._legs.get(leg)
        if record is None:
            return
        now, monotonic = self._clock.wall(), self._clock.monotonic()
        conn = record.connection(connection)
        was_down = conn is not None and conn.state == "down"
        was_up = record.mark_down(
            failure.reason, now, monotonic, attempt_started=attempt_started, index=connection
        )
        self._count_connections(record)
        if record.connections_up == 0:
            record.rtts.new_connection()
            record.invalidate()
        if record.state == "down":
            # Down supersedes slow: its down event says what happened, no "recovered". A
            # leg partly down keeps its surviving connections' round trips, unreported.
            self._metrics.leg_degraded.labels(leg=leg).set(0)
        if was_down:
            # One outage is one disconnect, whatever the reconnects meet meanwhile.
            self._metrics.reconnect_failures.labels(leg=leg, reason=failure.reason.value).inc()
        if was_up is None:
            return
        if was_down:
            self._publish(
                LegEvent(
                    leg,
                    "reconnect_failed",
                    failure.reason,
                    now,
                    last_rtt_seconds=record.last_rtt,
                    detail=failure.detail,
                    close_code=failure.close_code,
                    connection=connection,
                )
            )
            return
        self._bursts.drop(leg, len(record.connections), connection, failure.reason, monotonic)
        self._metrics.disconnects.labels(leg=leg, reason=failure.reason.value).inc()
        self._metrics.last_disconnect.labels(leg=leg).set(now)
        if was_up and age_seconds is not None and leg in self._aged_legs:
            self._metrics.connection_age.labels(leg=leg).observe(age_seconds)
        self._publish(
            LegEvent(
                leg,
                "down",
                failure.reason,
                now,
                age_seconds=age_seconds if was_up else None,
                last_rtt_seconds=record.last_rtt,
                detail=failure.detail,
                close_code=failure.close_code,
                connection=connection,
            )
        )

    def flush_bursts(self) -> None:
        """Publish the bursts whose interval is over (the daemon asks twice a second)."""
        for leg, burst in self._bursts.due(self._clock.monotonic()):
            record = self._legs.get(leg)
            if record is None:
                continue
            self._publish(
                LegEvent(
                    leg,
                    "burst",
                    burst.reason,
                    self._clock.wall(),
                    last_rtt_seconds=record.last_rtt,
                    detail=burst.detail(),
                    connection=None,
                    dropped=burst.dropped,
                    of=burst.of,
                    interval_seconds=burst.interval,
                )
            )

    def observe_rtt(self, leg: str, seconds: float, connection: int = 0) -> None:
        record = self._legs.get(leg)
        if record is None:
            return
        record.mark_success(seconds, self._clock.monotonic(), connection)
        self._metrics.rtt.labels(leg).observe(seconds)
        # Asked only for a slow sample: the common fast one costs no lag lookup.
        if record.rtts.is_slow(seconds) and self.loop_lag(seconds) >= seconds / 2:
            return
        if record.rtts.observe(seconds):
            self._degradation_changed(record)
        self._note_slowness(record)

    def heartbeats_lost(self, leg: str, count: int) -> None:
        record = self._legs.get(leg)
        if record is None:
            return
        self._metrics.heartbeats_lost.labels(leg=leg).inc(count)
        if record.rtts.lost(count):
            self._degradation_changed(record)
        self._note_slowness(record)

    def _note_slowness(self, record: LegRecord) -> None:
        # Called after every round trip and loss: the slowness the observation reads may
        # have changed either way.
        record.invalidate()
        if record.rtts.degraded:
            record.last_slow_at = self._clock.monotonic()

    def _degradation_changed(self, record: LegRecord) -> None:
        degraded = record.rtts.degraded
        # Slow until this moment: the window of its memory starts now, either way.
        record.last_slow_at = self._clock.monotonic()
        # A round trip changed the verdict's inputs: a clean verdict is not reused.
        self._verdict_stale = True
        if record.state != "up":
            # Not whole: leg_up announces a slowness that outlasts the down.
            return
        self._metrics.leg_degraded.labels(leg=record.name).set(1 if degraded else 0)
        self._publish_slowness(record)

    def _publish_slowness(self, record: LegRecord) -> None:
        degraded = record.rtts.degraded
        self._publish(
            LegEvent(
                record.name,
                "degraded" if degraded else "recovered",
                None,
                self._clock.wall(),
                last_rtt_seconds=record.last_rtt,
                detail=record.rtts.detail(),
                connection=None,
            )
        )

    def observe_connect_phase(self, leg: str, phase: str, seconds: float) -> None:
        # A late report from a retired leg would resurrect the series a reload removed.
        if leg in self._legs:
            self._metrics.connect_duration.labels(leg=leg, phase=phase).observe(seconds)

    def dns_failure(self, leg: str, reason: DnsFailure) -> None:
        if leg in self._legs:
            self._metrics.dns_failures.labels(leg=leg, reason=reason.value).inc()

    def doh_server_state(self, leg: str, server: str, up: bool) -> None:
        if leg not in self._legs:
            return  # a late report from a leg a reload removed must not revive its series
        self._metrics.set_doh_server_up(leg, server, up=up)

    def baselines_learnt(self) -> bool:
        """Whether every leg can be judged slow yet (has a baseline or a fixed threshold)."""
        return all(record.rtts.threshold() is not None for record in self._legs.values())

    def observations(self) -> list[LegObservation]:
        now, policy = self._clock.monotonic(), self._policy
        return [
            record.observation(now, policy.window, policy.flap_window)
            for record in self._legs.values()
        ]

    def refresh_verdict(self) -> Verdict:
        # Time passing only ever clears evidence (drops and recoveries age out of their
        # windows): a verdict with every leg healthy stays so until a leg reports a
        # change. Recomputing it anyway cost a thousand legs 20-30 ms of loop twice a
        # second (docs/benchmarks.md).
        if not self._verdict_stale and self._verdict.verdict is VerdictName.INFRA_CLEAN:
            return self._verdict
        now = self._clock.wall()
        verdict = compute_verdict(self.observations(), self._clock.monotonic(), self._policy)
        previous = self._verdict
        self._verdict = verdict
        self._verdict_stale = False
        suspects, degraded = set(verdict.suspects), set(verdict.degraded)
        for segment in self._segments:
            self._metrics.segment_suspected.labels(segment=segment).set(
                1 if segment in suspects else 0
            )
            self._metrics.segment_degraded.labels(segment=segment).set(
                1 if segment in degraded else 0
            )
        for name in VerdictName:
            self._metrics.verdict.labels(verdict=name.value).set(
                1 if name == verdict.verdict else 0
            )
        if (verdict.verdict, verdict.suspects, verdict.unexplained, verdict.degraded) != (
            previous.verdict,
            previous.suspects,
            previous.unexplained,
            previous.degraded,
        ):
            self._emit(
                {
                    "kind": "verdict",
                    "at": round(now, 3),
                    "verdict": str(verdict.verdict),
                    "suspects": list(verdict.suspects),
                    "degraded": list(verdict.degraded),
                    "unexplained": list(verdict.unexplained),
                    "blast_radius": dict(verdict.blast_radius),
                    "previous": str(previous.verdict),
                }
            )
        return verdict

    @property
    def verdict(self) -> Verdict:
        return self.refresh_verdict() if self._verdict_stale else self._verdict

    def verdict_json(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "verdict": str(verdict.verdict),
            "suspects": list(verdict.suspects),
            "degraded": list(verdict.degraded),
            "unobserved": list(verdict.unobserved),
            "unexplained": list(verdict.unexplained),
            "blast_radius": dict(verdict.blast_radius),
            "at": round(self._clock.wall(), 3),
            "legs": {
                name: {
                    "up": record.state == "up",
                    "state": _state_of(record),
                    "status": str(verdict.leg_status.get(name, "unknown")),
                    "segments": list(record.segments),
                    "reason": None if record.reason is None else str(record.reason),
                    "since": round(record.since, 3),
                    # The RTT from before a drop says nothing about the path while down
                    # (the down event keeps it).
                    "last_rtt_seconds": record.last_rtt if record.state == "up" else None,
                    "connections": len(record.connections),
                    "connections_up": record.connections_up,
                }
                for name, record in self._legs.items()
            },
        }


def _state_of(record: LegRecord) -> str:
    """The leg's state for readers: ``partial`` while some of its connections are down
    and others up (to attribution, that leg is down)."""
    if record.state == "down" and record.connections_up:
        return "partial"
    return record.state


def _policy_of(config: ProbeConfig) -> Policy:
    return Policy(
        window=config.attribution_window_seconds,
        flap_window=config.effective_flap_window,
        flap_drops=config.flap_drops,
    )
