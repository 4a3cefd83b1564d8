"""Continuous futures: roll rules that say which stored contract is the front one when.

Contracts are stored as ordinary symbols, the root then a month code and a year: ``MESH4``
(one digit, as lumibot and DataBento name them), ``MESH24`` or ``MESH2024``. A one-digit
(or two-digit) year is read from the contract's own stored bars: it is the first year
ending in those digits whose contract month is not before the contract's first bar; the
clock of the machine never enters.

A rule turns the stored contracts of a root into rolls, and the rolls into the stitched
series that ``BarStore.scan(root, roll=...)`` serves:

- :class:`CalendarRule` rolls a fixed number of business days before an anchor day of each
  contract month. Its defaults are lumibot's rule for equity index futures (ES, MES, NQ,
  MNQ, YM, MYM), instant for instant.
- :class:`VolumeRule` rolls once the next contract trades more than the current one in a
  complete session.
- :class:`Schedule` is a roll schedule given by hand.

A rule is a small frozen value: equal rules give equal queries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import polars as pl

from lazybars._time import local_ns, timedelta_ns
from lazybars.errors import InvalidRequest, UnknownAsset

__all__ = [
    "MONTH_CODES",
    "CalendarRule",
    "Contract",
    "Roll",
    "Schedule",
    "Stitch",
    "VolumeRule",
    "default_rule",
    "is_contract",
    "parse_contract",
]

MONTH_CODES = "FGHJKMNQUVXZ"  # January to December
QUARTERLY = (3, 6, 9, 12)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_DAY_NS = 86_400_000_000_000


class Contract(NamedTuple):
    """One futures contract: its stored symbol, and the year and month it expires in."""

    symbol: str
    year: int
    month: int


class Roll(NamedTuple):
    """A roll: from ``at`` (int64 ns) on, ``out`` no longer serves bars; ``into`` serves
    the bars starting at or after ``resume``."""

    at: int
    out: str
    into: str
    resume: int


class Stitch(NamedTuple):
    """What a rule makes of a root's stored contracts: the contracts it serves, in order,
    the first one's first instant and the last one's end (int64 ns; None: unbounded), and
    the rolls between them."""

    contracts: tuple[str, ...]
    start: int | None
    rolls: tuple[Roll, ...]
    end: int | None


@lru_cache(maxsize=64)
def _code(root: str) -> re.Pattern[str]:
    return re.compile(re.escape(root) + f"([{MONTH_CODES}])" + r"(\d{1,2}|\d{4})")


def is_contract(symbol: str, root: str) -> bool:
    """Whether ``symbol`` is spelled as a contract of ``root`` (``MESH4``, ``MESH2024``)."""
    return _code(root).fullmatch(symbol) is not None


def parse_contract(symbol: str, root: str, first_bar: int | None = None) -> Contract | None:
    """The contract ``symbol`` names under ``root``, or None when it names none.

    ``first_bar`` (int64 ns) resolves a one- or two-digit year: the contract expires in the
    first year ending in those digits whose contract month is not before that bar's month.
    Without it, such a year cannot be read and None is returned.
    """
    found = _code(root).fullmatch(symbol)
    if found is None:
        return None
    month = MONTH_CODES.index(found.group(1)) + 1
    digits = found.group(2)
    if len(digits) == 4:
        return Contract(symbol, int(digits), month)
    if first_bar is None:
        return None
    seen = datetime.fromtimestamp(first_bar / 1e9, UTC)
    modulus = 10 ** len(digits)
    year = seen.year - seen.year % modulus + int(digits)
    while (year, month) < (seen.year, seen.month):
        year += modulus
    return Contract(symbol, year, month)


def _instant(dt: datetime) -> int:
    return (dt - _EPOCH) // _US * 1000


def _months(months: Iterable[int]) -> tuple[int, ...]:
    out = tuple(sorted(set(months)))
    if not out or any(type(m) is not int or not 1 <= m <= 12 for m in out):
        msg = f"months must be month numbers 1-12, e.g. (3, 6, 9, 12), got {months!r}"
        raise InvalidRequest(msg)
    return out


def _chain(stored: Sequence[Contract], months: tuple[int, ...], root: str) -> list[Contract]:
    """The stored contracts in ``months``, in expiry order, none named twice."""
    ours = sorted((c for c in stored if c.month in months), key=lambda c: (c.year, c.month))
    if not ours:
        msg = f"no stored contract of {root} expires in months {list(months)}"
        raise UnknownAsset(msg)
    for before, after in pairwise(ours):
        if (before.year, before.month) == (after.year, after.month):
            msg = (
                f"{before.symbol} and {after.symbol} name the same contract of {root}; "
                "keep one of them in the store"
            )
            raise InvalidRequest(msg)
    return ours


def _missing(chain: list[Contract], months: tuple[int, ...]) -> list[tuple[int, int]]:
    """The contract months between the chain's ends that the chain lacks."""
    have = {(c.year, c.month) for c in chain}
    year, month = chain[0].year, chain[0].month
    gone = []
    while (year, month) < (chain[-1].year, chain[-1].month):
        following = [m for m in months if m > month]
        year, month = (year, following[0]) if following else (year + 1, months[0])
        if (year, month) not in have:
            gone.append((year, month))
    return gone


