"""Each example strategy trades identically on the fast DataSource and the pandas reference:
the same trades and the same equity curve, exactly."""

from __future__ import annotations

import pandas as pd
import pytest

import lazybars as lb
from lazybars import sim, strategies

SYMBOLS = ("MES", "MNQ", "MYM")


# Each case stores a few days before its window and little after it: the reference
# filters and resamples every stored bar on every call, so a longer history only costs time.
CASES = {
    "momentum": (strategies.MomentumStrategy(), "1m", "2024-03-05", "2024-03-06", "2024-02-26"),
    "rotation": (
        strategies.RotationStrategy(lookback=10),
        "1d",
        "2024-01-20",
        "2024-04-01",
        "2024-01-02",
    ),
    "breakout": (
        strategies.IntradayBreakoutStrategy(),
        "5m",
        "2024-03-11",
        "2024-03-12",
        "2024-03-04",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_strategy_parity(name: str) -> None:
    strategy, cadence, start, end, first = CASES[name]
    last = pd.Timestamp(end) + pd.Timedelta(days=2)
    store = lb.BarStore.from_frames(lb.synth.catalog(SYMBOLS, first, last, session="24h"))
    ticks = sim.clock(store, SYMBOLS, start, end, cadence=cadence)
    fast = sim.run(strategy, lb.DataSource(store, start=start, end=end, lookback="3d"), ticks)
    ref = sim.run(strategy, lb.reference.PandasDataSource(store), ticks)
    assert fast.trades, f"{name} made no trade: the parity check would prove nothing"
    assert fast.trades == ref.trades
    assert fast.rejections == ref.rejections
    pd.testing.assert_series_equal(fast.equity, ref.equity, check_exact=True)
    assert fast.history_calls == ref.history_calls > len(ticks)
