"""Aggregation of bars to a coarser timestep, with wall-clock bucket boundaries.

Bucket boundaries are the instants whose local wall-clock time is a whole multiple of the
timestep after local midnight. On the autumn DST day the repeated 01:00 is two instants and
so starts two buckets; in spring a wall time inside the skipped hour is no instant at all,
so it is no boundary and the bucket before it simply lasts longer. Day boundaries are the
first instant of each local date. Enumerating the boundary instants of every local date in
range and finding each bar start's place among them (an as-of join) gives exactly that,
with no special cases per zone, in native polars: a plan runs no Python per row.

A bucket row carries ``end``: the later of its next boundary and the end of its last source
bar. A bucket is visible at ``dt`` iff ``end <= dt``, so a bucket that is still forming (a
later source bar could still join it) is never visible, and any bucket that is visible is
already complete: aggregating once, ahead of time, gives the same answer as aggregating at
request time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
import polars as pl

from lazybars._time import DAY_NS, first_instant
from lazybars.errors import InvalidRequest
from lazybars.timestep import Timestep

# The column carrying each bucket's end through a lazy plan; dropped before bars are returned.
BUCKET_END = "__lazybars_bucket_end"
_BUCKET = "__lazybars_bucket"  # a bucket's start, int64 ns
_NEXT = "__lazybars_next_boundary"  # the boundary after it, int64 ns
_START = "__lazybars_start"  # a bar's start, int64 ns
_ROW = "__lazybars_row"
_WALL = "__lazybars_wall"  # a naive local wall time
_OFFSET = "__lazybars_offset"  # ns after midnight
_STEADY = "__lazybars_steady"
_AGGREGATIONS = {
    "open": pl.col("open").first(),
    "high": pl.col("high").max(),
    "low": pl.col("low").min(),
    "close": pl.col("close").last(),
    "volume": pl.col("volume").sum(),
}
_DAY = Timestep(24 * 60)
_REGULAR_OPEN = 9 * 60 + 30
_REGULAR_CLOSE = 16 * 60
_UTC_NS = pl.Datetime("ns", "UTC")
_ONE_DAY = pl.duration(days=1, time_unit="ns")


def coarser(source: Timestep, timestep: str | Timestep, method: str) -> Timestep:
    """Parse ``timestep`` for ``method``; it must be ``source`` or coarser."""
    target = Timestep.parse(timestep)
    if target < source:
        msg = (
            f"{method}({timestep!r}) is finer than the {source} bars it would be made from; "
            f"pick {source} or coarser"
        )
        raise InvalidRequest(msg)
    return target


def bucket_bounds(
    starts: np.ndarray, target: Timestep, local: str
) -> tuple[np.ndarray, np.ndarray]:
    """For bar starts (int64 ns, in any order), the start and next boundary of each one's
    bucket."""
    bars = pl.LazyFrame({_START: starts}, schema={_START: pl.Int64}).with_row_index(_ROW)
    # In memory already: polars' streaming engine would only add its start-up cost.
    out = _with_bounds(bars.sort(_START), target, local).sort(_ROW).collect(engine="in-memory")
    return out[_BUCKET].to_numpy(), out[_NEXT].to_numpy()


def bar_ends(starts: np.ndarray, timestep: Timestep, local: str) -> np.ndarray:
    """Each bar's end (int64 ns): start + timestep, or for day bars the next midnight in
    ``local``, which for stored day bars is the zone they were written in.

    This is the one definition of a bar's end on the fast path: the cache's bar ends, a
    query's ``as_of`` and the buckets' ends all come from it (through
    :func:`bar_ends_expr`).
    """
    if not timestep.is_day:
        return starts + timestep.nanos
    column = pl.Series(_START, starts, pl.Int64).cast(_UTC_NS)
    ends = column.to_frame().select(bar_ends_expr(pl.col(_START), timestep, local))
    return ends.to_series().to_numpy()


def local_day(ns: int, local: str) -> tuple[int, int]:
    """The first instant of the local date holding ``ns``, and that of the next date."""
    instant = pl.Series(_START, [ns], pl.Int64).cast(_UTC_NS).to_frame()
    first, following, after = _day_starts(
        instant.select(_midnight(pl.col(_START), local)).item(), local
    )
    # The rule of bar_ends_expr, on numbers: this runs on every cache load, where an
    # expression over a one-row frame would spend most of its time planning.
    return (following, after) if following <= ns else (first, following)


@lru_cache(maxsize=4096)
def _day_starts(midnight: datetime, local: str) -> tuple[int, int, int]:
    """The first instants of the local date starting at naive ``midnight`` and of the two
    dates after it (zone rules do not change while a process runs)."""
    walls = pl.Series(_WALL, [midnight + timedelta(days=k) for k in range(3)], pl.Datetime("ns"))
    first, following, after = (
        walls.to_frame().select(first_instant(pl.col(_WALL), local)).to_series()
    )
    return first, following, after


def bar_ends_expr(column: pl.Expr, timestep: Timestep, local: str) -> pl.Expr:
    """:func:`bar_ends` of a datetime column, as an Int64 expression (ns since the epoch)."""
    if not timestep.is_day:
        return column.dt.epoch("ns") + timestep.nanos
    midnight = _midnight(column, local)
    following, after = (first_instant(midnight + k * _ONE_DAY, local) for k in (1, 2))
    # The next date's first instant, unless the bar starts after it: an autumn change just
    # after midnight (Goose Bay until 2010: 00:01 back to 23:01) repeats the last hour of a
    # date after the next date's first midnight, that date's one boundary.
    return pl.when(following > column.dt.epoch("ns")).then(following).otherwise(after)


def regular_hours(column: pl.Expr, local: str) -> pl.Expr:
    """True where the bar's local start time lies in the regular session [09:30, 16:00)."""
    wall = column.dt.convert_time_zone(local)
    minute = wall.dt.hour().cast(pl.Int32) * 60 + wall.dt.minute().cast(pl.Int32)
    return (minute >= _REGULAR_OPEN) & (minute < _REGULAR_CLOSE)


