"""The bars a store holds for its queries (lazybars._held): warm queries read no parquet,
writes (this store's or another's) are never answered from stale bars, the budget holds,
and threads share one store safely.

Reads are counted at the backend (every scan of stored bars starts there), not timed.
"""

from __future__ import annotations

import itertools
import pickle
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import polars.testing
import pytest

import lazybars as lb

NY = "America/New_York"
MONTH = ("2024-01-08", "2024-01-20")


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return lb.synth.catalog(("MES", "MNQ", "MYM"), "2024-01-02", "2024-02-01", session="24h")


@pytest.fixture
def root(tmp_path: Path, frames: dict[str, pl.DataFrame]) -> Path:
    store = lb.BarStore(tmp_path)
    for symbol, frame in frames.items():
        store.write(symbol, frame)
    return tmp_path


class Reads:
    """Counts the reads of stored bars that a store's backend serves: each scan it plans
    counts once it actually runs (building a plan reads only the footer)."""

    def __init__(self, store: lb.BarStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        backend = store._backend
        read = backend.read

        def ran(frame: pl.DataFrame) -> pl.DataFrame:
            self.count += 1
            return frame

        def counted(*args: object) -> pl.LazyFrame:
            lf = read(*args)
            return lf.map_batches(ran, schema=lf.collect_schema())

        monkeypatch.setattr(backend, "read", counted)

    def during(self, run: Callable[[], object]) -> int:
        before = self.count
        run()
        return self.count - before


@pytest.fixture
def store(root: Path) -> lb.BarStore:
    return lb.BarStore(root)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.scan("MES").between(*MONTH).select("close"),
        lambda s: s.scan("MES").as_of("2024-01-15 10:31").tail(100),
        lambda s: s.scan(["MES", "MNQ", "MYM"]).between(*MONTH),
        lambda s: s.scan(["MNQ"]).between(*MONTH).as_of("2024-01-12").head(50),
        lambda s: s.scan("MES").between(*MONTH).resample("1h"),
        lambda s: s.scan(["MES", "MNQ"]).between(*MONTH).resample("day", after_hours=False),
        lambda s: s.scan("MES", "4h"),  # no window: the whole history
    ],
    ids=["close", "as_of-tail", "three", "one-long", "resample", "resample-long", "whole"],
)
def test_a_warm_query_reads_no_parquet(store, monkeypatch, build) -> None:
    reads = Reads(store, monkeypatch)
    query = build(store)
    cold = reads.during(query.collect)
    assert cold > 0
    first = query.collect()
    assert reads.during(query.collect) == 0
    assert reads.during(query.to_pandas) == 0
    # The same plan from another query object, and a narrower window inside it.
    assert reads.during(lambda: build(store).collect()) == 0
    polars.testing.assert_frame_equal(build(store).collect(), first)
    assert "from memory" in query.explain() and "none from memory" not in query.explain()
    # A store that holds nothing gives the same answer, from the files.
    polars.testing.assert_frame_equal(build(lb.BarStore(store._backend.where)).collect(), first)


def test_a_window_inside_a_held_one_reads_no_parquet(store, monkeypatch) -> None:
    reads = Reads(store, monkeypatch)
    store.scan(["MES", "MNQ"]).between(*MONTH).collect()
    inner = store.scan("MES").between("2024-01-10 09:30", "2024-01-11").select("close", "volume")
    assert reads.during(inner.collect) == 0
    assert (
        reads.during(
            lambda: store.scan("MNQ").between(*MONTH).as_of("2024-01-15").tail(3).collect()
        )
        == 0
    )
    # A window reaching past the held one is read (once), and held merged with it.
    wider = store.scan("MES").between("2024-01-18", "2024-01-25")
    assert reads.during(wider.collect) == 1
    spanning = store.scan("MES").between("2024-01-09", "2024-01-24")
    assert reads.during(spanning.collect) == 0
    want = (
        lb.BarStore(store._backend.where, cache_bytes=0)
        .scan("MES")
        .between("2024-01-09", "2024-01-24")
    )
    polars.testing.assert_frame_equal(spanning.collect(), want.collect())


def test_a_window_past_the_stored_bars_is_served_by_the_whole_history(store, monkeypatch) -> None:
    reads = Reads(store, monkeypatch)
    store.scan("MES").collect()
    assert (
        reads.during(lambda: store.scan("MES").between("2023-01-01", "2030-01-01").collect()) == 0
    )
    assert reads.during(lambda: store.scan("MES").as_of("2030-01-01").collect()) == 0


def test_a_columns_subset_is_held_for_later_subsets_not_for_more(store, monkeypatch) -> None:
    reads = Reads(store, monkeypatch)
    store.scan("MES").between(*MONTH).select("close", "volume").collect()
    assert reads.during(lambda: store.scan("MES").between(*MONTH).select("close").collect()) == 0
    assert reads.during(lambda: store.scan("MES").between(*MONTH).collect()) == 1
    assert reads.during(lambda: store.scan("MES").between(*MONTH).select("open").collect()) == 0


def _month(store: lb.BarStore, symbol: str = "MES") -> pl.DataFrame:
    return store.scan(symbol).between(*MONTH).collect()


