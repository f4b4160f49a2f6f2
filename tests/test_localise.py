"""Local or path: a failure is the probe's own network only when this host has no route.

The no-route half needs a host without routes: tests/kernel's ``client_offline`` row.
"""

from __future__ import annotations

import pytest

from t3probe.legs.base import SessionProgress
from t3probe.legs.dialing import localise
from t3probe.reasons import Classified, Reason


@pytest.mark.parametrize(
    "reason",
    [Reason.UNREACHABLE, Reason.RTT_TIMEOUT, Reason.CONNECT_TIMEOUT, Reason.IO_ERROR],
)
def test_a_failure_towards_a_routable_target_stays_a_path_failure(reason: Reason) -> None:
    progress = SessionProgress(addresses=("127.0.0.1",))
    failure = Classified(reason, "no echo for 2s")
    assert localise(failure, progress) == failure


@pytest.mark.parametrize("reason", [Reason.CLOSED_BY_PEER, Reason.HTTP_ERROR, Reason.RESET])
def test_an_answer_from_the_far_end_is_never_the_probes_network(reason: Reason) -> None:
    # The peer (or a middlebox) answered: the route existed, whatever the table says now.
    progress = SessionProgress(addresses=("127.0.0.1",))
    failure = Classified(reason, "answered")
    assert localise(failure, progress) is failure


def test_without_addresses_nothing_can_be_localised() -> None:
    failure = Classified(Reason.RTT_TIMEOUT, "no echo")
    assert localise(failure, SessionProgress()) is failure


def test_an_ip_literal_url_is_checked_although_no_resolver_ran() -> None:
    # aiohttp skips the resolver for IP literals, so the attempt recorded no address;
    # the URL's host stands in. Loopback always has a route: the failure stays.
    failure = Classified(Reason.RTT_TIMEOUT, "no echo")
    assert localise(failure, SessionProgress(), "127.0.0.1") == failure
    assert localise(failure, SessionProgress(), "not-an-address") is failure
