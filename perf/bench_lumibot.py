"""lumibot backtests on PandasDataBacktesting and on LazyBarsBacktesting (needs the lumibot extra).

    python -m perf.bench_lumibot            # a month of minute bars (about 20 minutes)
    python -m perf.bench_lumibot --quick    # a week

The strategy is the MES momentum strategy of lumibot's polars plan, written here from its
description: every minute it asks for the last 200 bars, trades only when the close is on
the same side of its 9-bar SMA as the last bar's move, and enters with a 3:1 bracket (stop
1.5 ATR away, target 4.5 ATR). It runs three times per data source: on minute bars, on
'5 minutes' and on 'day' bars, all made from one month of synthetic 24h MES minute bars.

Every run is a fresh process (imports, caches and lumibot's own state start cold, then a
one-day warm-up backtest runs before the measured one). Per run: wall time of the measured
backtest, the share of it spent in the data layer (data-source calls and, for lazybars,
the deferred building of frames; timed by wrappers around them), fills and final value.

Baselines: ``PandasDataBacktesting`` is what a lumibot user runs today; the *ceiling* is
the same backtest with every history answer computed before the run (recorded from a
LazyBarsBacktesting run, pandas frames included, then replayed from a dict): the speedup
that free history would give, lumibot's own per-call work left as it is. Targets: identical
fills and final values; data-layer share <= 5% of the lazybars run; speedup >= 90% of the
ceiling's. A profile of the lazybars minute run shows where the remaining time goes.
Exit code 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import pstats
import subprocess
import sys
import tempfile
import time
from typing import Any

from perf._harness import Check, print_checks, print_table

VARIANTS = ("minute", "5 minutes", "day")
MODES = ("pandas", "lazybars", "ceiling")
START, END, QUICK_END = dt.datetime(2024, 1, 2), dt.datetime(2024, 2, 1), dt.datetime(2024, 1, 9)
WARMUP = (dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3))


def strategy_class() -> type:
    """The MES momentum strategy (defined lazily: lumibot is imported in child processes)."""
    import numpy as np
    from lumibot.entities import Asset, Order
    from lumibot.strategies import Strategy

    mes = Asset("MES", asset_type="future")

    class MesMomentum(Strategy):
        parameters = {"timestep": "minute"}  # noqa: RUF012 (lumibot's convention)

        def initialize(self) -> None:
            self.sleeptime = "1M"
            self.set_market("us_futures")

        def on_trading_iteration(self) -> None:
            bars = self.get_historical_prices(mes, 200, self.parameters["timestep"])
            if bars is None or len(bars) < 15:
                return
            df = bars.df
            close, high, low = (df[c].to_numpy() for c in ("close", "high", "low"))
            sma = close[-9:].mean()
            ranges = np.maximum(high[1:] - low[1:], np.abs(high[1:] - close[:-1]))
            atr = np.maximum(ranges, np.abs(low[1:] - close[:-1]))[-14:].mean()
            position = self.get_position(mes)
            busy = any(order.is_active() for order in self.get_orders())
            if busy or (position is not None and position.quantity != 0):
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

    return MesMomentum


def _tick(price: float) -> float:
    return round(price * 4) / 4


# -- a child process: one measured backtest -------------------------------------------------
class _Clock:
    """Adds up wall time inside the wrapped callables, outermost calls only."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.depth = 0

    def wrap(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return fn(*args, **kwargs)
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.depth -= 1

        return timed


_DATA_METHODS = ("get_historical_prices", "get_last_price", "get_last_prices", "get_quote")


def _time_data_layer(clock: _Clock) -> None:
    from lumibot.data_sources import PandasData

    from lazybars.lumibot._bars import LazyBars

    for name in _DATA_METHODS:
        setattr(PandasData, name, clock.wrap(getattr(PandasData, name)))
    for name in ("pandas_df", "polars_df"):
        getter = getattr(LazyBars, name).fget
        setattr(LazyBars, name, property(clock.wrap(getter)))


def _record_and_replay(source_class: type) -> dict:
    """Make ``get_historical_prices`` record its answers (pandas built) or replay them."""
    answers: dict = {}
    state = {"replay": False}
    original = source_class.get_historical_prices

    def get_historical_prices(self: Any, asset: Any, length: int, *args: Any, **kw: Any) -> Any:
        key = (self.get_datetime(), asset, length, args, tuple(sorted(kw.items())))
        if state["replay"]:
            return answers[key]
        bars = original(self, asset, length, *args, **kw)
        if bars is not None:
            bars.pandas_df  # noqa: B018 (built now, so that the replay builds nothing)
        answers[key] = bars
        return bars

    source_class.get_historical_prices = get_historical_prices
    return state


def _backtest(
    source_class: type, frames: Any, start: dt.datetime, end: dt.datetime, timestep: str
) -> Any:
    from lumibot.entities import Asset, Data

    from lazybars.lumibot import OFFLINE

    data = [Data(Asset("MES", asset_type="future"), frames.copy(), timestep="minute")]
    _, strategy = strategy_class().run_backtest(
        source_class,
        start,
        end,
        pandas_data=data,
        parameters={"timestep": timestep},
        **OFFLINE,
    )
    return strategy


def _fills(strategy: Any) -> list[tuple]:
    log = strategy.broker._trade_event_log_df
    fills = log[log["status"] == "fill"]
    columns = ["time", "symbol", "side", "type", "price", "filled_quantity"]
    return [tuple(str(v) for v in row) for row in fills[columns].itertuples(index=False)]


def child(variant: str, mode: str, quick: bool, profile: bool) -> dict:
    """One measured backtest in this (fresh) process; returns its figures."""
    from lumibot.backtesting import PandasDataBacktesting

    import lazybars as lb
    from lazybars.lumibot import LazyBarsBacktesting

    logging.disable(logging.WARNING)
    end = QUICK_END if quick else END
    bars = lb.synth.minute_bars("MES", START, end + dt.timedelta(days=1), session="24h")
    frames = bars.to_pandas().set_index("datetime")
    source_class = PandasDataBacktesting if mode == "pandas" else LazyBarsBacktesting
    _backtest(source_class, frames, *WARMUP, variant)
    state = _record_and_replay(source_class) if mode == "ceiling" else None
    if state is not None:
        _backtest(source_class, frames, START, end, variant)
        state["replay"] = True
    clock = _Clock()
    _time_data_layer(clock)
    profiler = _thread_profiler() if profile else None
    t0 = time.perf_counter()
    strategy = _backtest(source_class, frames, START, end, variant)
    wall = time.perf_counter() - t0
    fills = _fills(strategy)
    out = {
        "wall": wall,
        "data": clock.seconds,
        "fills": len(fills),
        "digest": hashlib.sha256(repr(fills).encode()).hexdigest(),
        "value": float(strategy.portfolio_value),
        "iterations": len(strategy.broker.data_source._date_index),
    }
    if profiler is not None:
        out["profile"] = _top_functions(profiler, wall)
    return out


def _thread_profiler() -> cProfile.Profile:
    """A profiler of lumibot's strategy thread (cProfile sees one thread only)."""
    from lumibot.strategies.strategy_executor import StrategyExecutor

    profiler = cProfile.Profile()
    run = StrategyExecutor.run

    def profiled(self: Any) -> Any:
        profiler.enable()
        try:
            return run(self)
        finally:
            profiler.disable()

    StrategyExecutor.run = profiled
    return profiler


def _top_functions(profiler: cProfile.Profile, wall: float, top: int = 14) -> list:
    stats = pstats.Stats(profiler).stats
    total = sum(tt for _, _, tt, _, _ in stats.values())
    rows = sorted(stats.items(), key=lambda item: -item[1][2])[:top]
    out = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in rows:
        where = path.split("site-packages/")[-1].split("/lazybars/")[-1]
        out.append((f"{where}:{line} {name}", calls, tottime / total, cumtime / total))
    del wall
    return out


# -- the parent: fresh processes, one table ---------------------------------------------------
def run_child(variant: str, mode: str, quick: bool, profile: bool = False) -> dict:
    command = [sys.executable, "-m", "perf.bench_lumibot", "--child", variant, mode]
    command += ["--quick"] * quick + ["--profile"] * profile
    with tempfile.TemporaryDirectory() as cwd:  # lumibot writes logs/ into the cwd
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        msg = f"{variant}/{mode} failed"
        raise RuntimeError(msg)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a week of bars, not a month")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(*args.child, quick=args.quick, profile=args.profile)
        print(json.dumps(result))
        return 0
    rows, checks = [], []
    for variant in VARIANTS:
        runs = {mode: run_child(variant, mode, args.quick) for mode in MODES}
        pandas_run, lazy, ceiling = (runs[m] for m in MODES)
        same = all(
            (r["digest"], r["value"]) == (pandas_run["digest"], pandas_run["value"])
            for r in (lazy, ceiling)
        )
        speedup = pandas_run["wall"] / lazy["wall"]
        ceiling_speedup = pandas_run["wall"] / ceiling["wall"]
        rows.append(
            (
                f"{variant!r} ({lazy['iterations']:,} clocks)",
                pandas_run["wall"],
                f"{pandas_run['data'] / pandas_run['wall']:.0%}",
                lazy["wall"],
                f"{lazy['data'] / lazy['wall']:.1%}",
                ceiling["wall"],
                f"{speedup:.2f}x",
                f"{ceiling_speedup:.2f}x",
                f"{speedup / ceiling_speedup:.0%}",
                lazy["fills"],
                f"{lazy['value']:,.2f}",
                "yes" if same else "NO",
            )
        )
        checks += [
            Check(
                f"{variant!r}: identical fills and final value (1 = yes)",
                float(same),
                1,
                at_least=True,
            ),
            Check(
                f"{variant!r}: data-layer share of the lazybars run",
                lazy["data"] / lazy["wall"],
                0.05,
            ),
            Check(
                f"{variant!r}: speedup / ceiling speedup",
                speedup / ceiling_speedup,
                0.9,
                at_least=True,
            ),
        ]
    span = "a week" if args.quick else "a month"
    print_table(
        f"MES momentum on lumibot, {span} of 24h minute bars (seconds of the measured backtest)",
        [
            "history asked",
            "PandasData s",
            "data layer",
            "lazybars s",
            "data layer",
            "ceiling s",
            "speedup",
            "ceiling",
            "of ceiling",
            "fills",
            "final value",
            "identical",
        ],
        rows,
    )
    profiled = run_child("minute", "lazybars", args.quick, profile=True)
    print_table(
        "Where the lazybars minute run spends its time (cProfile of lumibot's strategy thread)",
        ["function", "calls", "own time", "with callees"],
        [
            (name, f"{calls:,}", f"{own:.1%}", f"{cum:.1%}")
            for name, calls, own, cum in profiled["profile"]
        ],
    )
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
