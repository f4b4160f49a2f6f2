"""The evidence a source yields for a window, and the window itself. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from t3probe.attribute.timeline import LegHistory
from t3probe.attribution import LinkState
from t3probe.reasons import Reason

SourceKind = Literal["prometheus", "events"]

# The client force-reconnects 20 s (the default watchdog) after its last answer, so the
# moment a user notices "it dropped" lags the break by up to that much; their clock and
# memory add more. The CLI cannot know the probe's configured watchdog, hence a default
# of watchdog + margin: 60 s, three quarters of it before the reported time.
DEFAULT_WINDOW_SECONDS = 60.0
BEFORE_SHARE = 0.75
# Raw samples over a longer window make answers too large to read in seconds anyway.
MAX_WINDOW_SECONDS = 24 * 3600.0


class BadInput(ValueError):
    """The user's input cannot be understood: exit 2, nothing was queried."""


class SourceError(Exception):
    """The source could not be queried or answered nonsense: exit 1."""


@dataclass(frozen=True)
class TimePoint:
    """A reported time; ``resolution`` is how much later the moment may really be.

    "14:03" names the whole minute 14:03:00 to 14:03:59, so its resolution is 60 s.
    """

    at: float
    resolution: float = 0.0
    text: str = ""


@dataclass(frozen=True)
class Window:
    at: float
    start: float
    end: float
    # The end the user asked for, before clipping to "now": the future has no samples.
    requested_end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def clipped(self) -> bool:
        return self.end < self.requested_end


def window_for(point: TimePoint, length: float | None, now: float) -> Window:
    """The window around a reported time, mostly before it (see DEFAULT_WINDOW_SECONDS)."""
    seconds = DEFAULT_WINDOW_SECONDS if length is None else length
    if not 0 < seconds <= MAX_WINDOW_SECONDS:
        raise BadInput(
            f"--window must be more than 0 and at most {MAX_WINDOW_SECONDS:g} seconds,"
            f" got {seconds:g}"
        )
    start = point.at - BEFORE_SHARE * seconds
    requested_end = point.at + (1 - BEFORE_SHARE) * seconds + point.resolution
    if start >= now:
        raise BadInput("the window lies entirely in the future: nothing can be known about it")
    return Window(point.at, start, min(requested_end, now), requested_end)


@dataclass(frozen=True)
class Percentiles:
    p50: float | None
    p99: float | None


@dataclass(frozen=True)
class Drop:
    """One drop seen in the window. Prometheus knows the reason or the time, /events both."""

    reason: Reason | None
    at: float | None = None
    detail: str = ""
    close_code: int | None = None
    age_seconds: float | None = None
    last_rtt_seconds: float | None = None


@dataclass(frozen=True)
class LegEvidence:
    name: str
    # Some sample or state covers at least part of the window.
    observed: bool
    # True/False only when the whole window is covered; None when a part is unobserved.
    connected_throughout: bool | None
    # The state to hand the attribution engine; "down" with reason None means down for a
    # reason the window does not show (the leg died before it).
    state: LinkState
    reason: Reason | None = None
    drop_counts: tuple[tuple[Reason, int], ...] = ()
    drops: tuple[Drop, ...] = ()
    rtt_before: Percentiles | None = None
    rtt_during: Percentiles | None = None
    segments: tuple[str, ...] = ()
    gaps: tuple[tuple[float, float], ...] = ()

    @property
    def drop_total(self) -> int:
        return sum(count for _, count in self.drop_counts)


@dataclass(frozen=True)
class Evidence:
    source: SourceKind
    url: str
    window: Window
    legs: tuple[LegEvidence, ...]
    # Segments the probe itself convicted during the window; None when the source cannot
    # tell (a probe's /events does not carry its attribution history).
    probe_suspects: tuple[str, ...] | None = None
    notes: tuple[str, ...] = field(default=())
    # Each leg's ups and downs from history_start (a lead-in before the window, so the
    # evidence the probe still held at the window's start counts) to the window's end.
    histories: tuple[LegHistory, ...] = ()
    history_start: float | None = None
    history_end: float | None = None
    # (segment, time) of each sample where the probe itself convicted the segment.
    probe_convictions: tuple[tuple[str, float], ...] = ()
    # (segment, time) of each sample where the probe itself found the segment slow.
    probe_slow: tuple[tuple[str, float], ...] = ()
    scrape_interval: float | None = None
