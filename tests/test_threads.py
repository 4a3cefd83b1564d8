"""Threads: one DataSource shared by a thread pool, and writers racing readers.

Backtesters fetch several assets in a thread pool. A DataSource shared by 8 threads must
answer exactly what a single thread gets, load each (symbol, timestep, after_hours) once even
when all threads ask for it at the same moment, and keep its cache accounting consistent.

The clock is shared state (``set_datetime``), so the threads do not fight over it: each phase
sets one clock, then all threads start together (a barrier) and fire their own shuffled
sequence of requests at it; several phases use several clocks.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

import lazybars as lb

NY = "America/New_York"
THREADS = 8
MINUTE_ASSETS = ("MES", "MNQ", "MYM", "M2K")
HOURLY = "HRS"
CLOCKS = [
    "2024-03-05 10:17:30",
    "2024-03-10 03:00",  # the first minute after the spring-forward gap
    "2024-03-01 00:00",  # before all data: empty answers
    "2024-03-11 09:30:00.000000001",
    "2024-04-01 00:00",  # after all data
    "2024-03-14 16:00",
]
Request = tuple[
    Any, ...
]  # ("hist", asset, length, timestep, timeshift, after_hours) | ("last", asset)


class CountingStore(lb.BarStore):
    """An in-memory BarStore that counts scans of stored bars: the cache scans once per
    load of a stored (native) timestep, and derives coarser or regular-hours slabs from
    the native slab it already holds."""

    count_lock: threading.Lock
    scans: int

    def _read(self, *args: Any, **kwargs: Any) -> pl.LazyFrame:
        with self.count_lock:
            self.scans += 1
        return super()._read(*args, **kwargs)


def counted_copy(store: lb.BarStore) -> CountingStore:
    copy = CountingStore.from_frames({})
    copy.count_lock = threading.Lock()
    for symbol in store.symbols():
        for step in store.timesteps(symbol):
            copy.write(symbol, store.scan(symbol, step).collect(), timestep=step)
    copy.scans = 0
    return copy


@pytest.fixture(scope="module")
def store() -> lb.BarStore:
    frames = lb.synth.catalog(MINUTE_ASSETS, "2024-03-04", "2024-03-16", session="24h")
    store = lb.BarStore.from_frames(frames)
    hourly = lb.synth.hourly_bars(HOURLY, "2024-03-04", "2024-03-16", session="24h")
    store.write(HOURLY, hourly, timestep="hour")
    store.write(
        "MES", lb.synth.daily_bars("MES", "2024-02-01", "2024-03-16"), timestep="day"
    )  # a stored coarser timestep, served as stored
    return store


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=NY)


def all_requests() -> list[Request]:
    out: list[Request] = []
    shifts = [None, 2, -3, dt.timedelta(minutes=45)]
    for asset in (*MINUTE_ASSETS, HOURLY):
        steps = [None, "1h", "day"] if asset == HOURLY else [None, "5m", "1h", "day"]
        for step, length, shift, after_hours in itertools.product(
            steps, [1, 7, 120, 3000], shifts, [True, False]
        ):
            out.append(("hist", asset, length, step, shift, after_hours))
        out.append(("last", asset))
    return out


def ask(src: lb.DataSource, request: Request) -> Any:
    if request[0] == "last":
        return src.get_last_price(request[1])
    _, asset, length, step, shift, after_hours = request
    return src.get_historical_prices(
        asset, length, timestep=step, timeshift=shift, after_hours=after_hours
    )


def same(got: Any, want: Any, with_pandas: bool) -> bool:
    if not isinstance(want, lb.Bars):
        return got == want
    if (got.symbol, got.timestep) != (want.symbol, want.timestep):
        return False
    if got.pl.schema != want.pl.schema or not got.pl.equals(want.pl):
        return False
    return not with_pandas or (got.df.equals(want.df) and got.df.index.equals(want.df.index))


def keys_of(answers: Iterable[tuple[Request, Any]], store: lb.BarStore) -> set[tuple]:
    """The distinct cache keys (symbol, timestep, after_hours) the requests touched."""
    keys = set()
    for request, answer in answers:
        if request[0] == "last":
            keys.add((request[1], store.timesteps(request[1])[0], True))
        else:
            keys.add((answer.symbol, answer.timestep, request[5]))
    return keys


def burst(pool: ThreadPoolExecutor, work: Callable[[int, threading.Barrier], int]) -> list[int]:
    """Run ``work(thread_index, barrier)`` on every thread at once; their results."""
    barrier = threading.Barrier(THREADS)
    futures = [pool.submit(work, i, barrier) for i in range(THREADS)]
    return [f.result(timeout=120) for f in futures]


def phase_work(
    shared: lb.DataSource, expected: dict[Request, Any], seed: int
) -> Callable[[int, threading.Barrier], int]:
    """A thread's part of a phase: every request, in its own order, checked as it comes."""

    def work(index: int, barrier: threading.Barrier) -> int:
        mine = list(expected)
        random.Random(seed * 100 + index).shuffle(mine)
        barrier.wait()
        for n, request in enumerate(mine):
            got = ask(shared, request)
            with_pandas = (n + index) % 5 == 0
            assert same(got, expected[request], with_pandas), (shared.get_datetime(), request)
        return len(mine)

    return work


