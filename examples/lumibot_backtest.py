"""A lumibot backtest switched to lazybars by changing one name (needs ``lazybars[lumibot]``).

    python examples/lumibot_backtest.py

The same strategy and the same ``Data`` run on lumibot's ``PandasDataBacktesting`` and on
``LazyBarsBacktesting``; the fills and the final value must match. The strategy asks for
'5 minutes' bars every minute, where lumibot resamples on every call and lazybars slices a
table built once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from datetime import datetime

from lumibot.backtesting import PandasDataBacktesting
from lumibot.entities import Asset, Data
from lumibot.strategies import Strategy

import lazybars as lb
from lazybars.lumibot import OFFLINE, LazyBarsBacktesting

MES = Asset("MES", asset_type="future")


class FiveMinuteTrend(Strategy):
    """Long above the 20-bar mean of 5-minute closes, flat below it."""

    def initialize(self) -> None:
        self.sleeptime = "1M"
        self.set_market("us_futures")

    def on_trading_iteration(self) -> None:
        bars = self.get_historical_prices(MES, 20, "5 minutes")
        if bars is None or len(bars) < 20:
            return
        close = bars.df["close"]
        position = self.get_position(MES)
        held = position is not None and position.quantity > 0
        if close.iloc[-1] > close.mean() and not held:
            self.submit_order(self.create_order(MES, 1, "buy"))
        elif close.iloc[-1] < close.mean() and held:
            self.submit_order(self.create_order(MES, 1, "sell"))


def backtest(source: type, frame) -> tuple[float, int, float]:
    """Seconds, fills and final value of one backtest on ``source``."""
    data = [Data(MES, frame.copy(), timestep="minute")]
    started = time.perf_counter()
    _, strategy = FiveMinuteTrend.run_backtest(
        source, datetime(2024, 1, 3), datetime(2024, 1, 5), pandas_data=data, **OFFLINE
    )
    seconds = time.perf_counter() - started
    log = strategy.broker._trade_event_log_df
    fills = 0 if log.empty else int((log["status"] == "fill").sum())
    return seconds, fills, float(strategy.portfolio_value)


def main() -> None:
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-06", session="24h")
    frame = bars.to_pandas().set_index("datetime")
    logging.disable(logging.WARNING)  # lumibot logs every order
    results = {}
    with tempfile.TemporaryDirectory() as workdir:  # lumibot writes logs/ into the cwd
        cwd = os.getcwd()
        os.chdir(workdir)
        try:
            for source in (PandasDataBacktesting, LazyBarsBacktesting):
                results[source.__qualname__] = backtest(source, frame)
        finally:
            os.chdir(cwd)
            logging.disable(logging.NOTSET)
    for name, (seconds, fills, value) in results.items():
        print(f"{name:<24} {seconds:6.2f} s  {fills} fills  final value {value:,.2f}")
    lumibot, lazy = results.values()
    if lumibot[1:] != lazy[1:]:
        raise SystemExit("the two backtests differ: please report it")
    print(f"identical fills and value, {lumibot[0] / lazy[0]:.1f}x faster on lazybars")


if __name__ == "__main__":
    main()
