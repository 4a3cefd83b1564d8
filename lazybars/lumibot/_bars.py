"""lumibot ``Bars`` whose frames are built on first use, and the answers they are built from.

lumibot's ``Bars.__init__`` takes a finished pandas frame (and converts it to polars at once
for ``return_polars=True``). :class:`LazyBars` takes an *answer* instead: a slice of a cached
series or bucket table that can make either frame on demand. ``len``, ``empty``,
``get_last_price`` and ``get_momentum`` need no frame at all, and with ``return_polars=True``
pandas is never built.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import numpy as np
import pandas as pd
import polars as pl
from lumibot.constants import LUMIBOT_DEFAULT_PYTZ
from lumibot.entities import Bars

from lazybars.bars import pandas_rows
from lazybars.lumibot import _rules as rules
from lazybars.lumibot._series import LOCAL, Series, TableMemo


class Answer(Protocol):
    """What a request found; it makes its frames only when asked."""

    def __len__(self) -> int: ...

    def polars(self) -> pl.DataFrame: ...

    def pandas(self) -> pd.DataFrame: ...

    def last_close(self) -> Any: ...


class SliceAnswer:
    """Rows ``[start, stop)`` of a repaired series, as lumibot's native requests return."""

    __slots__ = ("series", "start", "stop")

    def __init__(self, series: Series, start: int, stop: int) -> None:
        self.series, self.start, self.stop = series, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def polars(self) -> pl.DataFrame:
        return self.series.frame.slice(self.start, self.stop - self.start)

    def pandas(self) -> pd.DataFrame:
        return self.series.rows(self.start, self.stop)

    def last_close(self) -> Any:
        return self.series.closes[self.stop - 1]


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    # One per column set (building one is ~5 us); every frame gets a view of it, whose name
    # is its own.
    return pd.Index(names)


class _Rows:
    """Computed rows: float columns plus the ones lumibot's ``Bars.__init__`` derives,
    and their pandas and polars frames, each built once."""

    __slots__ = ("_pandas", "_polars", "index", "names", "starts", "values")

    def __init__(
        self,
        starts: np.ndarray,
        values: np.ndarray,
        names: tuple[str, ...],
        index: pd.DatetimeIndex | None = None,
    ) -> None:
        # lumibot/entities/bars.py Bars.__init__ adds these to a frame without them.
        dividend = values[:, names.index("dividend")] if "dividend" in names else None
        derived = rules.derived_columns(values[:, names.index("close")], dividend)
        table = np.empty((len(values), len(names) + len(derived)))
        table[:, : len(names)] = values
        for j, column in enumerate(derived.values(), start=len(names)):
            table[:, j] = column
        self.starts, self.values, self.names = starts, table, (*names, *derived)
        self.index = index
        self._pandas: pd.DataFrame | None = None
        self._polars: pl.DataFrame | None = None

    def pandas(self) -> pd.DataFrame:
        """A new pandas frame of the rows (its values a copy: the caller may change it)."""
        if self.index is None:
            index = rules.instants_index(self.starts, LUMIBOT_DEFAULT_PYTZ)
        else:
            # Axes of its own: pandas 2 keeps the Index objects it is given, so renaming one
            # (or setting the index's freq, held by its array) would reach other answers.
            index = self.index[:]
        columns = _column_index(self.names).view()
        return pd.DataFrame(self.values.copy(), index=index, columns=columns, copy=False)

    def shared_pandas(self) -> pd.DataFrame:
        """The rows' pandas frame kept for repeats (hand out ``pandas_rows`` of it)."""
        if self._pandas is None:
            self._pandas = self.pandas()
        return self._pandas

    def polars(self) -> pl.DataFrame:
        if self._polars is None:
            when = pl.Series("datetime", self.starts).cast(pl.Datetime("ns", "UTC"))
            columns = [pl.Series(name, self.values[:, j]) for j, name in enumerate(self.names)]
            frame = pl.DataFrame([when.dt.convert_time_zone(LOCAL), *columns])
            derived = pl.col(n for n in self.names if n in rules.DERIVED)
            self._polars = frame.with_columns(derived.fill_nan(None))
        return self._polars

    def last_close(self) -> Any:
        return self.values[-1, self.names.index("close")]