def test_shared_source_answers_like_a_single_thread(store: lb.BarStore) -> None:
    requests = all_requests()
    shared = lb.DataSource(store, max_cache_bytes=None)
    solo = lb.DataSource(store, max_cache_bytes=None)
    made = 0
    touched: set[tuple] = set()
    with ThreadPoolExecutor(THREADS) as pool:
        for phase, clock in enumerate(CLOCKS):
            solo.set_datetime(ts(clock))
            expected = {r: ask(solo, r) for r in requests}
            touched |= keys_of(expected.items(), store)
            shared.set_datetime(ts(clock))
            made += sum(burst(pool, phase_work(shared, expected, seed=phase)))
            assert shared.get_datetime() == ts(clock)

    # The single-threaded source asks for each asset's stored timestep first: every request
    # counted once, every key loaded by a request of its own.
    ref = solo.cache_info()
    assert ref.evictions == 0
    assert ref.hits + ref.misses == len(requests) * len(CLOCKS)
    assert ref.misses == ref.entries == len(touched)
    # The shared source agrees with it. Its threads may ask for a derived timestep first,
    # whose load brings the native slab in too: the native request then hits.
    info = shared.cache_info()
    assert info.evictions == 0
    assert info.hits + info.misses == made
    natives = {(symbol, store.timesteps(symbol)[0]) for symbol in (*MINUTE_ASSETS, HOURLY)}
    assert len(natives) <= info.misses <= len(touched)
    assert info.entries == len(touched)
    assert info.total_bytes == info.native_bytes + info.aggregated_bytes + info.pandas_bytes
    assert min(info.native_bytes, info.aggregated_bytes, info.pandas_bytes) > 0
    assert info.max_bytes is None
    assert (ref.native_bytes, ref.aggregated_bytes) == (info.native_bytes, info.aggregated_bytes)


COLD_KEYS = [
    ("MES", None, True),
    ("MNQ", "5m", True),
    ("MYM", "1h", False),
    ("M2K", "day", True),
    ("MES", "day", True),
    (HOURLY, None, False),
]


def all_at_once(
    shared: lb.DataSource, request: Request, answers: list[Any]
) -> Callable[[int, threading.Barrier], int]:
    def work(index: int, barrier: threading.Barrier) -> int:
        barrier.wait()
        answers.append(ask(shared, request))
        return 1

    return work


@pytest.mark.parametrize(("asset", "step", "after_hours"), COLD_KEYS)
def test_cold_start_contention_loads_once(
    store: lb.BarStore, asset: str, step: str | None, after_hours: bool
) -> None:
    counted = counted_copy(store)
    clock = ts("2024-03-12 11:07")
    solo = lb.DataSource(counted, max_cache_bytes=None)
    solo.set_datetime(clock)
    want = solo.get_historical_prices(asset, 500, timestep=step, after_hours=after_hours)
    assert counted.scans == 1

    for _ in range(3):  # a few fresh sources: more chances for the threads to collide
        counted.scans = 0
        shared = lb.DataSource(counted, max_cache_bytes=None)
        shared.set_datetime(clock)
        answers: list[lb.Bars] = []
        request = ("hist", asset, 500, step, None, after_hours)

        with ThreadPoolExecutor(THREADS) as pool:
            burst(pool, all_at_once(shared, request, answers))
        assert counted.scans == 1
        assert len(answers) == THREADS
        for got in answers:
            assert same(got, want, with_pandas=True)
        info = shared.cache_info()
        # A derived timestep (coarser, or regular hours) holds its native slab too.
        stored = step is None or str(lb.Timestep.parse(step)) in counted.timesteps(asset)
        entries = 1 if stored and after_hours else 2
        assert (info.misses, info.hits, info.entries, info.evictions) == (
            1,
            THREADS - 1,
            entries,
            0,
        )


