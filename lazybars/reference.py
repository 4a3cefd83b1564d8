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

A coarser timestep than the stored ones is aggregated from the finest stored frame on every
request, again the plain way: each source bar's bucket is worked out from its local wall-clock
time (see :func:`_bucket_starts`), then ``groupby`` builds the OHLCV buckets and a mask over
the buckets' ends picks the visible ones.

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
import polars as pl

from lazybars._time import parse_duration
from lazybars.bars import Bars
from lazybars.errors import InvalidRequest, StaleDataWarning, UnknownAsset, warn_caller
from lazybars.timestep import Timestep

__all__ = ["PandasDataSource"]

_SESSION_OPEN = pd.Timedelta(hours=9, minutes=30)
_SESSION_CLOSE = pd.Timedelta(hours=16)
_TIMESHIFT_FORMS = "None, an int number of bars, or a datetime.timedelta / pd.Timedelta"
_OHLCV = ["open", "high", "low", "close", "volume"]
_NAT = np.iinfo(np.int64).min  # NaT as int64 ns: smaller than every real instant
_NEVER = np.iinfo(np.int64).max
_DAY = pd.Timedelta(days=1)
_NS = pd.Timedelta(1, "ns")


class PandasDataSource:
    """Backtest clock and bar history, computed with boolean masks over pandas frames.

    Parameters
    ----------
    store
        A lazybars store: ``symbols()``, ``timesteps(symbol)``, ``zone(symbol, timestep)``
        and ``scan(symbol, timestep)``.
    timezone
        The "local" zone of the semantics: aggregated day buckets end at the next local
        midnight (stored day bars at the next midnight where they were written), and
        ``after_hours=False`` keeps bars starting in [09:30, 16:00) local time.
    start, end, lookback
        Loading hints of the fast path; validated, then ignored (everything is loaded).
        ``lookback`` (30 days when None) is also how far past an asset's last stored bar
        the clock may go before a ``StaleDataWarning`` (once per asset).
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
        self._stale = pd.Timedelta(days=30) if self._lookback is None else self._lookback
        self._warned: set[str] = set()
        self._now: pd.Timestamp | None = None
        self._frames: dict[tuple[str, str], pd.DataFrame] = {}
        self._schemas: dict[tuple[str, str], pl.Schema] = {}
        self._zones: dict[tuple[str, str], str] = {}  # the zone each frame was written in

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
        self._now = _in_range(dt, "set_datetime(dt)").tz_convert(self._tz)

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
            None means the finest stored timestep of ``asset``. A stored timestep is served
            as stored; a coarser one is aggregated from the finest stored bars (see
            :meth:`_aggregate`).
        timeshift
            int ``k``: end the window ``k`` bars before the last visible bar (``k < 0``:
            ``|k|`` bars after it). A timedelta: evaluate as of ``clock - timeshift``.
        after_hours
            False keeps only bars whose local start time is in [09:30, 16:00).

        Raises
        ------
        InvalidRequest
            Bad arguments, an unset clock, or a timestep finer than the finest stored.
        UnknownAsset
            A symbol the store does not hold.
        """
        symbol = self._symbol(asset)
        _check_length(length)
        shift_bars, shift_time = _check_timeshift(timeshift)
        if not isinstance(after_hours, (bool, np.bool_)):
            msg = f"after_hours must be True or False, got {after_hours!r}"
            raise InvalidRequest(msg)
        clock = self._clock()
        try:
            now = clock - shift_time
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            now = None  # past pandas' range: rejected just below
        now = _in_range(now, f"the clock {clock} minus timeshift {timeshift}")
        source, target = self._timesteps(symbol, timestep)
        frame = self._frame(symbol, source)
        self._warn_if_stale(symbol, frame, source, now)

        if not after_hours:
            # Regular session only: the local wall-clock start time in [09:30, 16:00).
            wall = frame.index.tz_convert(self._tz).tz_localize(None)
            time_of_day = wall - wall.normalize()
            in_session = (time_of_day >= _SESSION_OPEN) & (time_of_day < _SESSION_CLOSE)
            frame = frame.iloc[np.flatnonzero(in_session)]

        ends = self._ends(frame.index, source, self._zones[(symbol, str(source))])
        ends = ends.as_unit("ns").asi8
        if target != source:
            frame, ends = self._aggregate(frame, ends, target)

        visible = ends <= now.value
        positions = np.flatnonzero(visible)
        last_visible = int(positions[-1]) if len(positions) else -1
        stop = min(max(last_visible + 1 - shift_bars, 0), len(frame))
        begin = max(0, stop - length)
        # A copy: on pandas 2 a caller's writes to a view would reach the cached frame.
        window = frame.iloc[begin:stop].copy()
        # pandas widens integer columns with missing values to float; the stored polars
        # dtypes are restored for `.pl` (aggregated bars have only float columns).
        schema = self._schemas[(symbol, str(source))] if target == source else None
        return Bars(window, symbol=symbol, timestep=str(target), timezone=self._tz, schema=schema)

    def get_last_price(self, asset: Any) -> float | None:
        """The close of the last visible bar at the finest stored timestep, or None."""
        symbol = self._symbol(asset)
        now = self._clock()
        step, _ = self._timesteps(symbol, None)
        frame = self._frame(symbol, step)
        self._warn_if_stale(symbol, frame, step, now)
        ends = self._ends(frame.index, step, self._zones[(symbol, str(step))])
        visible = frame.loc[np.asarray(ends <= now)]
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
    @staticmethod
    def _ends(starts: pd.DatetimeIndex, step: Timestep, written: str) -> pd.DatetimeIndex:
        """Each bar's end: start + step, or for a day bar the first midnight after its start
        in ``written``, the zone the bars were written in (UTC candles end at UTC midnight)."""
        if not step.is_day:
            return starts + pd.Timedelta(minutes=step.minutes)
        # Calendar arithmetic on wall-clock times there: the date of the start, plus one day,
        # at 00:00. That is the first midnight strictly after the start even when the start
        # is not itself a midnight (e.g. a bar labelled 19:00 on its date).
        wall = starts.tz_convert(written).tz_localize(None)
        next_midnight = wall.normalize() + pd.Timedelta(days=1)
        earliest = np.ones(len(next_midnight), dtype=bool)  # a repeated midnight: the first
        ends = next_midnight.tz_localize(written, ambiguous=earliest, nonexistent="shift_forward")
        return ends.tz_convert(starts.tz)

    def _warn_if_stale(
        self, symbol: str, frame: pd.DataFrame, step: Timestep, now: pd.Timestamp
    ) -> None:
        """Warn, once per asset, when ``now`` is past the end of its last stored bar by more
        than the lookback."""
        if symbol in self._warned:
            return
        last_end = self._ends(frame.index[-1:], step, self._zones[(symbol, str(step))])[0]
        if now - last_end > self._stale:
            self._warned.add(symbol)
            msg = (
                f"{symbol}: the clock {now} is past its last stored bar (which ended "
                f"{last_end}) by more than the lookback ({self._stale}), so its answers are "
                "that old history; store newer bars or end the backtest with the data "
                "(warned once per asset)"
            )
            warn_caller(msg, StaleDataWarning)

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

    def _timesteps(self, symbol: str, timestep: str | Timestep | None) -> tuple[Timestep, Timestep]:
        """(stored timestep to read, timestep to return) for a request."""
        stored = [Timestep.parse(s) for s in self._store.timesteps(symbol)]
        finest = min(stored)
        if timestep is None:
            return finest, finest
        wanted = Timestep.parse(timestep)
        if wanted in stored:
            return wanted, wanted
        if wanted < finest:
            names = ", ".join(repr(str(s)) for s in sorted(stored))
            msg = (
                f"timestep {str(wanted)!r} is finer than anything stored for {symbol!r} "
                f"(stored: {names}); ask for {str(finest)!r} or coarser"
            )
            raise InvalidRequest(msg)
        return finest, wanted

    def _aggregate(
        self, frame: pd.DataFrame, ends: np.ndarray, target: Timestep
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """``frame``'s bars grouped into ``target`` buckets, and each bucket's end (int64 ns).

        open is the first open, high the max, low the min, close the last close and volume
        the sum; other columns are dropped. Each bucket is labelled by its start instant, in
        the zone of ``frame``'s index. Its end, the instant it becomes visible, is the later
        of its next boundary and the end of every source bar in it (``ends``), so a bucket
        that is still forming is never visible.
        """
        step = pd.Timedelta(minutes=target.minutes)
        starts = frame.index.as_unit("ns")
        bucket_ns = _bucket_starts(starts.asi8, step, self._tz)
        labels = pd.DatetimeIndex(pd.to_datetime(bucket_ns, unit="ns", utc=True), name="datetime")
        labels = labels.tz_convert(starts.tz).as_unit("ns")
        if len(frame) == 0:
            empty = pd.DataFrame({c: np.array([], dtype="float64") for c in _OHLCV}, index=labels)
            return empty, np.array([], dtype=np.int64)
        groups = frame[_OHLCV].astype("float64").groupby(labels, sort=True)
        buckets = groups.agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
        )
        buckets.index = buckets.index.as_unit("ns").rename("datetime")
        first_ns = buckets.index.asi8
        last_bar_end = pd.Series(ends, index=labels).groupby(level=0, sort=True).max()
        bucket_end = np.maximum(_next_boundaries(first_ns, step, self._tz), last_bar_end.to_numpy())
        return buckets, bucket_end

    def _frame(self, symbol: str, step: Timestep) -> pd.DataFrame:
        """The full stored frame, loaded into pandas once per (symbol, timestep)."""
        key = (symbol, str(step))
        if key not in self._frames:
            # Stored bars are shown in the local zone, whatever zone they were written in.
            loaded = self._store.scan(symbol, str(step), timezone=self._tz).collect()
            self._schemas[key] = loaded.schema
            self._zones[key] = self._store.zone(symbol, str(step))
            frame = loaded.to_pandas().set_index("datetime")
            if frame.index.tz is None:
                msg = f"{symbol!r} {key[1]} bars have naive times; rewrite them with tz="
                raise InvalidRequest(msg)
            self._frames[key] = frame
        return self._frames[key]


