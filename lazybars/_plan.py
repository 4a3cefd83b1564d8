"""The steps a Query is made of, each compiling itself onto a polars LazyFrame.

Steps are frozen dataclasses so that equal plans compare and hash equal. Instants are held
as int64 nanoseconds and turned into literals of the data's own dtype, so that polars can
push the window predicates down into the parquet scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import polars as pl

from lazybars._aggregate import (
    BUCKET_END,
    aggregate_lazy,
    aggregated_columns,
    bar_ends_expr,
    coarser,
)
from lazybars._time import NS_MAX, NS_MIN, local_ns, ns_literal, timestamp
from lazybars.errors import InvalidRequest
from lazybars.timestep import Timestep

_DATETIME = pl.col("datetime")
_ROW = pl.int_range(pl.len())


@dataclass(frozen=True, slots=True)
class Context:
    """What a step needs to know about the frame it is applied to."""

    zone: str  # the zone of the data's datetime column
    local: str  # the query's local zone (sessions, bucket boundaries, aggregated day ends)
    # Each symbol's zone of writing, where its stored day bars end; the local zone once
    # a resample has made the bars.
    written: dict[str, str]
    timestep: Timestep  # the bars' timestep before this step
    grouped: bool  # several symbols, long format
    aggregated: bool  # a resample ran before: the frame carries BUCKET_END
    clock: int | None  # the earliest as_of so far: it also bounds later resamples


class Step(Protocol):
    def apply(self, lf: pl.LazyFrame, ctx: Context) -> pl.LazyFrame: ...

    def describe(self, local: str) -> tuple[str, str]: ...

    def timestep_after(self, timestep: Timestep) -> Timestep: ...

    def columns_after(self, names: tuple[str, ...], grouped: bool) -> tuple[str, ...]:
        """The column names ``apply`` leaves of ``names`` (its plumbing left out)."""
        ...

    @property
    def aggregates(self) -> bool: ...


class _SameTimestep:
    __slots__ = ()
    aggregates = False

    def timestep_after(self, timestep: Timestep) -> Timestep:
        return timestep

    def columns_after(self, names: tuple[str, ...], grouped: bool) -> tuple[str, ...]:
        return names


@dataclass(frozen=True, slots=True)
class _Between(_SameTimestep):
    start: int
    end: int

    def apply(self, lf: pl.LazyFrame, ctx: Context) -> pl.LazyFrame:
        return window(lf, self.start, self.end, ctx.zone)

    def describe(self, local: str) -> tuple[str, str]:
        return "between", f"[{timestamp(self.start, local)}, {timestamp(self.end, local)})"


def window(lf: pl.LazyFrame, start: int, end: int, zone: str | None) -> pl.LazyFrame:
    """Bars starting in ``[start, end)`` (int64 ns), as a predicate the scan can push down."""
    return lf.filter((ns_literal(start, zone) <= _DATETIME) & (ns_literal(end, zone) > _DATETIME))


@dataclass(frozen=True, slots=True)
class _AsOf(_SameTimestep):
    at: int

    def apply(self, lf: pl.LazyFrame, ctx: Context) -> pl.LazyFrame:
        if ctx.aggregated:
            return lf.filter(pl.col(BUCKET_END) <= ns_literal(self.at, ctx.zone))
        if ctx.timestep.is_day:
            return lf.filter(_day_ends(ctx) <= self.at)
        # Written against the start so that the predicate reaches the parquet statistics.
        last_start = ns_literal(self.at - ctx.timestep.nanos, ctx.zone)
        return lf.filter(_DATETIME <= last_start)

    def describe(self, local: str) -> tuple[str, str]:
        return "as_of", f"bars ended by {timestamp(self.at, local)}"


@dataclass(frozen=True, slots=True)
class _Tail(_SameTimestep):
    n: int

    def apply(self, lf: pl.LazyFrame, ctx: Context) -> pl.LazyFrame:
        if ctx.grouped:
            # Signed: a count is unsigned, and fewer bars than n must not wrap around.
            rows = pl.len().over("symbol").cast(pl.Int64)
            return lf.filter(_ROW.over("symbol") >= rows - self.n)
        return lf.tail(self.n)

    def describe(self, local: str) -> tuple[str, str]:
        return "tail", str(self.n)


@dataclass(frozen=True, slots=True)
class _Head(_SameTimestep):
    n: int

    def apply(self, lf: pl.LazyFrame, ctx: Context) -> pl.LazyFrame:
        if ctx.grouped:
            return lf.filter(_ROW.over("symbol") < self.n)
        return lf.head(self.n)

    def describe(self, local: str) -> tuple[str, str]:
        return "head", str(self.n)


@dataclass(frozen=True, slots=True)
class _Select(_SameTimestep):
    columns: tuple[str, ...]

    def apply(self, lf: pl.LazyFrame, ctx: Context) -> pl.LazyFrame:
        keys = ["datetime", "symbol"] if ctx.grouped else ["datetime"]
        if ctx.aggregated:
            keys.append(BUCKET_END)
        return lf.select(*keys, *(c for c in self.columns if c not in keys))

    def columns_after(self, names: tuple[str, ...], grouped: bool) -> tuple[str, ...]:
        keys = ("datetime", "symbol") if grouped else ("datetime",)
        return (*keys, *(c for c in self.columns if c not in keys))

    def describe(self, local: str) -> tuple[str, str]:
        return "select", ", ".join(self.columns)


@dataclass(frozen=True, slots=True)
class _Resample:
    timestep: Timestep
    after_hours: bool
    aggregates = True

    def apply(self, lf: pl.LazyFrame, ctx: Context) -> pl.LazyFrame:
        # Symbols written in different zones have different day bar ends: each zone's
        # symbols are aggregated with their own (one part in the usual case of one zone).
        zones = _by_zone(ctx)
        parts = [
            aggregate_lazy(
                lf if len(zones) == 1 else lf.filter(pl.col("symbol").is_in(symbols)),
                self.timestep,
                local=ctx.local,
                source=ctx.timestep,
                after_hours=self.after_hours,
                by_symbol=ctx.grouped,
                source_zone=zone,
            )
            for zone, symbols in zones.items()
        ]
        out = parts[0] if len(parts) == 1 else pl.concat(parts)
        # An earlier as_of kept the bars ended by its clock; the bucket still forming at
        # that clock must go too, or the answer would depend on where as_of stands.
        if ctx.clock is not None:
            out = out.filter(pl.col(BUCKET_END) <= ns_literal(ctx.clock, ctx.local))
        return out

    def describe(self, local: str) -> tuple[str, str]:
        hours = "" if self.after_hours else ", regular hours only"
        return "resample", f"{self.timestep}{hours}"

    def timestep_after(self, timestep: Timestep) -> Timestep:
        return self.timestep

    def columns_after(self, names: tuple[str, ...], grouped: bool) -> tuple[str, ...]:
        keys = ("datetime", "symbol") if grouped else ("datetime",)
        return (*keys, *aggregated_columns(names))


def _by_zone(ctx: Context) -> dict[str, list[str]]:
    """The symbols of the frame grouped by the zone they were written in."""
    zones: dict[str, list[str]] = {}
    for symbol, zone in ctx.written.items():
        zones.setdefault(zone, []).append(symbol)
    return zones


def _day_ends(ctx: Context) -> pl.Expr:
    """Each stored day bar's end (int64 ns): the next midnight where it was written."""
    zones = _by_zone(ctx)
    if len(zones) == 1:
        return bar_ends_expr(_DATETIME, ctx.timestep, next(iter(zones)))
    ends: Any = None
    for zone, symbols in zones.items():
        ours, end = pl.col("symbol").is_in(symbols), bar_ends_expr(_DATETIME, ctx.timestep, zone)
        ends = pl.when(ours).then(end) if ends is None else ends.when(ours).then(end)
    return ends


