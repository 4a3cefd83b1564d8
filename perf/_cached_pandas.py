"""The strongest pandas data source a user could write in an afternoon: the benchmarks'
"what you would write instead of lazybars" baseline.

Each (symbol, timestep) is aggregated once with ``DataFrame.resample``, on first use, and
the end instant of every bar is kept as a sorted int64 array. A request is then one
``searchsorted`` on those ends and one ``.iloc`` slice: no mask, no resample, nothing per
call. It knows only what the benchmark data needs (minute bars in a zone whose UTC offsets
are whole hours, timesteps of minutes, hours or one day) and answers exactly what
:class:`lazybars.DataSource` answers there; ``perf.bench_requests`` checks that on a sample
of requests before it times anything.

On pandas 2.x without copy-on-write an ``.iloc`` slice is a view that shares memory with the
cache, so a caller writing into a returned frame would change later answers. Like lazybars,
it then returns a copy of the window (see :func:`isolated`): a baseline that could hand out
wrong answers would not be a fair one. On pandas 3 (copy-on-write always) both hand out views.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["CachedPandasSource", "isolated", "views_are_isolated"]

_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3


def views_are_isolated() -> bool:
    """Whether writes to an ``.iloc`` view copy instead of reaching the frame it views."""
    return _COPY_ON_WRITE or pd.get_option("mode.copy_on_write") is True


def isolated(window: pd.DataFrame) -> pd.DataFrame:
    """``window`` (an ``.iloc`` slice of a cached frame) as a caller may safely have it: the
    view itself where writes to it copy (pandas 3, or pandas 2 with copy-on-write on), else
    a copy, as a pandas user would write it."""
    return window if views_are_isolated() else window.copy()


_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
# The benchmark's timesteps, as pandas frequencies.
_RULES = {"1m": None, "5m": "5min", "1h": "1h", "day": "D"}


class Table(NamedTuple):
    """One (symbol, timestep): the bars, their end instants (int64 ns) and their closes."""

    frame: pd.DataFrame
    ends: np.ndarray
    closes: np.ndarray


class CachedPandasSource:
    """``set_datetime`` / ``get_historical_prices`` / ``get_last_price`` over pandas frames.

    Parameters
    ----------
    frames
        Minute bars per symbol, indexed by a tz-aware ``DatetimeIndex`` of bar starts.
    timezone
        The local zone: day buckets start at its midnights, and answers are in it.
    """

    def __init__(self, frames: dict[str, pd.DataFrame], timezone: str) -> None:
        self._frames = {s: f.tz_convert(timezone) for s, f in frames.items()}
        self._zone = timezone
        self._tables: dict[tuple[str, str], Table] = {}
        self._now = 0

    def set_datetime(self, dt: pd.Timestamp) -> None:
        self._now = dt.value

    def get_historical_prices(self, symbol: str, length: int, timestep: str = "1m") -> pd.DataFrame:
        """The last ``length`` bars whose end is at or before the clock."""
        table = self._tables.get((symbol, timestep)) or self.table(symbol, timestep)
        k = int(table.ends.searchsorted(self._now, "right"))
        return isolated(table.frame.iloc[max(k - length, 0) : k])

    def get_last_price(self, symbol: str) -> float | None:
        """The close of the last minute bar whose end is at or before the clock."""
        table = self._tables.get((symbol, "1m")) or self.table(symbol, "1m")
        k = int(table.ends.searchsorted(self._now, "right"))
        return float(table.closes[k - 1]) if k else None

    def table(self, symbol: str, timestep: str) -> Table:
        """The whole (aggregated) frame of ``symbol``, built on first use."""
        key = (symbol, timestep)
        if key not in self._tables:
            self._tables[key] = self._build(symbol, timestep)
        return self._tables[key]

    def _build(self, symbol: str, timestep: str) -> Table:
        frame = self._frames[symbol]
        rule = _RULES[timestep]
        if rule is None:
            ends = frame.index + pd.Timedelta(minutes=1)
        else:
            # resample builds a hash engine on the index it groups, and pandas then updates
            # a copy of it on every .iloc slice (copies share the engine, too): group a
            # detached copy, so that the minute table keeps slicing at full speed.
            detached = frame.set_axis(frame.index.copy(deep=True), axis=0)
            # Buckets without a single bar come out of resample as NaN rows: drop them.
            frame = detached.resample(rule).agg(_AGG).dropna(subset=["open"])
            if rule == "D":
                # The next local midnight: 23 or 25 hours later on DST days.
                naive = frame.index.tz_localize(None) + pd.Timedelta(days=1)
                ends = naive.tz_localize(self._zone)
            else:
                ends = frame.index + pd.Timedelta(rule)
        return Table(frame, ends.as_unit("ns").asi8, frame["close"].to_numpy())