# ------------------------------------------------------------------ bucket boundaries
def _bucket_starts(starts: np.ndarray, step: pd.Timedelta, zone: str) -> np.ndarray:
    """The bucket of each bar: the latest boundary instant at or before its start (int64 ns).

    The rule: a boundary of ``step`` buckets is an instant whose wall-clock time in ``zone``
    is a whole multiple of ``step`` after local midnight (the day's "grid"; it restarts at
    every midnight, so a step that does not divide a day ends each day with a shorter
    bucket; day buckets have the midnights alone). A wall time that occurs twice (the
    repeated autumn hour) is two boundaries; a wall time that does not occur (the skipped
    spring hour) is none. A bar belongs to the bucket of the latest boundary at or before its
    start, and a bucket ends at the next boundary (:func:`_next_boundaries`).

    ``DataFrame.resample`` cannot be told this: on tz-aware data it cuts a fixed grid of
    instants (across the autumn change its 2-hour buckets start 00:00 EDT, then 01:00 EST).
    So the boundary is found from wall-clock times, bar by bar (vectorised over the bars):

    1. Read the bar's start as a wall time, under the UTC offset in force at the start and
       under the one in force a day earlier: on a DST day the latest boundary can lie before
       the change (in 90-minute buckets, 01:10 EST follows the boundary 01:30 EDT, whose
       wall time is later than 01:10).
    2. Floor each wall time to the grid of its day.
    3. Turn that grid wall time into its instants (none, one or two). The latest that is at
       or before the bar's start is a candidate; if none is (a skipped wall time, or the
       second 01:00 of a repeated hour lying after the bar), step back one grid point and
       try again.
    4. The bucket start is the latest candidate of step 1's readings.
    """
    best = np.full(len(starts), _NAT)
    for walls in _wall_times(starts, zone, -_DAY):
        grid = _floor_to_grid(walls, step)
        best = np.maximum(best, _walk(starts, grid, step, zone, forward=False))
    return best


