"""Leg kinds: the one table from a config ``kind`` to the code that runs it.

Adding a kind: its config class in :mod:`t3probe.config` (the ``LegConfig`` union), its
module here in ``legs/``, and one entry in ``LEG_FACTORIES``.
"""

from __future__ import annotations

from collections.abc import Callable

from t3probe.config import LEG_KINDS
from t3probe.legs.base import Leg, LegContext
from t3probe.legs.http import HttpLeg
from t3probe.legs.websocket import WebSocketLeg

LegFactory = Callable[[LegContext], Leg]

LEG_FACTORIES: dict[str, LegFactory] = {
    "websocket": WebSocketLeg,
    "http": HttpLeg,
}

# A kind the config accepts but nothing can run would only fail when a leg starts.
_unpaired = set(LEG_KINDS) ^ set(LEG_FACTORIES)
if _unpaired:
    raise ImportError(f"leg kinds without both a config class and a factory: {_unpaired}")


def build_leg(ctx: LegContext) -> Leg:
    try:
        factory = LEG_FACTORIES[ctx.leg.kind]
    except KeyError as err:
        known = ", ".join(LEG_FACTORIES)
        raise LookupError(
            f"leg {ctx.leg.name}: unknown kind {ctx.leg.kind!r} (known: {known})"
        ) from err
    return factory(ctx)