def test_cold_start_of_many_keys_at_once(store: lb.BarStore) -> None:
    """Every thread asks for every timestep of every asset, in its own order, all cold."""
    counted = counted_copy(store)
    requests = [r for r in all_requests() if r[0] == "last" or (r[2], r[4]) == (120, None)]
    clock = ts("2024-03-08 14:44:59")
    solo = lb.DataSource(counted, max_cache_bytes=None)
    solo.set_datetime(clock)
    expected = {r: ask(solo, r) for r in requests}
    keys = keys_of(expected.items(), counted)
    counted.scans = 0
    shared = lb.DataSource(counted, max_cache_bytes=None)
    shared.set_datetime(clock)

    def work(index: int, barrier: threading.Barrier) -> int:
        mine = list(requests)
        random.Random(index).shuffle(mine)
        barrier.wait()
        for request in mine:
            assert same(ask(shared, request), expected[request], with_pandas=index % 2 == 0)
        return len(mine)

    with ThreadPoolExecutor(THREADS) as pool:
        made = sum(burst(pool, work))
    stored = {symbol: counted.timesteps(symbol) for symbol, _, _ in keys}
    natives = {
        (symbol, step if step in stored[symbol] else stored[symbol][0]) for symbol, step, _ in keys
    }
    assert counted.scans == len(natives)  # each file scanned once, whatever is derived
    info = shared.cache_info()
    assert info.hits + info.misses == made
    assert len(natives) <= info.misses <= info.entries == len(keys)


def test_a_writer_never_exposes_a_partial_frame_to_readers(tmp_path: Path) -> None:
    a = lb.synth.minute_bars("V", "2024-01-01", "2024-01-12", session="24h", gaps=0, seed=1)
    b = lb.synth.minute_bars("V", "2024-01-05", "2024-01-20", session="24h", gaps=0.01, seed=2)
    a = a.with_columns(version=pl.lit(1.0))
    b = b.with_columns(version=pl.lit(2.0, dtype=pl.Float64))
    store = lb.BarStore(tmp_path)
    store.write("SYM", a)
    store.write("OTHER", b)
    far = ts("2024-01-21")  # after both versions' last bars, within the lookback
    writes = 40
    done = threading.Event()

    def writer(index: int, barrier: threading.Barrier) -> int:
        barrier.wait()
        try:
            for i in range(writes):
                store.write("SYM", b if i % 2 == 0 else a)
        finally:
            done.set()
        return writes

    def reader(index: int, barrier: threading.Barrier) -> int:
        barrier.wait()
        reads = 0
        while not done.is_set() or reads < 3:
            try:
                if index % 2:
                    frame = store.scan("SYM").collect()
                else:
                    src = lb.DataSource(lb.BarStore(tmp_path))
                    src.set_datetime(far)
                    frame = src.get_historical_prices("SYM", 10**6).pl
            except BaseException as exc:  # polars panics derive from BaseException
                if isinstance(exc, KeyboardInterrupt):
                    raise
                pytest.fail(f"a read racing a writer failed: {type(exc).__name__}: {exc}"[:2000])
            assert frame.equals(a) or frame.equals(b), frame.shape
            assert store.symbols() == ["OTHER", "SYM"]
            assert store.scan("OTHER").collect().equals(b)
            reads += 1
        return reads

    def work(index: int, barrier: threading.Barrier) -> int:
        return writer(index, barrier) if index == 0 else reader(index, barrier)

    with ThreadPoolExecutor(THREADS) as pool:
        counts = burst(pool, work)
    assert all(n >= 3 for n in counts[1:])
    assert sorted(p.name for p in (tmp_path / "1m").iterdir()) == [
        ".OTHER.parquet.lock",  # the writers' lock files, hidden
        ".SYM.parquet.lock",
        "OTHER.parquet",
        "SYM.parquet",
    ]
    assert store.scan("SYM").collect().equals(a)  # the last write (an odd one) wrote A
