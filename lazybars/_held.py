"""The bars a store holds in memory for its queries, so that a warm query reads no parquet.

Per (symbol, stored timestep) it holds windows: the materialised stored bars starting in
``[lo, hi)`` (int64 ns), in the zone they were written in, with their sorted int64 starts.
A query whose window lies inside a held one is answered by a binary search and a zero-copy
slice; any other is scanned once (with the window pushed into the scan) and held, merged
with the windows it overlaps or touches.

Held bars are keyed by what the backend says about the stored bars (its ``describe``
tuple, which changes whenever they do), asked again on every lookup: bars another process
rewrote are never answered from memory. This store's own writes drop the key at once, and
a load that raced with such a write is not kept.

Memory is bounded by ``max_bytes`` (frames and starts; None: unbounded): the least recently
used windows go first. A window larger than the whole budget is used once and not held. A
slice a caller still holds keeps its window's buffers alive, outside the budget.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from lazybars._backend import Backend
from lazybars._time import NS_MAX, NS_MIN, ns_literal
from lazybars.timestep import Timestep

__all__ = ["DEFAULT_HELD_BYTES", "Held", "HeldInfo"]

DEFAULT_HELD_BYTES = 512 * 2**20
_DATETIME = pl.col("datetime")

Key = tuple[str, Timestep]
Window = tuple[str, Timestep, int, int]  # symbol, stored timestep, [lo, hi) of bar starts
Columns = frozenset[str] | None  # stored columns needed besides datetime (None: all)


@dataclass(frozen=True, slots=True)
class HeldInfo:
    """What a store holds for its queries: ``windows`` held, their ``bytes``, the budget."""

    windows: int
    bytes: int
    max_bytes: int | None


class _Segment:
    """One held window: every stored bar starting in ``[lo, hi)``, with every stored column
    (``whole``) or the ones a query needed."""

    __slots__ = ("columns", "frame", "hi", "lo", "nbytes", "starts", "used", "whole")

    def __init__(self, frame: pl.DataFrame, lo: int, hi: int, columns: Columns) -> None:
        self.frame = frame
        # The columns asked for count as held even where the symbol has none of them.
        self.columns = frozenset(frame.columns).union(columns or ())
        self.whole = columns is None
        self.starts = frame["datetime"].dt.epoch("ns").to_numpy()
        self.lo = lo
        self.hi = hi
        self.nbytes = int(frame.estimated_size()) + self.starts.nbytes
        self.used = 0

    def serves(self, lo: int, hi: int, columns: Columns) -> bool:
        has = self.whole or (columns is not None and self.columns.issuperset(columns))
        return has and self.lo <= lo and hi <= self.hi

    def rows(self, lo: int, hi: int) -> pl.DataFrame:
        """The bars starting in ``[lo, hi)``: a zero-copy slice."""
        a, b = np.searchsorted(self.starts, (lo, hi))
        return self.frame.slice(int(a), int(b - a))


@dataclass(slots=True)
class _Entry:
    description: Hashable  # the backend's describe() of the bars held
    segments: list[_Segment]


class Held:
    """Windows of stored bars held in memory for one store's queries (thread-safe)."""

    def __init__(self, backend: Backend, max_bytes: int | None) -> None:
        self._backend = backend
        self._max_bytes = max_bytes
        self._entries: dict[Key, _Entry] = {}
        # A key's generation moves on with every write of this store: a load that began
        # before a write may have read the old bars, and is not held.
        self._generations: dict[Key, int] = {}
        self._bytes = 0
        self._clock = itertools.count(1)
        # Guards the tables and the byte count; never held while reading bars.
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A copy (another process) starts empty: held bars and a lock do not travel.
        return {"backend": self._backend, "max_bytes": self._max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["backend"], state["max_bytes"])  # type: ignore[misc]

    def info(self) -> HeldInfo:
        with self._lock:
            count = sum(len(e.segments) for e in self._entries.values())
            return HeldInfo(count, self._bytes, self._max_bytes)

    def frames(
        self, windows: Sequence[Window], columns: Columns, *, load: bool
    ) -> list[tuple[pl.DataFrame | None, bool]]:
        """Per window, its stored bars and whether they came from memory.

        ``columns``: the stored columns the query needs besides ``datetime`` (None:
        all). A held window answers with a zero-copy slice. With ``load``, the others are
        read (one parallel collect, each window pushed into its scan) and held; without,
        they come back as None.
        """
        found: list[tuple[pl.DataFrame | None, bool]] = []
        missing = []
        for symbol, timestep, start, end in windows:
            key = (symbol, timestep)
            with self._lock:
                generation = self._generations.get(key, 0)
            description = self._backend.describe(symbol, timestep)
            lo, hi = _clip(start, end, description)
            frame = self._find(key, description, lo, hi, columns)
            found.append((frame, frame is not None))
            if frame is None and load:
                missing.append((len(found) - 1, key, generation, lo, hi))
        if missing:

            def plan(scans: list[pl.LazyFrame]) -> list[pl.LazyFrame]:
                return [
                    _scan(lf, lo, hi, columns)
                    for lf, (_, _, _, lo, hi) in zip(scans, missing, strict=True)
                ]

            # The bars are held under the description they were read at: a write that
            # landed since the window was clipped is seen at the next lookup.
            loaded, described = self._backend.load([m[1] for m in missing], plan)
            for frame, description, (i, key, generation, lo, hi) in zip(
                loaded, described, missing, strict=True
            ):
                segment = _Segment(frame, lo, hi, columns)
                self._hold(key, generation, description, segment)
                found[i] = (frame, False)
        return found

    def drop(self, symbol: str, timestep: Timestep) -> None:
        """Forget the held bars of ``symbol`` at ``timestep``: this store rewrote them."""
        key = (symbol, timestep)
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            self._remove(key)

    def _find(
        self, key: Key, description: Hashable, lo: int, hi: int, columns: Columns
    ) -> pl.DataFrame | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.description != description:  # rewritten since (by anyone)
                self._remove(key)
                return None
            for segment in entry.segments:
                if segment.serves(lo, hi, columns):
                    segment.used = next(self._clock)
                    return segment.rows(lo, hi)
        return None

    def _hold(self, key: Key, generation: int, description: Hashable, segment: _Segment) -> None:
        with self._lock:
            if self._generations.get(key, 0) != generation:
                return
            entry = self._entries.get(key)
            if entry is not None and entry.description != description:
                self._remove(key)
                entry = None
            held = [] if entry is None else entry.segments
            # Windows of the same columns that it overlaps or touches become one; any
            # window it serves entirely goes.
            touching = [
                s
                for s in held
                if s.columns == segment.columns and s.lo <= segment.hi and segment.lo <= s.hi
            ]
            merged = _merge(segment, touching) if touching else segment
            if not self._fits(merged.nbytes):
                if merged is segment or not self._fits(segment.nbytes):
                    return
                merged = segment
            served = [s for s in held if merged.serves(s.lo, s.hi, None if s.whole else s.columns)]
            if entry is None:
                entry = self._entries[key] = _Entry(description, [])
            for old in served:
                entry.segments.remove(old)
                self._bytes -= old.nbytes
            merged.used = next(self._clock)
            entry.segments.append(merged)
            self._bytes += merged.nbytes
            self._evict(keep=merged)

    def _fits(self, nbytes: int) -> bool:
        return self._max_bytes is None or nbytes <= self._max_bytes

    def _evict(self, keep: _Segment) -> None:
        """Drop the least recently used windows (never ``keep``) until the budget holds."""
        if self._max_bytes is None or self._bytes <= self._max_bytes:
            return
        held = [(s.used, key, s) for key, e in self._entries.items() for s in e.segments]
        for _, key, segment in sorted(held, key=lambda item: item[0]):
            if self._bytes <= self._max_bytes:
                break
            if segment is keep:
                continue
            entry = self._entries[key]
            entry.segments.remove(segment)
            self._bytes -= segment.nbytes
            if not entry.segments:
                del self._entries[key]

    def _remove(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= sum(s.nbytes for s in entry.segments)


def _clip(lo: int, hi: int, description: Any) -> tuple[int, int]:
    """``[lo, hi)`` with a side that reaches past the stored bars opened to infinity, so
    that one window of the whole history serves every window inside it."""
    return (NS_MIN if lo <= description.first else lo), (NS_MAX if hi > description.last else hi)


def _scan(lf: pl.LazyFrame, lo: int, hi: int, columns: Columns) -> pl.LazyFrame:
    schema = lf.collect_schema()
    zone = schema["datetime"].time_zone
    if columns is not None:
        lf = lf.select(c for c in schema.names() if c == "datetime" or c in columns)
    if lo > NS_MIN:
        lf = lf.filter(_DATETIME >= ns_literal(lo, zone))
    if hi < NS_MAX:
        lf = lf.filter(_DATETIME < ns_literal(hi, zone))
    return lf


def _merge(segment: _Segment, touching: list[_Segment]) -> _Segment:
    """One window of ``segment`` and the windows it overlaps or touches, copied into fresh
    buffers (a slice would keep the old windows' buffers alive, unaccounted)."""
    first = min(touching, key=lambda s: s.lo)
    last = max(touching, key=lambda s: s.hi)
    parts = [segment.frame]
    if first.lo < segment.lo:
        parts.insert(0, first.rows(first.lo, segment.lo))
    if last.hi > segment.hi:
        parts.append(last.rows(segment.hi, last.hi))
    lo, hi = min(first.lo, segment.lo), max(last.hi, segment.hi)
    whole = segment.whole or any(s.whole for s in touching)
    return _Segment(pl.concat(parts).rechunk(), lo, hi, None if whole else segment.columns)
