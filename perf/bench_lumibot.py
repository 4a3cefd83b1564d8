"""lumibot backtests on PandasDataBacktesting and on LazyBarsBacktesting (needs the lumibot extra).

    python -m perf.bench_lumibot            # a month of minute bars (about 15 minutes)
    python -m perf.bench_lumibot --quick    # a week (about 4 minutes)

The strategy is the MES momentum strategy of lumibot's polars plan, written here from its
description: every minute it asks for the last 200 bars, trades only when the close is on
the same side of its 9-bar SMA as the last bar's move, and enters with a 3:1 bracket (stop
1.5 ATR away, target 4.5 ATR). It runs three times per data source: on minute bars, on
'5 minutes' and on 'day' bars, all made from synthetic 24h MES minute bars (a month of
backtest, after a month of history).

Every mode runs in a fresh process: a one-day warm-up backtest, then the measured one
(``--repeats N``: the fastest of N). Time is the CPU time of lumibot's strategy thread,
where the whole backtest runs: on a shared machine other processes stretch wall time by
tens of percent from run to run, and barely touch a thread's CPU time. Per run: that time;
the share of it in the data layer (data-source calls, lumibot's own PandasData code in them
included, plus lazybars' deferred frame building; timed by wrappers, ~0.1 us a call of
overhead), and in lazybars' own code alone; fills and final value.

Baselines: ``PandasDataBacktesting`` is what a lumibot user runs today; the *ceiling* is
the same backtest with every history answer computed before the run (recorded from a
LazyBarsBacktesting run in the same process, pandas frames built, then replayed from a
dict, lumibot's history plumbing skipped): what free history would give, everything else
lumibot does per clock left as it is (its data layer is what stays: quotes, last prices,
lumibot's own code around them). Targets: identical fills and final values;
data-layer share <= 5% of the lazybars run; speedup >= 90% of the ceiling's. A profile of
the lazybars minute run shows where the remaining time goes.
Exit code 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import sys
import time
from collections import defaultdict
from typing import Any

from perf import _lumibot
from perf._backtests import (
    DATA_METHODS,
    Clock,
    StrategyThread,
    digest,
    fills,
    run_in_child,
    strategy_class,
    top_functions,
)
from perf._harness import Check, parse_args, print_checks, print_table

VARIANTS = ("minute", "5 minutes", "day")
MODES = ("pandas", "lazybars", "ceiling")
# The bars start a month before the backtest, so that every variant has its history.
HISTORY, START = dt.datetime(2023, 12, 1), dt.datetime(2024, 1, 2)
END, QUICK_END = dt.datetime(2024, 2, 1), dt.datetime(2024, 1, 9)
WARMUP = (dt.datetime(2023, 12, 4), dt.datetime(2023, 12, 5))


# -- a child process: measured backtests --------------------------------------------------
def _time_data_layer(clock: Clock, own: Clock) -> None:
    """Time the data layer: data-source calls (lumibot's PandasData code included) and
    lazybars' deferred frame building; ``own`` times lazybars' code only."""
    from lumibot.data_sources import PandasData

    from lazybars.lumibot._bars import LazyBars
    from lazybars.lumibot._data import LumibotData

    for name in DATA_METHODS:
        setattr(PandasData, name, clock.wrap(getattr(PandasData, name)))
    for name in ("get_bars", "get_last_price", "get_quote"):
        setattr(LumibotData, name, own.wrap(getattr(LumibotData, name)))
    for name in ("pandas_df", "polars_df"):
        getter = getattr(LazyBars, name).fget
        setattr(LazyBars, name, property(clock.wrap(own.wrap(getter))))


def _record_and_replay(source_class: type, runs: int) -> dict:
    """Make ``get_historical_prices`` record its answers, or replay them for ``runs`` runs.

    Each answer is recorded once for lumibot and ``runs`` more times, kept with their frames
    built and untouched, so that every replayed run hands out answers as fresh as a data
    source's (lumibot's first use of a frame warms pandas caches on it). Identical requests
    (two orders checked at one clock) get one recorded answer each, in order. Set
    ``state["run"]`` to a run's number before it starts.
    """
    answers: dict = defaultdict(list)
    state: dict[str, Any] = {"replay": False, "run": 0, "seen": defaultdict(int)}
    original = source_class.get_historical_prices

    def get_historical_prices(self: Any, asset: Any, length: int, *args: Any, **kw: Any) -> Any:
        key = (self.get_datetime(), asset, length, args, tuple(sorted(kw.items())))
        if state["replay"]:
            occurrence = state["seen"][key]
            state["seen"][key] += 1
            copies = answers[key][occurrence]
            # Released once handed out, as a data source's answers are: the garbage
            # collector would otherwise scan every recorded answer for the whole run.
            answer, copies[state["run"]] = copies[state["run"]], None
            return answer
        kept = [original(self, asset, length, *args, **kw) for _ in range(runs)]
        for answer in kept:
            if answer is not None:
                answer.polars_df if kw.get("return_polars") else answer.pandas_df
        answers[key].append(kept)
        return original(self, asset, length, *args, **kw)

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


def child(variant: str, mode: str, quick: bool, profile: bool, repeats: int) -> dict:
    """Measured backtests in this (fresh) process; returns the figures of the fastest."""
    from lumibot.backtesting import PandasDataBacktesting

    import lazybars as lb
    from lazybars.lumibot import LazyBarsBacktesting

    logging.disable(logging.CRITICAL)
    end = QUICK_END if quick else END
    bars = lb.synth.minute_bars("MES", HISTORY, end + dt.timedelta(days=1), session="24h")
    frames = bars.to_pandas().set_index("datetime")
    source_class = PandasDataBacktesting if mode == "pandas" else LazyBarsBacktesting
    _backtest(source_class, frames, *WARMUP, variant)
    state = _record_and_replay(source_class, repeats) if mode == "ceiling" else None
    if state is not None:
        _backtest(source_class, frames, START, end, variant)
        state["replay"] = True
    clock, own = Clock(), Clock()
    _time_data_layer(clock, own)
    thread = StrategyThread(profile)
    runs = []
    for run in range(repeats):
        if state is not None:
            state["run"], state["seen"] = run, defaultdict(int)
        clock.seconds = own.seconds = 0.0
        t0 = time.perf_counter()
        strategy = _backtest(source_class, frames, START, end, variant)
        wall = time.perf_counter() - t0
        cpu = thread.seconds[-1]
        runs.append({"cpu": cpu, "wall": wall, "data": clock.seconds, "own": own.seconds})
    filled = fills(strategy)
    out = {
        **min(runs, key=lambda run: run["cpu"]),
        "fills": len(filled),
        "digest": digest(filled),
        "value": float(strategy.portfolio_value),
        "clocks": _clocks(strategy.broker.data_source._date_index, end),
    }
    if thread.profiler is not None:
        out["profile"] = top_functions(thread.profiler)
    return out


def _clocks(grid: Any, end: dt.datetime) -> int:
    """How many grid times the backtest steps through (the grid also covers the history)."""
    first, last = (grid.tz.localize(t) for t in (START, end))
    return int(((grid >= first) & (grid < last)).sum())


# -- the parent: fresh processes, one table ---------------------------------------------------
def run_child(variant: str, mode: str, args: argparse.Namespace, profile: bool = False) -> dict:
    command = [sys.executable, "-m", "perf.bench_lumibot", "--child", variant, mode]
    command += ["--repeats", str(args.repeats)] + ["--quick"] * args.quick
    command += ["--profile"] * profile
    return run_in_child(command, f"{variant!r} on {mode}")


def _compare(variant: str, runs: dict) -> tuple[tuple, list[Check]]:
    pandas_run, lazy, ceiling = (runs[m] for m in MODES)
    same = all(
        (r["digest"], r["value"]) == (pandas_run["digest"], pandas_run["value"])
        for r in (lazy, ceiling)
    )
    speedup = pandas_run["cpu"] / lazy["cpu"]
    ceiling_speedup = pandas_run["cpu"] / ceiling["cpu"]
    share = lazy["data"] / lazy["cpu"]
    row = (
        f"{variant!r} ({lazy['clocks']:,} clocks)",
        pandas_run["cpu"],
        f"{pandas_run['data'] / pandas_run['cpu']:.0%}",
        lazy["cpu"],
        f"{share:.1%}",
        f"{lazy['own'] / lazy['cpu']:.1%}",
        ceiling["cpu"],
        f"{ceiling['data'] / ceiling['cpu']:.1%}",
        f"{speedup:.2f}x",
        f"{ceiling_speedup:.2f}x",
        f"{speedup / ceiling_speedup:.0%}",
        lazy["fills"],
        f"{lazy['value']:,.2f}",
        "yes" if same else "NO",
    )
    checks = [
        Check(f"{variant!r}: identical fills and final value (1 = yes)", float(same), 1, True),
        Check(f"{variant!r}: data-layer share of the lazybars run", share, 0.05),
        Check(f"{variant!r}: speedup / ceiling speedup", speedup / ceiling_speedup, 0.9, True),
    ]
    return row, checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a week of bars, not a month")
    parser.add_argument("--repeats", type=int, default=1, help="measured runs per process")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parse_args(parser)
    reason = _lumibot.missing()
    if reason:
        sys.exit(f"bench_lumibot needs lumibot: {reason}")
    if args.child:
        result = child(*args.child, args.quick, args.profile, args.repeats)
        print(json.dumps(result))
        return 0
    rows, checks = [], []
    for variant in VARIANTS:
        row, targets = _compare(variant, {mode: run_child(variant, mode, args) for mode in MODES})
        rows.append(row)
        checks += targets
    span = "a week" if args.quick else "a month"
    print_table(
        f"MES momentum on lumibot, {span} of 24h minute bars: CPU seconds of lumibot's "
        "strategy thread",
        [
            "history asked",
            "PandasData s",
            "data layer",
            "lazybars s",
            "data layer",
            "lazybars code",
            "ceiling s",
            "data layer",
            "speedup",
            "ceiling",
            "of ceiling",
            "fills",
            "value",
            "same",
        ],
        rows,
    )
    profiled = run_child("minute", "lazybars", args, profile=True)
    print_table(
        "Where the lazybars minute run spends its time (cProfile of lumibot's strategy thread)",
        ["function", "calls", "own time", "with callees"],
        [(name, f"{n:,}", f"{own:.1%}", f"{cum:.1%}") for name, n, own, cum in profiled["profile"]],
    )
    met = print_checks(checks)
    if args.quick:  # a week is too short for the time shares; identical fills must hold
        print("--quick: only identical fills are enforced; the full run holds the rest")
        return 0 if all(c.ok for c in checks if "identical" in c.name) else 1
    return 0 if met else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