def _next_boundaries(starts: np.ndarray, step: pd.Timedelta, zone: str) -> np.ndarray:
    """The earliest boundary instant after each instant of ``starts`` (int64 ns).

    :func:`_bucket_starts` run forwards: from the first grid point after each wall time
    (read under the offset at the instant and a day later), step forward until a grid wall
    time has an instant after the start; the earliest such instant wins.
    """
    best = np.full(len(starts), _NEVER)
    for walls in _wall_times(starts, zone, _DAY):
        grid = _next_on_grid(walls, step)
        best = np.minimum(best, _walk(starts, grid, step, zone, forward=True))
    return best


def _wall_times(instants: np.ndarray, zone: str, other: pd.Timedelta) -> list[pd.DatetimeIndex]:
    """``instants`` as naive local wall times, under their own UTC offset and under the offset
    in force at ``instant + other``."""
    utc = pd.DatetimeIndex(pd.to_datetime(instants, unit="ns", utc=True)).as_unit("ns")
    own = utc.tz_convert(zone).tz_localize(None)
    # (instant + other) read locally, minus other: the instant under that other offset.
    there = (utc + other).tz_convert(zone).tz_localize(None) - other
    return [own] if own.equals(there) else [own, there]


def _floor_to_grid(walls: pd.DatetimeIndex, step: pd.Timedelta) -> pd.DatetimeIndex:
    """The latest grid wall time (midnight + k * step, same day) at or before each wall time."""
    midnight = walls.normalize()
    return midnight + (walls - midnight) // step * step