def leading_windows(steps: tuple[Step, ...]) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """The window steps that can run on each stored file first, and the steps left.

    A window (between, as_of) keeps or drops each bar by its own start, so it commutes
    with the other windows and with select; not with tail, head or resample, which end
    the leading part.
    """
    cut = next(
        (i for i, s in enumerate(steps) if not isinstance(s, _Between | _AsOf | _Select)),
        len(steps),
    )
    windows = tuple(s for s in steps[:cut] if not isinstance(s, _Select))
    rest = tuple(s for s in steps[:cut] if isinstance(s, _Select)) + steps[cut:]
    return windows, rest


def stored_columns(steps: tuple[Step, ...]) -> frozenset[str] | None:
    """The stored columns besides ``datetime`` that the plan reads (None: all of them):
    those of its first select, unless a resample comes before it."""
    for step in steps:
        if isinstance(step, _Select):
            return frozenset(step.columns) - {"datetime", "symbol"}
        if step.aggregates:
            return None
    return None


def start_range(windows: tuple[Step, ...], timestep: Timestep) -> tuple[int, int, bool]:
    """Bounds ``[lo, hi)`` (int64 ns) on the starts of the stored bars that ``windows``
    keep, and whether keeping exactly the bars starting there is the same as running them.

    A stored day bar ends at the next midnight of its own zone, so an as_of on day bars
    is only bounded here (its bars start before the clock) and must still run.
    """
    lo, hi, exact = NS_MIN, NS_MAX, True
    for step in windows:
        if isinstance(step, _Between):
            lo, hi = max(lo, step.start), min(hi, step.end)
        elif isinstance(step, _AsOf):
            exact = exact and not timestep.is_day
            last = step.at if timestep.is_day else step.at - timestep.nanos + 1
            hi = min(hi, max(last, NS_MIN))
    return lo, max(lo, hi), exact


def between_step(start: Any, end: Any, local: str) -> Step:
    lo = local_ns(start, local, argument="start")
    hi = local_ns(end, local, argument="end")
    if hi < lo:
        msg = f"between(start, end): end {end!r} is before start {start!r}; swap them"
        raise InvalidRequest(msg)
    return _Between(lo, hi)


def as_of_step(dt: Any, local: str) -> Step:
    return _AsOf(local_ns(dt, local, argument="dt"))


def _count(n: Any, method: str) -> int:
    if type(n) is not int or n < 0:
        msg = f"{method}(n) needs an int >= 0, got {n!r}"
        raise InvalidRequest(msg)
    return n


def tail_step(n: Any) -> Step:
    return _Tail(_count(n, "tail"))


def head_step(n: Any) -> Step:
    return _Head(_count(n, "head"))


def select_step(columns: tuple[Any, ...], names: tuple[str, ...]) -> Step:
    if not columns:
        msg = "select() needs at least one column name, e.g. select('close')"
        raise InvalidRequest(msg)
    unknown = [c for c in columns if c not in names]
    if unknown:
        msg = f"select(): unknown column(s) {unknown}; available: {list(names)}"
        raise InvalidRequest(msg)
    return _Select(tuple(columns))


def resample_step(timestep: Any, after_hours: Any, source: Timestep) -> Step:
    target = coarser(source, timestep, "resample")
    if not isinstance(after_hours, bool):
        msg = f"after_hours must be True or False, got {after_hours!r}"
        raise InvalidRequest(msg)
    return _Resample(target, after_hours)
