"""An outage is one disconnect; the failed reconnects while it lasts are counted apart.

``t3probe_disconnects_total`` feeds the drop-burst alert: a leg that is already down and
changes failure mode (a close, then refused reconnects) must not count as several drops.
"""

from __future__ import annotations

from t3probe.reasons import Reason
from tests.support.harness import Peer, leg, probe_config, running_probe


async def test_an_outage_is_one_disconnect_and_its_reconnect_failures_are_counted_apart(
    peer: Peer,
) -> None:
    config = probe_config([leg("ws", f"ws://127.0.0.1:{peer.port}/probe/ws")])
    async with running_probe(config) as probe:
        await probe.wait_for("ws", "up")
        await peer.stop()  # an echo restart: a close frame, then refused connections
        down = await probe.wait_for("ws", "down")
        refused = await probe.wait_for("ws", "reconnect_failed")
        total = sum(
            probe.metric("t3probe_disconnects_total", leg="ws", reason=reason.value) or 0
            for reason in Reason
        )
        failures = probe.metric(
            "t3probe_reconnect_failures_total", leg="ws", reason="connect_refused"
        )
    assert down.reason is not Reason.CONNECT_REFUSED  # the drop itself: close or RST
    assert refused.reason is Reason.CONNECT_REFUSED
    assert total == 1
    assert failures is not None and failures >= 1
