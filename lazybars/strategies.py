"""Example strategies for :mod:`lazybars.sim`, written the way users write them: pandas on
``bars.df``, nothing tuned for a benchmark. They run unchanged on either data source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from lazybars.sim import Context

__all__ = ["IntradayBreakoutStrategy", "MomentumStrategy", "RotationStrategy"]


def _sma(close: pd.Series, n: int) -> float:
    return float(close.iloc[-n:].mean())


def _atr(df: pd.DataFrame, n: int) -> float:
    previous = df["close"].shift(1)
    true_range = pd.concat(
        [df["high"] - df["low"], (df["high"] - previous).abs(), (df["low"] - previous).abs()],
        axis=1,
    ).max(axis=1)
    return float(true_range.iloc[-n:].mean())


@dataclass
class MomentumStrategy:
    """Every minute: 200 minute bars per symbol, long while SMA(9) > SMA(30), with an ATR stop.

    The shape of the profiled backtest this project comes from: one history request and
    one last-price request per symbol per minute.
    """

    symbols: Sequence[str] = ("MES", "MNQ", "MYM")
    fast: int = 9
    slow: int = 30
    atr_bars: int = 14
    atr_stop: float = 2.0
    allocation: float = 0.3  # of cash, per entry

    def on_start(self, ctx: Context) -> None:
        ctx.state["stop"] = {}

    def on_bar(self, ctx: Context) -> None:
        for symbol in self.symbols:
            bars = ctx.get_historical_prices(symbol, 200, "minute")
            price = ctx.get_last_price(symbol)
            if len(bars) < self.slow or price is None:
                continue
            df = bars.df
            fast, slow = _sma(df["close"], self.fast), _sma(df["close"], self.slow)
            held = ctx.position(symbol)
            stop = ctx.state["stop"].get(symbol)
            if held and (fast < slow or (stop is not None and price < stop)):
                ctx.sell(symbol, int(held))
                ctx.state["stop"].pop(symbol, None)
            elif not held and fast > slow:
                quantity = int(ctx.cash * self.allocation // price)
                if quantity > 0:
                    ctx.buy(symbol, quantity)
                    ctx.state["stop"][symbol] = price - self.atr_stop * _atr(df, self.atr_bars)


@dataclass
class RotationStrategy:
    """Daily: hold the symbol with the best momentum over ``lookback`` day bars."""

    symbols: Sequence[str] = ("MES", "MNQ", "MYM")
    lookback: int = 20

    def on_start(self, ctx: Context) -> None:
        ctx.state["holding"] = None

    def on_bar(self, ctx: Context) -> None:
        history = ctx.get_bars(self.symbols, self.lookback + 1, "day")
        scores = {
            symbol: bars.get_momentum(self.lookback)
            for symbol, bars in history.items()
            if len(bars) > self.lookback
        }
        if not scores:
            return
        best = max(sorted(scores), key=lambda s: scores[s])
        holding = ctx.state["holding"]
        if best == holding:
            return
        proceeds = 0.0
        if holding is not None and ctx.position(holding):
            held = ctx.position(holding)
            proceeds = held * (ctx.get_last_price(holding) or 0.0)
            ctx.sell(holding, int(held))
        # Both orders fill at the next open (the sale first): keep 5% for the price moving.
        price = ctx.get_last_price(best)
        quantity = int(0.95 * (ctx.cash + proceeds) // price) if price else 0
        if quantity > 0:
            ctx.buy(best, quantity)
            ctx.state["holding"] = best


@dataclass
class IntradayBreakoutStrategy:
    """Every 5 minutes: buy when a 5-minute close breaks above the last hours' highs;
    exit when it falls below the last hourly low.
    """

    symbols: Sequence[str] = ("MES", "MNQ", "MYM")
    hours: int = 3
    allocation: float = 0.3

    def on_start(self, ctx: Context) -> None:
        pass

    def on_bar(self, ctx: Context) -> None:
        for symbol in self.symbols:
            five = ctx.get_historical_prices(symbol, 12, "5m")
            hourly = ctx.get_historical_prices(symbol, self.hours, "1h")
            if five.empty or len(hourly) < self.hours:
                continue
            close = five.df["close"].iloc[-1]
            held = ctx.position(symbol)
            if not held and close > hourly.df["high"].max():
                quantity = int(ctx.cash * self.allocation // close)
                if quantity > 0:
                    ctx.buy(symbol, quantity)
            elif held and close < hourly.df["low"].iloc[-1]:
                ctx.sell(symbol, int(held))
