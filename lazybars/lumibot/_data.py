"""Stand-ins for lumibot's ``Data`` in the data source's ``_data_store``.

lumibot's ``PandasData`` answers every request by asking the asset's ``Data`` object
(``get_bars``, ``get_last_price``, ``get_quote``). :class:`LumibotData` answers the same
questions with lumibot's rules, from a :class:`Series`; :class:`StrictData` answers them
with lazybars' own no-lookahead rule, from a :class:`lazybars.DataSource`. Both carry the
attributes lumibot reads off a ``Data`` (``asset``, ``quote``, ``symbol``, ``timestep``,
``datetime_start``, ``datetime_end``, ``df``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from lumibot.constants import LUMIBOT_DEFAULT_PYTZ
from lumibot.tools.helpers import parse_timestep_qty_and_unit

from lazybars._time import aware_ns
from lazybars.bars import frame_to_pandas
from lazybars.lumibot import _rules as rules
from lazybars.lumibot._bars import Answer, SliceAnswer, StrictAnswer, TableAnswer
from lazybars.lumibot._series import Series
from lazybars.source import DataSource

# lumibot/entities/data.py _DATA_QUOTE_FIELDS: the quote fields lumibot fills from quote
# columns, which lazybars does not store (they stay None, as in lumibot without them).
_QUOTE_ONLY = (
    "bid",
    "ask",
    "bid_size",
    "bid_condition",
    "bid_exchange",
    "ask_size",
    "ask_condition",
    "ask_exchange",
    "last_bid_time",
    "last_ask_time",
)
_SUPPORTED = ("minute", "hour", "day")
_EPOCH = datetime(1970, 1, 1)


class _Clock:
    """The clock in int64 ns, converted once per clock object (one backtest iteration asks
    many questions at the same ``datetime``)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[Any, int] = (None, 0)

    def ns(self, dt: Any) -> int:
        last = self.last  # one read: threads may replace it, never tear it
        if last[0] is dt:
            return last[1]
        ns = aware_ns(dt, argument="dt")
        self.last = (dt, ns)
        return ns


_clock = _Clock()


class _DataBase:
    """The attributes lumibot reads off a ``Data`` object."""

    def __init__(
        self, asset: Any, quote: Any, timestep: str, first: datetime, last: datetime
    ) -> None:
        self.asset = asset
        self.symbol = asset.symbol
        self.quote = quote
        self.timestep = timestep
        # Data.__init__: the first and last bar of the asset's own data.
        self.datetime_start = first
        self.datetime_end = last
        self._first_ns = aware_ns(first, argument="datetime_start")
        self._last_ns = aware_ns(last, argument="datetime_end")

    df: pd.DataFrame

    def get_bars(
        self,
        dt: Any,
        length: int = 1,
        timestep: str = "minute",
        timeshift: Any = 0,
        after_hours: bool = True,
    ) -> Answer | None:
        """``length`` bars of ``timestep`` as of the clock ``dt`` (lumibot's ``Data.get_bars``
        signature, plus ``after_hours``), or None when there are none."""
        quantity, unit = _parse(timestep, self.timestep)
        return self._bars(dt, length, quantity, unit, timeshift, after_hours)

    def _bars(
        self, dt: Any, length: int, quantity: int, unit: str, timeshift: Any, after_hours: bool
    ) -> Answer | None:
        raise NotImplementedError


