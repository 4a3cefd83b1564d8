"""The loading hints, applied for the pandas reference by the benchmarks.

``lb.reference.PandasDataSource`` accepts ``start``, ``end`` and ``lookback`` and checks
them, but always loads every stored bar: it is the parity oracle, right for any request,
and in lazybars the hints never limit what a request can reach. A pandas user who knows the
backtest's span would load only that span, though, so the cold-start and memory benchmarks
also run the reference on a :class:`WindowedStore`: the same catalog, read through the
window that lazybars loads first for the same hints.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

import lazybars as lb

__all__ = ["WindowedStore", "loaded_range"]


def loaded_range(
    start: str, end: str, lookback: str, zone: str
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The bar starts a DataSource loads first for these hints: whole local days, from
    ``start - lookback`` to the day after ``end`` (naive dates, read in ``zone``)."""
    first = pd.Timestamp(start, tz=zone) - pd.Timedelta(lookback)
    last = pd.Timestamp(end, tz=zone) + pd.Timedelta(days=1)
    # Whole local days: from the midnight at or before `first` to the one at or after `last`.
    hi = last.normalize()
    if hi != last:
        hi = (hi + pd.DateOffset(days=1)).normalize()
    return first.normalize(), hi


class WindowedStore:
    """``store``, with every scan limited to bar starts in ``[start, end)``."""

    def __init__(self, store: lb.BarStore, start: pd.Timestamp, end: pd.Timestamp) -> None:
        self._store = store
        self._start = start
        self._end = end

    def symbols(self, timestep: str | None = None) -> list[str]:
        return self._store.symbols(timestep)

    def timesteps(self, symbol: str) -> list[str]:
        return self._store.timesteps(symbol)

    def scan(self, symbol: Any, timestep: str | None = None, **options: Any) -> lb.Query:
        return self._store.scan(symbol, timestep, **options).between(self._start, self._end)
