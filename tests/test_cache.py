"""The per-asset cache: loads once, answers warm requests without polars' engine or pandas
conversion, widens past its hints, and builds the pandas mirror once."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pandas as pd
import polars as pl
import polars.testing
import pytest
from pandas.core.indexing import _iLocIndexer

import lazybars as lb
from lazybars.cache import AssetCache

ZONE = "America/New_York"


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-03-01", "2024-05-01", session="24h")


@pytest.fixture
def store(frame: pl.DataFrame, tmp_path) -> lb.BarStore:
    store = lb.BarStore(tmp_path)
    store.write("MES", frame)
    return store


def _stamp(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, tz="UTC").tz_convert(ZONE)


def _forbid(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        msg = f"{name} called on the warm request path"
        raise AssertionError(msg)

    monkeypatch.setattr(owner, name, refuse)


def test_warm_requests_use_no_engine_no_literal_no_conversion(store, frame, monkeypatch):
    src = lb.DataSource(store, timezone=ZONE, start="2024-04-01", end="2024-04-10")
    ends = (frame["datetime"].dt.epoch("ns") + 60_000_000_000).to_list()
    clocks = [c for c in ends if _stamp(c) >= pd.Timestamp("2024-04-02", tz=ZONE)][:500]
    src.set_datetime(_stamp(clocks[0]))
    assert len(src.get_historical_prices("MES", 100).df) == 100  # warm: load, pandas mirror
    src.get_last_price("MES")
    for owner, name in [
        (pl.LazyFrame, "collect"),
        (pl.DataFrame, "to_pandas"),
        (pl, "lit"),
        (pl.DataFrame, "filter"),
        (pd.DataFrame, "__init__"),
    ]:
        _forbid(monkeypatch, owner, name)
    for clock in clocks:
        src.set_datetime(_stamp(clock))
        bars = src.get_historical_prices("MES", 100, timeshift=random.Random(clock).randint(-2, 2))
        assert len(bars.df) == 100
        assert src.get_last_price("MES") is not None


def test_warm_pandas_windows_use_no_pandas_indexing(store, frame, monkeypatch, copy_on_write):
    """A ``.df`` window is put together from the mirror's parts, taken apart once per load:
    no ``.iloc``, no slicing of an Index, no frame copy per request."""
    src = lb.DataSource(store, timezone=ZONE, start="2024-04-01", end="2024-04-10")
    ends = (frame["datetime"].dt.epoch("ns") + 60_000_000_000).to_list()
    clocks = [c for c in ends if _stamp(c) >= pd.Timestamp("2024-04-02", tz=ZONE)][:3000:10]
    src.set_datetime(_stamp(clocks[0]))
    assert len(src.get_historical_prices("MES", 100).df) == 100  # warm: load, pandas mirror
    for owner, name in [
        (_iLocIndexer, "__getitem__"),
        (pd.DatetimeIndex, "__getitem__"),
        (pd.Index, "__getitem__"),
        (pd.DataFrame, "copy"),
    ]:
        _forbid(monkeypatch, owner, name)
    answers = []
    for clock in clocks:
        src.set_datetime(_stamp(clock))
        bars = src.get_historical_prices("MES", 100, timeshift=random.Random(clock).randint(-2, 2))
        answers.append((bars.df, bars.pl))
    monkeypatch.undo()
    for df, bars in answers:
        pd.testing.assert_frame_equal(df, lb.bars.frame_to_pandas(bars), check_exact=True)


def test_pandas_mirror_is_built_once_and_shared(store):
    src = lb.DataSource(store, timezone=ZONE)
    src.set_datetime(pd.Timestamp("2024-04-03 12:00", tz=ZONE))
    a = src.get_historical_prices("MES", 10).df
    src.set_datetime(pd.Timestamp("2024-04-03 12:05", tz=ZONE))
    b = src.get_historical_prices("MES", 10).df
    entry = src._entries[("MES", None, True)]
    mirror = entry.slab.pandas()
    assert mirror is entry.slab.pandas()
    assert a.index[-1] == pd.Timestamp("2024-04-03 11:59", tz=ZONE)
    assert b.index[-1] == pd.Timestamp("2024-04-03 12:04", tz=ZONE)
    # Both answers are views into the one mirror (pandas copy-on-write keeps them safe).
    assert all(df.index.isin(mirror.index).all() for df in (a, b))


def test_loading_is_bounded_by_the_hints_and_widens_on_demand(store, frame):
    src = lb.DataSource(store, timezone=ZONE, start="2024-04-10", end="2024-04-12", lookback="1d")
    src.set_datetime(pd.Timestamp("2024-04-11 10:00", tz=ZONE))
    assert len(src.get_historical_prices("MES", 10)) == 10
    slab = src._entries[("MES", None, True)].slab
    loaded = slab.frame["datetime"]
    assert loaded.min() >= pd.Timestamp("2024-04-09", tz=ZONE)
    assert loaded.max() < pd.Timestamp("2024-04-13 00:00", tz=ZONE)
    assert slab.n < frame.height / 5

    # Far before the hints, far after them, and reaching back beyond the lookback.
    full = lb.DataSource(store, timezone=ZONE)
    for clock, length, shift in [
        (pd.Timestamp("2024-03-05 10:00", tz=ZONE), 50, None),
        (pd.Timestamp("2024-04-25 10:00", tz=ZONE), 50, None),
        (pd.Timestamp("2024-04-10 10:00", tz=ZONE), 20_000, None),
        (pd.Timestamp("2024-04-12 23:58", tz=ZONE), 10, -5_000),
        (pd.Timestamp("2024-04-11 10:00", tz=ZONE), 10, timedelta(days=20)),
    ]:
        src.set_datetime(clock)
        full.set_datetime(clock)
        got = src.get_historical_prices("MES", length, timeshift=shift)
        want = full.get_historical_prices("MES", length, timeshift=shift)
        pl.testing.assert_frame_equal(got.pl, want.pl)
        assert src.get_last_price("MES") == full.get_last_price("MES")


def test_an_old_bars_object_survives_a_reload(store):
    src = lb.DataSource(store, timezone=ZONE, start="2024-04-10", end="2024-04-11", lookback="1d")
    src.set_datetime(pd.Timestamp("2024-04-10 10:00", tz=ZONE))
    before = src.get_historical_prices("MES", 5)
    src.set_datetime(pd.Timestamp("2024-04-29 10:00", tz=ZONE))
    old_slab = src._entries[("MES", None, True)].slab
    src.get_historical_prices("MES", 5)  # widens: the entry gets a new slab
    assert src._entries[("MES", None, True)].slab is not old_slab
    # .df is read only now, after the reload: it must still be the rows of .pl.
    assert before.df.index[-1] == pd.Timestamp("2024-04-10 09:59", tz=ZONE)
    pd.testing.assert_frame_equal(before.df, lb.bars.frame_to_pandas(before.pl))


class _CountingStore(lb.BarStore):
    """A directory catalog that counts parquet scans and can hold scans at a barrier."""

    scans = 0
    barrier: threading.Barrier | None = None

    def _read(self, *args, **kwargs):
        type(self).scans += 1
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        return super()._read(*args, **kwargs)


def test_derived_timesteps_come_from_the_loaded_native_slab(frame, tmp_path):
    store = _CountingStore(tmp_path)
    store.write("MES", frame)
    _CountingStore.scans = 0
    src = lb.DataSource(store, timezone=ZONE, start="2024-04-01", end="2024-04-10")
    src.set_datetime(pd.Timestamp("2024-04-05 12:00", tz=ZONE))
    requests = [(None, True), ("5m", True), ("1h", True), ("day", True), (None, False)]
    requests += [("5m", False), ("1h", False), ("day", False)]
    for timestep, after_hours in requests:
        assert len(src.get_historical_prices("MES", 10, timestep, after_hours=after_hours)) == 10
    assert _CountingStore.scans == 1  # one scan of the file serves every timestep
    # Derived first, on a fresh source: the native slab is loaded once, and then reused.
    _CountingStore.scans = 0
    fresh = lb.DataSource(store, timezone=ZONE, start="2024-04-01", end="2024-04-10")
    fresh.set_datetime(pd.Timestamp("2024-04-05 12:00", tz=ZONE))
    for timestep, after_hours in reversed(requests):
        got = fresh.get_historical_prices("MES", 10, timestep, after_hours=after_hours)
        want = src.get_historical_prices("MES", 10, timestep, after_hours=after_hours)
        pl.testing.assert_frame_equal(got.pl, want.pl)
    assert _CountingStore.scans == 1


def test_cold_loads_of_different_assets_run_in_parallel(frame, tmp_path):
    store = _CountingStore(tmp_path)
    store.write("A", frame)
    store.write("B", frame)
    src = lb.DataSource(store, timezone=ZONE)
    src.set_datetime(pd.Timestamp("2024-04-05 12:00", tz=ZONE))
    # Each load waits at the barrier until the other load has started: with one lock for
    # the whole cache the second load could never start, and the barrier would time out.
    store.barrier = threading.Barrier(2)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda s: src.get_historical_prices(s, 5), ["A", "B"]))
    assert [len(a) for a in answers] == [5, 5]
    info = src.cache_info()
    assert (info.misses, info.entries) == (2, 2)


# -- a clock past the data ------------------------------------------------------------------
SOURCES = [lb.DataSource, lb.reference.PandasDataSource]


@pytest.fixture(scope="module")
def two_assets() -> lb.BarStore:
    mes = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-05", session="24h", gaps=0)
    mnq = lb.synth.minute_bars("MNQ", "2024-01-02", "2024-01-04", session="24h", gaps=0)
    store = lb.BarStore.from_frames({"MES": mes, "MNQ": mnq})
    store.write("MES", lb.synth.daily_bars("MES", "2023-12-01", "2024-01-05"), timestep="day")
    return store


def _last_end(store: lb.BarStore, symbol: str) -> pd.Timestamp:
    return store.bounds(symbol, "minute")[1].tz_convert(ZONE) + timedelta(minutes=1)


@pytest.mark.parametrize("source", SOURCES)
def test_a_clock_past_the_data_by_more_than_the_lookback_warns_once_per_asset(
    source: type, two_assets: lb.BarStore
) -> None:
    src = source(two_assets, timezone=ZONE, lookback="2d")
    stale = _last_end(two_assets, "MES") + timedelta(days=2)
    src.set_datetime(stale)  # exactly the lookback past the last bar: not yet stale
    src.get_historical_prices("MES", 5)
    src.get_last_price("MES")
    src.set_datetime(stale + pd.Timedelta(1, "ns"))
    with pytest.warns(lb.StaleDataWarning, match=r"MES: the clock .* lookback") as caught:
        bars = src.get_historical_prices("MES", 5)
    assert caught[0].filename == __file__  # it points at the request
    assert bars.df.index[-1] == _last_end(two_assets, "MES") - timedelta(minutes=1)
    # Once per asset: its other timesteps and views and later clocks stay silent...
    src.get_historical_prices("MES", 5, timestep="1h", after_hours=False)
    src.get_historical_prices("MES", 5, timestep="day")
    src.set_datetime(stale + timedelta(days=30))
    src.get_last_price("MES")
    # ...while another asset warns on its own.
    with pytest.warns(lb.StaleDataWarning, match="MNQ"):
        assert src.get_last_price("MNQ") == src.get_historical_prices("MNQ", 1).get_last_price()


@pytest.mark.parametrize("source", SOURCES)
def test_the_stale_point_is_the_lookback_or_30_days(source: type, two_assets) -> None:
    end = _last_end(two_assets, "MNQ")
    for lookback, days in (("10d", 10), (None, 30)):
        src = source(two_assets, timezone=ZONE, lookback=lookback)
        src.set_datetime(end + timedelta(days=days))
        src.get_last_price("MNQ")
        src.set_datetime(end + timedelta(days=days, minutes=1))
        with pytest.warns(lb.StaleDataWarning, match="MNQ"):
            src.get_last_price("MNQ")


def test_past_the_warning_requests_stay_on_the_fast_path(two_assets, monkeypatch) -> None:
    src = lb.DataSource(two_assets, timezone=ZONE, start="2024-01-03")
    src.set_datetime(_last_end(two_assets, "MES") + timedelta(days=31))
    with pytest.warns(lb.StaleDataWarning):
        src.get_historical_prices("MES", 10)
    src.get_last_price("MES")
    misses = src.cache_info().misses
    _forbid(monkeypatch, AssetCache, "_widen_until")
    for minutes in range(100):
        src.set_datetime(_last_end(two_assets, "MES") + timedelta(days=40, minutes=minutes))
        src.get_historical_prices("MES", 10)
        src.get_last_price("MES")
    assert src.cache_info().misses == misses
