"""``LazyBarsDataBentoBacktesting``: lumibot's ``DataBentoDataBacktesting``, served offline.

lumibot 4.6's ``DataBentoDataBacktesting`` is ``DataBentoDataBacktestingPolars``
(lumibot/backtesting/databento_backtesting.py): a ``PolarsData`` that, on an asset's first
request, downloads its bars from DataBento (lumibot/tools/databento_helper_polars.py
``get_price_data_from_databento``: each contract of a continuous future fetched and cached,
then stitched by lumibot's roll schedule) into a ``DataPolars``, and answers every request
by a binary search on that frame. This class *is* that class, so lumibot's engine, broker
(``SOURCE == "DATABENTO_POLARS"``: fill bars asked two minutes ahead, up to the one
starting at clock + 1 minute), calendar and end rule are lumibot's own; what changes is
where the frame comes from: a lazybars catalog, each continuous future stitched by
lazybars' roll machinery (:mod:`lazybars.futures`) with lumibot's roll rule, and no
network. The hot answers (history and last price) follow lumibot's rules on that frame,
converted for lumibot's ``Bars`` once per frame (:mod:`lazybars.lumibot._prepared`)
rather than once per answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from lumibot.backtesting.databento_backtesting_polars import (
    START_BUFFER,
    DataBentoDataBacktestingPolars,
)
from lumibot.constants import LUMIBOT_DEFAULT_PYTZ
from lumibot.entities import Asset, Bars, Data
from lumibot.entities.data_polars import DataPolars
from lumibot.tools.databento_helper_polars import _format_futures_symbol_for_databento
from lumibot.tools.helpers import to_datetime_aware
from lumibot.tools.lumibot_logger import get_logger

from lazybars._continuous import Stitched
from lazybars._definitions import apply_multiplier
from lazybars._lumibot_cache import read_cache
from lazybars.errors import InvalidRequest
from lazybars.futures import Rule, default_rule
from lazybars.lumibot._prepared import BAR, Prepared, utc_ns
from lazybars.lumibot._series import LOCAL
from lazybars.source import DataSource
from lazybars.store import BarStore
from lazybars.timestep import Timestep

logger = get_logger(__name__)

_SEMANTICS = ("databento", "strict")
# lumibot's timestep units and the lazybars timesteps (DataBento's ohlcv-1m/1h/1d schemas).
_STORED = {"minute": "1m", "hour": "1h", "day": "1d"}
_FUTURES = (Asset.AssetType.FUTURE, Asset.AssetType.CONT_FUTURE)
_MISSING = object()
# A request the prepared answers do not reproduce: lumibot's own path answers it.
_INHERITED = object()
# lumibot's quote for an asset asked without one (Assets compare by value).
_USD = Asset("USD", "forex")
_ZERO = timedelta(0)
# The frames kept per asset, by their bounds: a few lengths and timesteps a strategy asks.
_READS = 4


class LazyBarsDataBentoBacktesting(DataBentoDataBacktestingPolars):
    """lumibot's ``DataBentoDataBacktesting``, with its bars served from a lazybars catalog.

    Switch a backtest by changing one name and passing the catalog: ``store=`` a
    :class:`lazybars.BarStore` (or its directory) holding the contracts (``MESH4``,
    ``MESM4``, ...), and/or ``cache_folder=`` lumibot's DataBento cache folder
    (``$LUMIBOT_CACHE_FOLDER``), read once, offline, for the contracts the store lacks.

    Parameters
    ----------
    datetime_start, datetime_end, pandas_data, api_key, timeout, max_retries
        As for lumibot's class (``run_backtest`` passes them); ``api_key`` is accepted and
        unused: nothing is downloaded.
    store
        A :class:`lazybars.BarStore` or a catalog directory.
    cache_folder
        A lumibot DataBento cache folder (or its ``databento/`` / ``databento_polars/``
        folder): its contracts fill those the store lacks (an in-memory store when
        ``store`` is None).
    semantics
        ``"databento"`` (default): every answer equals lumibot's default DataBento class's
        (history, last price, quotes, fills, calendar, end rule). ``"strict"``: history
        and last price by lazybars' rule, a bar visible once it has ended.
    multipliers
        ``{root: multiplier}`` for futures whose ``Asset`` has the default multiplier 1
        (lumibot reads DataBento's ``definition`` records: MES 5, ES 50, MNQ 2, NQ 20,
        GC 100); a root not named keeps 1.
    rolls
        ``{root: rule}``: the roll rule of a continuous future whose root has no default
        in :mod:`lazybars.futures` (lumibot's gold rule, for instance; the equity index
        roots default to lumibot's rule).
    **kwargs
        Passed to lumibot's class.

    Raises
    ------
    InvalidRequest
        For neither ``store`` nor ``cache_folder``, an unknown ``semantics``, or ``rolls``
        with strict semantics.
    """

    def __init__(
        self,
        datetime_start: Any,
        datetime_end: Any,
        pandas_data: Any = None,
        api_key: str | None = None,
        timeout: int = 30,
        max_retries: int = 3,
        *,
        store: Any = None,
        cache_folder: str | os.PathLike[str] | None = None,
        semantics: str = "databento",
        multipliers: Mapping[str, float] | None = None,
        rolls: Mapping[str, Rule] | None = None,
        **kwargs: Any,
    ) -> None:
        if semantics not in _SEMANTICS:
            msg = f"semantics must be one of {_SEMANTICS}, got {semantics!r}"
            raise InvalidRequest(msg)
        if store is None and cache_folder is None:
            msg = (
                "pass store=BarStore(...) (or its directory) and/or cache_folder= a lumibot "
                "DataBento cache folder: LazyBarsDataBentoBacktesting downloads nothing"
            )
            raise InvalidRequest(msg)
        if semantics == "strict" and rolls:
            msg = (
                "semantics='strict' serves continuous futures through lazybars.DataSource, "
                "which stitches the roots with a default rule only (ES, MES, NQ, MNQ, YM, "
                f"MYM); rolls={dict(rolls)!r} needs semantics='databento'"
            )
            raise InvalidRequest(msg)
        super().__init__(
            datetime_start,
            datetime_end,
            pandas_data=pandas_data,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            **kwargs,
        )
        self._store = _catalog(store, cache_folder)
        self._multipliers = dict(multipliers or {})
        self._rolls = dict(rolls or {})
        self._strict = (
            DataSource(self._store, LOCAL, start=self.datetime_start, end=self.datetime_end)
            if semantics == "strict"
            else None
        )
        # Per asset key: the frames read, by their bounds ({(start, unit): [data,
        # prepared]}, the latest _READS), and the held one as prepared.
        self._reads: dict[tuple, dict[tuple, list]] = {}
        self._prepared: dict[tuple, Prepared] = {}
        # The windows of lumibot's per-clock cache (_filtered_bars_cache) answered here.
        self._windows: dict[tuple, tuple] = {}

    # -- the frames lumibot's class downloads, read from the catalog ------------------------
    def _update_pandas_data(
        self, asset: Any, quote: Any, length: int, timestep: str, start_dt: Any = None
    ) -> None:
        """lumibot's ``_update_pandas_data`` (databento_backtesting_polars.py), the frame
        read from the catalog: the asset's bars are (re)loaded unless the held frame is at
        the requested timestep and covers the request's start (its length, and a five-day
        buffer, before the backtest's start) to the backtest's end. Where lumibot would
        read bounds already read (a start in a gap of the bars leaves a frame uncovered on
        every request; minute and day requests take turns holding the asset's frame), the
        frame read then is held again: the catalog is read once per bounds."""
        base, quote = asset if isinstance(asset, tuple) else (asset, quote)
        quote = quote if quote is not None else _USD
        key = (base, quote)
        self._ensure_futures_multiplier(base)
        if key in self._prefetched_assets:
            return
        start, unit = self.get_start_datetime_and_ts_unit(
            length, timestep, start_dt, start_buffer=START_BUFFER
        )
        held = self.pandas_data.get(key)
        if held is not None and self._keeps(key, held, timestep, start, unit):
            return
        reads = self._reads.setdefault(key, {})
        read = reads.get((start, unit))
        if read is not None:
            self.pandas_data[key] = read[0]
            self._cache_datetime_series(key, read[0])
            return
        frame = self._frame(base, start, self.datetime_end + timedelta(days=1), unit)
        if frame.height == 0:
            # lumibot's empty Data (dated 2000-01-01) fails to build and is logged: the
            # asset is left without data, its answers None.
            logger.warning(f"No bars for {base.symbol} in the catalog from {start} to the end")
            return
        data = DataPolars(base, df=frame, timestep=unit, quote=quote)
        self.pandas_data[key] = data
        self._cache_datetime_series(key, data)
        reads[(start, unit)] = [data, None]
        if len(reads) > _READS:
            del reads[next(iter(reads))]

    def _keeps(self, key: tuple, held: Any, timestep: str, start: Any, unit: str) -> bool:
        """Whether ``held`` answers a request at ``timestep`` whose buffered start is
        ``start``: lumibot keeps it (it is at that timestep and covers that start to the
        backtest's end), or would read the bounds it was read from."""
        read = self._reads.get(key, {}).get((start, unit))
        if read is not None and read[0] is held:
            return True
        if held.timestep != timestep:
            return False
        first_last = _bounds(held)
        if first_last is None:
            return False
        first, last = first_last
        return first <= to_datetime_aware(start) and last >= self.datetime_end

    def _frame(self, asset: Any, start: Any, end: Any, unit: str) -> pl.DataFrame:
        """The bars lumibot's ``get_price_data_from_databento`` returns for ``asset``.

        lumibot sends DataBento the request's bounds as naive wall-clock times, which
        DataBento reads as UTC, so the bars end before ``end``'s wall clock read as UTC; a
        continuous future's are then cut to its roll schedule, which starts at ``start``
        itself (lumibot/tools/databento_helper_polars.py ``get_price_data_from_databento``).
        """
        timestep = _STORED.get(unit)
        if timestep is None:
            msg = f"DataBento serves minute, hour and day bars, not {unit!r}"
            raise InvalidRequest(msg)
        lo, hi = _wall_as_utc(start), _wall_as_utc(end)
        if _is_continuous(asset):
            # The root stitched from its contracts stored at this timestep: lumibot's cache
            # holds day bars of more contracts than minute bars (a day request reaches
            # further back), and a stitch serves the timesteps all its contracts share.
            step = Timestep.parse(timestep)
            stitched = Stitched(
                _AtTimestep(self._store, step), asset.symbol, self._rule(asset.symbol), None
            )
            frame = stitched.read(step)
            lo = pd.Timestamp(start).tz_convert("UTC")
        else:
            symbol = asset.symbol
            if asset.asset_type in _FUTURES:
                symbol = _format_futures_symbol_for_databento(asset, reference_date=start)
            frame = self._store.scan(symbol, timestep, timezone="UTC").lazy
        ns = pl.col("datetime").dt.epoch("ns")
        bars = frame.filter((ns >= lo.value) & (ns < hi.value)).collect()
        columns = ["datetime", "open", "high", "low", "close", "volume"]
        bars = bars.select(
            pl.col("datetime").dt.convert_time_zone("UTC").dt.cast_time_unit("ns"),
            *(c for c in columns[1:] if c in bars.columns),
        )
        volume = bars["volume"]
        if volume.is_not_null().all() and (volume >= 0).all() and (volume.round() == volume).all():
            # DataBento's volumes are counts (uint64): lumibot hands them out so.
            bars = bars.with_columns(pl.col("volume").cast(pl.UInt64))
        return bars

    def _rule(self, root: str) -> Rule:
        rule = self._rolls.get(root)
        return rule if rule is not None else default_rule(root)

    def _ensure_futures_multiplier(self, asset: Any) -> None:
        """lumibot sets a future's multiplier (when it is 1) from DataBento's definition
        records; here from ``multipliers=``, else from the catalog's definitions (ingested
        from DataBento's definition records)."""
        if getattr(asset, "asset_type", None) not in _FUTURES or asset.multiplier != 1:
            return
        multiplier = self._multipliers.get(asset.symbol)
        if multiplier is not None:
            asset.multiplier = multiplier
        else:
            apply_multiplier(self._store, asset)

    def prefetch_data(self, assets: Any, timestep: str = "minute") -> None:
        """lumibot's ``prefetch_data``: each asset's bars over the whole backtest (and a
        five-day buffer before it), held as lumibot holds them (a pandas ``Data``)."""
        for asset in assets or ():
            quote = Asset("USD", "forex")
            key = (asset, quote)
            if key in self._prefetched_assets:
                continue
            start = self.datetime_start - START_BUFFER
            frame = self._frame(asset, start, self.datetime_end + timedelta(days=1), timestep)
            if frame.height:
                bars = frame.to_pandas().set_index("datetime")
                data = Data(asset, df=bars, timestep=timestep, quote=quote)
                self.pandas_data[key] = data
                self._cache_datetime_series(key, data)
            self._prefetched_assets.add(key)

    # -- strict semantics -----------------------------------------------------------------
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
        if self._strict is None:
            return super()._pull_source_symbol_bars(
                asset, length, timestep, timeshift, quote, exchange, include_after_hours
            )
        base = asset[0] if isinstance(asset, tuple) else asset
        self._ensure_futures_multiplier(base)
        wanted = _STORED.get(timestep or "minute", timestep)
        self._strict.set_datetime(self.get_datetime())
        bars = self._strict.get_historical_prices(
            self._symbol(base), length, wanted, timeshift or None, include_after_hours
        )
        return bars.pl if len(bars) else None

    def get_last_price(self, asset: Any, quote: Any = None, exchange: Any = None) -> Any:
        """The close of the last bar starting at or before the clock minus one bar (or, if
        none, at or before the clock); None without one (lumibot would then ask DataBento).

        lumibot/backtesting/databento_backtesting_polars.py ``get_last_price``, whose
        answers are cached per clock; with ``semantics="strict"``, the close of the last
        bar ended by the clock.
        """
        base, quote = asset if isinstance(asset, tuple) else (asset, quote)
        quote = quote if quote is not None else _USD
        self._ensure_futures_multiplier(base)
        if self._strict is not None:
            self._strict.set_datetime(self.get_datetime())
            return self._strict.get_last_price(self._symbol(base))
        self._check_and_clear_cache()
        key = (base, quote)
        found = self._last_price_cache.get((key, self._cache_datetime), _MISSING)
        if found is not _MISSING:
            return found
        if key not in self.pandas_data:
            timestep = getattr(self, "_timestep", self.MIN_TIMESTEP)
            self._update_pandas_data(base, quote, length=10, timestep=timestep)
        data = self.pandas_data.get(key)
        prepared = None if data is None else self._prepared_for(key, data)
        if prepared is None or prepared.closes is None:
            return None
        now = to_datetime_aware(self._cache_datetime)
        i = int(np.searchsorted(prepared.starts, utc_ns(now - prepared.bar), "right")) - 1
        if i < 0:
            i = int(np.searchsorted(prepared.starts, utc_ns(now), "right")) - 1
        if i < 0 or pd.isna(prepared.closes[i]):
            return None
        price = float(prepared.closes[i])
        self._last_price_cache[(key, self._cache_datetime)] = price
        return price

    # -- history: lumibot's answers, from the prepared frames ------------------------------
    def get_historical_prices(
        self,
        asset: Any,
        length: int,
        timestep: str | None = None,
        timeshift: Any = None,
        quote: Any = None,
        exchange: Any = None,
        include_after_hours: bool = True,
        return_polars: bool = False,
    ) -> Any:
        """lumibot's ``PolarsData.get_historical_prices`` with its DataBento window
        (``_pull_source_symbol_bars``: the bars starting before the clock, or, shifted
        ahead, up to the bar starting a bar before the shifted clock; cached per clock),
        its ``Bars`` built from the frame prepared at load (:mod:`._prepared`).

        Requests outside what is reproduced here (strict semantics, ``return_polars``,
        a timestep other than minute, hour or day, a length below 1, a timeshift neither
        minutes nor a ``timedelta``, prefetched pandas data) take lumibot's path.
        """
        if self._strict is not None or return_polars:
            shifted = (timeshift, quote, exchange, include_after_hours, return_polars)
            return super().get_historical_prices(asset, length, timestep, *shifted)
        self._trim_cached_data()
        self._enforce_memory_limits()
        if isinstance(asset, str):
            asset = Asset(symbol=asset)
        if not timestep:
            timestep = self.get_timestep()
        window = self._window(asset, length, timestep, timeshift, quote)
        if window is None:
            return None
        if window is _INHERITED:
            response = self._pull_source_symbol_bars(
                asset, length, timestep, timeshift, quote, exchange, include_after_hours
            )
            if response is None:
                return None
            return self._parse_source_symbol_bars(response, asset, quote=quote, length=length)
        prepared, lo, hi, response = window
        if not prepared.fast:
            return self._parse_source_symbol_bars(response, asset, quote=quote, length=length)
        base, quote = asset if isinstance(asset, tuple) else (asset, quote)
        return Bars(prepared.pandas(lo, hi), self.SOURCE, base, quote=quote, raw=response)

    def _window(self, asset: Any, length: Any, timestep: str, timeshift: Any, quote: Any) -> Any:
        """lumibot's ``_pull_source_symbol_bars`` for a held ``DataPolars``: the prepared
        frame and the window's rows and polars slice, None, or ``_INHERITED``."""
        if timestep not in BAR or length.__class__ is not int or length < 1:
            return _INHERITED
        if not timeshift:
            shift, minutes = None, 0
        elif isinstance(timeshift, int):
            shift, minutes = timedelta(minutes=timeshift), timeshift
        elif timeshift.__class__ is timedelta:
            shift, minutes = timeshift, int(timeshift.total_seconds() / 60)
        else:
            return _INHERITED
        self._check_and_clear_cache()
        clock = self._cache_datetime
        if isinstance(asset, tuple):
            key, base = asset, asset[0]
        else:
            key, base = (asset, quote if quote is not None else _USD), asset
        cache_key = (key, length, timestep, minutes, clock)
        cached = self._filtered_bars_cache.get(cache_key, _MISSING)
        if cached is not _MISSING:
            return None if cached is None else self._windows.get(cache_key, _INHERITED)
        data = self.pandas_data.get(key)
        prepared = self._prepared.get(key)
        if (
            prepared is None
            or prepared.data is not data
            or (length, timestep) not in prepared.covers
            or prepared.frame is not data.polars_df
        ):
            self._update_pandas_data(asset, quote, length, timestep)
            data = self.pandas_data.get(key)
            if data is None:
                return None
            if not isinstance(data, DataPolars):
                return _INHERITED
            prepared = self._prepared_for(key, data)
            if prepared is None:
                self._filtered_bars_cache[cache_key] = None
                return None
            start, unit = self.get_start_datetime_and_ts_unit(
                length, timestep, None, start_buffer=START_BUFFER
            )
            if key not in self._prefetched_assets and self._keeps(key, data, timestep, start, unit):
                prepared.covers.add((length, timestep))
        else:
            self._ensure_futures_multiplier(base)
        now = clock if shift is None else clock - shift
        if shift is not None and shift > _ZERO:
            at, side = utc_ns(to_datetime_aware(now) - prepared.bar), "right"
        else:
            at, side = utc_ns(to_datetime_aware(now)), "left"
        last = int(np.searchsorted(prepared.starts, at, side)) - 1
        if last < 0:
            self._filtered_bars_cache[cache_key] = None
            return None
        lo = max(0, last - (length - 1))
        response = prepared.frame.slice(lo, last - lo + 1)
        self._filtered_bars_cache[cache_key] = response
        window = self._windows[cache_key] = (prepared, lo, last + 1, response)
        return window

    def _prepared_for(self, key: tuple, data: Any) -> Prepared | None:
        """The held ``data`` prepared (once per load); None where lumibot has no bar starts
        for it (then its answers are None)."""
        prepared = self._prepared.get(key)
        if (
            prepared is not None
            and prepared.data is data
            and (not prepared.polars or prepared.frame is data.polars_df)
        ):
            return prepared
        read = next((r for r in self._reads.get(key, {}).values() if r[0] is data), None)
        if read is not None and read[1] is not None:
            self._prepared[key] = read[1]
            return read[1]
        starts = self._datetime_ns_cache.get((key, data.timestep))
        if starts is None:
            self._cache_datetime_series(key, data)
            starts = self._datetime_ns_cache.get((key, data.timestep))
        if starts is None or len(starts) == 0:
            return None
        prepared = self._prepared[key] = Prepared(data, starts, self.SOURCE, key[0])
        if read is not None:
            read[1] = prepared
        return prepared

    def _check_and_clear_cache(self) -> None:
        """lumibot's per-clock caches, cleared when the clock moves, with the windows
        answered from them."""
        if self._cache_datetime != self.get_datetime():
            self._windows.clear()
        super()._check_and_clear_cache()

    def _symbol(self, asset: Any) -> str:
        if _is_continuous(asset) or asset.asset_type not in _FUTURES:
            return asset.symbol
        return _format_futures_symbol_for_databento(asset, reference_date=self.datetime_start)


class _AtTimestep:
    """A store seen at one timestep (what :class:`lazybars._continuous.Stitched` reads of a
    store): only the symbols stored at it, each at it alone."""

    def __init__(self, store: BarStore, timestep: Timestep) -> None:
        self._store, self._timestep = store, timestep
        self._backend = self

    def symbols(self, timestep: str | None = None) -> list[str]:
        return self._store.symbols(str(self._timestep))

    def timesteps(self, symbol: str) -> list[Timestep]:
        stored = self._store._backend.timesteps(symbol)
        return [self._timestep] if self._timestep in stored else []

    def read(self, symbol: str, timestep: Timestep) -> pl.LazyFrame:
        return self._store._backend.read(symbol, timestep)

    def _bounds(self, symbol: str, timestep: Timestep) -> tuple[int, int]:
        return self._store._bounds(symbol, timestep)


def _is_continuous(asset: Any) -> bool:
    # lumibot stitches a future without an expiration as it stitches a continuous one.
    kind = getattr(asset, "asset_type", None)
    return kind == Asset.AssetType.CONT_FUTURE or (
        kind == Asset.AssetType.FUTURE and not asset.expiration
    )


def _wall_as_utc(dt: Any) -> pd.Timestamp:
    return pd.Timestamp(dt.replace(tzinfo=None)).tz_localize("UTC")


def _bounds(data: Any) -> tuple[Any, Any] | None:
    """The first and last bar start of a held ``Data`` or ``DataPolars`` (None if empty)."""
    if isinstance(data, DataPolars):
        frame = data.polars_df
        if frame.height == 0:
            return None
        when = frame["datetime"]
        first, last = pd.Timestamp(when.min()), pd.Timestamp(when.max())
    else:
        index = data.df.index
        if len(index) == 0:
            return None
        first, last = index[0], index[-1]
    return (first.tz_convert(LUMIBOT_DEFAULT_PYTZ), last.tz_convert(LUMIBOT_DEFAULT_PYTZ))


def _catalog(store: Any, cache_folder: Any) -> BarStore:
    """The store, with the contracts it lacks filled from the lumibot cache folder."""
    if store is not None and not isinstance(store, BarStore):
        if not isinstance(store, str | os.PathLike):
            msg = f"store must be a lazybars.BarStore or a catalog directory, got {store!r}"
            raise InvalidRequest(msg)
        store = BarStore(store)
    if cache_folder is None:
        return store
    found = read_cache(cache_folder)
    if store is None:
        by_step: dict[str, dict[str, pl.DataFrame]] = {}
        for (contract, timestep), bars in found.items():
            by_step.setdefault(timestep, {})[contract] = bars
        steps = iter(sorted(by_step.items()))
        timestep, frames = next(steps)
        store = BarStore.from_frames(frames, timestep=timestep)
        for timestep, frames in steps:
            for contract, bars in frames.items():
                store.write(contract, bars, timestep)
        return store
    for (contract, timestep), bars in found.items():
        if contract not in store.symbols(timestep):
            store.write(contract, bars, timestep)
    return store


__all__ = ["LazyBarsDataBentoBacktesting"]
