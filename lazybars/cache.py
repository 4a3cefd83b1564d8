"""The per-asset cache and the fast executor for windowed history requests.

For each (symbol, timestep, after_hours) the cache holds a :class:`Slab`: the bars loaded
once (scanned with predicate and projection pushdown, materialised as one contiguous polars
frame), the int64 end instant of every bar (sorted, so "visible at dt" is one binary
search), and lazily the frame's pandas mirror. A request is then a binary search and a
zero-copy slice; polars' engine runs once per load, never per request.

Coarser timesteps and regular-hours views are derived slabs: computed on first use from the
native slab already in the cache (loaded, or widened, first if it does not cover the range),
so an asset's file is scanned once whatever timesteps are asked for. The loaded range starts
and ends at local midnights so that every bucket of a derived slab is whole. Every frame is
converted to the local zone once, when it is built (metadata only), never per request.

Loads of different entries run in parallel: each entry has its own lock, held while it
builds, and the cache-wide lock only guards the entry table, the counters and the budget.
A derived build takes its native entry's lock inside its own; never the other way round.

A load is bounded by the DataSource's start/end/lookback; those are hints. When a request
reaches past the loaded range the slab is reloaded wider, so answers never depend on them.

Memory is bounded by ``max_bytes``: frames, aggregated frames and pandas mirrors all count,
and when they exceed the budget the least recently used slabs are evicted (an evicted
entry reloads on its next request, with the same answers). A slab still referenced by a
caller's ``Bars`` lives on until that ``Bars`` goes, outside the budget.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from lazybars._aggregate import BUCKET_END, aggregate_lazy, bar_ends, local_day, regular_hours
from lazybars._plan import window
from lazybars._time import DAY_NS, NS_MAX, NS_MIN, timestamp
from lazybars._windows import Windows
from lazybars.bars import frame_to_pandas
from lazybars.errors import StaleDataWarning, warn_caller
from lazybars.store import BarStore
from lazybars.timestep import Timestep

__all__ = ["AssetCache", "CacheInfo", "Entry", "Slab"]


class Slab:
    """One immutable load of bars: ``frame``, the ``ends`` of its bars, and its coverage.

    ``lo``/``hi`` bound the bar starts loaded (``lo <= start < hi``); ``complete_lo`` and
    ``complete_hi`` say whether nothing stored lies beyond them. A slab that holds the end
    of the stored bars (``complete_hi``) has no bar starting after them, so its ``hi`` is
    where its data turns stale instead: the last bar's end plus the DataSource's lookback.
    The first request past it leaves the fast path to warn, and lifts ``hi`` to the end
    of time.
    """

    __slots__ = (
        "_cursor",
        "_index",
        "_lock",
        "_on_mirror",
        "_pandas",
        "_windows",
        "closes",
        "complete_hi",
        "complete_lo",
        "ends",
        "frame",
        "hi",
        "lo",
        "n",
        "nbytes",
        "pandas_bytes",
    )

    def __init__(
        self,
        frame: pl.DataFrame,
        ends: np.ndarray,
        lo: int,
        hi: int,
        complete_lo: bool,
        complete_hi: bool,
        on_mirror: Callable[[Slab], None] | None = None,
    ) -> None:
        # Not rechunked: a scan yields a chunk per row group, and slices work across chunks
        # at no measurable cost per request, while a copy would add to every cold start.
        self.frame = frame
        self.ends = ends
        self.nbytes = int(frame.estimated_size()) + ends.nbytes
        self.pandas_bytes = 0
        self._on_mirror = on_mirror
        # Item access on a memoryview returns Python scalars in ~30 ns, no numpy boxing.
        self._index = memoryview(ends)
        self.closes = memoryview(np.ascontiguousarray(frame["close"].to_numpy()))
        self._cursor = 0
        self.n = frame.height
        self.lo = lo
        self.hi = hi
        self.complete_lo = complete_lo
        self.complete_hi = complete_hi
        self._pandas: pd.DataFrame | None = None
        self._windows: Windows | None = None
        self._lock = threading.Lock()

    def count(self, now: int) -> int:
        """How many bars are visible at ``now``: the number of ends <= ``now``."""
        # A backtest clock moves forward a bar at a time, so the previous answer (a hint,
        # always verified; threads may race on it harmlessly) is usually right or one short.
        ends, k, n = self._index, self._cursor, self.n
        if k < n and ends[k] <= now:
            k += 1
            if k < n and ends[k] <= now:
                k = int(self.ends.searchsorted(now, "right"))
        elif k and ends[k - 1] > now:
            k = int(self.ends.searchsorted(now, "right"))
        self._cursor = k
        return k

    def pandas(self) -> pd.DataFrame:
        """The whole frame as pandas, built on first use and shared by every slice of it."""
        if self._pandas is None:
            with self._lock:
                if self._pandas is None:
                    mirror = frame_to_pandas(self.frame)
                    # Not memory_usage(index=True): it builds the index's hash table, which
                    # every later .iloc view then has to slice too (about 2.5 us each).
                    columns = mirror.memory_usage(index=False).sum()
                    self.pandas_bytes = int(columns) + mirror.index.nbytes
                    # Taken apart once here, so that a window costs no pandas indexing.
                    self._windows = Windows(mirror)
                    self._pandas = mirror
            if self._on_mirror is not None:
                self._on_mirror(self)
        return self._pandas

    def pandas_rows(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``[start, stop)`` of the pandas mirror, for a caller to keep and change
        (isolated from the mirror and from every other window: see :class:`Windows`)."""
        if self._windows is None:
            self.pandas()
        return self._windows.rows(start, stop)