def _next_on_grid(walls: pd.DatetimeIndex, step: pd.Timedelta) -> pd.DatetimeIndex:
    """The earliest grid wall time after each wall time (the next midnight at the latest)."""
    following = _floor_to_grid(walls, step) + step
    next_midnight = walls.normalize() + _DAY
    return pd.DatetimeIndex(np.minimum(following.asi8, next_midnight.asi8).astype("M8[ns]"))


def _instants(walls: pd.DatetimeIndex, zone: str, step: pd.Timedelta) -> list[np.ndarray]:
    """Every instant (int64 ns; NaT for a skipped wall time) of each wall time in ``zone``:
    its first and its second occurrence (the same instant unless the wall time repeats).
    Day buckets follow dates instead: a day starts at the first instant of its date, so a
    skipped midnight still starts its day (at the day's first instant) and a repeated one
    starts it only once (at its first occurrence)."""
    if step == _DAY:
        occurrences, skipped = (True,), "shift_forward"
    else:
        occurrences, skipped = (True, False), "NaT"
    return [
        walls.tz_localize(zone, ambiguous=np.full(len(walls), first), nonexistent=skipped).asi8
        for first in occurrences
    ]


def _walk(
    starts: np.ndarray, grid: pd.DatetimeIndex, step: pd.Timedelta, zone: str, *, forward: bool
) -> np.ndarray:
    """From each grid wall time, step along the grid (back, or ``forward``) until one has an
    instant at or before (after, when ``forward``) the matching start, and return that
    instant (the latest such, or the earliest when ``forward``)."""
    found = np.full(len(starts), _NEVER if forward else _NAT)
    todo, walls = np.arange(len(starts)), grid  # the rows still looking, and their wall times
    for _ in range(3 * (_DAY // step) + 3):  # a few days of grid points at most
        if len(todo) == 0:
            return found
        limit = starts[todo]
        if forward:
            hits = np.full(len(todo), _NEVER)
            for instant in _instants(walls, zone, step):  # NaT (a huge negative) is never "after"
                hits = np.minimum(hits, np.where(instant > limit, instant, _NEVER))
            missing = hits == _NEVER
            walls = _next_on_grid(walls[missing], step)
        else:
            hits = np.full(len(todo), _NAT)
            for instant in _instants(walls, zone, step):  # NaT stays NaT under the maximum
                hits = np.maximum(hits, np.where(instant <= limit, instant, _NAT))
            missing = hits == _NAT
            walls = _floor_to_grid(walls[missing] - _NS, step)
        found[todo] = hits
        todo = todo[missing]
    msg = f"no bucket boundary found near {starts[todo][:3]} in {zone}"  # pragma: no cover
    raise AssertionError(msg)  # pragma: no cover


# Clocks must leave room for a day's end on either side of pandas' nanosecond range.
_EARLIEST = pd.Timestamp.min.tz_localize("UTC") + _DAY
_LATEST = pd.Timestamp.max.tz_localize("UTC") - _DAY


def _in_range(when: Any, what: str) -> pd.Timestamp:
    """``when`` as a Timestamp if it lies inside 1677-2262 (less a day at each end)."""
    try:
        stamp = pd.Timestamp(when)
        inside = stamp is not pd.NaT and _EARLIEST <= stamp <= _LATEST
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        inside = False
    if not inside:
        msg = f"{what} ({when}) is outside 1677-09-22 .. 2262-04-10; use a time inside that range"
        raise InvalidRequest(msg)
    return stamp


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
    if isinstance(timeshift, (int, np.integer)) and not isinstance(
        timeshift, (bool, np.timedelta64)
    ):
        return int(timeshift), pd.Timedelta(0)
    if isinstance(timeshift, _dt.timedelta) and timeshift is not pd.NaT:
        return 0, pd.Timedelta(timeshift)
    msg = f"timeshift must be {_TIMESHIFT_FORMS}, got {type(timeshift).__name__} {timeshift!r}"
    raise InvalidRequest(msg)