def aggregated_columns(names: Sequence[str]) -> tuple[str, ...]:
    """The columns of ``names`` that aggregation keeps: those with an agreed aggregation,
    in OHLCV order."""
    return tuple(name for name in _AGGREGATIONS if name in names)


def aggregate_lazy(
    lf: pl.LazyFrame,
    target: Timestep,
    *,
    local: str,
    source: Timestep,
    after_hours: bool,
    by_symbol: bool = False,
    source_zone: str | None = None,
) -> pl.LazyFrame:
    """Aggregate sorted bars to ``target`` buckets, with their end in ``BUCKET_END``; both
    are in the ``local`` zone. ``source_zone`` is the zone the source bars were written in
    (stored day bars end at its midnights; None: ``local``).

    open is the first open, high the max, low the min, close the last close, volume the sum
    (whichever of them the frame has); other columns are dropped, having no agreed
    aggregation. Buckets with no source bar do not exist.
    """
    if not after_hours:
        lf = lf.filter(regular_hours(pl.col("datetime"), local))
    columns = aggregated_columns(lf.collect_schema().names())
    front = ["datetime", "symbol"] if by_symbol else ["datetime"]
    # Extra columns go first: they are not aggregated, and a caller's column could share a
    # name with the bucket columns.
    bars = lf.select(*front, *columns).with_columns(pl.col("datetime").dt.epoch("ns").alias(_START))
    # A source bar may outlast its bucket (1h bars into 90m buckets, or a 25h day bar):
    # the bucket only completes when every bar in it has ended.
    written = source_zone or local
    end = pl.max_horizontal(pl.col(_NEXT), bar_ends_expr(pl.col("datetime"), source, written))
    out = (
        _with_bounds(bars, target, local)
        .group_by([*front[1:], _BUCKET], maintain_order=True)
        .agg(*(_AGGREGATIONS[name] for name in columns), end.max().alias(BUCKET_END))
        .with_columns(pl.col(_BUCKET, BUCKET_END).cast(_UTC_NS).dt.convert_time_zone(local))
        .rename({_BUCKET: "datetime"})
    )
    return out.select(*front, *columns, BUCKET_END)


