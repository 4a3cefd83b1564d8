"""DataSource: the backtester's adapter, answering history requests as of a clock.

A bar is visible at the clock ``dt`` iff its end <= ``dt`` (a bar ends one timestep after
its start; a day bar at the next local midnight). Every request answers from the per-asset
cache by binary search and zero-copy slice; the first request for an asset loads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lazybars._time import (
    DAY_NS,
    FIRST_NS,
    LAST_NS,
    NS_MAX,
    NS_MIN,
    aware_ns,
    in_range,
    local_ns,
    parse_duration,
    timedelta_ns,
    timestamp,
)
from lazybars.bars import Bars
from lazybars.cache import AssetCache, CacheInfo, Entry
from lazybars.errors import InvalidRequest, LazyBarsError
from lazybars.ingest import validate_zone
from lazybars.store import BarStore, check_symbol
from lazybars.timestep import Timestep

__all__ = ["DEFAULT_MAX_CACHE_BYTES", "DataSource"]

# 1 GiB: a month of minute bars of 100 symbols with their pandas mirrors is ~150 MB, so the
# default only bites for years of history on many symbols; set it to fit your machine.
DEFAULT_MAX_CACHE_BYTES = 1 << 30


class _Options(BaseModel):
    """The DataSource's constructor options, validated once."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    timezone: str
    start: Any = None
    end: Any = None
    lookback: Any = "30d"
    max_cache_bytes: int | None = Field(default=DEFAULT_MAX_CACHE_BYTES, ge=1, strict=True)

    @field_validator("timezone", mode="before")
    @classmethod
    def _zone(cls, value: Any) -> str:
        return validate_zone(value, argument="timezone")

    def stale(self) -> int:
        """How far (ns) past an asset's last bar a clock may go before it is warned of: the
        lookback, or 30 days when the lookback is None (all history)."""
        return parse_duration(
            "30d" if self.lookback is None else self.lookback, argument="lookback"
        )

    def bounds(self) -> tuple[int, int]:
        """The range of bar starts to load first: [start - lookback, end + 1 day)."""
        start = None if self.start is None else self._ns(self.start, "start")
        end = None if self.end is None else self._ns(self.end, "end")
        if start is not None and end is not None and end < start:
            msg = f"end {self.end!r} is before start {self.start!r}; swap them"
            raise InvalidRequest(msg)
        # lookback=None: the history before `start` is unknown, so all of it is loaded.
        lookback = (
            None if self.lookback is None else parse_duration(self.lookback, argument="lookback")
        )
        lo = NS_MIN if start is None or lookback is None else start - lookback
        hi = NS_MAX if end is None else end + DAY_NS
        return lo, hi

    def _ns(self, value: Any, argument: str) -> int:
        return local_ns(value, self.timezone, argument=argument)


