"""A small, honest event-driven backtest loop over a DataSource (either backend).

The clock steps over bar closes at a chosen cadence. At each tick, orders placed on the
previous ticks are settled first, then the strategy's ``on_bar(ctx)`` runs, then the
equity is marked at the last visible closes. A market order placed at tick ``t`` fills at
the open of the first bar (finest stored timestep) that starts at or after ``t``. The sim
asks the data source for that bar explicitly, with ``timeshift=-1``, the one sanctioned
form of lookahead. The fill reaches cash and positions on the first later tick at which that
bar has begun, so a strategy never sees a price before its time.

Examples
--------
>>> import lazybars as lb
>>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES", gaps=0)})
>>> class BuyOnce:
...     def on_start(self, ctx):
...         self.done = False
...     def on_bar(self, ctx):
...         if not self.done:
...             ctx.buy("MES", 1)
...             self.done = True
>>> clock = lb.sim.clock(store, ["MES"], "2024-01-03", "2024-01-04", cadence="5m")
>>> result = lb.sim.run(BuyOnce(), lb.DataSource(store), clock, symbols=["MES"], cash=10_000.0)
>>> [(t.side, t.quantity) for t in result.trades]
[('buy', 1)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import polars as pl

from lazybars._aggregate import bar_ends, bucket_bounds
from lazybars.bars import Bars
from lazybars.errors import InvalidRequest, UnknownAsset
from lazybars.store import BarStore
from lazybars.timestep import Timestep

__all__ = ["Context", "Rejection", "Result", "Strategy", "Trade", "clock", "run"]


class Source(Protocol):
    """What the sim needs of a data source: lazybars.DataSource and the reference qualify."""

    def set_datetime(self, dt: Any) -> None: ...

    def get_historical_prices(self, asset: Any, length: int, *args: Any, **kwargs: Any) -> Bars: ...

    def get_last_price(self, asset: Any) -> float | None: ...

    def get_bars(self, assets: Any, length: int, *args: Any, **kwargs: Any) -> dict[str, Bars]: ...


class Strategy(Protocol):
    """A strategy: ``on_start(ctx)`` once, then ``on_bar(ctx)`` at every tick."""

    def on_start(self, ctx: Context) -> None: ...

    def on_bar(self, ctx: Context) -> None: ...


@dataclass(frozen=True, slots=True)
class Trade:
    """A fill: when (the start of the bar whose open it took), what, and at what price."""

    time: pd.Timestamp
    symbol: str
    side: str
    quantity: float
    price: float
    commission: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """An order that was not filled, and why."""

    time: pd.Timestamp
    symbol: str
    quantity: float
    reason: str


@dataclass(frozen=True, slots=True)
class _Order:
    placed: pd.Timestamp
    symbol: str
    quantity: float  # > 0 buys, < 0 sells


@dataclass
class Result:
    """Trades, rejections, the equity curve (marked at every tick) and summary statistics."""

    trades: list[Trade]
    rejections: list[Rejection]
    equity: pd.Series
    cash: float
    positions: dict[str, float]
    history_calls: int = 0

    @property
    def total_return(self) -> float:
        """Final equity over starting equity, minus one."""
        return float(self.equity.iloc[-1] / self.equity.iloc[0] - 1.0)

    @property
    def max_drawdown(self) -> float:
        """The largest fall from a running peak, as a fraction of that peak (>= 0)."""
        values = self.equity.to_numpy()
        peaks = np.maximum.accumulate(values)
        return float(np.max(1.0 - values / peaks))

    def stats(self) -> dict[str, float]:
        """total_return, max_drawdown, trades and final_equity, for reports."""
        return {
            "total_return": self.total_return,
            "max_drawdown": self.max_drawdown,
            "trades": float(len(self.trades)),
            "final_equity": float(self.equity.iloc[-1]),
        }


@dataclass
class Context:
    """What a strategy sees: the clock, the data source, its account, and order entry."""

    source: Source
    symbols: tuple[str, ...]
    cash: float
    fractional: bool
    now: pd.Timestamp | None = None
    positions: dict[str, float] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    _orders: list[_Order] = field(default_factory=list)
    _calls: int = 0

    def get_historical_prices(self, symbol: str, length: int, timestep: str | None = None) -> Bars:
        """The source's bars as of the current tick (see DataSource)."""
        self._calls += 1
        return self.source.get_historical_prices(symbol, length, timestep)

    def get_bars(self, symbols: Iterable[str], length: int, timestep: str | None = None) -> dict:
        """Bars of several symbols as of the current tick, keyed by symbol."""
        symbols = list(symbols)
        self._calls += len(symbols)
        return self.source.get_bars(symbols, length, timestep)

    def get_last_price(self, symbol: str) -> float | None:
        """The last visible close of ``symbol``."""
        self._calls += 1
        return self.source.get_last_price(symbol)

    def position(self, symbol: str) -> float:
        """The quantity held of ``symbol`` (0 when flat)."""
        return self.positions.get(symbol, 0.0)

    def buy(self, symbol: str, quantity: float) -> None:
        """Place a market order to buy ``quantity``, filled at the next bar's open."""
        self._orders.append(_Order(self.now, *self._checked(symbol, quantity)))

    def sell(self, symbol: str, quantity: float) -> None:
        """Place a market order to sell ``quantity`` (long only: at most what is held)."""
        name, qty = self._checked(symbol, quantity)
        self._orders.append(_Order(self.now, name, -qty))

    def _checked(self, symbol: str, quantity: float) -> tuple[str, float]:
        if symbol not in self.symbols:
            msg = f"order for unknown symbol {symbol!r}; this backtest trades {list(self.symbols)}"
            raise UnknownAsset(msg)
        whole = isinstance(quantity, int | np.integer) and not isinstance(quantity, bool)
        valid = whole or (self.fractional and isinstance(quantity, float))
        if not valid or not quantity > 0 or not math.isfinite(quantity):
            kind = "a positive number" if self.fractional else "a positive whole number"
            msg = f"order quantity must be {kind}, got {quantity!r}"
            raise InvalidRequest(msg)
        return symbol, quantity


