"""TIME as people give it: RFC 3339, ``HH:MM[:SS]`` in a zone, unix seconds, ``-15m``.

Pure: "now" and the zone are passed in; loading a zone by name (which reads tzdata
files) is the caller's business.
"""

from __future__ import annotations

import datetime as dt
import re

from t3probe.attribute.model import BadInput, TimePoint

# A report "in a few seconds" is clock skew, not a time travel request.
FUTURE_TOLERANCE_SECONDS = 5.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RELATIVE = re.compile(r"^-((?:\d+(?:\.\d+)?[smhd])+)$")
_RELATIVE_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
# A clock time may carry its zone, as the lab's view prints it: 14:03:05.123+01:00, …Z.
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?\s*(Z|z|UTC|[+-]\d{2}:?\d{2})?$")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_HAS_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}")
# Unix seconds between 2001-09-09 and 5138: shorter numbers are more likely a typo.
_UNIX_MIN, _UNIX_MAX = 1e9, 1e11

HELP = (
    "TIME is RFC 3339 (2024-06-12T14:03:00Z, 2024-06-12T16:03:00+02:00), HH:MM[:SS]"
    " (today in --tz, or yesterday if that is still ahead; a zone may follow: 14:03:05Z,"
    " 14:03:05+01:00), unix seconds (1718200980),"
    " relative (-15m, -2h, -1h30m, -30s) or now"
)


def parse_time(text: str, now: float, tz: dt.tzinfo) -> TimePoint:
    """The instant ``text`` names; raises :class:`BadInput` saying what it accepts."""
    cleaned = text.strip()
    point = _parse(cleaned, now, tz)
    if point.at > now + FUTURE_TOLERANCE_SECONDS:
        raise BadInput(f"TIME {text!r} is in the future ({_iso(point.at, tz)})")
    return point


def _parse(text: str, now: float, tz: dt.tzinfo) -> TimePoint:
    if text == "now":
        return TimePoint(now, 0.0, text)
    relative = _RELATIVE.match(text)
    if relative:
        seconds = sum(
            float(amount) * _UNITS[unit] for amount, unit in _RELATIVE_PART.findall(relative[1])
        )
        return TimePoint(now - seconds, 0.0, text)
    clock = _CLOCK.match(text)
    if clock:
        return _clock_time(clock, now, tz, text)
    if _NUMBER.match(text):
        return _unix(text)
    if _DATETIME.match(text):
        return _datetime(text, tz)
    raise BadInput(f"cannot parse TIME {text!r}: {HELP}")


def _clock_time(match: re.Match[str], now: float, tz: dt.tzinfo, text: str) -> TimePoint:
    hour, minute = int(match[1]), int(match[2])
    second = int(match[3]) if match[3] else 0
    micro = round(float(match[4]) * 1e6) if match[4] else 0
    if hour > 23 or minute > 59 or second > 59:
        raise BadInput(f"TIME {text!r} is not a valid time of day")
    if match[5]:
        # The time's own zone beats --tz: it says where it was read.
        zone = match[5]
        tz = dt.UTC if zone in ("Z", "z", "UTC") else (parse_offset(zone) or tz)
    today = dt.datetime.fromtimestamp(now, tz)
    moment = today.replace(hour=hour, minute=minute, second=second, microsecond=micro)
    # On-call at 00:10 asking about "23:55" means last night, not tonight.
    if moment.timestamp() > now + FUTURE_TOLERANCE_SECONDS:
        moment = _previous_day(moment, tz)
    return TimePoint(moment.timestamp(), 0.0 if match[3] else 60.0, text)


def _previous_day(moment: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    # Step the date, not 86400 s: across a DST change a day is 23 or 25 hours long.
    day = moment.date() - dt.timedelta(days=1)
    naive = dt.datetime.combine(day, moment.time())
    return naive.replace(tzinfo=tz)


def _unix(text: str) -> TimePoint:
    value = float(text)
    if _UNIX_MIN * 1000 <= value < _UNIX_MAX * 1000:
        raise BadInput(
            f"TIME {text!r} looks like milliseconds since the epoch; give seconds"
            f" ({value / 1000:.3f})"
        )
    if not _UNIX_MIN <= value < _UNIX_MAX:
        raise BadInput(f"TIME {text!r} is not a plausible unix timestamp in seconds: {HELP}")
    return TimePoint(value, 0.0, text)


def _datetime(text: str, tz: dt.tzinfo) -> TimePoint:
    try:
        moment = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as err:
        raise BadInput(f"cannot parse TIME {text!r} as RFC 3339: {err}") from None
    if moment.tzinfo is None:
        # RFC 3339 requires an offset; without one, the zone the user chose is meant.
        moment = moment.replace(tzinfo=tz)
    return TimePoint(moment.timestamp(), 0.0 if _HAS_SECONDS.match(text) else 60.0, text)


def parse_offset(text: str) -> dt.tzinfo | None:
    """A fixed ``+HH:MM`` / ``-HH:MM`` offset, or None when ``text`` is not one."""
    match = re.match(r"^([+-])(\d{2}):?(\d{2})$", text)
    if not match:
        return None
    hours, minutes = int(match[2]), int(match[3])
    if hours > 23 or minutes > 59:
        raise BadInput(f"--tz {text!r} is not a valid UTC offset")
    delta = dt.timedelta(hours=hours, minutes=minutes)
    return dt.timezone(-delta if match[1] == "-" else delta)


def _iso(at: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(at, tz).isoformat(timespec="seconds")
