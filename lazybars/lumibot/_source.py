"""``LazyBarsBacktesting``: lumibot's ``PandasDataBacktesting``, answered by lazybars.

The class *is* a ``PandasDataBacktesting`` (lumibot's engine, broker and strategy see the
data source they know, with ``SOURCE == "PANDAS"`` and a ``_data_store``); what changes is
the object behind each asset. lumibot keeps a pandas ``Data`` per asset and filters,
resamples and converts it on every request; here each asset is a lazybars series answered
by binary search and slicing (:mod:`lazybars.lumibot._data`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from lumibot.backtesting import PandasDataBacktesting
from lumibot.constants import LUMIBOT_DEFAULT_PYTZ
from lumibot.entities import Asset
from lumibot.tools.lumibot_logger import get_logger

from lazybars.errors import InvalidRequest
from lazybars.lumibot._admit import Admitted, admitted
from lazybars.lumibot._bars import LazyBars
from lazybars.lumibot._data import LumibotData, StrictData
from lazybars.lumibot._rules import instants_index
from lazybars.lumibot._series import LOCAL, Series
from lazybars.source import DataSource
from lazybars.store import BarStore
from lazybars.timestep import Timestep

logger = get_logger(__name__)

_SEMANTICS = ("lumibot", "strict")
# lumibot's Data timesteps and the lazybars timesteps they are stored at.
_STORED = {"minute": "1m", "hour": "1h", "day": "1d"}
# lumibot/entities/data.py: quote columns drive Data.get_quote and the broker's quote fills,
# which lazybars does not reproduce.
_QUOTE_COLUMNS = ("bid", "ask", "bid_size", "ask_size", "last_bid_time", "last_ask_time")
_LAST_MINUTE_NS = (24 * 60 - 1) * 60_000_000_000

OFFLINE = MappingProxyType(
    {
        # lumibot downloads risk-free rates and benchmark prices unless told not to, and
        # shows or writes plots, tearsheets and stats files by default.
        "risk_free_rate": 0,
        "benchmark_asset": None,
        "show_plot": False,
        "show_tearsheet": False,
        "save_tearsheet": False,
        "show_indicators": False,
        "save_logfile": False,
        "save_stats_file": False,
        "show_progress_bar": False,
        "quiet_logs": True,
        "analyze_backtest": False,
    }
)
"""``run_backtest`` options that keep a backtest offline and quiet: ``**OFFLINE``."""


class LazyBarsBacktesting(PandasDataBacktesting):
    """lumibot's ``PandasDataBacktesting``, with every answer served from lazybars.

    Switch a backtest by changing one name: ``pandas_data=[Data(...), ...]`` works exactly
    as with ``PandasDataBacktesting``; ``store=`` takes a :class:`lazybars.BarStore` (or
    its directory) instead, every stored symbol being one asset at its finest timestep.

    Parameters
    ----------
    pandas_data
        lumibot ``Data`` objects (a list or a dict), as for ``PandasDataBacktesting``.
    store
        A :class:`lazybars.BarStore` or a catalog directory, instead of ``pandas_data``.
        An asset is looked up by its symbol; crypto and forex assets by ``BASE-QUOTE``
        (``BTC-USD``).
    semantics
        ``"lumibot"`` (default): every answer equals ``PandasDataBacktesting``'s, its
        conventions included, and ``Data`` that lumibot repairs (NaN prices or volume,
        negative volume, repeated timestamps) is served as lumibot serves it, with a
        :class:`lazybars.RepairedBarsWarning` naming the rows. ``"strict"``: lazybars' rule,
        a bar is visible once it has ended, and such data is refused with ``SchemaError``
        (README, "Using it from lumibot", lists every difference).
    *args, **kwargs
        Passed to ``PandasDataBacktesting`` (``run_backtest`` passes the backtest's
        ``datetime_start``, ``datetime_end`` and options).

    Raises
    ------
    InvalidRequest
        For both or neither of ``pandas_data`` and ``store``, an unknown ``semantics``, or
        ``Data`` with quote columns (bid/ask), which lazybars does not serve.
    """

    def __init__(
        self,
        *args: Any,
        pandas_data: Any = None,
        store: Any = None,
        semantics: str = "lumibot",
        **kwargs: Any,
    ) -> None:
        if semantics not in _SEMANTICS:
            msg = f"semantics must be one of {_SEMANTICS}, got {semantics!r}"
            raise InvalidRequest(msg)
        if (pandas_data is None) == (store is None):
            msg = "pass either pandas_data=[Data, ...] or store=BarStore(...) (one of them)"
            raise InvalidRequest(msg)
        super().__init__(*args, pandas_data=None, **kwargs)
        if pandas_data is not None:
            keyed = self._set_pandas_data_keys(pandas_data)
            self._store, members = _from_pandas_data(keyed, admit=semantics == "lumibot")
            self._catalog: dict[str, _Member] | None = None
        else:
            self._store = store if isinstance(store, BarStore) else _open(store)
            members = OrderedDict()
            self._catalog = {
                name: _Member.of_store(self._store, name) for name in _order(self._store)
            }
            if not self._catalog:
                msg = f"{self._store!r} holds no symbols: write bars to it first"
                raise InvalidRequest(msg)
        self._members = members
        self._strict = (
            DataSource(self._store, LOCAL, start=self.datetime_start, end=self.datetime_end)
            if semantics == "strict"
            else None
        )
        self.pandas_data = self._data_store = OrderedDict()

    # -- lumibot's engine hooks ---------------------------------------------------------------
    def load_data(self) -> pd.DataFrame:
        """The backtest's clock and calendar, as ``PandasData.load_data`` makes them.

        lumibot/data_sources/pandas_data.py ``PandasData.load_data``: the union of every
        asset's bar times, its calendar (first and last time per local date), and the grid
        the backtest steps on (``clean_trading_times``: every minute from each date's first
        to last time when the first asset is minute data). Each asset's bars are then read
        and repaired onto that grid on its first request only.
        """
        if self._catalog is None:
            members = [member for _, _, member in self._members.values()]
        else:
            members = list(self._catalog.values())
        if not members:
            return super().load_data()
        union = np.unique(np.concatenate([m.starts() for m in members]))
        index = _index(union)
        # lumibot/data_sources/pandas_data.py PandasData.update_date_index: same refusals.
        if self.datetime_end < index[0]:
            msg = (
                f"The ending date for the backtest was set for {self.datetime_end}. The "
                f"earliest data entered is {index[0]}. No backtest can be run since there is "
                "no data before the backtest end date."
            )
            raise ValueError(msg)
        if self.datetime_start > index[-1]:
            msg = (
                f"The starting date for the backtest was set for {self.datetime_start}. The "
                f"latest data entered is {index[-1]}. No backtest can be run since there is "
                "no data after the backtest start date."
            )
            raise ValueError(msg)
        self._date_index = index
        self._find_asset_in_data_store_cache.clear()
        self._timestep = members[0].timestep
        pcal = self.get_trading_days_pandas()
        self._date_index = self.clean_trading_times(self._date_index, pcal)
        grid = np.asarray(self._date_index.as_unit("ns").asi8)
        for member in members:
            member.attach(grid)
        self.pandas_data = self._data_store = OrderedDict(
            (key, self._data(asset, quote, member))
            for key, (asset, quote, member) in self._members.items()
        )
        return pcal

    def find_asset_in_data_store(self, asset: Any, quote: Any = None, timestep: Any = None) -> Any:
        """lumibot's lookup; with ``store=``, an asset seen for the first time is added."""
        key = super().find_asset_in_data_store(asset, quote, timestep)
        if key is None and self._catalog is not None and self._add(asset, quote):
            key = super().find_asset_in_data_store(asset, quote, timestep)
        return key

    def _pull_source_symbol_bars(
        self,
        asset: Any,
        length: int,
        timestep: str = "",
        timeshift: Any = 0,
        quote: Any = None,
        exchange: Any = None,
        include_after_hours: bool = True,
    ) -> Any:
        # lumibot/data_sources/pandas_data.py PandasData._pull_source_symbol_bars, handing
        # on the unbuilt answer (and include_after_hours, which strict semantics honours).
        timestep = timestep or self.MIN_TIMESTEP
        if exchange is not None:
            logger.warning(f"the exchange parameter is not implemented, but {exchange} was passed")
        key = self.find_asset_in_data_store(asset, quote, timestep)
        data = self._data_store.get(key) if key is not None else None
        if data is None:
            warned = (asset, str(timestep))
            if warned not in self._missing_asset_warned:
                self._missing_asset_warned.add(warned)
                logger.warning(f"The asset: `{asset}` does not exist or does not have data.")
            return None
        try:
            return data.get_bars(
                self.get_datetime(),
                length=length,
                timestep=timestep,
                timeshift=timeshift or 0,
                after_hours=include_after_hours,
            )
        except ValueError as e:
            logger.info(f"Error getting bars for {asset}: {e}")
            return None

    def _parse_source_symbol_bars(
        self,
        response: Any,
        asset: Any,
        quote: Any = None,
        length: Any = None,
        return_polars: bool = False,
    ) -> Any:
        if isinstance(response, pd.DataFrame | pl.DataFrame):
            return super()._parse_source_symbol_bars(response, asset, quote, length, return_polars)
        if isinstance(asset, tuple):
            asset, quote = asset
        return LazyBars(response, self.SOURCE, asset, quote=quote, return_polars=return_polars)

    # -- assets -------------------------------------------------------------------------------
    def _data(self, asset: Any, quote: Any, member: _Member) -> LumibotData | StrictData:
        first, last = member.bounds()
        if self._strict is not None:
            return StrictData(asset, quote, member.timestep, first, last, self._strict, member)
        if member.series is None:
            msg = "the data is not loaded yet: call load_data() first (lumibot's Strategy does)"
            raise InvalidRequest(msg)
        return LumibotData(asset, quote, member.series, first, last, unique=member.unique)

    def _add(self, asset: Any, quote: Any) -> bool:
        """Register ``asset`` (store mode) if the catalog holds its symbol."""
        base = asset[0] if isinstance(asset, tuple) else asset
        quote = asset[1] if isinstance(asset, tuple) and quote is None else quote
        if isinstance(base, str):
            base = Asset(base)
        member = self._catalog.get(store_symbol(base, quote))
        if member is None:
            return False
        quote = quote if quote is not None else Asset("USD", "forex")
        self._members[(base, quote)] = (base, quote, member)
        self._data_store[(base, quote)] = self._data(base, quote, member)
        return True