def clock(
    store: BarStore,
    symbols: Sequence[str],
    start: Any,
    end: Any,
    *,
    cadence: str = "1m",
    timezone: str = "America/New_York",
) -> list[pd.Timestamp]:
    """The ticks of a backtest: every close, at ``cadence``, of a bar of any of ``symbols``
    whose start lies in ``[start, end)`` (naive bounds are read in ``timezone``).
    """
    step = Timestep.parse(cadence)
    starts = [
        store.scan(symbol, timezone=timezone).between(start, end).collect()["datetime"]
        for symbol in symbols
    ]
    native = np.unique(np.concatenate([s.dt.epoch("ns").to_numpy() for s in starts]))
    finest = min(Timestep.parse(store.timesteps(s)[0]) for s in symbols)
    if step < finest:
        msg = f"cadence {cadence!r} is finer than the stored {finest} bars; use {finest} or coarser"
        raise InvalidRequest(msg)
    if step == finest and not step.is_day:
        ends = native + step.nanos
    elif step == finest:
        # The stored day bars' own closes, at the midnights of the zones they were written in.
        ends = np.concatenate(
            [
                bar_ends(s.dt.epoch("ns").to_numpy(), step, store.zone(symbol, step))
                for symbol, s in zip(symbols, starts, strict=True)
            ]
        )
    else:
        ends = bucket_bounds(native, step, timezone)[1]
    ticks = pl.Series(np.unique(ends)).cast(pl.Datetime("ns", "UTC"))
    return ticks.dt.convert_time_zone(timezone).to_pandas().tolist()


