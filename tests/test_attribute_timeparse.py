"""TIME as on-call engineers type it, and the window around it. Pure, table-driven."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from t3probe.attribute.cli import load_zone
from t3probe.attribute.model import BadInput, TimePoint, window_for
from t3probe.attribute.timeparse import parse_offset, parse_time

UTC = dt.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2024, 6, 12, 14, 10, tzinfo=UTC).timestamp()
AT = dt.datetime(2024, 6, 12, 14, 3, tzinfo=UTC).timestamp()


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


PARSED: list[tuple[str, dt.tzinfo, float, float]] = [
    # text, zone, expected instant, expected resolution
    ("2024-06-12T14:03:00Z", UTC, AT, 0.0),
    ("2024-06-12T16:03:00+02:00", UTC, AT, 0.0),
    ("2024-06-12 14:03:00Z", BERLIN, AT, 0.0),
    ("2024-06-12t14:03:00z", UTC, AT, 0.0),
    ("2024-06-12T14:03:00.250Z", UTC, AT + 0.25, 0.0),
    ("2024-06-12T14:03", UTC, AT, 60.0),
    ("2024-06-12T16:03:00", BERLIN, AT, 0.0),  # no offset: the chosen zone (CEST)
    ("14:03", UTC, AT, 60.0),
    ("14:03:30", UTC, AT + 30, 0.0),
    # As the lab's view prints it: the time's own offset wins over --tz.
    ("16:03:30.250+02:00", UTC, AT + 30.25, 0.0),
    ("14:03:30Z", BERLIN, AT + 30, 0.0),
    ("14:03:30 UTC", BERLIN, AT + 30, 0.0),
    ("16:03", BERLIN, AT, 60.0),
    ("  14:03 ", UTC, AT, 60.0),
    ("23:55", UTC, utc(2024, 6, 11, 23, 55), 60.0),  # still ahead today: last night
    ("14:10:03", UTC, NOW + 3, 0.0),  # a few seconds ahead is clock skew, not tomorrow
    ("1718200980", UTC, AT, 0.0),
    ("1718200980.5", UTC, AT + 0.5, 0.0),
    ("now", UTC, NOW, 0.0),
    ("-15m", UTC, NOW - 900, 0.0),
    ("-2h", UTC, NOW - 7200, 0.0),
    ("-30s", UTC, NOW - 30, 0.0),
    ("-1h30m", UTC, NOW - 5400, 0.0),
    ("-0.5m", UTC, NOW - 30, 0.0),
    ("-1d", UTC, NOW - 86400, 0.0),
]


@pytest.mark.parametrize(("text", "tz", "expected", "resolution"), PARSED)
def test_parse_time(text: str, tz: dt.tzinfo, expected: float, resolution: float) -> None:
    point = parse_time(text, NOW, tz)
    assert point.at == pytest.approx(expected, abs=1e-6)
    assert point.resolution == resolution


def test_yesterday_steps_the_date_not_24_hours_across_dst() -> None:
    # 2024-03-31 is the spring-forward day in Berlin: 14:00 CEST now, "20:00" was yesterday
    # at 20:00 CET, which is 25 hours earlier than tonight's 20:00 CEST, not 24.
    now = dt.datetime(2024, 3, 31, 14, 0, tzinfo=BERLIN).timestamp()
    point = parse_time("20:00", now, BERLIN)
    assert point.at == dt.datetime(2024, 3, 30, 20, 0, tzinfo=BERLIN).timestamp()
    assert point.at == utc(2024, 3, 30, 19, 0)


REFUSED: list[tuple[str, str]] = [
    ("yesterday", "cannot parse TIME 'yesterday'"),
    ("", "cannot parse TIME ''"),
    ("14:60", "not a valid time of day"),
    ("24:00", "not a valid time of day"),
    ("1718200980000", "looks like milliseconds"),
    ("12345", "not a plausible unix timestamp"),
    ("2024-06-13T14:03:00Z", "is in the future"),
    ("-15", "cannot parse TIME"),
    ("+15m", "cannot parse TIME"),
    ("-15x", "cannot parse TIME"),
    ("2024-13-01T00:00Z", "as RFC 3339"),
    ("2024-06-12", "cannot parse TIME"),  # a date alone is a day, not a moment
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_parse_time_refuses_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("(", r"\(")) as caught:
        parse_time(text, NOW, UTC)
    if "cannot parse" in message and "RFC" not in message:
        assert "-15m" in str(caught.value), "the error lists the accepted forms"


@pytest.mark.parametrize(
    ("text", "offset"),
    [("+02:00", 7200.0), ("-05:30", -19800.0), ("+0100", 3600.0), ("Europe/Berlin", None)],
)
def test_parse_offset(text: str, offset: float | None) -> None:
    zone = parse_offset(text)
    if offset is None:
        assert zone is None
    else:
        assert zone is not None and zone.utcoffset(None) == dt.timedelta(seconds=offset)


def test_local_zone_honours_tz() -> None:
    summer = dt.datetime(2024, 6, 12, 12, tzinfo=UTC)
    for value in ("Europe/Berlin", ":Europe/Berlin", "/usr/share/zoneinfo/Europe/Berlin"):
        zone = load_zone("local", {"TZ": value})
        assert summer.astimezone(zone).utcoffset() == dt.timedelta(hours=2), value
    with pytest.raises(BadInput, match="TZ 'Mars/Olympus' is not a time zone"):
        load_zone("local", {"TZ": "Mars/Olympus"})


def test_load_zone() -> None:
    assert load_zone("UTC").utcoffset(dt.datetime(2024, 1, 1)) == dt.timedelta(0)
    assert load_zone("+02:00").utcoffset(None) == dt.timedelta(hours=2)
    assert load_zone("local") is not None
    berlin = load_zone("Europe/Berlin")
    assert dt.datetime(2024, 6, 12, tzinfo=berlin).utcoffset() == dt.timedelta(hours=2)
    for bad in ("Mars/Olympus", "../etc/passwd", "+25:00"):
        with pytest.raises(BadInput):
            load_zone(bad)


WINDOWS: list[tuple[TimePoint, float | None, float, float]] = [
    # point, --window, expected start and end relative to the point
    (TimePoint(AT), None, -45.0, 15.0),  # default: mostly before the report
    (TimePoint(AT), 20.0, -15.0, 5.0),
    (TimePoint(AT, 60.0), None, -45.0, 75.0),  # "14:03" is the whole minute
    (TimePoint(NOW - 5), None, -45.0, 5.0),  # cut at now
]


@pytest.mark.parametrize(("point", "length", "start", "end"), WINDOWS)
def test_window_for(point: TimePoint, length: float | None, start: float, end: float) -> None:
    window = window_for(point, length, NOW)
    assert window.start - point.at == pytest.approx(start)
    assert window.end - point.at == pytest.approx(end)
    assert window.clipped == (window.requested_end > NOW)


@pytest.mark.parametrize("length", [0.0, -5.0, 86401.0, float("nan")])
def test_window_length_is_bounded(length: float) -> None:
    with pytest.raises(BadInput, match="--window"):
        window_for(TimePoint(AT), length, NOW)


def test_a_window_entirely_in_the_future_is_refused() -> None:
    with pytest.raises(BadInput, match="future"):
        window_for(TimePoint(NOW + 100), 60.0, NOW)
