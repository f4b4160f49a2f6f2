"""The loopback guard and its one extension: extra ranges for test-made namespaces.

Nothing here sends a packet: refused targets fail inside the guard, before any system
call, and allowed ones are only checked, never dialled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from t3probe import netguard

CHILD = textwrap.dedent(
    """
    import json, os, socket, sys
    from t3probe import netguard

    installed = netguard.install_from_environment(os.environ)
    verdicts = {}
    for host in ("127.0.0.1", "::1", "198.18.1.2", "198.19.255.254", "198.20.0.1",
                 "192.0.2.1", "10.0.0.1"):
        verdicts[host] = netguard.is_allowed_target((host, 80))
    refused = None
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(("192.0.2.1", 9))
    except netguard.NonLoopbackConnection as err:
        refused = str(err)
    try:
        socket.getaddrinfo("example.com", 80)
        resolved = True
    except socket.gaierror:
        resolved = False
    print(json.dumps({"installed": installed, "verdicts": verdicts, "refused": refused,
                      "resolved": resolved}))
    """
)


def _child(**env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("T3PROBE_")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_loopback_only_allows_loopback_alone() -> None:
    result = _child(T3PROBE_LOOPBACK_ONLY="1")
    assert result["installed"] is True
    assert result["verdicts"] == {
        "127.0.0.1": True,
        "::1": True,
        "198.18.1.2": False,
        "198.19.255.254": False,
        "198.20.0.1": False,
        "192.0.2.1": False,
        "10.0.0.1": False,
    }
    assert "192.0.2.1" in str(result["refused"])
    assert result["resolved"] is False


def test_allowed_networks_widen_the_guard_by_exactly_that_range() -> None:
    result = _child(T3PROBE_LOOPBACK_ONLY="1", T3PROBE_ALLOWED_NETWORKS="198.18.0.0/15")
    assert result["installed"] is True
    assert result["verdicts"] == {
        "127.0.0.1": True,
        "::1": True,
        "198.18.1.2": True,
        "198.19.255.254": True,
        "198.20.0.1": False,
        "192.0.2.1": False,
        "10.0.0.1": False,
    }
    # Still guarded: other addresses are refused and names are never resolved.
    assert "198.18.0.0/15" in str(result["refused"])
    assert result["resolved"] is False


def test_no_variable_no_guard() -> None:
    assert _child()["installed"] is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"T3PROBE_LOOPBACK_ONLY": "1", "T3PROBE_ALLOWED_NETWORKS": "198.18.0.0/33"},
            "is not a network",
        ),
        (
            {"T3PROBE_LOOPBACK_ONLY": "1", "T3PROBE_ALLOWED_NETWORKS": "198.18.0.1/15"},
            "is not a network",
        ),
        ({"T3PROBE_ALLOWED_NETWORKS": "198.18.0.0/15"}, "only widens the loopback guard"),
    ],
)
def test_cli_refuses_a_bad_or_unguarded_network_list(env: dict[str, str], message: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("T3PROBE_")}
    done = subprocess.run(
        [sys.executable, "-m", "t3probe", "echo", "--help"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr


def test_parse_networks() -> None:
    assert [str(n) for n in netguard.parse_networks(" 198.18.0.0/15 ,198.19.1.0/24,")] == [
        "198.18.0.0/15",
        "198.19.1.0/24",
    ]
    assert netguard.parse_networks("") == ()


def test_this_process_stays_loopback_only() -> None:
    # The suite's own guard is never widened by the kernel tests: they drive their
    # namespaces through subprocesses only.
    assert not netguard.is_allowed_target(("198.18.1.2", 80))
