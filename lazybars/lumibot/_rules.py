"""lumibot PandasData's conventions, as arithmetic on sorted int64 instants and row numbers.

Everything here copies a rule of lumibot 4.6.x (``lumibot/entities/data.py`` and
``lumibot/data_sources/pandas_data.py``); each function names the lumibot function it
follows. Nothing here imports lumibot: the rules are plain numpy and polars, computed once
per asset (the gap-filled frame, bucket tables) or per request (row bounds, a partial
bucket), so that a request is a few binary searches and a zero-copy slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl

MINUTE_NS = 60_000_000_000
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS
THREE_DAYS_NS = 3 * DAY_NS
PRICES = ("open", "high", "low", "close")
DERIVED = ("price_change", "dividend_yield", "return")
# The columns lumibot's Data.get_bars hands out, in its order (Data.repair_times_and_fill,
# "_bars_cols"); the aggregation of each (Data.get_bars, "agg_column_map").
AGGREGATIONS = {
    "open": "first",
    "high": "max",
    "low": "min",
    "close": "last",
    "volume": "sum",
    "dividend": "sum",
    "stock_splits": "max",
}


def repair(frame: pl.DataFrame, grid: np.ndarray, first: int, last: int) -> pl.DataFrame:
    """The bars on the backtest's grid, as lumibot's ``Data.repair_times_and_fill`` leaves them.

    ``grid`` is the sorted instants of ``PandasData.clean_trading_times``; the bars are
    reindexed onto its part within ``[first, last]`` (the bars' own first and last start),
    each grid instant taking the last bar starting at or before it (``reindex(method=
    "ffill")``), and missing values are filled as lumibot fills them. Then derived columns
    are added over the whole series: ``return`` (and
    ``price_change``/``dividend_yield`` with a ``dividend`` column), as
    ``(close - previous close) / previous close`` with NaN first, exactly lumibot's numpy
    formula.
    """
    lo, hi = np.searchsorted(grid, first, "left"), np.searchsorted(grid, last, "right")
    zone = frame.schema["datetime"].time_zone
    instants = pl.Series("datetime", grid[lo:hi]).cast(pl.Datetime("ns", "UTC"))
    target = pl.DataFrame(instants.dt.convert_time_zone(zone))
    kept = [c for c in (*AGGREGATIONS, *DERIVED) if c in frame.columns]
    columns = frame.select("datetime", pl.col(kept).cast(pl.Float64))
    filled = target.join_asof(columns, on="datetime")
    # lumibot's fills of missing values (bars that semantics="lumibot" admits; complete bars
    # have none): volume 0; the close, and every column but the prices and events, the last
    # value before it on the grid; open, high and low the bar's close. Corporate actions are
    # events: lumibot fills their gaps with 0 (reindex ffill has already copied them
    # forward, which it keeps).
    events = [c for c in ("dividend", "stock_splits") if c in kept]
    carried = [c for c in kept if c not in (*PRICES, *events)]
    filled = filled.with_columns(
        pl.col("volume").fill_nan(0.0),
        pl.col(events).fill_nan(0.0).fill_null(0.0),
    )
    filled = filled.with_columns(
        pl.col("close", *carried).fill_nan(None).forward_fill().fill_null(np.nan)
    )
    filled = filled.with_columns(
        pl.when(pl.col(c).is_nan()).then(pl.col("close")).otherwise(pl.col(c)).alias(c)
        for c in PRICES[:3]
    )
    close = filled["close"].to_numpy()
    derived: dict[str, np.ndarray] = {}
    if "dividend" in kept:
        if any(c not in kept for c in DERIVED):
            derived = derived_columns(close, filled["dividend"].to_numpy())
        tail = ["dividend", *DERIVED]
    else:
        if "return" not in kept:
            derived = derived_columns(close, None)
        tail = ["return"]
    if derived:
        filled = filled.with_columns(
            pl.Series(name, values).fill_nan(None) for name, values in derived.items()
        )
    order = [c for c in (*PRICES, "volume", *tail, "stock_splits") if c in filled.columns]
    return filled.select("datetime", *order)


def derived_columns(close: np.ndarray, dividend: np.ndarray | None) -> dict[str, np.ndarray]:
    """The columns lumibot's ``Bars.__init__`` adds to a frame without them: ``return``, or
    ``price_change``, ``dividend_yield`` and ``return`` when there is a ``dividend``."""
    change = pct_change(close)
    if dividend is None:
        return {"return": change}
    with np.errstate(divide="ignore", invalid="ignore"):
        dividend_yield = dividend / close
    return {
        "price_change": change,
        "dividend_yield": dividend_yield,
        "return": dividend_yield + change,
    }


def pct_change(close: np.ndarray) -> np.ndarray:
    """lumibot's ``return``: ``(curr - prev) / prev`` with NaN first (Bars.__init__)."""
    out = np.empty(len(close))
    out[:1] = np.nan
    prev = close[:-1]
    if prev.all():  # no zero to divide by (np.errstate costs more than the division)
        np.divide(close[1:] - prev, prev, out=out[1:])
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(close[1:] - prev, prev, out=out[1:])
    return out


def closed_bar_length(starts: np.ndarray, timestep: str, zone: str) -> int | None:
    """How long an intraday bar lasts before lumibot counts it closed (None for day bars).

    lumibot/entities/data.py ``_intraday_bar_state``: the larger of the nominal step (1
    minute or 1 hour) and the most common spacing between bars of one session (same local
    date, or at most an hour apart), the smallest spacing winning ties.
    """
    nominal = {"minute": MINUTE_NS, "hour": HOUR_NS}.get(timestep)
    if nominal is None:
        return None
    spacing = 0
    if len(starts) > 1:
        diffs = np.diff(starts)
        dates = local_midnights(starts, zone)
        intraday = (dates[1:] == dates[:-1]) | (diffs <= HOUR_NS)
        positive = diffs[(diffs > 0) & intraday]
        if positive.size:
            values, counts = np.unique(positive, return_counts=True)
            spacing = int(values[int(np.argmax(counts))])
    return max(nominal, spacing)


def instants_index(instants: np.ndarray, tz: object) -> pd.DatetimeIndex:
    """Int64 ns instants as a pandas index in ``tz``, named ``datetime`` (as lumibot's)."""
    index = pd.DatetimeIndex(instants.view("M8[ns]")).tz_localize("UTC")
    return index.tz_convert(tz).rename("datetime")


def local_midnights(instants: np.ndarray, zone: str) -> np.ndarray:
    """The local midnight (int64 ns) of each instant's local date (pandas ``normalize``)."""
    index = pd.DatetimeIndex(instants.view("M8[ns]")).tz_localize("UTC").tz_convert(zone)
    return index.normalize().asi8


def wall_days(instants: np.ndarray, zone: str) -> np.ndarray:
    """The local calendar day of each instant, as days since 1970-01-01 (wall clock)."""
    index = pd.DatetimeIndex(instants.view("M8[ns]")).tz_localize("UTC").tz_convert(zone)
    return index.tz_localize(None).asi8 // DAY_NS


def native_rows(
    starts: np.ndarray, i: int, now: int, length: int, shift: int, closed_length: int | None
) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a window of ``length`` bars ending at the clock ``now``.

    lumibot/entities/data.py ``Data._get_bars_row_bounds``: ``i`` is the last bar starting
    at or before ``now`` (-1 if none). Day bars: rows up to and including ``i`` (a day bar is
    visible on its own date). Intraday: rows before ``i``, plus ``i`` once it has closed
    (``start + closed_length <= now``), that extra row only when ``shift >= 0``. The window
    then ends ``shift`` rows earlier, clipped to the data, and keeps ``length`` rows.
    """
    if closed_length is None:
        stop = i + 1 - shift
    else:
        visible = i
        if shift >= 0 and i >= 0 and int(starts[i]) + closed_length <= now:
            visible += 1
        stop = visible - shift
    stop = max(0, min(stop, len(starts)))
    return max(0, stop - length), stop


def timeshift_rows(timeshift: object, timestep: str) -> int:
    """A timeshift as rows of the data (Data._normalize_timeshift_to_rows).

    A timedelta counts whole days, hours or minutes of the data's timestep, truncated.
    """
    if type(timeshift) is int:
        return timeshift
    if timeshift is None:
        return 0
    if hasattr(timeshift, "total_seconds"):
        unit = {"day": 24 * 3600, "hour": 3600}.get(timestep, 60)
        return int(timeshift.total_seconds() / unit)
    return int(timeshift or 0)


@dataclass(frozen=True, slots=True)
class Buckets:
    """Every whole bucket of one binning of a series: what ``resample`` would make of it.

    ``labels`` are the bucket starts (int64 ns, as pandas labels them), ``first`` and
    ``stop`` the series rows ``[first, stop)`` each bucket holds, ``of_row`` each row's
    bucket, and ``values`` the aggregated columns (one row per bucket).
    """

    labels: np.ndarray
    first: np.ndarray
    stop: np.ndarray
    of_row: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]


def bucket_ids(
    starts: np.ndarray, unit: str, quantity: int, key: int, days: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's pandas resample bin, and each bin's label, for bins anchored at ``key``.

    lumibot's ``df.resample(f"{quantity}{unit}")`` uses pandas' default origin, the midnight
    of the window's first day. Minute and hour bins are fixed spans of absolute time from
    that origin, so two origins bin alike when they are equal modulo the span: ``key`` is
    the origin modulo the span. Day bins are local calendar days (wall clock), ``quantity``
    of them from the origin's date: ``key`` is that date modulo ``quantity``; ``days`` holds
    each row's local date (:func:`wall_days`).
    """
    if unit == "D":
        assert days is not None
        bins = (days - key) // quantity
        return bins, key + bins * quantity
    span = quantity * (MINUTE_NS if unit == "min" else HOUR_NS)
    bins = (starts - key) // span
    return bins, key + bins * span


def build_buckets(columns: dict[str, np.ndarray], bins: np.ndarray, labels: np.ndarray) -> Buckets:
    """Aggregate a series per bin (rows sorted, so each bin is one run of rows)."""
    n = len(bins)
    edges = np.flatnonzero(np.diff(bins)) + 1 if n else np.empty(0, np.int64)
    first = np.concatenate(([0], edges)).astype(np.int64) if n else edges.astype(np.int64)
    stop = np.concatenate((first[1:], [n])).astype(np.int64) if n else first
    of_row = np.repeat(np.arange(len(first), dtype=np.int64), stop - first)
    names = tuple(c for c in AGGREGATIONS if c in columns)
    values = np.empty((len(first), len(names)))
    for j, name in enumerate(names):
        values[:, j] = _reduce(AGGREGATIONS[name], columns[name], first, stop)
    return Buckets(labels[first], first, stop, of_row, values, names)


def _reduce(how: str, column: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    # pandas' first, last, max and min skip NaN (prices before an asset's first close).
    if len(first) == 0:
        return np.empty(0)
    if how in ("first", "last") and np.isnan(column).any():
        return _present(how, column, first, stop)
    if how == "first":
        return column[first]
    if how == "last":
        return column[stop - 1]
    if how == "max":
        return np.fmax.reduceat(column, first)
    if how == "min":
        return np.fmin.reduceat(column, first)
    return _kahan_sums(column, first, stop)


def _present(how: str, column: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """The first (or last) non-NaN value of each run ``[first, stop)``, NaN if it has none."""
    n = len(column)
    rows = np.arange(n)
    if how == "first":
        # The next row holding a value, at or after each row (n where none does).
        ahead = np.minimum.accumulate(np.where(np.isnan(column), n, rows)[::-1])[::-1]
        at = ahead[first]
        found = at < stop
    else:
        behind = np.maximum.accumulate(np.where(np.isnan(column), -1, rows))
        at = behind[stop - 1]
        found = at >= first
    out = np.full(len(first), np.nan)
    out[found] = column[at[found]]
    return out


def _kahan_sums(column: np.ndarray, first: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Per-run sums with pandas' groupby ``sum`` (Kahan-compensated, in row order), all runs
    advanced together one position at a time."""
    sums = np.zeros(len(first))
    compensation = np.zeros(len(first))
    sizes = stop - first
    for j in range(int(sizes.max())):
        live = sizes > j
        value = column[first[live] + j]
        y = value - compensation[live]
        t = sums[live] + y
        c = t - sums[live] - y
        compensation[live] = np.where(np.isnan(c), 0.0, c)
        sums[live] = t
    return sums


def aggregate_rows(
    columns: dict[str, np.ndarray],
    names: tuple[str, ...],
    a: int,
    b: int,
    whole: frozenset[str] = frozenset(),
    gaps: bool = False,
) -> list[float]:
    """One bucket made of rows ``[a, b)`` only (a bucket cut by the window's edge).

    Sums of the columns in ``whole`` (see :func:`whole_numbers`) are numpy's: they equal
    pandas' compensated sum exactly, and a day bucket cut from 1,440 minutes is summed in
    microseconds rather than a Python loop's hundred. With ``gaps`` (rows before an
    asset's first close, whose prices may be NaN), NaN prices are skipped, as pandas does.
    """
    if gaps:
        first, stop = np.zeros(1, np.int64), np.array([b - a])
        return [float(_reduce(AGGREGATIONS[n], columns[n][a:b], first, stop)[0]) for n in names]
    out = []
    for name in names:
        column = columns[name]
        how = AGGREGATIONS[name]
        if how == "first":
            out.append(column[a])
        elif how == "last":
            out.append(column[b - 1])
        elif how == "max":
            out.append(column[a:b].max())
        elif how == "min":
            out.append(column[a:b].min())
        elif name in whole:
            out.append(float(column[a:b].sum()))
        else:
            out.append(kahan_sum(column[a:b].tolist()))
    return out


def whole_numbers(column: np.ndarray) -> bool:
    """Whether any sum of ``column``'s values, in any order, is exact: finite whole numbers
    whose absolute total is below 2**53 (share volumes, usually). Every partial sum is then
    a whole number a float holds exactly, so every summation order gives pandas' result."""
    if not np.isfinite(column).all():
        return False
    return bool((column == np.floor(column)).all() and np.abs(column).sum() < 2.0**53)


def kahan_sum(values: list[float]) -> float:
    """One run's sum as pandas' groupby ``sum`` makes it (see :func:`_kahan_sums`)."""
    total = compensation = 0.0
    for value in values:
        y = value - compensation
        t = total + y
        compensation = t - total - y
        if math.isnan(compensation):  # pandas resets it
            compensation = 0.0
        total = t
    return total
