"""One asset's bars as lumibot sees them after ``load_data``, answering by row arithmetic.

:class:`Series` holds what lumibot's ``Data`` holds once ``PandasData.load_data`` has
repaired it (the bars forward-filled onto the backtest's grid, with the derived ``return``
column), but as one polars frame plus int64 instants: built once, on first use, then every
request is a binary search on the bar starts and a zero-copy slice, or a slice of a bucket
table built once per timestep, with at most the two buckets cut by the window's edges
aggregated at request time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from lazybars._windows import Windows
from lazybars.bars import frame_to_pandas
from lazybars.lumibot import _rules as rules

LOCAL = "America/New_York"  # lumibot's Data converts every index to LUMIBOT_DEFAULT_PYTZ


class Series:
    """The repaired bars of one asset and their indexes, built on first use (thread-safe).

    Parameters
    ----------
    load
        Returns the asset's stored bars (polars, ``datetime`` first).
    grid
        The backtest's sorted instants (``PandasData.clean_trading_times``), int64 ns.
    first, last
        The first and last bar start of the asset's own data (``Data.datetime_start`` and
        ``datetime_end``), int64 ns.
    timestep
        lumibot's name of the data's timestep: ``"minute"``, ``"hour"`` or ``"day"``.
    tz
        The tzinfo lumibot puts on pandas indexes (``LUMIBOT_DEFAULT_PYTZ``).
    """

    def __init__(
        self,
        load: Callable[[], pl.DataFrame],
        grid: np.ndarray,
        first: int,
        last: int,
        timestep: str,
        tz: object,
    ) -> None:
        self._load = load
        self._grid = grid
        self._first, self._last = first, last
        self.timestep = timestep
        self.tz = tz
        self._lock = threading.Lock()
        self._built = False
        self._mirror: pd.DataFrame | None = None
        self._windows: Windows | None = None
        self._tables: dict[tuple[str, int, int], tuple[rules.Buckets, TableMemo]] = {}
        self._midnights: np.ndarray | None = None
        self._days: np.ndarray | None = None
        self._row: tuple[int | None, int] = (None, -1)

    def build(self) -> Series:
        """Repair the bars (once); returns self for chaining."""
        if not self._built:
            with self._lock:
                if not self._built:
                    self._build()
        return self

    def _build(self) -> None:
        frame = rules.repair(self._load(), self._grid, self._first, self._last)
        self.frame = frame.with_columns(pl.col("datetime").dt.convert_time_zone(LOCAL))
        self.starts = frame["datetime"].dt.epoch("ns").to_numpy()
        self.n = frame.height
        self.columns = {
            name: frame[name].to_numpy() for name in rules.AGGREGATIONS if name in frame.columns
        }
        self.opens, self.closes = self.columns["open"], self.columns["close"]
        # Rows before the first close (NaN closes lumibot has nothing to fill with), which
        # lumibot drops from its answers (dropna) and skips when it resamples.
        priced = np.flatnonzero(~np.isnan(self.closes))
        self.priced = int(priced[0]) if len(priced) else self.n
        summed = (name for name, how in rules.AGGREGATIONS.items() if how == "sum")
        self.whole = frozenset(
            name
            for name in summed
            if name in self.columns and rules.whole_numbers(self.columns[name])
        )
        self.closed_length = rules.closed_bar_length(self.starts, self.timestep, LOCAL)
        self._built = True

    def row(self, now: int) -> int:
        """The last row starting at or before ``now`` (-1 if none).

        One backtest clock asks several questions (bars, quotes, last price, the broker's
        fills): the last clock's row is kept, a tuple compare instead of a ~1 us search.
        """
        last = self._row  # one read: threads may replace it, never tear it
        if last[0] == now:
            return last[1]
        i = int(np.searchsorted(self.starts, now, "right")) - 1
        self._row = (now, i)
        return i

    # -- pandas ---------------------------------------------------------------------------
    def rows(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``[start, stop)`` as pandas, for a caller to keep and change (a slice of the
        series' pandas mirror, copied where pandas would let writes reach the mirror)."""
        if self._windows is None:
            self.pandas()
        return self._windows.rows(start, stop)

    def pandas(self) -> pd.DataFrame:
        """The whole series as pandas in lumibot's zone (lumibot's ``Data.df``), built once."""
        if self._mirror is None:
            with self._lock:
                if self._mirror is None:
                    mirror = frame_to_pandas(self.frame)
                    mirror.index = mirror.index.tz_convert(self.tz)
                    # Taken apart once here, so that a window costs no pandas indexing.
                    self._windows = Windows(mirror)
                    self._mirror = mirror
        return self._mirror

    # -- buckets --------------------------------------------------------------------------
    def buckets(self, unit: str, quantity: int, row: int) -> tuple[rules.Buckets, TableMemo]:
        """The bucket table that pandas' resample would use for a window starting at ``row``."""
        if unit == "D":
            key = int(self._wall_days()[row]) % quantity
        else:
            span = quantity * (rules.MINUTE_NS if unit == "min" else rules.HOUR_NS)
            key = int(self._local_midnights()[row]) % span
        table = self._tables.get((unit, quantity, key))
        if table is None:
            with self._lock:
                table = self._tables.get((unit, quantity, key))
                if table is None:
                    table = self._tables[(unit, quantity, key)] = self._table(unit, quantity, key)
        return table

    def _table(self, unit: str, quantity: int, key: int) -> tuple[rules.Buckets, TableMemo]:
        days = self._wall_days() if unit == "D" else None
        bins, labels = rules.bucket_ids(self.starts, unit, quantity, key, days)
        if unit == "D":
            # Day labels are local midnights (pandas date_range with a Day frequency).
            walls = pd.DatetimeIndex((labels * rules.DAY_NS).view("M8[ns]"))
            local = walls.tz_localize(LOCAL, ambiguous=True, nonexistent="shift_forward")
            labels = local.asi8
        table = rules.build_buckets(self.columns, bins, labels)
        return table, TableMemo(rules.instants_index(table.labels, self.tz))

    def _local_midnights(self) -> np.ndarray:
        if self._midnights is None:
            self._midnights = rules.local_midnights(self.starts, LOCAL)
        return self._midnights

    def _wall_days(self) -> np.ndarray:
        if self._days is None:
            self._days = rules.wall_days(self.starts, LOCAL)
        return self._days


class TableMemo:
    """A bucket table's pandas index, and its last answer (key, rows) for repeats."""

    __slots__ = ("index", "last")

    def __init__(self, index: pd.DatetimeIndex) -> None:
        self.index = index
        self.last: tuple[Any, Any] = (None, None)