def _with_bounds(bars: pl.LazyFrame, target: Timestep, local: str) -> pl.LazyFrame:
    """``bars``, sorted by their starts (int64 ns in ``_START``), with the start of each
    one's bucket in ``_BUCKET`` and the next boundary in ``_NEXT``."""
    # Read once: the boundaries span the bars' own dates.
    bars = bars.cache()
    bounds = _boundaries(bars, target, local)
    return bars.join_asof(bounds, left_on=_START, right_on=_BUCKET, coalesce=False)


def _boundaries(bars: pl.LazyFrame, target: Timestep, local: str) -> pl.LazyFrame:
    """Every boundary (sorted int64 ns, ``_BUCKET``) and the one after it (``_NEXT``), from
    the local date before the first bar's to two dates after the last bar's."""
    first = _local_date(pl.col(_START).min(), local) - _ONE_DAY
    last = _local_date(pl.col(_START).max(), local) + 2 * _ONE_DAY
    midnights = pl.date_range(first, last, "1d").cast(pl.Datetime("ns")).alias(_WALL)
    days = bars.select(midnights).with_columns(first_instant(pl.col(_WALL), local).alias(_BUCKET))
    if target.is_day:
        # A date with no instant at all starts where the next one does (Apia, 2011-12-30).
        instants = days.select(pl.col(_BUCKET).unique())
    else:
        # A date is steady when it and the dates either side of it last 24 hours: zones
        # change their UTC offset at most once in two days, so no change touches its wall
        # times, and its boundaries are its midnight plus multiples of the timestep. The
        # others' wall times are each localised: a repeated one is two boundaries, a
        # skipped one none.
        length = pl.col(_BUCKET).shift(-1) - pl.col(_BUCKET)
        steady = pl.all_horizontal([length.shift(i) == DAY_NS for i in (-1, 0, 1)])
        grid = (
            days.cache()
            .with_columns(
                steady.fill_null(False).alias(_STEADY),
                pl.int_ranges(0, DAY_NS, target.nanos).alias(_OFFSET),
            )
            .explode(_OFFSET)
        )
        plain = grid.filter(_STEADY).select(pl.col(_BUCKET) + pl.col(_OFFSET))
        wall = pl.col(_WALL) + pl.col(_OFFSET).cast(pl.Duration("ns"))
        changing = grid.filter(~pl.col(_STEADY)).select(
            pl.concat(
                [
                    wall.dt.replace_time_zone(local, ambiguous=a, non_existent="null")
                    for a in ("earliest", "latest")
                ]
            )
            .dt.epoch("ns")
            .drop_nulls()
            .unique()
            .alias(_BUCKET)
        )
        instants = pl.concat([plain, changing])
    return instants.sort(_BUCKET).with_columns(pl.col(_BUCKET).shift(-1).alias(_NEXT))


def _local_date(ns: pl.Expr, local: str) -> pl.Expr:
    # Dates are taken from wall times: naming an instant for a midnight would be a choice
    # where midnight is skipped or repeated. No bars (null): any date will do.
    return ns.cast(_UTC_NS).dt.convert_time_zone(local).dt.date().fill_null(pl.lit(0, pl.Date))


def _midnight(column: pl.Expr, local: str) -> pl.Expr:
    """The naive local midnight (ns) of each instant's local date."""
    wall = column.dt.convert_time_zone(local).dt.replace_time_zone(None)
    return wall.dt.cast_time_unit("ns").dt.truncate("1d")
