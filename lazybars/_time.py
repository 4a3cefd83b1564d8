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

try:  # pandas 2 reports wall times skipped or repeated by a DST change with pytz's errors
    from pytz.exceptions import InvalidTimeError

    _NO_SUCH_TIME: tuple[type[Exception], ...] = (ValueError, InvalidTimeError)
except ImportError:  # pandas 3 raises ValueError and needs no pytz
    _NO_SUCH_TIME = (ValueError,)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = pl.duration(nanoseconds=1, time_unit="ns")
_US = timedelta(microseconds=1)
NS_MIN = -(2**63)
NS_MAX = 2**63 - 1
DAY_NS = 86_400_000_000_000  # a nominal day; calendar days come from the zone rules
# The instants a request may name: those pandas and polars can hold (1677-09-21 to
# 2262-04-11), with a day's margin at each end so that day boundaries around them exist too.
FIRST_NS = int(pd.Timestamp.min.value) + DAY_NS
LAST_NS = int(pd.Timestamp.max.value) - DAY_NS
# The bar starts a store takes, [FIRST_BAR_NS, END_BAR_NS): well inside those instants, so
# that every instant derived from a bar (its end, the bucket boundaries and local dates
# around it, its wall time in any zone) is an int64 nanosecond too.
FIRST_BAR_NS = int(pd.Timestamp("1677-10-01", tz="UTC").value)
END_BAR_NS = int(pd.Timestamp("2262-04-01", tz="UTC").value)
BAR_RANGE = "1677-10-01 to 2262-03-31 UTC"


def aware_ns(dt: Any, *, argument: str) -> int:
    """Nanoseconds of a tz-aware datetime; naive or non-datetime values are rejected."""
    if isinstance(dt, pd.Timestamp):
        if dt.tzinfo is None:
            raise InvalidRequest(_naive_message(argument, dt))
        return in_range(int(dt.value), argument=argument)
    if isinstance(dt, datetime):
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise InvalidRequest(_naive_message(argument, dt))
        return in_range((dt - _EPOCH) // _US * 1000, argument=argument)
    msg = f"{argument} must be a tz-aware datetime, got {type(dt).__name__} {dt!r}"
    raise InvalidRequest(msg)


def local_ns(value: Any, zone: str, *, argument: str) -> int:
    """Nanoseconds of a datetime, date or ISO string; naive values are read in ``zone``.

    A naive midnight (a date) is the first instant of that local date, even where DST
    repeats or skips midnight; any other naive wall time that a DST change repeats or skips
    is an error, as it names no single instant.
    """
    if not isinstance(value, date | str | pd.Timestamp):
        msg = f"{argument} must be a datetime, date or ISO string, got {type(value).__name__}"
        raise InvalidRequest(msg)
    try:
        # The range check comes first: pandas would read a far-off time in its zone's local
        # mean time and fail for unrelated reasons.
        ts = pd.Timestamp(value).as_unit("ns")
    except pd.errors.OutOfBoundsDatetime:
        raise InvalidRequest(_range_message(argument, repr(value))) from None
    except (ValueError, TypeError) as exc:
        msg = f"{argument}={value!r} is not a date or time ({exc}); use e.g. '2024-01-02 09:30'"
        raise InvalidRequest(msg) from None
    if ts.tzinfo is None and ts == ts.normalize():
        # A date (or a time at midnight) means the day, which starts at the first instant
        # of its date: the first of a repeated midnight, the end of a skipped one.
        ts = ts.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")
    elif ts.tzinfo is None:
        try:
            ts = ts.tz_localize(zone, ambiguous="raise", nonexistent="raise")
        except _NO_SUCH_TIME:
            msg = (
                f"{argument}={value!r} is ambiguous or does not exist in {zone} (a DST "
                "change); pass a tz-aware datetime"
            )
            raise InvalidRequest(msg) from None
    return in_range(int(ts.value), argument=argument)


def first_instant(midnight: pl.Expr, zone: str) -> pl.Expr:
    """The first instant (int64 ns) in ``zone`` of each date, from its naive midnight.

    That is the midnight itself, its first occurrence when repeated. A skipped midnight
    lies in a gap, and the date starts where the gap ends: one tick after the last instant
    before it, for a gap that starts at midnight, as every one in the zone database has
    since 1920 (America/Santiago, 2024-09-08: 01:00). The one earlier gap around a midnight
    (Toronto and its links, 1919-03-30 23:30 to 00:30) ends between whole hours: there the
    date starts at the first whole hour that exists, as pandas' ``nonexistent=
    "shift_forward"`` has it.
    """
    exists = {"ambiguous": "earliest", "non_existent": "null"}
    occurs = midnight.dt.replace_time_zone(zone, **exists)
    before = (midnight - _TICK).dt.replace_time_zone(zone, ambiguous="latest", non_existent="null")
    hour = (midnight + pl.duration(hours=1, time_unit="ns")).dt.replace_time_zone(zone, **exists)
    return pl.coalesce(occurs, before + _TICK, hour).dt.epoch("ns")


def first_instants(midnights: pl.Series, zone: str) -> pl.Series:
    """:func:`first_instant` of a column of naive midnights, as datetimes in ``zone``."""
    instants = midnights.to_frame().select(first_instant(pl.col(midnights.name), zone))
    return instants.to_series().cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(zone)


def in_range(ns: int, *, argument: str) -> int:
    """``ns`` if it is an instant lazybars can handle (int64 nanoseconds, 1677-2262)."""
    if FIRST_NS <= ns <= LAST_NS:
        return ns
    raise InvalidRequest(_range_message(argument, _shown(ns)))


def _shown(ns: int) -> object:
    """``ns`` as a UTC Timestamp for messages, or as a number when it has none."""
    try:
        return pd.Timestamp(ns, tz="UTC")
    except (OverflowError, ValueError):
        return f"{ns} ns since 1970"


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


def _range_message(argument: str, value: object) -> str:
    return (
        f"{argument} ({value}) is outside the instants lazybars handles (int64 nanoseconds: "
        "1677-09-22 to 2262-04-10); use a time inside that range"
    )


def _naive_message(argument: str, dt: Any) -> str:
    return (
        f"{argument} is naive ({dt}); pass a tz-aware datetime, e.g. "
        f"dt.replace(tzinfo=ZoneInfo('America/New_York'))"
    )
