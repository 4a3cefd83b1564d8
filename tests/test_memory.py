"""Memory follows the backtest: pushdown reads only the window, the cache keeps its budget,
and warm requests allocate nothing proportional to their window.

The ``limit_memory`` markers are enforced by pytest-memray (the dev extra) whenever it is
installed, with or without ``--memray``; without it the module is skipped. Allocation sizes
are fixtures' data sizes worked out below, so each limit states what it proves.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
import pytest

import lazybars as lb

pytest.importorskip(
    "pytest_memray", reason="memory limits need pytest-memray: pip install -e '.[dev]'"
)

ZONE = "America/New_York"
SYMBOLS = ("MES", "MNQ", "MYM", "M2K")
WINDOW = ("2023-06-01", "2023-07-01")  # a one-month backtest (lookback 0) ...
YEARS = ("2021-01-04", "2024-01-02")  # ... on three years of 24h minute bars per symbol
# One month of 24h minute bars: ~30k rows x (6 columns of 8 bytes + an 8-byte end) is
# ~1.7 MB per symbol, ~6.9 MB for the four. The whole files would be ~200 MB decoded.
# lz4 pages decode through buffers of their own, and two reader threads may each hold a
# row group at once: peaks of up to ~1.7x the bytes needed were seen (11.2 MiB), so the
# limit is about twice them, still far below the whole files.
MONTH_LIMIT = "13 MB"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("catalog")


@pytest.fixture(scope="module")
def catalog(root: Path) -> lb.BarStore:
    store = lb.BarStore(root)
    for symbol, frame in lb.synth.catalog(SYMBOLS, *YEARS, session="24h").items():
        store.write(symbol, frame)
    return store


def _month_source(store: lb.BarStore, **kwargs: object) -> lb.DataSource:
    src = lb.DataSource(
        store, timezone=ZONE, start=WINDOW[0], end=WINDOW[1], lookback="0s", **kwargs
    )
    src.set_datetime(pd.Timestamp("2023-06-15 12:00", tz=ZONE))
    return src


@pytest.mark.limit_memory(MONTH_LIMIT)
def test_loading_a_month_of_a_multi_year_file_reads_only_that_month(catalog: lb.BarStore) -> None:
    src = _month_source(catalog)
    for symbol in SYMBOLS:
        assert len(src.get_historical_prices(symbol, 100)) == 100
    info = src.cache_info()
    needed = 0
    for symbol in SYMBOLS:
        # The rows of the window (whole local days: the load aligns to midnights).
        rows = catalog.scan(symbol).between("2023-06-01", "2023-07-02").collect().height
        needed += rows * (6 * 8 + 8)
    assert info.native_bytes <= 1.05 * needed
    assert int(MONTH_LIMIT.split(maxsplit=1)[0]) * 2**20 <= 2.05 * needed


def test_the_window_is_pushed_into_the_parquet_scan(catalog: lb.BarStore, root: Path) -> None:
    # A handle of its own: `catalog` may hold the month already (then no file is read).
    plan = lb.BarStore(root).scan("MES").between(*WINDOW).select("close").explain()
    scan = plan[plan.index("Parquet SCAN") :]
    # polars' own plan: the predicate and the projection sit in the scan itself.
    assert "SELECTION:" in scan
    assert "2023-06-01" in scan.split("SELECTION:")[1]
    assert "PROJECT 2/6 COLUMNS" in scan


def test_the_cache_keeps_its_budget_and_its_answers(tmp_path: Path) -> None:
    symbols = [f"S{i:02d}" for i in range(50)]
    store = lb.BarStore(tmp_path)
    frames = lb.synth.catalog(symbols, "2024-01-02", "2024-03-01", session="regular")
    for symbol, frame in frames.items():
        store.write(symbol, frame)
    budget = 4 * 2**20
    bounded = lb.DataSource(store, timezone=ZONE, max_cache_bytes=budget)
    unbounded = lb.DataSource(store, timezone=ZONE, max_cache_bytes=None)
    clock = pd.Timestamp("2024-02-20 11:00", tz=ZONE)
    bounded.set_datetime(clock)
    unbounded.set_datetime(clock)
    for rnd in range(2):
        for i, symbol in enumerate(symbols):
            timestep = ("1m", "5m", "1h")[(i + rnd) % 3]
            got = bounded.get_historical_prices(symbol, 50, timestep)
            want = unbounded.get_historical_prices(symbol, 50, timestep)
            pd.testing.assert_frame_equal(got.df, want.df, check_exact=True)
            assert bounded.get_last_price(symbol) == unbounded.get_last_price(symbol)
            assert bounded.cache_info().total_bytes <= budget
    info = bounded.cache_info()
    assert info.evictions > 0
    assert info.total_bytes == info.native_bytes + info.aggregated_bytes + info.pandas_bytes
    assert unbounded.cache_info().total_bytes > 5 * budget


@pytest.fixture
def warm_source(catalog: lb.BarStore) -> lb.DataSource:
    """A source that has loaded its month of MES: memray measures the test, not this (a
    cold load's allocations include polars' engine threads, which other tests of the same
    worker process may have left busy)."""
    src = _month_source(catalog, max_cache_bytes=None)
    src.get_historical_prices("MES", 500)
    return src


# 2,000 windows of 500 bars held at once: as copies they would be 2,000 x 500 x 48 bytes,
# about 48 MB. Zero-copy slices cost a few hundred bytes of Python objects each.
@pytest.mark.limit_memory("4 MB")
def test_warm_requests_allocate_nothing_proportional_to_the_window(
    warm_source: lb.DataSource,
) -> None:
    src = warm_source
    ends = pl.Series(pd.date_range("2023-06-10", periods=2000, freq="min", tz=ZONE))
    clocks = ends.to_list()
    held = []
    for clock in clocks:
        src.set_datetime(clock)
        held.append(src.get_historical_prices("MES", 500))
        assert src.get_last_price("MES") is not None
    assert sum(len(b) for b in held) == 2000 * 500