def run(
    strategy: Strategy,
    source: Source,
    ticks: Sequence[pd.Timestamp],
    *,
    symbols: Sequence[str] | None = None,
    cash: float = 100_000.0,
    commission: float = 0.0,
    fractional: bool = False,
    progress: Any = None,
) -> Result:
    """Run ``strategy`` over ``ticks`` against ``source`` and return its :class:`Result`.

    ``symbols`` defaults to the symbols the strategy declares (``strategy.symbols``);
    ``commission`` is charged per trade; ``progress`` (optional) is called once per tick.
    """
    names = tuple(symbols if symbols is not None else strategy.symbols)
    ctx = Context(source=source, symbols=names, cash=float(cash), fractional=fractional)
    broker = _Broker(ctx, commission)
    equity = []
    strategy.on_start(ctx)
    for tick in ticks:
        ctx.now = tick
        source.set_datetime(tick)
        broker.settle(tick)
        strategy.on_bar(ctx)
        broker.route()
        equity.append(broker.mark())
        if progress is not None:
            progress()
    index = pd.DatetimeIndex(list(ticks), name="datetime")
    return Result(
        trades=broker.trades,
        rejections=broker.rejections,
        equity=pd.Series(equity, index=index, name="equity", dtype="float64"),
        cash=ctx.cash,
        positions={s: q for s, q in ctx.positions.items() if q},
        history_calls=ctx._calls,
    )


class _Broker:
    """Fills market orders at the next bar's open; settles them when their bar starts."""

    def __init__(self, ctx: Context, commission: float) -> None:
        self._ctx = ctx
        self._commission = float(commission)
        self._pending: list[tuple[_Order, Bars]] = []
        self.trades: list[Trade] = []
        self.rejections: list[Rejection] = []

    def route(self) -> None:
        """Look up each new order's fill bar: the first bar after the current tick."""
        ctx = self._ctx
        for order in ctx._orders:
            nxt = ctx.source.get_historical_prices(order.symbol, 1, timeshift=-1)
            last = ctx.source.get_historical_prices(order.symbol, 1)
            if nxt.empty or (not last.empty and nxt.pl["datetime"][0] == last.pl["datetime"][0]):
                self._reject(order, "no later bar to fill at")
            else:
                self._pending.append((order, nxt))
        ctx._orders.clear()

    def settle(self, tick: pd.Timestamp) -> None:
        """Apply the fills whose bar has started by ``tick``, in order."""
        waiting = []
        for order, bar in self._pending:
            start = bar.df.index[0]
            if start > tick:
                waiting.append((order, bar))
            else:
                self._fill(order, start, float(bar.df["open"].iloc[0]))
        self._pending = waiting

    def mark(self) -> float:
        """Cash plus every position at its last visible close."""
        ctx = self._ctx
        value = ctx.cash
        for symbol, qty in ctx.positions.items():
            if qty:
                value += qty * (ctx.source.get_last_price(symbol) or 0.0)
        return value

    def _fill(self, order: _Order, when: pd.Timestamp, price: float) -> None:
        ctx = self._ctx
        held = ctx.positions.get(order.symbol, 0.0)
        cost = order.quantity * price + self._commission
        if order.quantity > 0 and cost > ctx.cash:
            self._reject(order, f"not enough cash: {cost:,.2f} needed, {ctx.cash:,.2f} held")
            return
        if order.quantity < 0 and -order.quantity > held:
            self._reject(order, f"cannot sell {-order.quantity} of {held} held (long only)")
            return
        ctx.cash -= cost
        ctx.positions[order.symbol] = held + order.quantity
        side = "buy" if order.quantity > 0 else "sell"
        trade = Trade(when, order.symbol, side, abs(order.quantity), price, self._commission)
        self.trades.append(trade)

    def _reject(self, order: _Order, reason: str) -> None:
        self.rejections.append(Rejection(order.placed, order.symbol, order.quantity, reason))
