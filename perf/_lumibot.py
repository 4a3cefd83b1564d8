"""lumibot's own ``PandasData``, set up as a lumibot backtest sets it up, for the benchmarks.

A lumibot user backtesting with ``pandas_data=[Data(asset, df, timestep="minute")]`` gets
this data source: ``Data`` objects, ``load_data()`` (which aligns every frame to one minute
index), and a clock that the backtesting broker moves with ``_update_datetime`` once per
bar. Everything stays on this machine: ``PandasData`` reads only the frames it is given.

lumibot is optional (``pip install -e '.[dev,lumibot]'``); :func:`missing` says why it
cannot be used, and the benchmarks then skip its column with that note.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from typing import Any

import pandas as pd

__all__ = ["TIMESTEPS", "LumibotPandas", "missing"]

# lumibot's spelling of each benchmark timestep.
TIMESTEPS = {"1m": "minute", "5m": "5 minutes", "1h": "hour", "day": "day"}


def missing() -> str | None:
    """Why lumibot cannot be benchmarked here, or None when it can."""
    try:
        version = metadata.version("lumibot")
    except metadata.PackageNotFoundError:
        return "lumibot is not installed (pip install -e '.[dev,lumibot]')"
    if not version.startswith("4.6."):
        return f"lumibot {version} is installed; the benchmark drives lumibot 4.6.x"
    _quiet()
    try:
        import lumibot.data_sources  # noqa: F401
    except Exception as exc:  # a broken install must not stop the other columns
        return f"lumibot {version} does not import ({type(exc).__name__}: {exc})"
    return None


def _quiet() -> None:
    # lumibot logs at INFO by default (a line per import, per data quirk): keep the
    # benchmark's tables readable. Read once, when lumibot's logger is first imported.
    os.environ.setdefault("LUMIBOT_LOG_LEVEL", "ERROR")
    os.environ.setdefault("BACKTESTING_QUIET_LOGS", "true")


def version() -> str:
    return metadata.version("lumibot")


class LumibotPandas:
    """One symbol's minute bars in lumibot's ``PandasData``, loaded as a backtest loads them.

    The probes call lumibot's own objects directly, as its broker and a strategy do
    (``source._update_datetime(dt)``, then ``source.get_historical_prices(asset, n,
    timestep)``): no wrapper of ours stands between lumibot and the clock.
    """

    def __init__(self, symbol: str, frame: pd.DataFrame) -> None:
        """``frame``: minute bars indexed by a tz-aware ``DatetimeIndex`` of bar starts,
        handed over for good (lumibot renames, re-indexes and fills it in place)."""
        _quiet()
        from lumibot.data_sources import PandasData
        from lumibot.entities import Asset, Data

        self.asset = Asset(symbol)
        data = Data(self.asset, frame, timestep="minute", quote=Asset("USD", "forex"))
        self.source: Any = PandasData(
            datetime_start=data.datetime_start,
            datetime_end=data.datetime_end,
            pandas_data=[data],
            show_progress_bar=False,
        )
        self.source.load_data()

    @staticmethod
    def clock(ts: pd.Timestamp) -> datetime:
        """A clock as lumibot's broker hands it over: a tz-aware ``datetime``."""
        return ts.to_pydatetime()

    def history(self, timestep: str, length: int) -> Callable[[datetime], pd.DataFrame]:
        """A probe: move the clock, then read ``length`` bars' ``.df`` at ``timestep``."""
        source, asset, step = self.source, self.asset, TIMESTEPS[timestep]

        def run(clock: datetime) -> pd.DataFrame:
            source._update_datetime(clock)
            return source.get_historical_prices(asset, length, step).df

        return run

    def last_price(self) -> Callable[[datetime], object]:
        """A probe: move the clock, then ask for the last price."""
        source, asset = self.source, self.asset

        def run(clock: datetime) -> object:
            source._update_datetime(clock)
            return source.get_last_price(asset)

        return run