# lumibot keys pure-pandas behaviour on the class name (the calendar drawn from the data and
# daily stepping in strategies/strategy_executor.py, the inclusive end date in
# data_sources/data_source_backtesting.py DataSourceBacktesting.__init__): LazyBarsBacktesting
# must get exactly that behaviour, so it answers to that name there. repr() and errors still
# show LazyBarsBacktesting (its __qualname__).
LazyBarsBacktesting.__name__ = "PandasDataBacktesting"


def store_symbol(asset: Any, quote: Any) -> str:
    """The catalog symbol of a lumibot asset: its symbol, or ``BASE-QUOTE`` for a pair."""
    kind = str(getattr(asset, "asset_type", "")).lower()
    if quote is not None and ("crypto" in kind or "forex" in kind):
        return f"{asset.symbol}-{quote.symbol}"
    return asset.symbol


class _Member:
    """One asset's stored bars: their times now, the repaired series after ``load_data``."""

    def __init__(
        self,
        store: BarStore,
        name: str,
        timestep: str,
        stored: str,
        bounds: tuple[Any, Any] | None = None,
        trim: bool = False,
        admitted: Admitted | None = None,
    ) -> None:
        self.store, self.name, self.timestep, self.stored = store, name, timestep, stored
        self._bounds = bounds
        self._trim = trim
        # Bars the store would refuse, held here as lumibot keeps them (semantics="lumibot").
        self._raw = None if admitted is None else admitted.frame
        self.unique = admitted is None or admitted.unique
        self._starts: np.ndarray | None = None
        self.series: Series | None = None

    @classmethod
    def of_store(cls, store: BarStore, name: str) -> _Member:
        stored = Timestep.parse(store.timesteps(name)[0])
        timestep = "day" if stored.is_day else "hour" if stored.minutes % 60 == 0 else "minute"
        # lumibot/entities/data.py Data.trim_data: intraday bars after 23:59 are dropped.
        return cls(store, name, timestep, str(stored), trim=timestep != "day")

    def frame(self) -> pl.DataFrame:
        if self._raw is not None:
            return self._raw
        # .lazy: the adapter keeps the frame itself; the store need not hold a second one.
        frame = self.store.scan(self.name, self.stored).lazy.collect()
        return frame.filter(_in_day(frame["datetime"])) if self._trim else frame

    def starts(self) -> np.ndarray:
        if self._starts is None:
            if self._raw is not None:
                when = self._raw["datetime"]
            else:
                scan = self.store.scan(self.name, self.stored).lazy.select("datetime")
                when = scan.collect()["datetime"]
            if self._trim:
                when = when.filter(_in_day(when))
            self._starts = when.dt.epoch("ns").to_numpy()
        return self._starts

    def bounds(self) -> tuple[Any, Any]:
        """``Data.datetime_start`` and ``datetime_end``: the first and last bar, as lumibot
        datetimes."""
        if self._bounds is None:
            first, last = self.starts()[[0, -1]]
            self._bounds = tuple(_index(np.array([first, last])).to_pydatetime())
        return self._bounds

    def attach(self, grid: np.ndarray) -> None:
        first, last = (int(pd.Timestamp(t).value) for t in self.bounds())
        self.series = Series(self.frame, grid, first, last, self.timestep, LUMIBOT_DEFAULT_PYTZ)


