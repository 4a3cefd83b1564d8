"""Cold start: from creating a DataSource to its first answer.

    python -m perf.bench_load            # five years of minute bars, 50 symbols (~2 min)
    python -m perf.bench_load --quick    # one year, 10 symbols; checks only the reference

Two scenarios on a directory catalog (written once to a cache folder): one symbol with five
years of 24h minute bars and a one-month backtest window; and ``get_bars`` over 50 symbols
with five years of 24h minute bars each, for the same month. Every source gets the same
start/end/lookback hints. The floor is a bare ``pl.scan_parquet(file).filter(window)
.collect()`` of the rows those hints load. The pandas reference is measured twice: as it
is, where the hints are checked but ignored (the parity oracle loads every stored bar, so
that no request can reach past what it holds), and "hinted", reading the catalog through
the same window (perf/_windowed.py), as a pandas user who knows the span would. Each figure
is the median of 11 cold starts (a new DataSource each time; the files stay in the OS page
cache), lazybars, the floor and the hinted reference measured in alternation; the reference
as it is takes seconds, and is timed once. Exit code 1 on a missed target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import polars as pl

import lazybars as lb
from lazybars._backend import file_name
from perf._harness import Check, parse_args, print_checks, print_table
from perf._windowed import WindowedStore, loaded_range

ZONE = "America/New_York"
START, END = "2023-06-01", "2023-07-01"
LOOKBACK = "7d"  # enough history for the first request's 200 bars
CLOCK = pd.Timestamp("2023-06-01 10:00", tz=ZONE)
# The rows a DataSource loads for those hints; the floor and the hinted reference read these.
LOADED = loaded_range(START, END, LOOKBACK, ZONE)


def _catalog(root: Path, symbols: list[str], years: int, session: str) -> lb.BarStore:
    store = lb.BarStore(root)
    missing = [s for s in symbols if s not in store.symbols()]
    first, last = f"{2024 - years}-01-02", "2024-01-02"
    for start in range(0, len(missing), 10):  # a few at a time: bounded memory
        chunk = missing[start : start + 10]
        for symbol, frame in lb.synth.catalog(chunk, first, last, session=session).items():
            store.write(symbol, frame)
    return store


def _median_seconds(*runs: Callable[[], object], rounds: int) -> list[float]:
    """Median seconds of each run, measured in alternation so that both see the same
    machine (page cache, other load) round by round."""
    for run in runs:
        run()  # the first run pays for imports and the page cache
    samples: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, times in zip(runs, samples, strict=True):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return [statistics.median(times) for times in samples]


def _floor(store: lb.BarStore, symbols: list[str]) -> Callable[[], object]:
    lo, hi = LOADED
    backend = store._backend
    files = [backend.location(file_name(s, lb.Timestep.parse("1m"))) for s in symbols]

    def run() -> object:
        return [
            pl.scan_parquet(f)
            .filter(pl.col("datetime").is_between(lo, hi, closed="left"))
            .collect()
            for f in files
        ]

    return run


def _ours(store: lb.BarStore, symbols: list[str]) -> Callable[[], object]:
    def run() -> object:
        src = lb.DataSource(store, timezone=ZONE, start=START, end=END, lookback=LOOKBACK)
        src.set_datetime(CLOCK)
        return src.get_bars(symbols, 200)

    return run


def _reference(store: lb.BarStore | WindowedStore, symbols: list[str]) -> Callable[[], object]:
    def run() -> object:
        ref = lb.reference.PandasDataSource(
            store, timezone=ZONE, start=START, end=END, lookback=LOOKBACK
        )
        ref.set_datetime(CLOCK)
        return ref.get_bars(symbols, 200)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one year, 10 symbols")
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache" / "lazybars" / "load")
    args = parse_args(parser)
    years = 1 if args.quick else 5
    many = [f"S{i:02d}" for i in range(10 if args.quick else 50)]
    scenarios = {
        f"1 symbol, {years} years of 24h minutes": (
            _catalog(args.data / f"one-{years}y", ["MES"], years, "24h"),
            ["MES"],
        ),
        f"get_bars over {len(many)} symbols, {years} years of 24h minutes each": (
            _catalog(args.data / f"many24-{len(many)}-{years}y", many, years, "24h"),
            many,
        ),
    }
    rows, checks = [], []
    for name, (store, symbols) in scenarios.items():
        hinted_store = WindowedStore(store, *LOADED)
        ours, floor, hinted = _median_seconds(
            _ours(store, symbols),
            _floor(store, symbols),
            _reference(hinted_store, symbols),
            rounds=11,
        )
        (reference,) = _median_seconds(_reference(store, symbols), rounds=1)
        rows.append(
            (
                name,
                ours * 1e3,
                floor * 1e3,
                f"{ours / floor:.2f}x",
                hinted * 1e3,
                f"{hinted / ours:.1f}x",
                reference * 1e3,
                f"{reference / ours:.0f}x",
            )
        )
        # Quick: cold starts of a few ms, too short to tell 1.3x from noise on a busy
        # machine; only the reference, which reads every year, is held to a (smaller) target.
        if not args.quick:
            checks.append(Check(f"{name}: lazybars / bare scan", ours / floor, 1.3))
            checks.append(Check(f"{name}: hinted reference / lazybars", hinted / ours, 1, True))
        checks.append(Check(f"{name}: reference / lazybars", reference / ours, 2 * years, True))
    print_table(
        f"Time to first answer, ms (one-month window {START} .. {END}, lookback {LOOKBACK}). "
        "lb: lazybars; floor: bare scan of the same rows; hinted ref: the reference reading "
        "only those rows; ref: the reference as it is (loads everything, hints ignored)",
        ["scenario", "lazybars", "floor", "lb/floor", "hinted ref", "hinted/lb", "ref", "ref/lb"],
        rows,
    )
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