class DataSource:
    """Bar history as of a backtest clock, served from a per-asset cache.

    Parameters
    ----------
    store
        The :class:`lazybars.BarStore` to read.
    timezone
        The local zone: day bar ends, sessions and aggregation boundaries follow it.
    start, end, lookback
        The backtest's span and how much history before ``start`` it needs; they bound
        what is loaded per asset (naive values are read in ``timezone``). They are hints:
        a request outside them still gets the right bars. ``lookback=None`` loads all the
        history before ``start``. A clock past an asset's last stored bar by more than
        ``lookback`` (30 days when None) warns once per asset (``lb.StaleDataWarning``).
    max_cache_bytes
        The cache's memory budget (default 1 GiB; None: unbounded). Frames, aggregated
        frames and pandas mirrors count; least recently used ones are evicted beyond it,
        and reloaded when asked for again. See :meth:`cache_info`.

    Examples
    --------
    >>> from datetime import datetime
    >>> from zoneinfo import ZoneInfo
    >>> import lazybars as lb
    >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES", gaps=0)})
    >>> src = lb.DataSource(store, start="2024-01-03", end="2024-01-05")
    >>> src.set_datetime(datetime(2024, 1, 3, 10, 0, tzinfo=ZoneInfo("America/New_York")))
    >>> bars = src.get_historical_prices("MES", 3)
    >>> [str(t.time()) for t in bars.df.index]
    ['09:57:00', '09:58:00', '09:59:00']
    >>> src.get_last_price("MES") == bars.get_last_price()
    True
    """

    def __init__(
        self,
        store: BarStore,
        timezone: str = "America/New_York",
        start: Any = None,
        end: Any = None,
        lookback: Any = "30d",
        *,
        max_cache_bytes: int | None = DEFAULT_MAX_CACHE_BYTES,
    ) -> None:
        if not isinstance(store, BarStore):
            msg = f"store must be a lazybars.BarStore, got {type(store).__name__}"
            raise InvalidRequest(msg)
        try:
            options = _Options(
                timezone=timezone,
                start=start,
                end=end,
                lookback=lookback,
                max_cache_bytes=max_cache_bytes,
            )
        except ValidationError as exc:
            raise _unwrap(exc) from None
        lo, hi = options.bounds()
        self._zone = options.timezone
        self._cache = AssetCache(
            store, options.timezone, lo, hi, options.max_cache_bytes, options.stale()
        )
        # (symbol, timestep argument, after_hours) -> Entry: one dict lookup per request.
        self._entries: dict[tuple[str, Any, bool], Entry] = {}
        self._last: dict[str, Entry] = {}  # symbol -> finest-timestep entry
        self._now: int | None = None

    def set_datetime(self, dt: datetime) -> None:
        """Move the clock to ``dt`` (tz-aware; a naive datetime raises InvalidRequest)."""
        # A backtest sets the clock before every request: the common case, an aware
        # Timestamp in range, costs three checks and no call.
        if type(dt) is pd.Timestamp and dt.tzinfo is not None:
            ns = dt.value
            if FIRST_NS <= ns <= LAST_NS:
                self._now = ns
                return
        self._now = aware_ns(dt, argument="dt")

    def get_datetime(self) -> pd.Timestamp | None:
        """The clock, in the DataSource's zone (None before :meth:`set_datetime`)."""
        return None if self._now is None else timestamp(self._now, self._zone)

    def get_historical_prices(
        self,
        asset: Any,
        length: int,
        timestep: str | None = None,
        timeshift: int | timedelta | None = None,
        after_hours: bool = True,
    ) -> Bars:
        """The last ``length`` bars visible at the clock, oldest first.

        Parameters
        ----------
        asset
            A symbol, or an object with a ``.symbol`` attribute.
        length
            How many bars (an int >= 1); fewer when history is shorter.
        timestep
            None for the finest stored timestep; a coarser one is aggregated from it.
        timeshift
            An int ``k`` ends the window ``k`` bars before the last visible bar (``k < 0``:
            ``|k|`` bars after it, explicit lookahead); a timedelta evaluates as of
            ``clock - timeshift``.
        after_hours
            False keeps only bars starting in [09:30, 16:00) local, before aggregating.
        """
        if after_hours is not True and after_hours is not False:
            after_hours = _flag(after_hours)
        # Keyed by symbol, not by the asset object: strategies build a new Asset per call.
        symbol = asset if type(asset) is str else getattr(asset, "symbol", asset)
        try:
            entry = self._entries.get((symbol, timestep, after_hours))
        except TypeError:  # an unhashable symbol or timestep: _entry says what is wrong
            entry = None
        if entry is None:
            entry = self._entry(symbol, timestep, after_hours)
        if type(length) is not int or length < 1:
            length = _length(length)
        now = self._now
        if now is None:
            raise InvalidRequest(_NO_CLOCK)
        if timeshift is None:
            shift = 0
        elif type(timeshift) is int:
            shift = timeshift
        else:
            now, shift = _shifted(now, timeshift)
        slab, start, stop = self._cache.window(entry, now, length, shift)
        return Bars._slice(slab, start, stop, entry.symbol, entry.label, self._zone)

    def get_last_price(self, asset: Any) -> float | None:
        """The close of the last visible bar at the finest stored timestep, or None."""
        symbol = asset if type(asset) is str else getattr(asset, "symbol", asset)
        try:
            entry = self._last.get(symbol)
        except TypeError:  # an unhashable symbol: _entry says what is wrong
            entry = None
        if entry is None:
            entry = self._entry(symbol, None, True)
        now = self._now
        if now is None:
            raise InvalidRequest(_NO_CLOCK)
        return self._cache.last_close(entry, now)

    def get_bars(
        self,
        assets: Iterable[Any],
        length: int,
        timestep: str | None = None,
        timeshift: int | timedelta | None = None,
    ) -> dict[str, Bars]:
        """:meth:`get_historical_prices` for several assets, keyed by symbol."""
        if isinstance(assets, str) or hasattr(assets, "symbol"):
            assets = [assets]
        out = {}
        for asset in assets:
            bars = self.get_historical_prices(asset, length, timestep, timeshift)
            out[bars.symbol] = bars
        return out

    def cache_info(self) -> CacheInfo:
        """Hits, misses, evictions, entries and bytes (native frames, aggregated frames and
        pandas mirrors counted separately) of the per-asset cache.
        """
        return self._cache.info()

    def __repr__(self) -> str:
        return f"<lazybars.DataSource {self._zone}, clock {self.get_datetime()}>"

    def _entry(self, symbol: Any, timestep: Any, after_hours: bool) -> Entry:
        check_symbol(symbol)
        wanted = None if timestep is None else Timestep.parse(timestep)
        entry = self._cache.entry(symbol, wanted, after_hours)
        # Every spelling of a timestep ("5m", "5 minutes", Timestep) gets its own key; the
        # spellings a strategy uses are few, so the dict stays small.
        self._entries[(symbol, timestep, after_hours)] = entry
        if timestep is None and after_hours:
            self._last[symbol] = entry
        return entry


