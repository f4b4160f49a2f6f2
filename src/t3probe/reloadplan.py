"""What a config reload changes: which legs keep running, start, stop or restart.

Pure: two configs in, a plan out. A leg is kept only when nothing it reads changed, so
keeping it can never leave it running on settings the new config no longer says.
"""

from __future__ import annotations

from dataclasses import dataclass

from t3probe.config import AnyLegConfig, ProbeConfig

# Read by every leg (its budget, heartbeat, backoff, size limits): a change restarts all.
LEG_SETTINGS = frozenset(
    {
        "heartbeat_seconds",
        "watchdog_seconds",
        "connect_timeout_seconds",
        "probe_stall_seconds",
        "backoff_initial_seconds",
        "backoff_max_seconds",
        "max_message_bytes",
        "max_http_body_bytes",
    }
)
# Read only by the recorder (attribution and the event buffer): applied in place.
LIVE_SETTINGS = frozenset(
    {
        "attribution_window_seconds",
        "flap_window_seconds",
        "flap_drops",
        "event_buffer_size",
        # Kept legs keep their learnt baselines and are judged by the new rule at once.
        "degraded_rtt_ratio",
        "degraded_rtt_margin_seconds",
        "degraded_loss_share",
        "burst_window_seconds",
    }
)
# Bound once at start-up: changing them needs a new process, so a reload refuses them
# rather than half-apply a config that says something the probe is not doing.
RESTART_SETTINGS = frozenset({"listen"})


class ReloadRefused(Exception):
    """The new config is valid but cannot be applied without restarting the probe."""


@dataclass(frozen=True)
class ReloadPlan:
    keep: tuple[str, ...]
    start: tuple[AnyLegConfig, ...]
    stop: tuple[str, ...]
    # Same name, new config: stopped, then started from the new config.
    restart: tuple[AnyLegConfig, ...]

    @property
    def retired(self) -> tuple[str, ...]:
        """Every leg whose running instance ends: the removed and the changed ones."""
        return self.stop + tuple(leg.name for leg in self.restart)

    @property
    def launched(self) -> tuple[AnyLegConfig, ...]:
        return self.start + self.restart

    def summary(self) -> str:
        def names(legs: tuple[str, ...]) -> str:
            return ",".join(legs) or "-"

        return (
            f"kept {names(self.keep)}; started {names(tuple(leg.name for leg in self.start))};"
            f" stopped {names(self.stop)};"
            f" restarted {names(tuple(leg.name for leg in self.restart))}"
        )


def plan_reload(old: ProbeConfig, new: ProbeConfig) -> ReloadPlan:
    refused = sorted(key for key in RESTART_SETTINGS if getattr(old, key) != getattr(new, key))
    if refused:
        changes = ", ".join(
            f"{key} {getattr(old, key)!r} -> {getattr(new, key)!r}" for key in refused
        )
        raise ReloadRefused(f"{changes}: cannot change on reload; restart the probe to apply it")
    all_restart = any(getattr(old, key) != getattr(new, key) for key in LEG_SETTINGS)
    old_legs = {leg.name: leg for leg in old.legs}
    new_names = {leg.name for leg in new.legs}
    keep: list[str] = []
    start: list[AnyLegConfig] = []
    restart: list[AnyLegConfig] = []
    for leg in new.legs:
        previous = old_legs.get(leg.name)
        if previous is None:
            start.append(leg)
        elif all_restart or previous != leg:
            restart.append(leg)
        else:
            keep.append(leg.name)
    stop = tuple(name for name in old_legs if name not in new_names)
    return ReloadPlan(tuple(keep), tuple(start), stop, tuple(restart))
