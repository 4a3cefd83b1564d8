"""The backtest loop: clock, fills at the next bar's open, accounting, rejections, stats."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import polars as pl
import pytest

import lazybars as lb
from lazybars import sim

ZONE = "America/New_York"


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-10", gaps=0.01)


@pytest.fixture(scope="module")
def store(frame: pl.DataFrame) -> lb.BarStore:
    return lb.BarStore.from_frames({"MES": frame, "MNQ": lb.synth.minute_bars("MNQ", gaps=0)})


@pytest.fixture(scope="module")
def bars(frame: pl.DataFrame) -> pd.DataFrame:
    return lb.bars.frame_to_pandas(frame)


class Scripted:
    """Calls ``script(ctx, i)`` at tick i; records what it saw."""

    symbols = ("MES",)

    def __init__(self, script: Callable[[sim.Context, int], None]) -> None:
        self.script = script
        self.seen: list[tuple[pd.Timestamp, float, float | None]] = []

    def on_start(self, ctx: sim.Context) -> None:
        self.i = 0

    def on_bar(self, ctx: sim.Context) -> None:
        self.seen.append((ctx.now, ctx.cash, ctx.get_last_price("MES")))
        self.script(ctx, self.i)
        self.i += 1


def _ticks(store: lb.BarStore, cadence: str = "1m") -> list[pd.Timestamp]:
    return sim.clock(store, ["MES"], "2024-01-03", "2024-01-04", cadence=cadence)


def test_minute_clock_is_every_bar_close(store: lb.BarStore, bars: pd.DataFrame) -> None:
    ticks = _ticks(store)
    day = bars.loc["2024-01-03"]
    assert ticks == list(day.index + pd.Timedelta(minutes=1))


def test_coarser_clocks_are_bucket_closes(store: lb.BarStore, bars: pd.DataFrame) -> None:
    five = _ticks(store, "5m")
    day = bars.loc["2024-01-03"]
    expected = sorted({t.floor("5min") + pd.Timedelta(minutes=5) for t in day.index})
    assert five == expected
    daily = sim.clock(store, ["MES"], "2024-01-03", "2024-01-06", cadence="day")
    assert daily == [pd.Timestamp(d, tz=ZONE) for d in ("2024-01-04", "2024-01-05", "2024-01-06")]
    with pytest.raises(lb.InvalidRequest, match="finer"):
        sim.clock(
            lb.BarStore.from_frames({"D": lb.synth.daily_bars("D")}, "day"),
            ["D"],
            "2023-02-01",
            "2023-03-01",
        )


def test_a_clock_over_utc_candles_ticks_at_utc_midnights() -> None:
    # Stored day bars close at the midnights of the zone they were written in.
    candles = lb.synth.daily_bars("BTC", "2024-01-02", "2024-01-06", tz="UTC")
    store = lb.BarStore.from_frames({"BTC": candles}, "day")
    # New York's 01-02 .. 01-05 holds the candles of 01-03, 01-04 and 01-05 (19:00 EST).
    ticks = sim.clock(store, ["BTC"], "2024-01-02", "2024-01-05", cadence="day")
    closes = ("2024-01-04", "2024-01-05", "2024-01-06")
    assert ticks == [pd.Timestamp(d, tz="UTC").tz_convert(ZONE) for d in closes]


def test_market_order_fills_at_next_open_and_settles_next_tick(
    store: lb.BarStore, bars: pd.DataFrame
) -> None:
    def buy_first(ctx: sim.Context, i: int) -> None:
        if i == 0:
            ctx.buy("MES", 2)

    strategy = Scripted(buy_first)
    ticks = _ticks(store)
    result = sim.run(strategy, lb.DataSource(store), ticks, cash=100_000.0, commission=1.5)
    (trade,) = result.trades
    # The first bar starting at or after the order's tick is the fill bar.
    fill_bar = bars.index[bars.index >= ticks[0]][0]
    assert trade.time == fill_bar
    assert trade.price == bars.loc[fill_bar, "open"]
    assert (trade.side, trade.quantity, trade.commission) == ("buy", 2, 1.5)
    # The strategy does not see the fill at the tick it ordered, only at the next one.
    assert strategy.seen[0][1] == 100_000.0
    assert strategy.seen[1][1] == 100_000.0 - 2 * trade.price - 1.5
    assert result.positions == {"MES": 2}


def test_equity_is_cash_plus_positions_at_last_visible_close(
    store: lb.BarStore, bars: pd.DataFrame
) -> None:
    def buy_then_sell(ctx: sim.Context, i: int) -> None:
        if i == 10:
            ctx.buy("MES", 3)
        if i == 200:
            ctx.sell("MES", 3)

    ticks = _ticks(store)
    result = sim.run(Scripted(buy_then_sell), lb.DataSource(store), ticks, cash=50_000.0)
    buy, sell = result.trades

    def settled(order_tick: pd.Timestamp, trade: sim.Trade) -> pd.Timestamp:
        # A fill settles on the first tick after its order's tick at which its bar has begun.
        return next(t for t in ticks if t > order_tick and t >= trade.time)

    bought, sold = settled(ticks[10], buy), settled(ticks[200], sell)
    for tick, value in result.equity.items():
        visible = bars[bars.index + pd.Timedelta(minutes=1) <= tick]
        close = visible["close"].iloc[-1]
        held = 3 if bought <= tick < sold else 0
        cash = 50_000.0
        if tick >= bought:
            cash -= 3 * buy.price
        if tick >= sold:
            cash += 3 * sell.price
        assert value == pytest.approx(cash + held * close, abs=1e-9)
    values = result.equity.to_numpy()
    assert result.total_return == values[-1] / values[0] - 1
    assert result.max_drawdown == pytest.approx(
        max(1 - v / max(values[: i + 1]) for i, v in enumerate(values))
    )
    assert result.stats()["trades"] == 2


def test_strategy_never_sees_a_price_after_the_clock(
    store: lb.BarStore, bars: pd.DataFrame
) -> None:
    strategy = Scripted(lambda ctx, i: None)
    sim.run(strategy, lb.DataSource(store), _ticks(store))
    for tick, _cash, last in strategy.seen:
        visible = bars[bars.index + pd.Timedelta(minutes=1) <= tick]
        assert last == visible["close"].iloc[-1]


@pytest.mark.parametrize(
    ("symbol", "quantity", "error"),
    [
        ("ES", 1, lb.UnknownAsset),
        ("MES", 0, lb.InvalidRequest),
        ("MES", -2, lb.InvalidRequest),
        ("MES", 1.5, lb.InvalidRequest),
        ("MES", True, lb.InvalidRequest),
        ("MES", float("nan"), lb.InvalidRequest),
    ],
)
def test_invalid_orders_raise(
    store: lb.BarStore, symbol: str, quantity: object, error: type
) -> None:
    def order(ctx: sim.Context, i: int) -> None:
        ctx.buy(symbol, quantity)

    with pytest.raises(error):
        sim.run(Scripted(order), lb.DataSource(store), _ticks(store)[:3])


def test_fractional_quantities_when_allowed(store: lb.BarStore) -> None:
    def order(ctx: sim.Context, i: int) -> None:
        if i == 0:
            ctx.buy("MES", 0.5)

    result = sim.run(Scripted(order), lb.DataSource(store), _ticks(store)[:3], fractional=True)
    assert result.trades[0].quantity == 0.5


def test_rejections_are_recorded_not_filled(store: lb.BarStore) -> None:
    def greedy(ctx: sim.Context, i: int) -> None:
        if i == 0:
            ctx.buy("MES", 1_000)  # ~5M notional against 10k of cash
        if i == 1:
            ctx.sell("MES", 1)  # nothing held: long only
        if i == 2:
            ctx.buy("MES", 1)

    ticks = _ticks(store)
    result = sim.run(Scripted(greedy), lb.DataSource(store), ticks[:5], cash=10_000.0)
    reasons = [r.reason for r in result.rejections]
    assert len(reasons) == 2
    assert "not enough cash" in reasons[0]
    assert "cannot sell" in reasons[1]
    assert [t.side for t in result.trades] == ["buy"]


def test_an_order_at_the_end_of_the_data_is_rejected(
    store: lb.BarStore, frame: pl.DataFrame
) -> None:
    last_close = frame["datetime"][-1] + pd.Timedelta(minutes=1)
    ticks = [pd.Timestamp(last_close).tz_convert(ZONE)]

    def order(ctx: sim.Context, i: int) -> None:
        ctx.buy("MES", 1)

    result = sim.run(Scripted(order), lb.DataSource(store), ticks)
    assert not result.trades
    assert result.rejections[0].reason == "no later bar to fill at"


def test_both_backends_run_the_same_script_identically(store: lb.BarStore) -> None:
    rng = np.random.default_rng(7)
    plan = {
        int(i): int(q)
        for i, q in zip(rng.choice(380, 40, replace=False), rng.integers(-3, 4, 40), strict=True)
    }

    def script(ctx: sim.Context, i: int) -> None:
        q = plan.get(i, 0)
        if q > 0:
            ctx.buy("MES", q)
        elif q < 0 and ctx.position("MES") >= -q:
            ctx.sell("MES", -q)

    ticks = _ticks(store)
    fast = sim.run(Scripted(script), lb.DataSource(store), ticks)
    ref = sim.run(Scripted(script), lb.reference.PandasDataSource(store), ticks)
    assert fast.trades and fast.trades == ref.trades
    pd.testing.assert_series_equal(fast.equity, ref.equity, check_exact=True)
