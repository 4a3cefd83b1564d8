"""Merging canonical bars from several parts (stored bars, new frames, spilled chunks).

A part is canonical bars (sorted, unique starts) with its row count and first/last start
known up front, so that a merge is planned from those bounds alone: parts that do not
overlap are concatenated in time order (a streaming concat, bounded memory), and only
the rows inside an overlap are ever collected, to check them.

The rule for an overlap: bars with the same start must be identical in every column (the
union keeps one copy); a bar that differs is a ``SchemaError`` naming it. Within one
source, two bars with the same start are duplicates and always an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import polars as pl

from lazybars.errors import SchemaError

__all__ = ["Deferred", "Part", "after", "merge"]

_NEW = "__new"


@dataclass(frozen=True)
class Part:
    """Canonical bars with their bounds, and where they came from (for messages).

    ``sources`` names the inputs the bars came from; ``bars`` is an in-memory frame or a
    lazy scan.
    """

    bars: pl.DataFrame | pl.LazyFrame
    rows: int
    first: int
    last: int
    sources: tuple[str, ...]

    @classmethod
    def of(cls, bars: pl.DataFrame, source: str) -> Part:
        """A part holding the in-memory canonical ``bars`` (at least one row)."""
        # The two ends in numpy: a polars expression (dt.epoch) is a query of its own.
        ends = bars["datetime"].to_numpy()[[0, -1]].astype("datetime64[ns]").view(np.int64)
        return cls(bars, bars.height, int(ends[0]), int(ends[1]), (source,))

    @property
    def lazy(self) -> pl.LazyFrame:
        return self.bars.lazy()

    @property
    def schema(self) -> pl.Schema:
        return self.bars.collect_schema()

    @property
    def label(self) -> str:
        return ", ".join(self.sources)


class Deferred(Part):
    """A part of the bars ``scan()`` makes, called when they are first needed: the stored
    bars as a write plans with them. An append after them needs only their bounds and
    schema, and their scan (a scan of each file) would cost more than the rest of its plan.
    (No merge rebuilds stored bars: ``dataclasses.replace`` cannot copy this part.)"""

    def __init__(
        self,
        scan: Callable[[], pl.LazyFrame],
        schema: pl.Schema,
        rows: int,
        first: int,
        last: int,
        sources: tuple[str, ...],
    ) -> None:
        fields = {"rows": rows, "first": first, "last": last, "sources": sources}
        for name, value in {**fields, "_scan": scan, "_schema": schema}.items():
            object.__setattr__(self, name, value)

    @cached_property
    def bars(self) -> pl.LazyFrame:  # type: ignore[override]
        return self._scan()

    @property
    def schema(self) -> pl.Schema:
        return self._schema


def merge(parts: Sequence[Part]) -> Part:
    """The union of ``parts`` as one part, in the zone and column order of the first.

    Raises ``SchemaError`` when the parts' columns differ or overlapping bars disagree.
    """
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    parts = [first, *(_conform(p, first) for p in parts[1:])]
    _check_chunks_of_one_source(parts)
    # Stable: on equal first starts the earlier part (the stored bars) leads.
    ordered = sorted(parts, key=lambda p: p.first)
    groups: list[Part] = []
    for part in ordered:
        if groups and part.first <= groups[-1].last:
            groups[-1] = _fold(groups[-1], part)
        else:
            groups.append(part)
    if len(groups) == 1:
        return groups[0]
    bars = pl.concat([g.lazy for g in groups], how="vertical")
    return Part(
        bars,
        sum(g.rows for g in groups),
        groups[0].first,
        max(g.last for g in groups),
        tuple(dict.fromkeys(s for g in groups for s in g.sources)),
    )


def after(stored: Part, parts: Sequence[Part]) -> Part | None:
    """The union of ``parts``, in ``stored``'s zone and column types, when every bar of it
    starts after the last stored bar (an append that needs no stored bar); else None.

    Raises ``SchemaError`` as :func:`merge` does for columns that differ.
    """
    if min(p.first for p in parts) <= stored.last:
        return None
    new = merge([_conform(p, stored) for p in parts])
    want = stored.schema["datetime"]
    if new.schema["datetime"] != want:  # another time unit: stored files hold one
        new = replace(new, bars=new.lazy.with_columns(pl.col("datetime").cast(want)))
    return new


def _conform(part: Part, like: Part) -> Part:
    """``part`` with ``like``'s zone, or a SchemaError if its columns differ."""
    want, have = like.schema, part.schema
    if list(want) != list(have):
        msg = (
            f"the columns differ: {part.label}: {list(have)}; {like.label}: {list(want)}; "
            "bars of one symbol and timestep need the same columns: drop or add columns "
            "(or replace the symbol instead of appending)"
        )
        raise SchemaError(msg)
    retyped = [
        f"{c} {have[c]} vs {want[c]}" for c in want if c != "datetime" and want[c] != have[c]
    ]
    if retyped:
        msg = (
            f"column types differ between {part.label} and {like.label} ({retyped}); "
            "cast them to one type first (or replace the symbol instead of appending)"
        )
        raise SchemaError(msg)
    zone = want["datetime"].time_zone
    if have["datetime"].time_zone == zone:
        return part
    bars = part.lazy.with_columns(pl.col("datetime").dt.convert_time_zone(zone))
    return replace(part, bars=bars)