def _in_day(when: pl.Series) -> pl.Series:
    local = when.dt.convert_time_zone(LOCAL)
    since = local - local.dt.truncate("1d")
    return since.dt.total_nanoseconds() <= _LAST_MINUTE_NS


def _from_pandas_data(keyed: OrderedDict, *, admit: bool) -> tuple[BarStore, OrderedDict]:
    """An in-memory store of lumibot ``Data`` frames, and their assets' entries.

    With ``admit``, bars that lumibot repairs and the store refuses are kept aside, as
    lumibot keeps them (:func:`admitted`), instead of refused.
    """
    store = BarStore.from_frames({})
    members = OrderedDict()
    for i, (key, data) in enumerate(keyed.items()):
        quotes = [c for c in _QUOTE_COLUMNS if c in data.df.columns]
        if quotes:
            msg = (
                f"{data.asset} has quote columns {quotes}: LazyBarsBacktesting serves bars "
                "only; use PandasDataBacktesting for quote data, or drop those columns"
            )
            raise InvalidRequest(msg)
        name = f"asset{i}"
        kept = admitted(data) if admit else None
        if kept is None:
            store.write(name, data.df, timestep=_STORED[data.timestep])
        bounds = (data.datetime_start, data.datetime_end)
        member = _Member(store, name, data.timestep, _STORED[data.timestep], bounds, admitted=kept)
        asset, quote = key
        members[key] = (asset, quote, member)
    return store, members


def _order(store: BarStore) -> list[str]:
    """Catalog symbols, finest timestep first: the first sets lumibot's stepping."""

    def finest(name: str) -> Timestep:
        return Timestep.parse(store.timesteps(name)[0])

    return sorted(store.symbols(), key=lambda name: (finest(name), name))


def _open(store: Any) -> BarStore:
    if isinstance(store, str | os.PathLike):
        return BarStore(store)
    msg = f"store must be a lazybars.BarStore or a catalog directory, got {type(store).__name__}"
    raise InvalidRequest(msg)


def _index(ns: np.ndarray) -> pd.DatetimeIndex:
    return instants_index(ns, LUMIBOT_DEFAULT_PYTZ)


__all__ = ["OFFLINE", "LazyBarsBacktesting", "store_symbol"]
