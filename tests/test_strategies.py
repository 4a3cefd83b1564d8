"""Each example strategy trades identically on the fast DataSource and the pandas reference:
the same trades and the same equity curve, exactly."""

from __future__ import annotations

import pandas as pd
import pytest

import lazybars as lb
from lazybars import sim, strategies

SYMBOLS = ("MES", "MNQ", "MYM")


@pytest.fixture(scope="module")
def store() -> lb.BarStore:
    frames = lb.synth.catalog(SYMBOLS, "2024-01-02", "2024-04-02", session="24h")
    return lb.BarStore.from_frames(frames)


CASES = {
    "momentum": (strategies.MomentumStrategy(), "1m", "2024-03-05", "2024-03-06"),
    "rotation": (strategies.RotationStrategy(lookback=10), "1d", "2024-01-20", "2024-04-01"),
    "breakout": (strategies.IntradayBreakoutStrategy(), "5m", "2024-03-11", "2024-03-12"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_strategy_parity(store: lb.BarStore, name: str) -> None:
    strategy, cadence, start, end = CASES[name]
    ticks = sim.clock(store, SYMBOLS, start, end, cadence=cadence)
    fast = sim.run(strategy, lb.DataSource(store, start=start, end=end, lookback="3d"), ticks)
    ref = sim.run(strategy, lb.reference.PandasDataSource(store), ticks)
    assert fast.trades, f"{name} made no trade: the parity check would prove nothing"
    assert fast.trades == ref.trades
    assert fast.rejections == ref.rejections
    pd.testing.assert_series_equal(fast.equity, ref.equity, check_exact=True)
    assert fast.history_calls == ref.history_calls > len(ticks)