# An evicted entry's slab: it covers nothing (hi is the smallest instant), so every request
# leaves the fast path, and the slow path reloads.
_EVICTED = Slab(
    pl.DataFrame({"close": []}, schema={"close": pl.Float64}),
    np.empty(0, np.int64),
    NS_MIN,
    NS_MIN,
    False,
    False,
)


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """A snapshot of a DataSource's cache.

    ``hits`` are requests answered from a loaded slab; ``misses`` are requests that had to
    load (first use, reload after eviction, or widening past the loaded range). Bytes are
    counted separately for native frames, aggregated (or regular-hours) frames and pandas
    mirrors; ``max_bytes`` is the budget (None: unbounded).
    """

    hits: int
    misses: int
    evictions: int
    entries: int
    native_bytes: int
    aggregated_bytes: int
    pandas_bytes: int
    max_bytes: int | None

    @property
    def total_bytes(self) -> int:
        """Everything the cache holds: frames, aggregated frames and pandas mirrors."""
        return self.native_bytes + self.aggregated_bytes + self.pandas_bytes


@dataclass(slots=True)
class Entry:
    """The current slab of one (symbol, timestep, after_hours); reloads replace ``slab``."""

    symbol: str
    timestep: Timestep
    native: Timestep
    after_hours: bool
    label: str
    slab: Slab
    used: int = 0  # the sequence number of the last request it served (for LRU)
    # The zone the stored bars were written in (where stored day bars end), read from the
    # scan's schema when the bars are first loaded.
    written: str | None = None
    # Held while this entry builds a slab, so that one load serves every waiting thread.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def derived(self) -> bool:
        """True for aggregated or regular-hours frames (computed from the native bars)."""
        return self.timestep != self.native or not self.after_hours