def _fold(acc: Part, part: Part) -> Part:
    """Merge ``part`` into ``acc``, which it overlaps; only the overlap is collected."""
    lo, hi = part.first, min(acc.last, part.last)
    inside = pl.col("datetime").dt.epoch("ns").is_between(lo, hi)
    columns = [c for c in acc.schema if c != "datetime"]
    common = (
        acc.lazy.filter(inside)
        .join(part.lazy.filter(inside), on="datetime", how="inner", suffix=_NEW)
        .sort("datetime")
        .collect()
    )
    if common.height:
        _check_identical(common, columns, acc, part)
        keep = ~pl.col("datetime").is_in(common["datetime"].implode())
        added = part.lazy.filter(keep)
    else:
        added = part.lazy
    return Part(
        acc.lazy.merge_sorted(added, "datetime"),
        acc.rows + part.rows - common.height,
        acc.first,
        max(acc.last, part.last),
        tuple(dict.fromkeys((*acc.sources, *part.sources))),
    )


def _check_chunks_of_one_source(parts: Sequence[Part]) -> None:
    """Two chunks of one source (a big input spilled in pieces) that share a bar start hold
    a duplicate bar: an error, even where the two copies are identical."""
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            if a.sources != b.sources or b.first > a.last or a.first > b.last:
                continue
            lo, hi = max(a.first, b.first), min(a.last, b.last)
            inside = pl.col("datetime").dt.epoch("ns").is_between(lo, hi)
            starts = a.lazy.filter(inside).select("datetime")
            common = starts.join(b.lazy.filter(inside).select("datetime"), on="datetime")
            when = common.sort("datetime").collect()["datetime"]
            if when.len():
                msg = (
                    f"{a.label} has {when.len()} duplicate bars (the first starts at "
                    f"{when[0]}); each bar needs a unique start time: drop the duplicates"
                )
                raise SchemaError(msg)


def _check_identical(common: pl.DataFrame, columns: list[str], acc: Part, part: Part) -> None:
    when = common["datetime"]
    same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(c + _NEW)) for c in columns)
    differs = common.select(same.not_()).to_series()
    if not differs.any():
        return
    i = int(differs.arg_true()[0])
    row = common.row(i, named=True)
    diffs = ", ".join(
        f"{c} {row[c]!r} vs {row[c + _NEW]!r}"
        for c in columns
        if not (row[c] == row[c + _NEW] or (row[c] is None and row[c + _NEW] is None))
    )
    msg = (
        f"{int(differs.sum())} of {common.height} overlapping bars differ; the first is the bar "
        f"starting at {when[i]} ({acc.label} vs {part.label}: {diffs}); bars that overlap "
        "stored or other bars must be identical: drop the overlap from the new data, or "
        "replace the symbol instead of appending"
    )
    raise SchemaError(msg)
