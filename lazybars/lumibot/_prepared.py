"""The bars lumibot's DataBento class holds for an asset, prepared once for its hot answers.

lumibot's ``DataBentoDataBacktestingPolars`` answers a history request with a slice of the
asset's ``DataPolars`` frame (a binary search on its bar starts), which its ``Bars`` then
converts to pandas: a ``pct_change`` "return" column, ``to_pandas``, the datetime set as
index and converted to New York. That conversion is nearly all of a request's cost, and
the same on every request. :class:`Prepared` does it once, on the whole frame, when the
frame is loaded; a window is then the prepared frame's rows as the caller's own
(:class:`lazybars._windows.Windows`), its first "return" set missing (``pct_change`` of a
window starts with none).
Every element of a converted window equals the converted whole frame's at the same row
except that first "return", as long as no close is missing (polars fills a missing close
forward before its ``pct_change``, reaching before the window): such frames, and frames
with the dividend columns lumibot derives differently, are converted per window by
lumibot's ``Bars``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from lumibot.entities import Bars
from lumibot.entities.data_polars import DataPolars

from lazybars._windows import Windows

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
# lumibot steps back one bar of the held data's timestep (a minute for any other).
BAR = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def utc_ns(when: datetime) -> int:
    """``when`` (time-zone aware) in UTC nanoseconds, as lumibot's ``_datetime_to_utc_ns``
    (``pd.Timestamp(when).tz_convert("UTC").value``) gives it, at a fraction of its cost."""
    return (when - EPOCH) // MICROSECOND * 1000


class Prepared:
    """One held data object (a lumibot ``DataPolars``, or the pandas ``Data`` of a
    prefetch) with what its answers need, prepared once.

    Parameters
    ----------
    data
        The held data object.
    starts
        lumibot's bar starts of it in UTC nanoseconds (its ``_datetime_ns_cache`` entry:
        the very array lumibot's own answers search).
    source, asset
        lumibot's ``SOURCE`` and the asset, for the one conversion of the whole frame.

    Attributes
    ----------
    covers
        The (length, timestep) requests this data answers without a reload (lumibot
        keeps it, or it was read from their very bounds), filled as they are checked.
    """

    __slots__ = (
        "_return",
        "_windows",
        "bar",
        "closes",
        "covers",
        "data",
        "frame",
        "polars",
        "starts",
    )

    def __init__(self, data: Any, starts: np.ndarray, source: str, asset: Any) -> None:
        self.data = data
        self.polars = isinstance(data, DataPolars)
        self.frame = data.polars_df if self.polars else data.df
        self.starts = starts
        self.bar = BAR.get(data.timestep, BAR["minute"])
        self.closes = self.frame["close"].to_numpy() if "close" in self.frame.columns else None
        self.covers: set[tuple[int, str]] = set()
        self._windows: Windows | None = None
        if self.polars and _convertible(self.frame):
            whole = Bars(self.frame, source, asset).pandas_df
            self._windows, self._return = Windows(whole), whole.columns.get_loc("return")

    @property
    def fast(self) -> bool:
        """Whether windows are built from the prepared blocks (else by lumibot's Bars)."""
        return self._windows is not None

    def pandas(self, lo: int, hi: int) -> pd.DataFrame:
        """Rows ``lo:hi`` as lumibot's ``Bars`` converts the frame's slice, for the caller
        to keep and change (:class:`lazybars._windows.Windows`)."""
        rows = self._windows.rows(lo, hi)
        rows.iat[0, self._return] = np.nan
        return rows


def _convertible(frame: pl.DataFrame) -> bool:
    """A frame whose windows' conversion is its whole conversion's rows (see the module's
    docstring): a close without missing values, no dividend or return column of its own,
    and a time-zone aware datetime (a naive one is localized per window, where an
    ambiguous hour may fail in one window and not in another)."""
    columns = frame.columns
    if "close" not in columns or "dividend" in columns or "return" in columns:
        return False
    if frame["close"].null_count() or frame.height == 0:
        return False
    dtype = frame.schema.get("datetime")
    return isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