_NO_CLOCK = "the clock is not set; call set_datetime(dt) with a tz-aware datetime first"


def _unwrap(exc: ValidationError) -> LazyBarsError:
    """The lazybars error a validator raised, or an InvalidRequest listing pydantic's."""
    for error in exc.errors():
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, LazyBarsError):
            return cause
    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return InvalidRequest(f"invalid DataSource options: {problems}")


def _flag(value: Any) -> bool:
    """``after_hours`` as a bool: True, False or a numpy bool; 1, "yes" and None fail."""
    if isinstance(value, np.bool_):
        return bool(value)
    msg = f"after_hours must be True or False, got {value!r}"
    raise InvalidRequest(msg)


def _length(length: Any) -> int:
    """``length`` as an int >= 1; numpy integers pass, bools and everything else fail."""
    if isinstance(length, np.integer) and length >= 1:
        return int(length)
    msg = f"length must be an int >= 1 (the number of bars), got {length!r}"
    raise InvalidRequest(msg)


def _shifted(now: int, timeshift: Any) -> tuple[int, int]:
    """(clock, bar shift) for a timeshift that is not a plain int."""
    if isinstance(timeshift, timedelta):
        return in_range(now - timedelta_ns(timeshift), argument="clock - timeshift"), 0
    # np.timedelta64 subclasses np.integer: it must not pass as a bar count.
    if isinstance(timeshift, np.integer) and not isinstance(timeshift, np.timedelta64):
        return now, int(timeshift)
    msg = (
        f"timeshift must be None, an int (bars) or a timedelta, got "
        f"{type(timeshift).__name__} {timeshift!r}; e.g. pd.Timedelta(value) for numpy's"
    )
    raise InvalidRequest(msg)
