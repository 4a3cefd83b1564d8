"""What the lumibot backtest benchmarks share: the MES momentum strategy, and the
measurements of one backtest (CPU time of lumibot's strategy thread, time in wrapped calls,
fills, a profile). lumibot is imported only inside the functions: the benchmarks' parents
run without it and start a fresh process per measured backtest.
"""

from __future__ import annotations

import cProfile
import functools
import hashlib
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from typing import Any


def strategy_class(asset_type: str = "future", last_price: bool = False) -> type:
    """The MES momentum strategy of lumibot's polars plan, written from its description:
    every minute it asks for the last 200 bars (and, with ``last_price``, the last price,
    as lumibot's DataBento profile does), trades only when the close is on the same side
    of its 9-bar SMA as the last bar's move, and enters with a 3:1 bracket (stop 1.5 ATR
    away, target 4.5 ATR)."""
    import numpy as np
    from lumibot.entities import Asset, Order
    from lumibot.strategies import Strategy

    mes = Asset("MES", asset_type=asset_type)

    class MesMomentum(Strategy):
        parameters = {"timestep": "minute"}  # noqa: RUF012 (lumibot's convention)

        def initialize(self) -> None:
            self.sleeptime = "1M"
            self.set_market("us_futures")
            self.bracket = None  # the last bracket order: its legs are the only live orders

        def on_trading_iteration(self) -> None:
            bars = self.get_historical_prices(mes, 200, self.parameters["timestep"])
            if last_price:
                self.get_last_price(mes)
            if bars is None or len(bars) < 15:
                return
            df = bars.df
            close, high, low = (df[c].to_numpy() for c in ("close", "high", "low"))
            sma = close[-9:].mean()
            ranges = np.maximum(high[1:] - low[1:], np.abs(high[1:] - close[:-1]))
            atr = np.maximum(ranges, np.abs(low[1:] - close[:-1]))[-14:].mean()
            position = self.get_position(mes)
            legs = [] if self.bracket is None else [self.bracket, *self.bracket.child_orders]
            if any(leg.is_active() for leg in legs) or (position and position.quantity != 0):
                return
            move = close[-1] - close[-2]
            if close[-1] > sma and move > 0:
                side, sign = "buy", 1
            elif close[-1] < sma and move < 0:
                side, sign = "sell", -1
            else:
                return
            price = close[-1]
            order = self.create_order(
                mes,
                1,
                side,
                order_class=Order.OrderClass.BRACKET,
                secondary_limit_price=_tick(price + sign * 4.5 * atr),
                secondary_stop_price=_tick(price - sign * 1.5 * atr),
            )
            self.submit_order(order)
            self.bracket = order

    return MesMomentum


def _tick(price: float) -> float:
    return round(price * 4) / 4


class Clock:
    """Adds up the time spent inside the wrapped callables (outermost calls only).

    ``perf_counter``: it costs ~0.04 us a read (``thread_time`` ten times more, which
    would weigh on the runs it times); a data-layer call lasts microseconds, too short for
    other processes to stretch it much, unlike a whole backtest (timed in CPU time).
    Calls lasting milliseconds are better timed by ``time.thread_time``: pass it as
    ``timer``.
    """

    def __init__(self, timer: Any = time.perf_counter) -> None:
        self.seconds = 0.0
        self.depth = 0
        self.timer = timer

    def wrap(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            t0 = self.timer()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += self.timer() - t0
                self.depth -= 1

        return timed


# The data-source calls a strategy (and lumibot's broker) makes.
DATA_METHODS = ("get_historical_prices", "get_last_price", "get_last_prices", "get_quote")


class StrategyThread:
    """CPU seconds of lumibot's strategy thread per backtest (and a profile, if asked)."""

    def __init__(self, profile: bool) -> None:
        from lumibot.strategies.strategy_executor import StrategyExecutor

        self.seconds: list[float] = []
        self.profiler = cProfile.Profile() if profile else None
        run = StrategyExecutor.run

        def measured(executor: Any) -> Any:
            t0 = time.thread_time()
            if self.profiler is not None:
                self.profiler.enable()
            try:
                return run(executor)
            finally:
                if self.profiler is not None:
                    self.profiler.disable()
                self.seconds.append(time.thread_time() - t0)

        StrategyExecutor.run = measured


def fills(strategy: Any) -> list[tuple]:
    """The backtest's fills: time, symbol, side, type, price and quantity, as strings."""
    log = strategy.broker._trade_event_log_df
    if log.empty:
        return []
    filled = log[log["status"] == "fill"]
    columns = ["time", "symbol", "side", "type", "price", "filled_quantity"]
    return [tuple(str(v) for v in row) for row in filled[columns].itertuples(index=False)]


def digest(rows: list[tuple]) -> str:
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def top_functions(profiler: cProfile.Profile, top: int = 16) -> list:
    """The ``top`` functions by own time: name, calls, own and cumulative share."""
    stats = pstats.Stats(profiler).stats
    total = sum(tt for _, _, tt, _, _ in stats.values())
    rows = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    out = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in rows:
        where = path.split("site-packages/")[-1].split("/lazybars/")[-1]
        out.append((f"{where}:{line} {name}", calls, tottime / total, cumtime / total))
    return out


def run_in_child(command: list[str], label: str, *, cache_env: str | None = None) -> dict:
    """Run a benchmark's child process (``command``) in a fresh temporary directory and
    return the JSON its last line prints. ``cache_env``: an environment variable pointing
    the child's cache at that directory too."""
    with tempfile.TemporaryDirectory() as cwd:  # lumibot writes logs/ into the cwd
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        if cache_env is not None:
            env[cache_env] = cwd
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        msg = f"{label} failed"
        raise RuntimeError(msg)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {label}: {result['cpu']:.1f} s", file=sys.stderr)
    return result
