"""Which event loop runs the probe: uvloop when installed (``t3probe[fast]``), else
asyncio's own. ``T3PROBE_EVENT_LOOP=asyncio`` keeps asyncio's even with uvloop there;
``=uvloop`` insists on it (and fails clearly when it is missing)."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Mapping

EVENT_LOOP_VARIABLE = "T3PROBE_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def choose(environ: Mapping[str, str]) -> tuple[str, LoopFactory | None]:
    """The loop's name and factory (None: asyncio's default); ValueError names the
    variable when its value is not one of ``CHOICES`` or uvloop is asked for but absent."""
    wanted = environ.get(EVENT_LOOP_VARIABLE, "auto") or "auto"
    if wanted not in CHOICES:
        raise ValueError(f"{EVENT_LOOP_VARIABLE}={wanted!r} is not one of {', '.join(CHOICES)}")
    if wanted == "asyncio":
        return "asyncio", None
    try:
        # By name: an optional extra, absent from the default install and its type check.
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if wanted == "uvloop":
            raise ValueError(
                f"{EVENT_LOOP_VARIABLE}=uvloop but uvloop is not installed (install t3probe[fast])"
            ) from None
        return "asyncio", None
    factory: LoopFactory = uvloop.new_event_loop
    return "uvloop", factory


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop running now (asyncio when none runs)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "asyncio"
    return "uvloop" if type(loop).__module__.split(".")[0] == "uvloop" else "asyncio"