def test_this_stores_write_and_append_are_seen(store, frames) -> None:
    before = _month(store)
    changed = frames["MES"].with_columns(pl.col("close") + 1.0)
    store.write("MES", changed)
    after = _month(store)
    assert after["close"].to_list() == [c + 1.0 for c in before["close"]]
    # A replace with fewer bars, then an append of the rest, inside the held window.
    trimmed = changed.filter(pl.col("datetime") < after["datetime"][100])
    store.write("MES", trimmed)
    assert _month(store).height == 100
    store.write("MES", changed.filter(pl.col("datetime") >= after["datetime"][100]), mode="append")
    assert _month(store).equals(after)


@pytest.mark.parametrize("shape", ["same shape", "fewer bars"])
def test_another_stores_write_is_seen(store, root, frames, shape) -> None:
    """Another handle on the directory (as another process would be) rewrites a symbol."""
    before = _month(store)
    other = lb.BarStore(root)
    changed = frames["MES"].with_columns(pl.col("close") * 2.0)
    if shape == "fewer bars":
        changed = changed.head(changed.height - 10)
    other.write("MES", changed)
    after = _month(store)
    assert after["close"].to_list() == [c * 2.0 for c in before["close"]]
    other.write("MES", frames["MES"], mode="replace")
    assert _month(store).equals(before)


def test_the_budget_holds_and_answers_stay_right(root: Path, frames) -> None:
    budget = 2 * 2**20
    store = lb.BarStore(root, cache_bytes=budget)
    plain = lb.BarStore(root, cache_bytes=0)
    days = [f"2024-01-{d:02d}" for d in range(2, 30)]
    groups = itertools.cycle([["MES"], ["MNQ", "MYM"], ["MYM", "MES"]])
    for (a, b), symbols in zip(itertools.pairwise(days), groups, strict=False):
        for build in (
            lambda s, a=a, b=b, symbols=symbols: s.scan(symbols).between(a, b),
            lambda s, b=b, symbols=symbols: s.scan(symbols[0]).as_of(b).tail(2000),
        ):
            polars.testing.assert_frame_equal(build(store).collect(), build(plain).collect())
            info = store.held_info()
            assert info.bytes <= budget
            assert info.max_bytes == budget
    assert 0 < store.held_info().windows
    assert plain.held_info().windows == 0 and plain.held_info().bytes == 0


def test_a_window_larger_than_the_budget_is_answered_not_held(root: Path, monkeypatch) -> None:
    store = lb.BarStore(root, cache_bytes=2**16)
    reads = Reads(store, monkeypatch)
    whole = store.scan("MES")
    assert reads.during(whole.collect) == 1
    assert reads.during(whole.collect) == 1
    assert store.held_info().windows == 0
    assert "none from memory" in whole.explain()


def test_unbounded_and_bad_budgets(root: Path) -> None:
    assert lb.BarStore(root, cache_bytes=None).held_info().max_bytes is None
    for bad in (-1, 1.5, True, "1GB"):
        with pytest.raises(lb.InvalidRequest, match="cache_bytes"):
            lb.BarStore(root, cache_bytes=bad)
    with pytest.raises(lb.InvalidRequest, match="cache_bytes"):
        lb.BarStore.from_frames({}, cache_bytes=-5)


def test_in_memory_store_writes_are_seen(frames) -> None:
    store = lb.BarStore.from_frames({"MES": frames["MES"]})
    before = _month(store)
    store.write("MES", frames["MES"].with_columns(pl.col("close") + 3.0))
    assert _month(store)["close"].to_list() == [c + 3.0 for c in before["close"]]


def test_a_pickled_store_holds_nothing_and_answers_the_same(store) -> None:
    want = _month(store)
    copy = pickle.loads(pickle.dumps(store))
    assert copy.held_info().windows == 0
    assert _month(copy).equals(want)
    assert copy.held_info().windows == 1


def test_repr_stays_offline_and_silent_about_the_cache(store) -> None:
    query = store.scan(["MES", "MNQ"]).between(*MONTH)
    query.collect()
    assert "held" not in repr(query)
    assert "held" not in query._repr_html_()


def _threads(work, n: int = 8) -> Iterator:
    barrier = threading.Barrier(n)

    def run(i: int):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        yield from pool.map(run, range(n))


def test_threads_share_one_store(root: Path) -> None:
    store = lb.BarStore(root, cache_bytes=3 * 2**20)
    plain = lb.BarStore(root, cache_bytes=0)
    windows = [(f"2024-01-{d:02d}", f"2024-01-{d + 3:02d}") for d in range(2, 25, 2)]
    plans = [
        (symbols, window, resample)
        for symbols in (["MES"], ["MNQ", "MES"], "MYM")
        for window in windows
        for resample in (None, "1h")
    ]

    def build(s: lb.BarStore, plan) -> lb.Query:
        symbols, window, resample = plan
        query = s.scan(symbols).between(*window)
        return query if resample is None else query.resample(resample)

    want = {i: build(plain, plan).collect() for i, plan in enumerate(plans)}

    def work(seed: int) -> int:
        order = list(range(len(plans)))
        order = order[seed:] + order[:seed]
        for i in order * 2:
            polars.testing.assert_frame_equal(build(store, plans[i]).collect(), want[i])
            assert store.held_info().bytes <= 3 * 2**20
        return len(order)

    assert sum(_threads(work)) == 8 * len(plans)