def _missing_error(root: str, ym: tuple[int, int], window: tuple[int, int] | None) -> str:
    code = f"{root}{MONTH_CODES[ym[1] - 1]}{ym[0] % 10}"
    where = "" if window is None else f" in [{_shown(window[0])}, {_shown(window[1])})"
    return (
        f"{code} ({ym[0]}-{ym[1]:02d}) is not stored, yet the roll rule makes it the front "
        f"contract of {root}{where}, between stored contracts; write it (e.g. as {code})"
    )


def _shown(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


@dataclass(frozen=True)
class CalendarRule:
    """Roll ``business_days`` weekdays before an anchor day of each contract month.

    The defaults are lumibot 4.6's rule for equity index futures: 8 business days before
    the third Friday of March, June, September and December, at 00:05 New York time, with
    the next contract's bars starting one minute later (the bar starting at the roll
    instant is in neither contract). lumibot reads the roll's UTC offset from the first day
    of the contract month (``utc_offset="month_start"``), so a March roll after the switch
    to daylight time falls at 01:05 New York time; ``utc_offset="roll_day"`` takes the wall
    clock time on the roll day instead.

    Parameters
    ----------
    business_days
        Weekdays (not in ``holidays``) counted back from the anchor, the anchor excluded.
    anchor
        ``"third_friday"`` of the contract month, or ``"month_start"``: its first day (in
        even months, with CME's trade-date holidays and ``utc_offset="roll_day"``, the
        default 8 business days are lumibot's rule for gold, GC and MGC).
    months
        The contract months traded (month numbers).
    at
        The local time of the roll, in ``tz``.
    gap
        The next contract serves bars starting at roll + ``gap``.
    holidays
        Dates that are not business days.

    Examples
    --------
    >>> import lazybars as lb
    >>> lb.futures.CalendarRule().roll_instant(2024, 3)  # MESH4 to MESM4
    Timestamp('2024-03-05 00:05:00-0500', tz='America/New_York')
    """

    business_days: int = 8
    anchor: Literal["third_friday", "month_start"] = "third_friday"
    months: tuple[int, ...] = QUARTERLY
    at: time = time(0, 5)
    tz: str = "America/New_York"
    gap: timedelta = timedelta(minutes=1)
    utc_offset: Literal["month_start", "roll_day"] = "month_start"
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "months", _months(self.months))
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        if type(self.business_days) is not int or self.business_days < 0:
            msg = f"business_days must be an int >= 0, got {self.business_days!r}"
            raise InvalidRequest(msg)
        if self.anchor not in ("third_friday", "month_start"):
            msg = f"anchor must be 'third_friday' or 'month_start', got {self.anchor!r}"
            raise InvalidRequest(msg)
        if self.utc_offset not in ("month_start", "roll_day"):
            msg = f"utc_offset must be 'month_start' or 'roll_day', got {self.utc_offset!r}"
            raise InvalidRequest(msg)
        if timedelta_ns(self.gap) < 0:
            msg = f"gap must be a timedelta >= 0, got {self.gap!r}"
            raise InvalidRequest(msg)
        ZoneInfo(self.tz)

    def roll_ns(self, year: int, month: int) -> int:
        """The instant (int64 ns) the contract of ``year``-``month`` rolls out."""
        if self.anchor == "third_friday":
            first = date(year, month, 1)
            day = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
        else:
            day = date(year, month, 1)
        left = self.business_days
        while left:
            day -= timedelta(days=1)
            if day.weekday() < 5 and day not in self.holidays:
                left -= 1
        zone = ZoneInfo(self.tz)
        wall = datetime.combine(day, self.at)
        if self.utc_offset == "month_start":
            offset = datetime(year, month, 1, tzinfo=zone).utcoffset()
            assert offset is not None
            return _instant(wall.replace(tzinfo=UTC) - offset)
        return _instant(wall.replace(tzinfo=zone))

    def roll_instant(self, year: int, month: int) -> Any:
        """:meth:`roll_ns` as a pandas Timestamp in ``tz``."""
        import pandas as pd  # noqa: PLC0415 - display only

        return pd.Timestamp(self.roll_ns(year, month), tz="UTC").tz_convert(self.tz)

    def rolls(
        self, root: str, stored: Sequence[Contract], volumes: Callable[[str], pl.DataFrame]
    ) -> Stitch:
        """The stored contracts stitched by this rule."""
        chain = _chain(stored, self.months, root)
        gone = _missing(chain, self.months)
        if gone:
            ym = gone[0]
            previous = _previous(ym, self.months)
            start = self.roll_ns(*previous) + timedelta_ns(self.gap)
            raise UnknownAsset(_missing_error(root, ym, (start, self.roll_ns(*ym))))
        gap = timedelta_ns(self.gap)
        first = self.roll_ns(*_previous((chain[0].year, chain[0].month), self.months)) + gap
        rolls = []
        for out, into in pairwise(chain):
            at = self.roll_ns(out.year, out.month)
            rolls.append(Roll(at, out.symbol, into.symbol, at + gap))
        end = self.roll_ns(chain[-1].year, chain[-1].month)
        return Stitch(tuple(c.symbol for c in chain), first, tuple(rolls), end)