class TableAnswer:
    """Buckets ``[lo, hi]`` of a bucket table, the first or last one cut to window rows
    ``[a, b)`` when the window starts or ends inside it.

    A coarse request often repeats its answer (a day request, all day long): the table's
    memo keeps the last answer's rows, and a repeat hands out rows of a pandas frame kept
    for repeats (copied; on pandas 3 a view, which copies on write) or the same polars
    frame (immutable).
    """

    __slots__ = ("a", "b", "hi", "lo", "memo", "series", "table")

    def __init__(
        self,
        series: Series,
        table: rules.Buckets,
        memo: TableMemo,
        lo: int,
        hi: int,
        a: int,
        b: int,
    ) -> None:
        self.series, self.table, self.memo = series, table, memo
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def __len__(self) -> int:
        return max(self.hi - self.lo + 1, 0)

    def _rows(self) -> tuple[_Rows, bool]:
        """The answer's rows, and whether they repeat the table's last answer."""
        t, lo, hi, a, b = self.table, self.lo, self.hi, self.a, self.b
        series = self.series
        cut_first = hi >= lo and t.first[lo] < a
        cut_last = hi >= lo and t.stop[hi] > b
        # Cut buckets depend on the window's rows; whole ones on nothing else.
        key = (lo, hi, a if cut_first else -1, b if cut_last else -1)
        last = self.memo.last  # one read: threads may replace it, never tear it
        if last[0] == key:
            return last[1], True
        values = t.values[lo : hi + 1].copy()
        if cut_first:
            stop = min(int(t.stop[lo]), b)
            gaps = a < series.priced
            values[0] = rules.aggregate_rows(series.columns, t.columns, a, stop, series.whole, gaps)
        if cut_last:
            start = max(int(t.first[hi]), a)
            gaps = start < series.priced
            values[-1] = rules.aggregate_rows(
                series.columns, t.columns, start, b, series.whole, gaps
            )
        rows = _Rows(t.labels[lo : hi + 1], values, t.columns, self.memo.index[lo : hi + 1])
        self.memo.last = (key, rows)
        return rows, False

    def polars(self) -> pl.DataFrame:
        return self._rows()[0].polars()

    def pandas(self) -> pd.DataFrame:
        rows, repeat = self._rows()
        return pandas_rows(rows.shared_pandas(), 0, len(self)) if repeat else rows.pandas()

    def last_close(self) -> Any:
        return self._rows()[0].last_close()


class StrictAnswer:
    """A lazybars :class:`~lazybars.Bars` (strict semantics) in lumibot's columns and zone."""

    __slots__ = ("_done", "bars")

    def __init__(self, bars: Any) -> None:
        self.bars = bars
        self._done: _Rows | None = None

    def __len__(self) -> int:
        return len(self.bars)

    def _rows(self) -> _Rows:
        if self._done is None:
            frame = self.bars.pl
            names = tuple(c for c in rules.AGGREGATIONS if c in frame.columns)
            starts = frame["datetime"].dt.epoch("ns").to_numpy()
            self._done = _Rows(starts, frame.select(names).to_numpy(), names)
        return self._done

    def polars(self) -> pl.DataFrame:
        return self._rows().polars()

    def pandas(self) -> pd.DataFrame:
        return self._rows().pandas()

    def last_close(self) -> Any:
        return np.float64(self.bars.pl["close"][-1])


class LazyBars(Bars):
    """A lumibot ``Bars`` that builds its pandas or polars frame only when it is read.

    Everything lumibot's ``Bars`` offers works; ``df`` (pandas, or polars with
    ``return_polars=True``), ``pandas_df`` and ``polars_df`` are built on first access and
    cached. ``len()``, ``empty``, ``get_last_price()`` and ``get_momentum()`` build nothing
    in polars mode and no pandas in either mode.
    """

    def __init__(
        self,
        answer: Answer,
        source: str,
        asset: Any,
        quote: Any = None,
        return_polars: bool = False,
    ) -> None:
        # lumibot/entities/bars.py Bars.__init__: the same attributes, no frame yet.
        self.source = source.upper()
        self.asset = asset
        if isinstance(asset, tuple):
            self.symbol = f"{asset[0].symbol}/{asset[1].symbol}".upper()
        else:
            self.symbol = asset.symbol.upper()
        self.quote = quote
        self._raw = None
        self._return_polars = return_polars
        self._polars_cache = None
        self._pandas_cache = None
        self._tzinfo = LUMIBOT_DEFAULT_PYTZ
        self._answer: Answer | None = answer
        self._frame: Any = None

    # lumibot's Bars keeps its frame in `_df`; here `_df` builds it on first read, and a
    # frame assigned to it (Bars.df's setter) replaces the answer for good.
    @property
    def _df(self) -> Any:
        if self._answer is not None:
            return self.polars_df if self._return_polars else self.pandas_df
        return self._frame

    @_df.setter
    def _df(self, value: Any) -> None:
        self._answer = None
        self._frame = value

    @property
    def polars_df(self) -> pl.DataFrame:
        """The bars as polars (built on first access)."""
        if self._answer is None:
            return super().polars_df
        if self._polars_cache is None:
            self._polars_cache = self._answer.polars()
        return self._polars_cache

    @property
    def pandas_df(self) -> pd.DataFrame:
        """The bars as pandas, indexed by ``datetime`` (built on first access)."""
        if self._answer is None:
            return super().pandas_df
        if self._pandas_cache is None:
            self._pandas_cache = self._answer.pandas()
        return self._pandas_cache

    def __len__(self) -> int:
        return len(self._answer) if self._answer is not None else super().__len__()

    @property
    def empty(self) -> bool:
        """True when there are no bars."""
        return len(self) == 0

    def get_last_price(self) -> Any:
        """The last bar's close (as lumibot: numpy float in pandas mode, float in polars)."""
        if self._answer is None or not len(self._answer):
            return super().get_last_price()
        close = self._answer.last_close()
        return float(close) if self._return_polars else close

    def get_momentum(self, num_periods: int = 1) -> float:
        """lumibot's momentum: the compounded ``return`` of the last ``num_periods`` bars."""
        if self._answer is None:
            return super().get_momentum(num_periods)
        returns = self.polars_df["return"].tail(num_periods)
        return float((1 + returns).product() - 1)
