"""The truth table itself is well formed (needs no root: nothing is run)."""

from __future__ import annotations

import pytest

from tests.kernel.topology import LEGS, SEGMENTS
from tests.kernel.truth import ROWS, ROWS_BY_NAME
from tests.support.contract import DROP_REASONS, VERDICTS


def test_rows_are_unique_and_refer_to_real_legs_segments_and_rows() -> None:
    assert len(ROWS_BY_NAME) == len(ROWS)
    legs = {leg.name for leg in LEGS}
    for row in ROWS:
        assert set(row.legs) <= legs, row.name
        assert set(row.rtt_inflated) <= legs, row.name
        assert set(row.same_as) <= set(ROWS_BY_NAME) - {row.name}, row.name
        assert all(why.strip() for why in row.same_as.values()), row.name
        for expect in row.legs.values():
            assert expect.first, row.name
            assert expect.allowed <= DROP_REASONS, row.name
        if row.verdict is not None:
            verdict, suspects = row.verdict
            assert verdict in VERDICTS, row.name
            assert set(suspects) <= set(SEGMENTS), row.name
            assert (verdict == "suspect") == bool(suspects), row.name
        assert row.detect_within > 0 and row.recover_within > 0 and row.hold > 0


def test_the_table_discriminates_router_a_router_b_and_the_server_processes() -> None:
    convicted = {row.verdict for row in ROWS if row.verdict and row.verdict[0] == "suspect"}
    for segment in ("router_a", "router_b", "server", "backend"):
        assert ("suspect", (segment,)) in convicted, segment


def test_missing_root_or_tools_is_a_loud_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    from tests.kernel.topology import missing_prerequisites

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "need root" in str(missing_prerequisites())
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        shutil, "which", lambda tool: None if tool in ("nft", "conntrack") else tool
    )
    reason = str(missing_prerequisites())
    assert "nft, conntrack" in reason and "make test" in reason
