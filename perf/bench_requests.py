"""Per-request cost of lazybars' DataSource against floors and the pandas reference.

    python perf/bench_requests.py            # full run (about a minute)
    python perf/bench_requests.py --quick    # smaller, for a smoke test

One year of synthetic 24h minute bars, a 100-bar window. The clock steps forward one bar per
call, as a backtest does ("backtest order"); a second table repeats the requests at random
clocks. Floors do the least work that can answer the same request with the same data:
``bisect`` on a Python list of the bar ends, then a zero-copy polars slice, a pandas
``.iloc`` slice, or a ``list[float]`` lookup. Exit code 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import bisect
import random
import sys
import time
from functools import partial

import pandas as pd
import polars as pl

import lazybars as lb
from perf._harness import Check, print_checks, print_table, timed

ZONE = "America/New_York"
LENGTH = 100
COARSE_LENGTH = 200


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and sizes")
    args = parser.parse_args()
    calls = 2_000 if args.quick else 20_000
    year = lb.synth.minute_bars("MES", "2024-01-02", "2025-01-02", session="24h")
    store = lb.BarStore.from_frames({"MES": year})
    ends = (year["datetime"].dt.epoch("ns") + 60_000_000_000).to_list()
    middle = len(ends) // 2
    forward = ends[middle : middle + calls]
    shuffled = random.Random(0).sample(ends[LENGTH:], calls)
    checks: list[Check] = []
    for title, clocks in (("backtest order", forward), ("random clocks", shuffled)):
        rows, ratios = _compare(store, year, ends, clocks)
        print_table(f"1 year of minute bars ({len(year):,} rows), {title}", _COLUMNS, rows)
        if title == "backtest order":
            checks += ratios
    checks += _coarser(store, forward[: max(calls // 4, 500)])
    sizes = [10_000, 100_000, 1_000_000] + ([] if args.quick else [10_000_000])
    checks += _scaling(sizes, calls)
    return 0 if print_checks(checks) else 1


_COLUMNS = ["request", "lazybars us/call", "floor", "floor us/call", "x floor", "reference x"]


def _compare(
    store: lb.BarStore, year: pl.DataFrame, ends: list[int], clocks: list[int]
) -> tuple[list[tuple], list[Check]]:
    src = lb.DataSource(store, timezone=ZONE)
    ref = lb.reference.PandasDataSource(store, timezone=ZONE)
    frame = year
    pdf = lb.bars.frame_to_pandas(year)
    closes = year["close"].to_list()
    # The lazybars and reference runs go through the public API, clock included (a
    # backtest calls set_datetime once per bar); the floors get the clock as an int.
    stamps = [_aware(clock) for clock in clocks]

    def hist(clock: pd.Timestamp) -> object:
        src.set_datetime(clock)
        return src.get_historical_prices("MES", LENGTH)

    def hist_df(clock: pd.Timestamp) -> object:
        src.set_datetime(clock)
        return src.get_historical_prices("MES", LENGTH).df

    def last(clock: pd.Timestamp) -> object:
        src.set_datetime(clock)
        return src.get_last_price("MES")

    def floor_slice(clock: int) -> object:
        k = bisect.bisect_right(ends, clock)
        return frame.slice(k - LENGTH, LENGTH)

    def floor_iloc(clock: int) -> object:
        k = bisect.bisect_right(ends, clock)
        return pdf.iloc[k - LENGTH : k]

    def floor_list(clock: int) -> object:
        return closes[bisect.bisect_right(ends, clock) - 1]

    few = stamps[:200]

    def ref_hist(clock: pd.Timestamp) -> object:
        ref.set_datetime(clock)
        return ref.get_historical_prices("MES", LENGTH).df

    def ref_last(clock: pd.Timestamp) -> object:
        ref.set_datetime(clock)
        return ref.get_last_price("MES")

    ours = {
        "hist": timed(hist, stamps),
        "hist_df": timed(hist_df, stamps),
        "last": timed(last, stamps),
    }
    floors = {
        "hist": timed(floor_slice, clocks),
        "hist_df": timed(floor_iloc, clocks),
        "last": timed(floor_list, clocks),
    }
    reference = {
        "hist_df": timed(ref_hist, few, rounds=3),
        "last": timed(ref_last, few, rounds=3),
    }
    reference["hist"] = reference["hist_df"]
    names = {
        "hist": ("get_historical_prices(100)", "bisect + polars slice"),
        "hist_df": ("get_historical_prices(100).df", "bisect + pandas .iloc"),
        "last": ("get_last_price", "bisect + list[float]"),
    }
    limits = {"hist": 2.0, "hist_df": 1.5, "last": 3.0}
    rows, checks = [], []
    for key, (request, floor) in names.items():
        x_floor = ours[key] / floors[key]
        speedup = reference[key] / ours[key]
        rows.append((request, ours[key], floor, floors[key], f"{x_floor:.2f}x", f"{speedup:,.0f}x"))
        checks.append(Check(f"{request} / {floor}", x_floor, limits[key]))
        checks.append(Check(f"{request}: reference / lazybars", speedup, 20, at_least=True))
    return rows, checks


def _coarser(store: lb.BarStore, clocks: list[int]) -> list[Check]:
    """200-bar windows at coarser timesteps, against a 1m request of the same length."""
    stamps = [_aware(clock) for clock in clocks]
    few = stamps[:: max(1, len(stamps) // 10)][:10]
    ref = lb.reference.PandasDataSource(store, timezone=ZONE)
    rows, checks, costs = [], [], {}
    for timestep in ("1m", "5m", "1h", "day"):
        src = lb.DataSource(store, timezone=ZONE)
        src.set_datetime(stamps[0])
        t0 = time.perf_counter()
        src.get_historical_prices("MES", COARSE_LENGTH, timestep)
        build_ms = (time.perf_counter() - t0) * 1e3

        def ask(clock: pd.Timestamp, source: object = src, timestep: str = timestep) -> object:
            source.set_datetime(clock)
            return source.get_historical_prices("MES", COARSE_LENGTH, timestep)

        costs[timestep] = timed(ask, stamps)
        reference = timed(partial(ask, source=ref), few, rounds=1)
        x_minute = costs[timestep] / costs["1m"]
        speedup = reference / costs[timestep]
        rows.append(
            (timestep, build_ms, costs[timestep], f"{x_minute:.2f}x", reference, f"{speedup:,.0f}x")
        )
        if timestep != "1m":
            checks.append(Check(f"{timestep} request / 1m request", x_minute, 1.5))
            checks.append(
                Check(f"{timestep} request: reference / lazybars", speedup, 50, at_least=True)
            )
    print_table(
        f"Coarser timesteps, {COARSE_LENGTH}-bar windows, backtest order",
        [
            "timestep",
            "first request ms (load + aggregate)",
            "lazybars us/call",
            "x 1m",
            "reference us/call",
            "reference x",
        ],
        rows,
    )
    return checks


def _scaling(sizes: list[int], calls: int) -> list[Check]:
    rows, per_call = [], {}
    for size in sizes:
        frame = _rows(size)
        store = lb.BarStore.from_frames({"X": frame})
        src = lb.DataSource(store, timezone=ZONE)
        ends = (frame["datetime"].dt.epoch("ns") + 60_000_000_000).to_list()
        clocks = [_aware(c) for c in ends[size // 2 : size // 2 + calls]]

        def hist(clock: pd.Timestamp, src: lb.DataSource = src) -> object:
            src.set_datetime(clock)
            return src.get_historical_prices("X", LENGTH)

        def last(clock: pd.Timestamp, src: lb.DataSource = src) -> object:
            src.set_datetime(clock)
            return src.get_last_price("X")

        per_call[size] = (timed(hist, clocks), timed(last, clocks))
        rows.append((f"{size:,}", *per_call[size]))
        del frame, store, src, ends
    print_table(
        "Per-call cost by data size (backtest order)",
        ["rows", "get_historical_prices(100) us", "get_last_price us"],
        rows,
    )
    small, big = per_call[sizes[0]], per_call[sizes[-1]]
    return [
        Check(
            f"get_historical_prices at {sizes[-1]:,} / {sizes[0]:,} rows", big[0] / small[0], 1.3
        ),
        Check(f"get_last_price at {sizes[-1]:,} / {sizes[0]:,} rows", big[1] / small[1], 1.3),
    ]


def _rows(size: int) -> pl.DataFrame:
    # 24h sessions give ~354k minutes a year; take whole years, then cut to `size` rows.
    years = max(1, -(-size // 340_000))
    frame = lb.synth.minute_bars("X", "2000-01-03", f"{2000 + years}-01-03", session="24h", gaps=0)
    return frame.head(size)


def _aware(ns: int) -> pd.Timestamp:
    return pd.Timestamp(ns, tz="UTC").tz_convert(ZONE)


if __name__ == "__main__":
    sys.exit(main())
