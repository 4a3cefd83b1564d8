"""Instants as int64 nanoseconds since the epoch (UTC), and their polars literals.

The fast path compares integers: a clock, a bar start and a bar end are all int64 ns, so a
request never builds a tz-aware polars literal or a pandas Timestamp.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import polars as pl

from lazybars.errors import InvalidRequest

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
NS_MIN = -(2**63)
NS_MAX = 2**63 - 1
DAY_NS = 86_400_000_000_000  # a nominal day; calendar days come from the zone rules


def aware_ns(dt: Any, *, argument: str) -> int:
    """Nanoseconds of a tz-aware datetime; naive or non-datetime values are rejected."""
    if isinstance(dt, pd.Timestamp):
        if dt.tzinfo is None:
            raise InvalidRequest(_naive_message(argument, dt))
        return int(dt.value)
    if isinstance(dt, datetime):
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise InvalidRequest(_naive_message(argument, dt))
        return (dt - _EPOCH) // _US * 1000
    msg = f"{argument} must be a tz-aware datetime, got {type(dt).__name__} {dt!r}"
    raise InvalidRequest(msg)


def local_ns(value: Any, zone: str, *, argument: str) -> int:
    """Nanoseconds of a datetime, date or ISO string; naive values are read in ``zone``."""
    if isinstance(value, date | str | pd.Timestamp):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            msg = f"{argument}={value!r} is not a date or time ({exc}); use e.g. '2024-01-02 09:30'"
            raise InvalidRequest(msg) from None
        if ts.tzinfo is None:
            try:
                ts = ts.tz_localize(zone, ambiguous="raise", nonexistent="raise")
            except ValueError:
                msg = (
                    f"{argument}={value!r} is ambiguous or does not exist in {zone} (a DST "
                    "change); pass a tz-aware datetime"
                )
                raise InvalidRequest(msg) from None
        return int(ts.as_unit("ns").value)
    msg = f"{argument} must be a datetime, date or ISO string, got {type(value).__name__}"
    raise InvalidRequest(msg)


def timedelta_ns(td: timedelta) -> int:
    """Exact nanoseconds of a ``datetime.timedelta`` or ``pd.Timedelta``."""
    if isinstance(td, pd.Timedelta):
        return int(td.value)
    return (td.days * 86_400 + td.seconds) * 1_000_000_000 + td.microseconds * 1000


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([a-z]+)\s*$")
_UNIT_NS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1_000_000_000),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60_000_000_000),
    **dict.fromkeys(("h", "hour", "hours"), 3_600_000_000_000),
    **dict.fromkeys(("d", "day", "days"), DAY_NS),
    **dict.fromkeys(("w", "week", "weeks"), 7 * DAY_NS),
}


def parse_duration(value: Any, *, argument: str) -> int:
    """Nanoseconds of a duration: a timedelta, or a string such as ``'30d'`` or ``'12 hours'``."""
    match = _DURATION.match(value.lower()) if isinstance(value, str) else None
    if isinstance(value, timedelta):
        ns = timedelta_ns(value)
    elif match and match.group(2) in _UNIT_NS:
        ns = int(float(match.group(1)) * _UNIT_NS[match.group(2)])
    else:
        msg = (
            f"{argument}={value!r} is not a duration; use a timedelta or a string such as "
            "'30d', '12h', '90min' or '2 weeks'"
        )
        raise InvalidRequest(msg)
    if ns < 0:
        msg = f"{argument}={value!r} is negative; use a positive duration"
        raise InvalidRequest(msg)
    return ns


def timestamp(ns: int, zone: str) -> pd.Timestamp:
    """The instant ``ns`` as a pandas Timestamp in ``zone`` (for display and return values)."""
    return pd.Timestamp(ns, tz="UTC").tz_convert(zone)


def ns_literal(ns: int, zone: str | None) -> pl.Expr:
    """A polars literal of dtype ``Datetime("ns", zone)`` for the instant ``ns``.

    Built from the integer (no Python datetime, which would drop the nanoseconds): a plain
    constant of the column's own dtype, which predicate pushdown takes to the parquet scan.
    """
    return pl.lit(ns, dtype=pl.Datetime("ns", zone))


def next_local_midnight(column: pl.Expr, zone: str) -> pl.Expr:
    """The first local midnight in ``zone`` strictly after each instant of ``column``."""
    local = column.dt.convert_time_zone(zone)
    return local.dt.truncate("1d").dt.offset_by("1d")


def _naive_message(argument: str, dt: Any) -> str:
    return (
        f"{argument} is naive ({dt}); pass a tz-aware datetime, e.g. "
        f"dt.replace(tzinfo=ZoneInfo('America/New_York'))"
    )
