"""First aggregation of a coarser timestep: lazybars against pandas' ``resample``.

    python -m perf.bench_resample            # a year of 24h minute bars (a few seconds)
    python -m perf.bench_resample --quick    # a quarter

One symbol's 24h minute bars in New York, already in memory. For each timestep, the time
to aggregate all of them once:

- query: ``store.scan(symbol).resample(ts).collect()`` on an in-memory store;
- DataSource: the first ``get_historical_prices(symbol, 100, ts).df`` of a fresh source
  whose minute bars are already loaded: the aggregation plus the bucket ends and the
  pandas frame it keeps, what a backtest pays once per asset and timestep;
- pandas: ``frame.resample(rule).agg(...)`` on the same bars as a tz-aware pandas frame,
  dropping empty buckets.

The query's answer is checked equal to pandas' before timing. Wall time (polars works on
several threads), the median of rounds run in alternation. Exit code 1 on a missed target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import pandas as pd

import lazybars as lb
from perf._harness import Check, parse_args, print_checks, print_table

ZONE = "America/New_York"
RULES = {"5m": "5min", "1h": "1h", "day": "D"}
AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
# The first 5m aggregation took 3x pandas' resample when buckets were found by a Python
# function inside the plan; native polars must stay below that.
LIMIT = 3.0


def _resample(frame: pd.DataFrame, rule: str) -> pd.DataFrame:
    return frame.resample(rule).agg(AGG).dropna(subset=["open"])


def _query(store: lb.BarStore, ts: str) -> Callable[[], object]:
    return lambda: store.scan("MES").resample(ts).collect()


def _first_request(store: lb.BarStore, ts: str, clock: pd.Timestamp) -> Callable[[], object]:
    """A fresh source with its minute bars loaded (untimed), then its first ``ts`` request."""
    sources: list[lb.DataSource] = []

    def prepare() -> None:
        src = lb.DataSource(store, timezone=ZONE)
        src.set_datetime(clock)
        src.get_historical_prices("MES", 100)
        sources.append(src)

    def run() -> object:
        return sources.pop().get_historical_prices("MES", 100, ts).df

    run.prepare = prepare  # type: ignore[attr-defined]
    return run


def _same_answer(store: lb.BarStore, frame: pd.DataFrame, ts: str) -> None:
    got = store.scan("MES").resample(ts).to_pandas()
    want = _resample(frame, RULES[ts])
    pd.testing.assert_frame_equal(got, want, check_freq=False, check_names=False)


def _medians(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        for name, run in runs.items():
            getattr(run, "prepare", lambda: None)()
            t0 = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(times[1:]) * 1e3 for name, times in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter, fewer rounds")
    args = parse_args(parser)
    end, rounds = ("2024-04-02", 5) if args.quick else ("2025-01-02", 11)
    minute = lb.synth.minute_bars("MES", "2024-01-02", end, session="24h")
    store = lb.BarStore.from_frames({"MES": minute})
    frame = lb.bars.frame_to_pandas(minute).tz_convert(ZONE)
    clock = frame.index[len(frame) // 2]
    rows, checks = [], []
    for ts, rule in RULES.items():
        _same_answer(store, frame, ts)
        ms = _medians(
            {
                "query": _query(store, ts),
                "source": _first_request(store, ts, clock),
                "pandas": lambda rule=rule: _resample(frame, rule),
            },
            rounds,
        )
        query, source, pandas = ms["query"], ms["source"], ms["pandas"]
        rows.append(
            (ts, query, source, pandas, f"{query / pandas:.2f}x", f"{source / pandas:.2f}x")
        )
        checks.append(Check(f"{ts}: query / pandas resample", query / pandas, LIMIT))
    print_table(
        f"First aggregation of {len(minute):,} 24h minute bars, ms (wall, median of {rounds}). "
        "query: scan().resample().collect(); DataSource: first get_historical_prices(100, ts)"
        ".df with minute bars loaded; pandas: resample(rule).agg(...)",
        ["timestep", "query", "DataSource", "pandas", "query/pandas", "DataSource/pandas"],
        rows,
    )
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
