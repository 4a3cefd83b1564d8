"""A deliberately plain pandas implementation of the DataSource API.

:class:`PandasDataSource` answers the same questions as :class:`lazybars.DataSource`, the
way pandas-based data sources answer them today: each asset's full frame is loaded once into
pandas (a ``DatetimeIndex`` named ``datetime``), and then *every* request recomputes each bar's
end over the whole frame, builds a boolean mask ``ends <= now`` and slices the result out of it.

It has two jobs:

1. **Parity oracle.** Tests compare the fast path against it with exact frame equality, so it
   is written for obviousness, not speed, and shares no windowing code with the rest of
   lazybars (it imports only the errors, the timestep parser and :class:`~lazybars.bars.Bars`).
2. **Baseline.** Benchmarks measure the fast path against it.

``start``, ``end`` and ``lookback`` are accepted and checked, but they never change a result:
in the fast path they are loading hints only, and this reference always loads everything.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from lazybars._time import parse_duration
from lazybars.bars import Bars
from lazybars.errors import InvalidRequest, UnknownAsset
from lazybars.timestep import Timestep

__all__ = ["PandasDataSource"]

_SESSION_OPEN = pd.Timedelta(hours=9, minutes=30)
_SESSION_CLOSE = pd.Timedelta(hours=16)
_TIMESHIFT_FORMS = "None, an int number of bars, or a datetime.timedelta / pd.Timedelta"


class PandasDataSource:
    """Backtest clock and bar history, computed with boolean masks over pandas frames.

    Parameters
    ----------
    store
        A lazybars store: ``symbols()``, ``timesteps(symbol)`` and ``scan(symbol, timestep)``.
    timezone
        The "local" zone of the semantics: day bars end at the next local midnight, and
        ``after_hours=False`` keeps bars starting in [09:30, 16:00) local time.
    start, end, lookback
        Loading hints of the fast path; validated, then ignored (everything is loaded).
    """

    def __init__(
        self,
        store: Any,
        timezone: str = "America/New_York",
        start: Any = None,
        end: Any = None,
        lookback: Any = "30d",
    ) -> None:
        self._store = store
        self._tz = _check_timezone(timezone)
        self._start = _check_bound("start", start)
        self._end = _check_bound("end", end)
        if self._start is not None and self._end is not None and self._start > self._end:
            msg = f"start ({self._start}) is after end ({self._end}); swap them"
            raise InvalidRequest(msg)
        self._lookback = _check_lookback(lookback)
        self._now: pd.Timestamp | None = None
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}

    # ----------------------------------------------------------------- clock
    def set_datetime(self, dt: _dt.datetime) -> None:
        """Move the backtest clock to ``dt`` (a tz-aware datetime or ``pd.Timestamp``)."""
        if not isinstance(dt, _dt.datetime) or dt is pd.NaT:
            msg = f"set_datetime expects a tz-aware datetime, got {type(dt).__name__} {dt!r}"
            raise InvalidRequest(msg)
        if dt.tzinfo is None or dt.utcoffset() is None:
            msg = (
                f"set_datetime got the naive datetime {dt!r}; pass a tz-aware datetime, "
                "e.g. dt.replace(tzinfo=ZoneInfo('America/New_York'))"
            )
            raise InvalidRequest(msg)
        self._now = pd.Timestamp(dt).tz_convert(self._tz)

    def get_datetime(self) -> pd.Timestamp | None:
        """The clock as a tz-aware ``pd.Timestamp`` in ``timezone``; None before it is set."""
        return self._now

    # -------------------------------------------------------------- requests
    def get_historical_prices(
        self,
        asset: Any,
        length: int,
        timestep: str | Timestep | None = None,
        timeshift: int | _dt.timedelta | None = None,
        after_hours: bool = True,
    ) -> Bars:
        """The last ``length`` bars visible at the clock, oldest first.

        Parameters
        ----------
        asset
            A symbol string, or an object with a str ``.symbol``.
        length
            How many bars, an int >= 1; fewer come back when history is shorter.
        timestep
            A stored timestep of ``asset``; None means its finest stored one.
        timeshift
            int ``k``: end the window ``k`` bars before the last visible bar (``k < 0``:
            ``|k|`` bars after it). A timedelta: evaluate as of ``clock - timeshift``.
        after_hours
            False keeps only bars whose local start time is in [09:30, 16:00).

        Raises
        ------
        InvalidRequest
            Bad arguments, an unset clock, or a timestep that is not stored.
        UnknownAsset
            A symbol the store does not hold.
        """
        symbol = self._symbol(asset)
        _check_length(length)
        shift_bars, shift_time = _check_timeshift(timeshift)
        if not isinstance(after_hours, (bool, np.bool_)):
            msg = f"after_hours must be True or False, got {after_hours!r}"
            raise InvalidRequest(msg)
        now = self._clock() - shift_time
        step = self._timestep(symbol, timestep)
        frame = self._frame(symbol, step)

        if not after_hours:
            # Regular session only: the local wall-clock start time in [09:30, 16:00).
            wall = frame.index.tz_convert(self._tz).tz_localize(None)
            time_of_day = wall - wall.normalize()
            in_session = (time_of_day >= _SESSION_OPEN) & (time_of_day < _SESSION_CLOSE)
            frame = frame.iloc[np.flatnonzero(in_session)]

        visible = np.asarray(self._ends(frame.index, step) <= now)
        positions = np.flatnonzero(visible)
        last_visible = int(positions[-1]) if len(positions) else -1
        stop = min(max(last_visible + 1 - shift_bars, 0), len(frame))
        begin = max(0, stop - length)
        window = frame.iloc[begin:stop]
        return Bars(window, symbol=symbol, timestep=str(step), timezone=self._tz)

    def get_last_price(self, asset: Any) -> float | None:
        """The close of the last visible bar at the finest stored timestep, or None."""
        symbol = self._symbol(asset)
        now = self._clock()
        step = self._timestep(symbol, None)
        frame = self._frame(symbol, step)
        visible = frame.loc[np.asarray(self._ends(frame.index, step) <= now)]
        if visible.empty:
            return None
        return float(visible["close"].iloc[-1])

    def get_bars(
        self,
        assets: Iterable[Any],
        length: int,
        timestep: str | Timestep | None = None,
        timeshift: int | _dt.timedelta | None = None,
    ) -> dict[str, Bars]:
        """``get_historical_prices`` for each asset, keyed by symbol string."""
        if isinstance(assets, str) or hasattr(assets, "symbol"):
            assets = [assets]
        result: dict[str, Bars] = {}
        for asset in assets:
            symbol = self._symbol(asset)
            result[symbol] = self.get_historical_prices(symbol, length, timestep, timeshift)
        return result

    # --------------------------------------------------------------- helpers
    def _ends(self, starts: pd.DatetimeIndex, step: Timestep) -> pd.DatetimeIndex:
        """Each bar's end: start + step, or the first local midnight after a day bar's start."""
        if not step.is_day:
            return starts + pd.Timedelta(minutes=step.minutes)
        # Calendar arithmetic on local wall-clock times: the local date of the start, plus one
        # day, at 00:00. That is the first local midnight strictly after the start even when
        # the start is not itself a midnight (e.g. UTC-midnight labels read in New York).
        wall = starts.tz_convert(self._tz).tz_localize(None)
        next_midnight = wall.normalize() + pd.Timedelta(days=1)
        earliest = np.ones(len(next_midnight), dtype=bool)  # a repeated midnight: the first
        return next_midnight.tz_localize(self._tz, ambiguous=earliest, nonexistent="shift_forward")

    def _clock(self) -> pd.Timestamp:
        if self._now is None:
            msg = "the clock is not set; call set_datetime(dt) first with a tz-aware datetime"
            raise InvalidRequest(msg)
        return self._now

    def _symbol(self, asset: Any) -> str:
        symbol = asset if isinstance(asset, str) else getattr(asset, "symbol", None)
        if not isinstance(symbol, str):
            msg = f"asset must be a symbol string or have a str .symbol attribute, got {asset!r}"
            raise InvalidRequest(msg)
        known = list(self._store.symbols())
        if symbol not in known:
            few = ", ".join(repr(s) for s in sorted(known)[:5])
            more = f" and {len(known) - 5} more" if len(known) > 5 else ""
            msg = (
                f"unknown asset {symbol!r}; the store holds {few or 'no symbols'}{more}. "
                "Check the spelling or store its bars with store.write(symbol, frame)"
            )
            raise UnknownAsset(msg)
        return symbol

    def _timestep(self, symbol: str, timestep: str | Timestep | None) -> Timestep:
        stored = [Timestep.parse(s) for s in self._store.timesteps(symbol)]
        finest = min(stored)
        if timestep is None:
            return finest
        wanted = Timestep.parse(timestep)
        if wanted in stored:
            return wanted
        names = ", ".join(repr(str(s)) for s in sorted(stored))
        if wanted < finest:
            msg = (
                f"timestep {str(wanted)!r} is finer than anything stored for {symbol!r} "
                f"(stored: {names}); ask for {str(finest)!r} or coarser"
            )
            raise InvalidRequest(msg)
        msg = (
            f"aggregation to coarser timesteps is not implemented yet: {symbol!r} has no "
            f"{str(wanted)!r} bars (stored: {names}); ask for a stored timestep"
        )
        raise InvalidRequest(msg)

    def _frame(self, symbol: str, step: Timestep) -> pd.DataFrame:
        """The full stored frame, loaded into pandas once per (symbol, timestep)."""
        key = (symbol, str(step))
        if key not in self._frames:
            loaded = self._store.scan(symbol, str(step)).collect()
            frame = loaded.to_pandas().set_index("datetime")
            if frame.index.tz is None:
                msg = f"{symbol!r} {key[1]} bars have naive times; rewrite them with tz="
                raise InvalidRequest(msg)
            self._frames[key] = frame
        return self._frames[key]


def _check_timezone(timezone: Any) -> str:
    if isinstance(timezone, ZoneInfo):
        return timezone.key
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        msg = f"unknown timezone {timezone!r}; pass an IANA name such as 'America/New_York'"
        raise InvalidRequest(msg) from exc
    return timezone


def _check_bound(name: str, value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        msg = f"{name} must be a datetime (or None), got {value!r}"
        raise InvalidRequest(msg) from exc
    if stamp is pd.NaT:
        msg = f"{name} must be a datetime (or None), got {value!r}"
        raise InvalidRequest(msg)
    return stamp if stamp.tzinfo is not None else stamp.tz_localize("UTC")


def _check_lookback(lookback: Any) -> pd.Timedelta | None:
    # Argument checking only (the reference ignores the hint), so the parser is shared.
    if lookback is None:
        return None
    return pd.Timedelta(parse_duration(lookback, argument="lookback"), unit="ns")


def _check_length(length: Any) -> None:
    if isinstance(length, (bool, np.bool_)) or not isinstance(length, (int, np.integer)):
        msg = f"length must be an int >= 1, got {length!r} ({type(length).__name__})"
        raise InvalidRequest(msg)
    if length < 1:
        msg = f"length must be an int >= 1, got {length!r}; ask for at least one bar"
        raise InvalidRequest(msg)


def _check_timeshift(timeshift: Any) -> tuple[int, pd.Timedelta]:
    """Split ``timeshift`` into (bars to step back, time to step back)."""
    if timeshift is None:
        return 0, pd.Timedelta(0)
    if isinstance(timeshift, (int, np.integer)) and not isinstance(timeshift, bool):
        return int(timeshift), pd.Timedelta(0)
    if isinstance(timeshift, _dt.timedelta) and timeshift is not pd.NaT:
        return 0, pd.Timedelta(timeshift)
    msg = f"timeshift must be {_TIMESHIFT_FORMS}, got {type(timeshift).__name__} {timeshift!r}"
    raise InvalidRequest(msg)
