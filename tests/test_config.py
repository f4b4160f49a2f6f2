"""Config validation: every bad config is refused with the offending field named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from t3probe.config import LEG_ROLES, HttpLegConfig
from t3probe.config_file import ConfigError, dump_config, load_config
from tests.support.contract import LEG_ROLES as CONTRACT_LEG_ROLES

REPO = Path(__file__).resolve().parent.parent


def _leg(**overrides: Any) -> dict[str, Any]:
    leg: dict[str, Any] = {
        "name": "internal",
        "kind": "websocket",
        "url": "wss://t3.example.test/probe/ws",
        "segments": ["traefik", "dispatch"],
    }
    leg.update(overrides)
    return {k: v for k, v in leg.items() if v is not None}


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


INVALID: list[tuple[str, Any, str]] = [
    ("no legs", {"listen": "127.0.0.1:9108"}, "legs: Field required"),
    ("empty legs", {"legs": []}, "legs: List should have at least 1 item"),
    ("unknown top key", {"legs": [_leg()], "heartbeat": 3}, "heartbeat: Extra inputs"),
    ("unknown leg key", {"legs": [_leg(colour="red")]}, "legs[0].colour: Extra inputs"),
    (
        "watchdog not above heartbeat",
        {"heartbeat_seconds": 10, "watchdog_seconds": 10, "legs": [_leg()]},
        "watchdog_seconds (10) must be greater than heartbeat_seconds (10)",
    ),
    (
        "negative heartbeat",
        {"heartbeat_seconds": -1, "legs": [_leg()]},
        "heartbeat_seconds: Input should be greater than 0",
    ),
    ("duplicate leg names", {"legs": [_leg(), _leg()]}, "duplicate leg name(s) internal"),
    (
        "empty segments",
        {"legs": [_leg(segments=[])]},
        "legs[0].segments: List should have at least 1 item",
    ),
    (
        "repeated segment",
        {"legs": [_leg(segments=["a", "a"])]},
        "legs[0].segments: segments must not repeat",
    ),
    (
        "ws leg with http url",
        {"legs": [_leg(url="https://t3.example.test/")]},
        "a websocket leg needs a ws:// or wss:// URL, got https://",
    ),
    (
        "http leg with ws url",
        {"legs": [_leg(kind="http", url="ws://t3.example.test/")]},
        "a http leg needs a http:// or https:// URL, got ws://",
    ),
    (
        "pinned address not an IP",
        {"legs": [_leg(resolver={"kind": "pinned", "address": "lb.internal"})]},
        "legs[0].resolver.address",
    ),
    (
        "boolean for a number",
        {"heartbeat_seconds": True, "legs": [_leg()]},
        "heartbeat_seconds: true is not a number",
    ),
    (
        "boolean for a leg's number",
        {
            "legs": [
                _leg(
                    resolver={
                        "kind": "doh",
                        "servers": ["https://127.0.0.1/q"],
                        "timeout_seconds": False,
                    }
                )
            ]
        },
        "timeout_seconds: false is not a number",
    ),
    (
        "unknown leg kind",
        {"legs": [_leg(kind="ftp")]},
        "legs[0]: Input tag 'ftp' found using 'kind' does not match any of the expected tags:"
        " 'websocket', 'http'",
    ),
    (
        "unknown resolver kind",
        {"legs": [_leg(resolver={"kind": "mdns"})]},
        "legs[0].resolver: Input tag 'mdns' found using 'kind' does not match",
    ),
    (
        "doh over plain http",
        {"legs": [_leg(resolver={"kind": "doh", "servers": ["http://127.0.0.1/dns-query"]})]},
        "must be an https:// URL",
    ),
    (
        "doh without servers",
        {"legs": [_leg(resolver={"kind": "doh", "servers": []})]},
        "legs[0].resolver.servers: List should have at least 1 item",
    ),
    (
        "negative doh server back-off",
        {
            "legs": [
                _leg(
                    resolver={
                        "kind": "doh",
                        "servers": ["https://127.0.0.1/q"],
                        "server_backoff_seconds": -1,
                    }
                )
            ]
        },
        "legs[0].resolver.server_backoff_seconds: Input should be greater than or equal to 0",
    ),
    (
        "doh ttl cap above a day",
        {
            "legs": [
                _leg(
                    resolver={
                        "kind": "doh",
                        "servers": ["https://127.0.0.1/q"],
                        "max_ttl_seconds": 86401,
                    }
                )
            ]
        },
        "legs[0].resolver.max_ttl_seconds: Input should be less than or equal to 86400",
    ),
    (
        "doh ttl cap below the floor",
        {
            "legs": [
                _leg(
                    resolver={
                        "kind": "doh",
                        "servers": ["https://127.0.0.1/q"],
                        "min_ttl_seconds": 60,
                        "max_ttl_seconds": 30,
                    }
                )
            ]
        },
        "legs[0].resolver: min_ttl_seconds (60) must not exceed max_ttl_seconds (30)",
    ),
    ("bad leg name", {"legs": [_leg(name="Bad Name")]}, "legs[0].name: String should match"),
    ("bad segment name", {"legs": [_leg(segments=["cf-edge"])]}, "legs[0].segments[0]"),
    ("relative url", {"legs": [_leg(url="/probe/ws")]}, "is not an absolute URL"),
    ("bad listen", {"listen": "9108", "legs": [_leg()]}, "listen: '9108' is not HOST:PORT"),
    ("listen port range", {"listen": "127.0.0.1:70000", "legs": [_leg()]}, "out of range"),
    (
        "expected_status on ws leg",
        {"legs": [_leg(expected_status=[200])]},
        "only http legs have an expected status",
    ),
    (
        "status out of range",
        {"legs": [_leg(kind="http", url="http://x.test/", expected_status=[700])]},
        "legs[0].expected_status[0]: Input should be less than or equal to 599",
    ),
    (
        "bad forbid range",
        {"legs": [_leg(forbid_addresses=["10.0.0.0/33"])]},
        "legs[0].forbid_addresses[0]",
    ),
    (
        "pinned inside forbidden range",
        {
            "legs": [
                _leg(
                    resolver={"kind": "pinned", "address": "10.0.20.203"},
                    forbid_addresses=["10.0.0.0/8"],
                )
            ]
        },
        "pinned address 10.0.20.203 lies in forbidden range 10.0.0.0/8",
    ),
    ("bad header name", {"legs": [_leg(require_header="cf ray")]}, "not a valid HTTP header"),
    (
        "unknown role",
        {"legs": [_leg(role="guard")]},
        "legs[0].role: Input should be 'path' or 'wall'",
    ),
    (
        "wall guard on a websocket leg",
        {"legs": [_leg(role="wall")]},
        "role: a wall guard checks an HTTP status, so it must be an http leg, not websocket",
    ),
    (
        "wall guard without expected_status",
        {"legs": [_leg(kind="http", url="https://t3.example.test/api/", role="wall")]},
        "expected_status: a wall guard (role: wall) must list the auth answer",
    ),
    (
        "wall guard expecting an open answer",
        {
            "legs": [
                _leg(
                    kind="http",
                    url="https://t3.example.test/api/",
                    role="wall",
                    expected_status=[401, 200],
                )
            ]
        },
        "expected_status: 200 is the answer of an open wall",
    ),
    ("not a mapping", "- just\n- a list\n", "the top level must be a mapping"),
    ("not yaml", "legs: [unclosed\n", "not valid YAML"),
    (
        "stall threshold above watchdog",
        {"probe_stall_seconds": 30, "legs": [_leg()]},
        "probe_stall_seconds must be less than watchdog_seconds",
    ),
]


@pytest.mark.parametrize(("data", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_config_names_the_problem(tmp_path: Path, data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, data))
    assert message in str(caught.value)


def test_leg_roles_are_the_contracts_closed_set() -> None:
    assert set(LEG_ROLES) == CONTRACT_LEG_ROLES


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


def test_doh_servers_must_fit_inside_the_connect_timeout(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "connect_timeout_seconds: 1\n"
        "legs: [{name: a, kind: websocket, url: 'wss://x.test/', segments: [s],"
        " resolver: {kind: doh, servers: ['https://127.0.0.1/q', 'https://127.0.0.2/q'],"
        " timeout_seconds: 0.5}}]\n"
    )
    with pytest.raises(ConfigError, match=r"legs\[0\].resolver: 2 DoH servers"):
        load_config(path)


def test_an_unloadable_ca_file_fails_the_config_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "legs: [{name: a, kind: websocket, url: 'wss://x.test/', segments: [s],"
        f" ca_file: '{tmp_path / 'missing.pem'}'}}]\n"
    )
    with pytest.raises(ConfigError, match=r"legs\[0\].ca_file: cannot load CA file"):
        load_config(path)


def test_reference_config_is_valid_and_keeps_its_shape() -> None:
    config = load_config(REPO / "examples" / "reference.yaml")
    assert [leg.name for leg in config.legs] == ["cloudflare", "internal", "t3serve"]
    assert config.legs[0].resolver.kind == "doh"
    assert config.segments == ["wan", "cf_edge", "cf_tunnel", "traefik", "dispatch", "t3serve"]
    backend = config.legs[2]
    assert isinstance(backend, HttpLegConfig)
    assert backend.status_is_alive(404) and not backend.status_is_alive(502)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T3PROBE_HEARTBEAT_SECONDS", "3")
    monkeypatch.setenv("T3PROBE_LISTEN", "127.0.0.1:9999")
    config = load_config(_write(tmp_path, {"heartbeat_seconds": 5, "legs": [_leg()]}))
    assert (config.heartbeat_seconds, config.listen) == (3.0, "127.0.0.1:9999")


def test_environment_can_supply_the_legs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "T3PROBE_LEGS",
        '[{"name": "a", "kind": "http", "url": "http://127.0.0.1:1/", "segments": ["s"]}]',
    )
    assert load_config(None).legs[0].name == "a"


def test_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T3PROBE_WATCHDOG_SECONDS", "soon")
    monkeypatch.setenv("T3PROBE_LEGS", "[]")
    with pytest.raises(ConfigError, match="watchdog_seconds"):
        load_config(None)


def test_environment_overrides_are_named_when_the_config_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T3PROBE_HEARTBEAT_SECONDS", "abc")
    path = tmp_path / "c.yaml"
    path.write_text("legs: [{name: a, kind: http, url: 'http://127.0.0.1:1/', segments: [s]}]\n")
    with pytest.raises(ConfigError, match="environment overrides in effect: T3PROBE_HEARTBEAT"):
        load_config(path)


def test_dump_round_trips(tmp_path: Path) -> None:
    config = load_config(REPO / "examples" / "reference.yaml")
    again = load_config(_write(tmp_path, dump_config(config)))
    # The derived defaults come back pinned to the values they had: the same behaviour.
    assert again == config.model_copy(update=DERIVED_IN_REFERENCE)


# watchdog_seconds is 20 in examples/reference.yaml, which sets none of these.
DERIVED_IN_REFERENCE = {
    "connect_timeout_seconds": 20.0,
    "probe_stall_seconds": 2.0,
    "flap_window_seconds": 60.0,
}


def test_dump_shows_derived_defaults_as_their_effective_values() -> None:
    config = load_config(REPO / "examples" / "reference.yaml")
    text = dump_config(config)
    dumped = yaml.safe_load(text)
    for key, value in DERIVED_IN_REFERENCE.items():
        assert dumped[key] == value, key
        assert f"{key}: {value}  # derived from watchdog_seconds" in text.splitlines()
    # A value given in the file is printed as given, without the note.
    pinned = config.model_copy(update={"probe_stall_seconds": 1.5})
    assert "probe_stall_seconds: 1.5\n" in dump_config(pinned)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "t3probe", *args], capture_output=True, text=True, timeout=30
    )


def test_check_config_prints_the_effective_config() -> None:
    result = _cli("check-config", str(REPO / "examples" / "reference.yaml"))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["legs"][1]["resolver"]["address"] == "10.0.20.203"


def test_check_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    result = _cli("check-config", str(_write(tmp_path, {"legs": [_leg(segments=[])]})))
    assert result.returncode == 2
    assert "legs[0].segments" in result.stderr


def test_run_without_config_exits_2_before_binding() -> None:
    result = _cli("run")
    assert result.returncode == 2
    assert "legs" in result.stderr and "never falls back" in result.stderr


def test_legs_from_the_environment_must_be_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T3PROBE_LEGS", "not json")
    with pytest.raises(ConfigError, match="T3PROBE_LEGS: legs must be JSON"):
        load_config(None)


def test_the_loader_reads_the_environment_it_is_given(tmp_path: Path) -> None:
    path = _write(tmp_path, {"heartbeat_seconds": 5, "legs": [_leg()]})
    assert load_config(path, {"T3PROBE_HEARTBEAT_SECONDS": "3"}).heartbeat_seconds == 3.0
    assert load_config(path, {}).heartbeat_seconds == 5.0


def test_control_leg_example_is_valid_and_puts_the_uplink_on_every_leg() -> None:
    config = load_config(REPO / "examples" / "control-leg.yaml", {})
    assert [leg.segments[0] for leg in config.legs] == ["uplink"] * len(config.legs)
    assert config.legs[0].segments == ["uplink"]


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    text = "legs: []\nheartbeat_seconds: 5\nlegs:\n  - {name: a}\n"
    with pytest.raises(ConfigError, match=r"line 3: key 'legs' given twice"):
        load_config(_write(tmp_path, text), {})


def test_deeply_nested_yaml_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "legs: " + "[" * 100_000 + "]" * 100_000), {})


def test_deeply_nested_json_in_the_environment_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="T3PROBE_LEGS: legs must be JSON"):
        load_config(None, {"T3PROBE_LEGS": "[" * 100_000 + "]" * 100_000})


def test_a_mistyped_environment_variable_is_refused() -> None:
    with pytest.raises(ConfigError, match="T3PROBE_HEARTBEAT: not a t3probe setting"):
        load_config(None, {"T3PROBE_HEARTBEAT": "5"})


def test_process_and_test_suite_variables_are_not_config_typos(tmp_path: Path) -> None:
    environ = {
        "T3PROBE_LOG_LEVEL": "DEBUG",
        "T3PROBE_LOOPBACK_ONLY": "1",
        "T3PROBE_TEST_TIME_UNIT": "2",
    }
    assert load_config(_write(tmp_path, {"legs": [_leg()]}), environ).legs[0].name == "internal"


def test_lab_timings_copied_into_a_config_load_with_a_scaled_stall_threshold(
    tmp_path: Path,
) -> None:
    # The lab's 1 s heartbeat and 2 s watchdog, without probe_stall_seconds: a fixed
    # default at or above the watchdog would refuse the config.
    config = load_config(
        _write(tmp_path, {"heartbeat_seconds": 1, "watchdog_seconds": 2, "legs": [_leg()]})
    )
    assert 0 < config.effective_probe_stall < config.watchdog_seconds
    assert config.effective_probe_stall == pytest.approx(0.2)


@pytest.mark.parametrize(
    "text",
    [
        '[{"name": "a", "name": "b", "kind": "websocket", "url": "ws://127.0.0.1/"}]',
        '[{"name": "a", "kind": "websocket", "url": "ws://127.0.0.1/",'
        ' "resolver": {"kind": "pinned", "kind": "system"}}]',
    ],
    ids=["leg key", "nested key"],
)
def test_a_key_given_twice_in_environment_json_is_refused(text: str) -> None:
    # JSON, like YAML, would keep the last value silently.
    with pytest.raises(ConfigError, match=r"T3PROBE_LEGS: key '(name|kind)' given twice"):
        load_config(None, {"T3PROBE_LEGS": text})