def _previous(ym: tuple[int, int], months: tuple[int, ...]) -> tuple[int, int]:
    earlier = [m for m in months if m < ym[1]]
    return (ym[0], earlier[-1]) if earlier else (ym[0] - 1, months[-1])


@dataclass(frozen=True)
class VolumeRule:
    """Roll to the next contract after the first complete session in which it trades more
    than the current one.

    A session runs from ``session_start`` (local time in ``tz``) to the next one: CME's
    trading day, 18:00 to 18:00 New York time, by default. The roll takes effect at the end
    of that session, once its volume is known, so a roll never depends on a later bar. The
    next contract serves bars starting at the roll instant.

    Parameters
    ----------
    months
        The contract months traded (month numbers); every one between the first and the
        last stored contract must be stored.
    session_start
        Where a session begins, local time.
    tz
        The zone of ``session_start``.
    """

    months: tuple[int, ...] = QUARTERLY
    session_start: time = time(18, 0)
    tz: str = "America/New_York"

    def __post_init__(self) -> None:
        object.__setattr__(self, "months", _months(self.months))
        ZoneInfo(self.tz)

    def rolls(
        self, root: str, stored: Sequence[Contract], volumes: Callable[[str], pl.DataFrame]
    ) -> Stitch:
        """The stored contracts stitched by this rule."""
        chain = _chain(stored, self.months, root)
        gone = _missing(chain, self.months)
        if gone:
            raise UnknownAsset(_missing_error(root, gone[0], None))
        sessions = {c.symbol: self._sessions(volumes(c.symbol)) for c in chain}
        rolls: list[Roll] = []
        after = None  # sessions ending by the last roll are spent
        for out, into in pairwise(chain):
            mine, theirs = sessions[out.symbol], sessions[into.symbol]
            for end in sorted(set(mine) | set(theirs)):
                if (after is None or end > after) and theirs.get(end, 0) > mine.get(end, 0):
                    rolls.append(Roll(end, out.symbol, into.symbol, end))
                    after = end
                    break
            else:
                break  # the next contract never took over: the current one serves to its end
        contracts = (chain[0].symbol, *(r.into for r in rolls))
        return Stitch(contracts, None, tuple(rolls), None)

    def _sessions(self, bars: pl.DataFrame) -> dict[int, float]:
        """Each session's volume, keyed by the session's end (int64 ns)."""
        opens = timedelta(
            hours=self.session_start.hour,
            minutes=self.session_start.minute,
            seconds=self.session_start.second,
        )
        wall = pl.col("datetime").dt.convert_time_zone(self.tz).dt.replace_time_zone(None)
        # A session is named by the date it opens on, and ends when the next one opens.
        opened = (wall - opens).dt.date().cast(pl.Datetime("us"))
        close = (opened + timedelta(days=1) + opens).dt.replace_time_zone(
            self.tz, ambiguous="earliest", non_existent="null"
        )
        totals = bars.group_by(close.alias("end")).agg(pl.col("volume").sum()).drop_nulls()
        ends = totals["end"].dt.epoch("ns").to_list()
        return dict(zip(ends, totals["volume"].to_list(), strict=True))