class AssetCache:
    """Slabs per asset for one DataSource: loads, derives and widens them."""

    def __init__(
        self, store: BarStore, local: str, lo: int, hi: int, max_bytes: int | None, stale: int
    ) -> None:
        self._store = store
        self._local = local
        self._lo = lo
        self._hi = hi
        self._max_bytes = max_bytes
        self._stale = stale  # ns past an asset's last bar after which a clock is warned of
        self._warned: set[str] = set()  # the symbols warned of
        self._entries: dict[tuple[str, Timestep, bool], Entry] = {}
        # Guards the entry table, the counters and the budget; never held while loading.
        self._lock = threading.Lock()
        # next() on an itertools.count is atomic under the GIL: request numbers stay exact
        # with many threads, and they double as LRU recency.
        self._requests = itertools.count(1)
        self._misses = 0
        self._evictions = 0

    def entry(self, symbol: str, timestep: Timestep | None, after_hours: bool) -> Entry:
        """The entry serving ``symbol`` at ``timestep`` (None: finest stored), loading it."""
        native = self._store.resolve(symbol, timestep)
        return self._entry(symbol, native if timestep is None else timestep, native, after_hours)

    def _entry(self, symbol: str, target: Timestep, native: Timestep, after_hours: bool) -> Entry:
        key = (symbol, target, after_hours)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = Entry(symbol, target, native, after_hours, str(target), _EVICTED)
                self._entries[key] = entry
            return entry

    def info(self) -> CacheInfo:
        """Counters and bytes, consistent with each other (taken under the cache's lock)."""
        with self._lock:
            # Every request stamps its entry with its sequence number: the largest stamp
            # is the number of requests so far.
            requests = max((e.used for e in self._entries.values()), default=0)
            live = [e for e in self._entries.values() if e.slab is not _EVICTED]
            return CacheInfo(
                hits=requests - self._misses,
                misses=self._misses,
                evictions=self._evictions,
                entries=len(live),
                native_bytes=sum(e.slab.nbytes for e in live if not e.derived),
                aggregated_bytes=sum(e.slab.nbytes for e in live if e.derived),
                pandas_bytes=sum(e.slab.pandas_bytes for e in live),
                max_bytes=self._max_bytes,
            )

    def window(self, entry: Entry, now: int, length: int, shift: int) -> tuple[Slab, int, int]:
        """Rows ``[start, stop)`` of the slab: the ``length`` bars ending ``shift`` bars
        before the last bar visible at ``now`` (a bar is visible iff its end <= now).
        """
        entry.used = next(self._requests)
        slab = entry.slab
        # Bars that could be visible at `now` start before it, so they are all loaded when
        # now <= hi (once the slab reaches the end of the file, hi is past it: see Slab).
        if now <= slab.hi:
            visible = slab.count(now)
            stop = visible - shift
            start = stop - length
            # With no loaded bar visible, bars before the slab may still be: only a complete
            # slab can then place the window.
            if start >= 0 and stop <= slab.n and (visible or slab.complete_lo):
                return slab, start, stop
        return self._window_edges(entry, now, length, shift)

    def _window_edges(
        self, entry: Entry, now: int, length: int, shift: int
    ) -> tuple[Slab, int, int]:
        # A window touching either end of the slab: widen the load until the answer is
        # inside it or the slab holds everything stored on that side, then clip.
        def place(slab: Slab) -> tuple[bool | None, tuple[Slab, int, int] | None]:
            visible = slab.count(now)
            stop = visible - shift
            if stop > slab.n and not slab.complete_hi:
                return True, None
            # The end is clipped to the bars that exist; the window keeps its length.
            stop = min(max(stop, 0), slab.n)
            if (stop < length or not visible) and not slab.complete_lo:
                return False, None
            return None, (slab, max(stop - length, 0), stop)

        return self._widen_until(entry, now, place)

    def last_close(self, entry: Entry, now: int) -> float | None:
        """The close of the last bar visible at ``now``, or None."""
        entry.used = next(self._requests)
        slab = entry.slab
        if now <= slab.hi:
            k = slab.count(now)
            if k:
                return slab.closes[k - 1]

        def last(slab: Slab) -> tuple[bool | None, float | None]:
            k = slab.count(now)
            if k or slab.complete_lo:
                return None, slab.closes[k - 1] if k else None
            return False, None

        return self._widen_until(entry, now, last)

    def _widen_until(self, entry: Entry, now: int, answer: Callable[[Slab], tuple]) -> Any:
        """Reload ``entry`` until ``answer(slab)`` gives ``(None, result)`` rather than a
        direction to widen in (True: forward, False: backward); count one miss if it loaded.
        """
        slab, loaded = entry.slab, False
        while True:
            if slab is _EVICTED or (now > slab.hi and not slab.complete_hi):
                forward = True
            else:
                if now > slab.hi:
                    self._past_the_data(entry.symbol, slab, now)
                forward, result = answer(slab)
                if forward is None:
                    if loaded:
                        self._count_miss()
                    return result
            slab, built = self._widen(entry, slab, forward=forward, now=now)
            loaded = loaded or built

    def _past_the_data(self, symbol: str, slab: Slab, now: int) -> None:
        """Warn (once per symbol) of a clock past the stale point of ``slab``, which holds
        the end of the stored bars, and keep this slab's later requests on the fast path."""
        with self._lock:
            warn = symbol not in self._warned
            self._warned.add(symbol)
        if warn:
            last = timestamp(slab.hi - self._stale, self._local)
            msg = (
                f"{symbol}: the clock {timestamp(now, self._local)} is past its last stored "
                f"bar (which ended {last}) by more than the lookback "
                f"({pd.Timedelta(self._stale, 'ns')}), so its answers are that old history; "
                "store newer bars or end the backtest with the data (warned once per asset)"
            )
            warn_caller(msg, StaleDataWarning)
        slab.hi = NS_MAX

    def _count_miss(self) -> None:
        with self._lock:
            self._misses += 1

    def _widen(self, entry: Entry, seen: Slab, *, forward: bool, now: int) -> tuple[Slab, bool]:
        """Load ``entry`` again, wider (or, when evicted or new, with the hints); the flag
        says whether this call loaded (False: another thread had already done it)."""
        with entry.lock:
            slab = entry.slab
            if slab is not seen:
                return slab, False
            lo, hi = slab.lo, slab.hi
            if slab is _EVICTED:
                lo, hi = self._lo, self._hi
            elif forward:
                # A clock past the DataSource's `end` is rare: load to the end of the file.
                hi = NS_MAX
            else:
                # Each step at least doubles the reach behind the clock: O(log) reloads.
                lo = min(now, lo) - max(2 * abs(now - lo), 7 * DAY_NS)
            slab = self._build(entry, lo, hi)
            self._install(entry, slab)
            return slab, True

    def _install(self, entry: Entry, slab: Slab) -> None:
        with self._lock:
            entry.slab = slab
            self._enforce_budget(keep=entry)

    def _mirror_built(self, slab: Slab) -> None:
        with self._lock:
            keep = next((e for e in self._entries.values() if e.slab is slab), None)
            if keep is not None:
                self._enforce_budget(keep=keep)

    def _enforce_budget(self, keep: Entry) -> None:
        """Evict least recently used slabs (never ``keep``) until the budget holds."""
        if self._max_bytes is None:
            return
        live = [e for e in self._entries.values() if e.slab is not _EVICTED]
        total = sum(e.slab.nbytes + e.slab.pandas_bytes for e in live)
        for victim in sorted(live, key=lambda e: e.used):
            if total <= self._max_bytes:
                break
            if victim is keep:
                continue
            total -= victim.slab.nbytes + victim.slab.pandas_bytes
            victim.slab = _EVICTED
            self._evictions += 1

    def _build(self, entry: Entry, lo: int, hi: int) -> Slab:
        """A slab of ``entry`` holding every bar starting in ``[lo, hi)``, widened to local
        midnights (or to the whole file on a side that reaches past it)."""
        first, last = self._store._bounds(entry.symbol, entry.native)
        lo = NS_MIN if lo <= first else local_day(lo, self._local)[0]
        if hi > last:
            hi = NS_MAX
        else:
            day_start, day_end = local_day(hi, self._local)
            hi = hi if hi == day_start else day_end
        complete_lo, complete_hi = lo <= first, hi > last
        if entry.derived:
            frame = self._native_rows(entry, lo, hi)
            if entry.timestep == entry.native:  # regular hours at the stored timestep
                frame = frame.filter(regular_hours(pl.col("datetime"), self._local))
                ends = bar_ends(_starts(frame), entry.native, entry.written or self._local)
            else:
                buckets = aggregate_lazy(
                    frame.lazy(),
                    entry.timestep,
                    local=self._local,
                    source=entry.native,
                    after_hours=entry.after_hours,
                    source_zone=entry.written,
                ).collect(engine="in-memory")  # a slab's rows: no streaming start-up cost
                # Buckets are built ahead of time, yet each is served only once its end (and
                # that of every bar in it) has passed, so a served bucket is always complete.
                ends = buckets[BUCKET_END].dt.epoch("ns").to_numpy()
                frame = buckets.drop(BUCKET_END)
        else:
            frame = self._scan(entry, lo, hi, first, last)
            ends = bar_ends(_starts(frame), entry.native, entry.written or self._local)
        until = hi
        if complete_hi:  # nothing is stored past the end: `hi` marks where the data is stale
            end = bar_ends(np.array([last]), entry.native, entry.written or self._local)
            until = min(int(end[0]) + self._stale, NS_MAX)
        return Slab(frame, ends, lo, until, complete_lo, complete_hi, self._mirror_built)

    def _scan(self, entry: Entry, lo: int, hi: int, first: int, last: int) -> pl.DataFrame:
        """The stored bars starting in ``[lo, hi)``, read once, in the local zone."""
        # The plan's own window step on the store's scan: no Query object, as the symbol
        # and timestep are already resolved (this is the cold-start path).
        begin, stop = max(lo, first), min(hi, last + 1)

        def plan(scans: list[pl.LazyFrame]) -> list[pl.LazyFrame]:
            (lf,) = scans
            entry.written = lf.collect_schema()["datetime"].time_zone
            if begin >= stop:  # hints that miss the stored range: nothing to load yet
                return [lf.head(0)]
            if lo > NS_MIN or hi < NS_MAX:
                return [window(lf, begin, stop, entry.written)]
            return [lf]

        # One zone out: a change of the column's zone is metadata, done once per load, and
        # after collect() so that it keeps the chunks the scan made (one per row group):
        # the engine would cut the frame into many more, and slicing cost grows with them.
        (frame,), _ = self._store._load(entry.symbol, entry.native, plan)
        return frame.with_columns(pl.col("datetime").dt.convert_time_zone(self._local))

    def _native_rows(self, entry: Entry, lo: int, hi: int) -> pl.DataFrame:
        """The native bars starting in ``[lo, hi)``, sliced from the native entry's slab,
        which is loaded (or widened) first when it does not hold them all; ``entry`` takes
        the zone they were written in."""
        native = self._entry(entry.symbol, entry.native, entry.native, True)
        native.used = entry.used  # deriving uses it: it is as recent as this request
        slab = native.slab
        if not _covers(slab, lo, hi):
            with native.lock:
                slab = native.slab
                if not _covers(slab, lo, hi):
                    if slab is not _EVICTED:
                        lo, hi = min(lo, slab.lo), max(hi, slab.hi)
                    slab = self._build(native, lo, hi)
                    self._install(native, slab)
        entry.written = native.written
        starts = _starts(slab.frame)
        begin, stop = np.searchsorted(starts, (lo, hi))
        return slab.frame.slice(int(begin), int(stop - begin))


def _starts(frame: pl.DataFrame) -> np.ndarray:
    return frame["datetime"].dt.epoch("ns").to_numpy()


def _covers(slab: Slab, lo: int, hi: int) -> bool:
    """Whether ``slab`` holds every stored bar starting in ``[lo, hi)``."""
    return (slab.lo <= lo or slab.complete_lo) and (hi <= slab.hi or slab.complete_hi)
