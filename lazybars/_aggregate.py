"""Aggregation of bars to a coarser timestep, with wall-clock bucket boundaries.

Bucket boundaries are the instants whose local wall-clock time is a whole multiple of the
timestep after local midnight. On the autumn DST day the repeated 01:00 is two instants and
so starts two buckets; in spring a wall time inside the skipped hour is no instant at all,
so it is no boundary and the bucket before it simply lasts longer. Enumerating the boundary
instants of every local date in range and binary-searching each bar start among them gives
exactly that, with no special cases per zone.

A bucket row carries ``end``: the later of its next boundary and the end of its last source
bar. A bucket is visible at ``dt`` iff ``end <= dt``, so a bucket that is still forming (a
later source bar could still join it) is never visible, and any bucket that is visible is
already complete: aggregating once, ahead of time, gives the same answer as aggregating at
request time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from lazybars._time import DAY_NS
from lazybars.errors import InvalidRequest
from lazybars.timestep import Timestep

# The column carrying each bucket's end through a lazy plan; dropped before bars are returned.
BUCKET_END = "__lazybars_bucket_end"
_BUCKET = "__lazybars_bucket"
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
    if starts.size == 0:
        return starts.copy(), starts.copy()
    boundaries = _boundaries(int(starts.min()), int(starts.max()), target, local)
    slot = np.searchsorted(boundaries, starts, side="right") - 1
    return boundaries[slot], boundaries[slot + 1]


def bar_ends(starts: np.ndarray, timestep: Timestep, local: str) -> np.ndarray:
    """Each bar's end (int64 ns): start + timestep, or for day bars the next midnight in
    ``local``, which for stored day bars is the zone they were written in.

    This is the one definition of a bar's end on the fast path: the cache's bar ends, a
    query's ``as_of`` and the buckets' ends all come from it.
    """
    if not timestep.is_day:
        return starts + timestep.nanos
    return bucket_bounds(starts, timestep, local)[1]


def local_day(ns: int, local: str) -> tuple[int, int]:
    """The first instant of the local date holding ``ns``, and that of the next date."""
    start, end = bucket_bounds(np.array([ns], dtype=np.int64), _DAY, local)
    return int(start[0]), int(end[0])


def bar_ends_expr(column: pl.Expr, timestep: Timestep, local: str) -> pl.Expr:
    """:func:`bar_ends` of a datetime column, as an Int64 expression (ns since the epoch)."""
    if not timestep.is_day:
        return column.dt.epoch("ns") + timestep.nanos
    return column.map_batches(
        lambda s: pl.Series(bar_ends(s.dt.epoch("ns").to_numpy(), timestep, local)),
        return_dtype=pl.Int64,
    )


def regular_hours(column: pl.Expr, local: str) -> pl.Expr:
    """True where the bar's local start time lies in the regular session [09:30, 16:00)."""
    wall = column.dt.convert_time_zone(local)
    minute = wall.dt.hour().cast(pl.Int32) * 60 + wall.dt.minute().cast(pl.Int32)
    return (minute >= _REGULAR_OPEN) & (minute < _REGULAR_CLOSE)


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
    schema = lf.collect_schema()
    columns = [name for name in _AGGREGATIONS if name in schema]
    front = ["datetime", "symbol"] if by_symbol else ["datetime"]
    bounds = pl.col("datetime").map_batches(
        lambda s: _bounds_struct(s, target, source, local, source_zone or local),
        # One call over the whole column: boundaries are enumerated once per load.
        return_dtype=pl.Struct({_BUCKET: pl.Int64, BUCKET_END: pl.Int64}),
    )
    # Extra columns go first: they are not aggregated, and a caller's column could share a
    # name with the bucket columns.
    out = (
        lf.select(*front, *columns)
        .with_columns(bounds.alias(_BUCKET))
        .unnest(_BUCKET)
        .group_by([*front[1:], _BUCKET], maintain_order=True)
        .agg(*(_AGGREGATIONS[name] for name in columns), pl.col(BUCKET_END).max())
        .with_columns(
            pl.col(_BUCKET, BUCKET_END).cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(local)
        )
        .rename({_BUCKET: "datetime"})
    )
    return out.select(*front, *columns, BUCKET_END)


def _bounds_struct(
    s: pl.Series, target: Timestep, source: Timestep, local: str, source_zone: str
) -> pl.Series:
    starts = s.dt.epoch("ns").to_numpy()
    bucket, boundary_end = bucket_bounds(starts, target, local)
    # A source bar may outlast its bucket (1h bars into 90m buckets, or a 25h day bar):
    # the bucket only completes when every bar in it has ended.
    end = np.maximum(boundary_end, bar_ends(starts, source, source_zone))
    return pl.DataFrame({_BUCKET: bucket, BUCKET_END: end}).to_struct(_BUCKET)


def _boundaries(first: int, last: int, target: Timestep, local: str) -> np.ndarray:
    """Every boundary instant (sorted int64 ns) from before ``first`` to after ``last``."""
    # Dates are taken from naive wall times: normalising an aware time would have to name
    # an instant for a midnight that may be skipped or repeated.
    lo = pd.Timestamp(first - DAY_NS, tz="UTC").tz_convert(local).tz_localize(None).normalize()
    hi = pd.Timestamp(last + 2 * DAY_NS, tz="UTC").tz_convert(local).tz_localize(None).normalize()
    days = pd.date_range(lo, hi, freq="D", unit="ns").asi8
    offsets = np.arange(0, 24 * 60, target.minutes, dtype=np.int64) * 60_000_000_000
    walls = pd.DatetimeIndex((days[:, None] + offsets[None, :]).ravel(), dtype="datetime64[ns]")
    instants = []
    # An ambiguous wall time is two instants, both boundaries; a nonexistent one is none.
    # Days are different: a day starts at the first instant of its date, so a repeated
    # midnight is one boundary (its first occurrence) and a skipped one still starts a day.
    skipped = "shift_forward" if target.is_day else "NaT"
    for first_occurrence in (True,) if target.is_day else (True, False):
        flags = np.full(len(walls), first_occurrence)
        localized = walls.tz_localize(local, ambiguous=flags, nonexistent=skipped)
        instants.append(localized.asi8[~localized.isna()])
    return np.unique(np.concatenate(instants))