@dataclass(frozen=True)
class Schedule:
    """A roll schedule given by hand: each contract and the first instant it serves.

    ``entries`` are ``(contract symbol, first instant)`` pairs in time order; a naive
    instant is read in ``tz``. Each contract serves bars from its instant to the next one's.

    Examples
    --------
    >>> import lazybars as lb
    >>> rule = lb.futures.Schedule([("MESH4", "2023-12-05 00:06"), ("MESM4", "2024-03-05 00:06")])
    >>> len(rule.entries)
    2
    """

    entries: tuple[tuple[str, int], ...]
    tz: str = "America/New_York"

    def __init__(self, entries: Iterable[tuple[str, Any]], tz: str = "America/New_York") -> None:
        pairs = tuple((str(s), local_ns(t, tz, argument="Schedule")) for s, t in entries)
        if not pairs or any(a[1] >= b[1] for a, b in pairwise(pairs)):
            msg = "Schedule needs (contract, first instant) pairs with instants increasing"
            raise InvalidRequest(msg)
        object.__setattr__(self, "entries", pairs)
        object.__setattr__(self, "tz", tz)

    def rolls(
        self, root: str, stored: Sequence[Contract], volumes: Callable[[str], pl.DataFrame]
    ) -> Stitch:
        """The schedule's contracts, checked to be stored."""
        have = {c.symbol for c in stored}
        for (symbol, start), following in zip(self.entries, [*self.entries[1:], None], strict=True):
            if symbol not in have:
                end = None if following is None else following[1]
                msg = (
                    f"{symbol} is in the schedule of {root} from {_shown(start)} to "
                    f"{'its last bar' if end is None else _shown(end)} but not stored; "
                    "write it, or leave it out of the schedule"
                )
                raise UnknownAsset(msg)
        rolls = [
            Roll(b[1], a[0], b[0], b[1])
            for a, b in zip(self.entries, self.entries[1:], strict=False)
        ]
        contracts = tuple(symbol for symbol, _ in self.entries)
        return Stitch(contracts, self.entries[0][1], tuple(rolls), None)


Rule = CalendarRule | VolumeRule | Schedule

_EQUITY_INDEX = ("ES", "MES", "NQ", "MNQ", "YM", "MYM")
DEFAULT_RULES: Mapping[str, Rule] = dict.fromkeys(_EQUITY_INDEX, CalendarRule())


def default_rule(root: str) -> Rule:
    """The rule a root rolls by when ``roll=`` is not given: lumibot's calendar rule for
    the equity index roots (ES, MES, NQ, MNQ, YM, MYM); other roots have none."""
    rule = DEFAULT_RULES.get(root)
    if rule is None:
        msg = (
            f"{root} has no default roll rule (only {', '.join(_EQUITY_INDEX)} do); pass one, "
            f"e.g. store.scan({root!r}, roll=lb.futures.CalendarRule(months=...)) or "
            "roll=lb.futures.VolumeRule()"
        )
        raise InvalidRequest(msg)
    return rule
