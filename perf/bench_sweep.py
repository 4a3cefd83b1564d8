"""Parameter sweeps: what a combination costs on Ray against the local engine.

    python -m perf.bench_sweep            # about a minute and a half on 2 cores
    python -m perf.bench_sweep --quick    # fewer combinations and rounds

Needs the ray extra (``pip install -e '.[dev,ray]'``). Starts one local Ray cluster on
loopback (``--cpus``, default: every core) and times, in alternation, median wall time
over rounds:

- a tiny ``run`` (returns a number) swept over many combinations: the per-combination
  overhead of ``lb.sweep`` locally, of ``lb.sweep`` on Ray, and of bare Ray tasks
  (``ray.get([f.remote(i) ...])``, the floor: Ray's own cost, without the sweep's rows,
  retries, progress or table);
- a real small backtest (MomentumStrategy on a 1m clock over 2 days, 24 combinations),
  each run opening the catalog on disk itself, locally and on Ray. Both tables must be
  identical but for timing and worker.

Wall time, not CPU time: on Ray the work happens in other processes. Exit code 1 if a
target is missed or the results differ.
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

# Before ray is imported: a single-machine cluster on 127.0.0.1, no usage statistics, and
# its token in the environment rather than written to ~/.ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

import polars as pl

import lazybars as lb
from lazybars import sim, strategies
from perf._harness import Check, parse_args, print_checks, print_table, require

GRID = {"fast": [5, 9, 13], "slow": [20, 30], "atr_stop": [1.0, 3.0], "symbol": ["MES", "MNQ"]}
START, END = "2024-01-08", "2024-01-10"


def tiny(params: dict) -> int:
    return params["i"] * 2


def backtest(params: dict, *, catalog: str) -> dict:
    store = lb.BarStore(catalog)
    symbols = [params.pop("symbol")]
    strategy = strategies.MomentumStrategy(symbols, **params)
    ticks = sim.clock(store, symbols, START, END, cadence="1m")
    return sim.run(strategy, lb.DataSource(store, start=START, end=END), ticks).stats()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(probes: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall seconds of each probe, run round-robin so that all see the same load."""
    samples: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(rounds):
        for name, probe in probes.items():
            samples[name].append(timed(probe))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer combinations and rounds")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="the cluster's CPUs")
    args = parse_args(parser)
    require("ray", "ray", "bench_sweep")
    import ray

    n_tiny, rounds = (100, 3) if args.quick else (400, 5)
    temp = tempfile.mkdtemp(prefix="lb-bench-")  # short: Ray's socket paths must fit
    try:
        catalog = os.path.join(temp, "catalog")
        store = lb.BarStore(catalog)
        for symbol, frame in lb.synth.catalog(("MES", "MNQ"), "2024-01-02", "2024-01-16").items():
            store.write(symbol, frame, timestep="minute")
        start = timed(
            lambda: ray.init(
                num_cpus=args.cpus, include_dashboard=False, _temp_dir=temp, log_to_driver=False
            )
        )
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        return _measure(ray, catalog, n_tiny, rounds, start, args.cpus)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _measure(ray: Any, catalog: str, n_tiny: int, rounds: int, start: float, cpus: int) -> int:
    run = functools.partial(backtest, catalog=catalog)
    sweep = functools.partial(lb.sweep, progress=False)
    first_ray = timed(lambda: sweep(run, GRID, engine="ray"))  # cold: workers import lazybars
    bare = ray.remote(tiny)
    grid = {"i": list(range(n_tiny))}
    tiny_wall = alternate(
        {
            "local": lambda: sweep(tiny, grid),
            "ray": lambda: sweep(tiny, grid, engine="ray"),
            "bare": lambda: ray.get([bare.remote({"i": i}) for i in range(n_tiny)]),
        },
        rounds,
    )
    tables: dict[str, pl.DataFrame] = {}

    def backtests(engine: str) -> None:
        tables[engine] = sweep(run, GRID, engine=engine)

    real_wall = alternate(
        {"local": lambda: backtests("local"), "ray": lambda: backtests("ray")}, max(3, rounds - 2)
    )
    same = tables["ray"].drop("seconds", "worker").equals(tables["local"].drop("seconds", "worker"))
    in_runs = tables["local"]["seconds"].sum()
    us = {name: wall / n_tiny * 1e6 for name, wall in tiny_wall.items()}
    n_real = tables["local"].height
    print_table(
        f"Per combination: median wall time of {rounds} rounds, {cpus} CPUs, Ray {ray.__version__}",
        ["sweep", "local", "Ray", "Ray / local", "bare Ray tasks", "Ray / bare"],
        [
            (
                f"tiny run, {n_tiny} combinations (us)",
                us["local"],
                us["ray"],
                f"{us['ray'] / us['local']:.0f}x",
                us["bare"],
                f"{us['ray'] / us['bare']:.2f}x",
            ),
            (
                f"MomentumStrategy, 1m clock over 2 days, {n_real} combinations (ms)",
                real_wall["local"] / n_real * 1e3,
                real_wall["ray"] / n_real * 1e3,
                f"{real_wall['ray'] / real_wall['local']:.2f}x",
                "",
                "",
            ),
        ],
    )
    print_table(
        "Fixed costs (s)",
        ["what", "seconds"],
        [
            (f"ray.init of a local cluster ({cpus} CPUs)", start),
            (f"first Ray sweep of {n_real} backtests (workers start, import lazybars)", first_ray),
            (f"later Ray sweep of {n_real} backtests (median)", real_wall["ray"]),
            (
                f"local sweep of {n_real} backtests (median; in runs: {in_runs:.2f})",
                real_wall["local"],
            ),
        ],
    )
    checks = [
        Check("backtests: Ray results identical to local (1 = yes)", float(same), 1, at_least=True),
        Check("tiny run: lb.sweep on Ray / bare Ray tasks", us["ray"] / us["bare"], 3),
        Check("backtests: Ray wall / local wall", real_wall["ray"] / real_wall["local"], 1.5),
    ]
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
