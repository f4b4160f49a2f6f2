"""Reloading the config in place (SIGHUP or ``POST /-/reload``), as Prometheus does.

One reload at a time. The new config is loaded and validated whole before anything
changes; any failure leaves the running config as it was, is logged, and shows in
``t3probe_config_last_reload_successful``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from t3probe.clock import Clock
from t3probe.config import ProbeConfig
from t3probe.config_file import ConfigError
from t3probe.metrics import ProbeMetrics
from t3probe.redact import redact_exception, redact_text
from t3probe.reloadplan import ReloadPlan, ReloadRefused

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    message: str


class Reloader:
    def __init__(
        self,
        load: Callable[[], ProbeConfig],
        apply: Callable[[ProbeConfig], Awaitable[ReloadPlan]],
        metrics: ProbeMetrics,
        clock: Clock,
    ) -> None:
        self._load = load
        self._apply = apply
        self._metrics = metrics
        self._clock = clock
        self._lock = asyncio.Lock()

    async def reload(self) -> ReloadResult:
        async with self._lock:
            try:
                # A file read: off the loop, so a slow volume never delays a heartbeat.
                config = await asyncio.to_thread(self._load)
                plan = await self._apply(config)
            except (ConfigError, ReloadRefused) as err:
                return self._failed(str(err))
            except Exception as err:  # noqa: BLE001 - logged, redacted, below
                log.error("config reload failed unexpectedly\n%s", redact_exception(err))
                return self._failed(f"{type(err).__name__}: {err}")
            self._metrics.reload_successful.set(1)
            self._metrics.reload_success_time.set(self._clock.wall())
            message = f"config reloaded: {plan.summary()}"
            log.info("%s", message)
            return ReloadResult(True, message)

    def _failed(self, message: str) -> ReloadResult:
        # Exception texts quote URLs, with any credentials they carry; this message is
        # both logged and the answer to POST /-/reload.
        message = redact_text(message)
        self._metrics.reload_successful.set(0)
        log.error("config reload rejected, the running config stays: %s", message)
        return ReloadResult(False, message)