class LumibotData(_DataBase):
    """One asset's bars answered as lumibot's ``Data`` answers them after ``load_data``."""

    def __init__(
        self,
        asset: Any,
        quote: Any,
        series: Series,
        first: datetime,
        last: datetime,
        *,
        unique: bool = True,
    ) -> None:
        super().__init__(asset, quote, series.timestep, first, last)
        self.series = series
        # lumibot's Data._index_is_unique: with repeated timestamps in its data, every
        # request is resampled, even one at the data's own timestep.
        self._native = unique
        self._end_date = last.astimezone(UTC).date()
        # The last quote, by (row, closed): lumibot's broker asks twice per clock.
        self._quote: tuple[Any, dict[str, Any]] = (None, {})

    @property
    def df(self) -> pd.DataFrame:
        """The whole repaired series as pandas (lumibot's ``Data.df`` after ``load_data``)."""
        return self.series.build().pandas()

    # -- requests ---------------------------------------------------------------------------
    def _bars(
        self, dt: Any, length: int, quantity: int, unit: str, timeshift: Any, after_hours: bool
    ) -> Answer | None:
        """The answer lumibot's ``Data.get_bars`` would give, or None where it gives None.

        lumibot/entities/data.py ``Data.get_bars``: a timestep that is the data's own is a
        slice of rows; a coarser one resamples the last ``length x ratio`` rows (the ratio
        in rows of the data, not in time), drops the last bucket unless the window reaches
        its end, drops today's day bucket, and keeps the last ``length`` buckets, so the
        first one may be cut by the window's start. ``after_hours`` is ignored, as lumibot's
        PandasData ignores it.
        """
        mine = self.timestep
        series = self.series.build()
        now = _clock.ns(dt)
        shift = rules.timeshift_rows(timeshift, mine)
        if quantity == 1 and unit == mine and self._native:
            start, stop = rules.native_rows(
                series.starts, series.row(now), now, length, shift, series.closed_length
            )
            if stop <= start:
                return None
            # lumibot's dropna: rows before the first close go (an empty answer, not None).
            return SliceAnswer(series, min(max(start, series.priced), stop), stop)
        rows, code = _resample_rows(unit, quantity, mine, length)
        self._check(dt, now, rows)
        a, b = rules.native_rows(
            series.starts, series.row(now), now, rows, shift, series.closed_length
        )
        if b <= a:
            return None
        table, memo = series.buckets(code, quantity, a)
        first, last = int(table.of_row[a]), int(table.of_row[b - 1])
        if a < series.priced:
            # lumibot's dropna: buckets of rows before the first close only (NaN close) go.
            first = int(table.of_row[series.priced]) if b > series.priced else last + 1
        if unit in {"minute", "hour"}:
            base = rules.MINUTE_NS if mine == "minute" else rules.HOUR_NS
            span = quantity * (rules.MINUTE_NS if unit == "minute" else rules.HOUR_NS)
            if span > base:
                # The last bucket counts only if the window reaches its end.
                limit = int(series.starts[b - 1]) + base - span
                last = min(last, int(np.searchsorted(table.labels, limit, "right")) - 1)
        elif mine in {"minute", "hour"}:
            # Today's day bucket is dropped: labels before `dt.replace(hour=0, ...)`, that
            # is midnight at the clock's own UTC offset, as lumibot computes it.
            midnight = dt.replace(hour=0, minute=0, second=0, microsecond=0)
            cutoff = aware_ns(midnight, argument="dt")
            last = min(last, int(np.searchsorted(table.labels, cutoff, "left")) - 1)
        lo = max(first, last - length + 1)
        return TableAnswer(series, table, memo, lo, last, a, b)

    def get_last_price(self, dt: Any, length: int = 1, timeshift: Any = 0) -> Any:
        """lumibot/entities/data.py ``Data.get_last_price``: a day bar's close, else the
        close of the bar at the clock once it has closed and its open while it forms."""
        series = self.series.build()
        now = _clock.ns(dt)
        self._check(dt, now, length)
        i = series.row(now)
        if self.timestep == "day" or self._closed(series, i, now):
            price = series.closes[i]
        else:
            price = series.opens[i]
        return price

    def get_quote(self, dt: Any, length: int = 1, timeshift: Any = 0) -> dict[str, Any]:
        """lumibot/entities/data.py ``Data.get_quote`` for bars without quote columns."""
        series = self.series.build()
        now = _clock.ns(dt)
        self._check(dt, now, length)
        i = series.row(now)
        closed = self.timestep == "day" or self._closed(series, i, now)
        last = self._quote  # one read: threads may replace it, never tear it
        if last[0] == (i, closed):
            return dict(last[1])  # its values are immutable scalars: a shallow copy is new
        row = {name: series.columns[name][i] for name in ("open", "high", "low", "close")}
        row["volume"] = round(series.columns["volume"][i], 0)
        row.update(dict.fromkeys(_QUOTE_ONLY))
        if not closed:
            # A forming bar's close is the future: lumibot quotes its open.
            row["close"] = row["open"]
        row["bar_timestamp"] = _bar_time(int(series.starts[i]))
        row["bar_timestep"] = self.timestep
        self._quote = ((i, closed), row)
        return dict(row)

    def get_iter_count(self, dt: Any) -> int:
        """The row of the last bar starting at or before ``dt`` (Data.get_iter_count)."""
        series = self.series.build()
        return series.row(_clock.ns(dt))

    # -- lumibot's guards -------------------------------------------------------------------
    def _check(self, dt: Any, now: int, length: Any) -> None:
        """lumibot/entities/data.py ``Data.check_data``: the clock must lie in the data's
        range, or at most three days past its end (a day past, for day bars, in UTC)."""
        if type(length) not in (int, float):
            msg = f"Length must be an integer. {type(length)} was provided."
            raise TypeError(msg)
        if now < self._first_ns:
            msg = f"The date you are looking for ({dt}) for ({self.asset}) is before the data"
            raise ValueError(msg)
        # Day data compares dates (the clock's, and the last bar's in UTC).
        past_end = dt.date() > self._end_date if self.timestep == "day" else now > self._last_ns
        if past_end and now - self._last_ns > rules.THREE_DAYS_NS:
            msg = f"The date you are looking for ({dt}) for ({self.asset}) is after the data"
            raise ValueError(msg)

    @staticmethod
    def _closed(series: Series, i: int, now: int) -> bool:
        # lumibot/entities/data.py _intraday_bar_state: closed once start + length <= dt.
        length = series.closed_length
        return length is not None and int(series.starts[i]) + length <= now


class StrictData(_DataBase):
    """One asset's bars answered by lazybars' own rule (``semantics="strict"``): a bar is
    visible once it has ended, from a shared :class:`lazybars.DataSource`."""

    def __init__(
        self,
        asset: Any,
        quote: Any,
        timestep: str,
        first: datetime,
        last: datetime,
        source: DataSource,
        member: Any,
    ) -> None:
        super().__init__(asset, quote, timestep, first, last)
        self._source = source
        self._member = member
        self._df: pd.DataFrame | None = None

    @property
    def df(self) -> pd.DataFrame:
        """The asset's stored bars as pandas."""
        if self._df is None:
            frame = frame_to_pandas(self._member.frame())
            frame.index = frame.index.tz_convert(LUMIBOT_DEFAULT_PYTZ)
            self._df = frame
        return self._df

    def _bars(
        self, dt: Any, length: int, quantity: int, unit: str, timeshift: Any, after_hours: bool
    ) -> Answer | None:
        """The last ``length`` bars that have ended by the clock (None if there are none)."""
        if unit == "day" and quantity != 1:
            msg = f"only single-day bars are supported in strict semantics, got {quantity} days"
            raise ValueError(msg)
        wanted = "1d" if unit == "day" else f"{quantity}{unit[0]}"
        self._source.set_datetime(dt)
        bars = self._source.get_historical_prices(
            self._member.name, length, wanted, timeshift or None, after_hours
        )
        return StrictAnswer(bars) if len(bars) else None

    def get_last_price(self, dt: Any, length: int = 1, timeshift: Any = 0) -> Any:
        """The close of the last bar that has ended by the clock."""
        self._source.set_datetime(dt)
        return self._source.get_last_price(self._member.name)

    def get_quote(self, dt: Any, length: int = 1, timeshift: Any = 0) -> dict[str, Any]:
        """A quote from the last bar that has ended by the clock (no bid or ask)."""
        self._source.set_datetime(dt)
        bars = self._source.get_historical_prices(self._member.name, 1).pl
        row = dict.fromkeys(("open", "high", "low", "close", "volume", *_QUOTE_ONLY))
        row["bar_timestamp"] = None
        if bars.height:
            for name in ("open", "high", "low", "close"):
                row[name] = np.float64(bars[name][0])
            row["volume"] = round(np.float64(bars["volume"][0]), 0)
            row["bar_timestamp"] = _bar_time(int(bars["datetime"].dt.epoch("ns")[0]))
        row["bar_timestep"] = self.timestep
        return row


def _bar_time(ns: int) -> datetime:
    """A bar start as lumibot's quotes carry it: a datetime in its pytz zone."""
    return LUMIBOT_DEFAULT_PYTZ.fromutc(_EPOCH + timedelta(microseconds=ns // 1000))


def _parse(timestep: str, mine: str) -> tuple[int, str]:
    """lumibot's timestep parse and refusals (lumibot/entities/data.py ``Data.get_bars``)."""
    quantity, unit = parse_timestep_qty_and_unit(timestep)
    if unit == "minute" and mine in {"day", "hour"}:
        msg = "You are requesting minute data from a higher-timeframe data source."
        raise ValueError(msg)
    if unit == "hour" and mine == "day":
        msg = "You are requesting hour data from a daily data source. This is not supported."
        raise ValueError(msg)
    if unit not in _SUPPORTED:
        msg = f"Only minute, hour, and day are supported for timestep. You provided: {unit}"
        raise ValueError(msg)
    return int(quantity), unit


def _resample_rows(unit: str, quantity: int, mine: str, length: int) -> tuple[int, str]:
    """How many rows of the data a coarser request resamples, and pandas' unit code
    (lumibot/entities/data.py ``Data.get_bars``: the length in rows, not time)."""
    if unit == "day":
        return length * {"minute": 1440, "hour": 24}.get(mine, 1), "D"
    if unit == "hour":
        return length * (60 * quantity if mine == "minute" else quantity), "h"
    return length * quantity, "min"
