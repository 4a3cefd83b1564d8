"""Peak memory of a one-month backtest: lazybars against the pandas reference.

    python -m perf.memory                          # every backend, side by side
    python -m perf.memory --quick                  # a week on one year of bars, a smoke run
    python -m perf.memory --backend lazybars       # one backend, e.g. under memray:
    memray run -f -o lazybars.bin -m perf.memory --backend lazybars

The catalog (written once to ~/.cache/lazybars/memory, or --data) holds 10 symbols with
four years of regular-session minute bars each. It is written by a separate process, so
that a profile of this one (memray run) shows the backtest even on the first run, never
the ~480 MB of making synthetic data. The backtest replays October 2023 at a
15-minute cadence with a 30-day lookback, asking every symbol for 200 bars (reading
``.df``) and its last price at every tick. Every backend gets the same start/end/lookback
hints. The pandas reference runs twice: as it is ("reference"), where the hints are checked
but ignored (the parity oracle loads every stored bar), and "hinted", reading the catalog
through the window lazybars loads for those hints (perf/_windowed.py). Each backend runs in
its own process under memray's tracker, and the peak of its heap is reported. A second
scenario runs 50 symbols under a 64 MiB cache budget and checks every answer against an
unbounded run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import memray
import pandas as pd

import lazybars as lb
from perf._harness import Check, parse_args, print_checks, print_table
from perf._windowed import WindowedStore, loaded_range

ZONE = "America/New_York"
SYMBOLS = [f"S{i}" for i in range(10)]
START, END, LOOKBACK = "2023-10-02", "2023-10-31", "30d"
BACKENDS = ("lazybars", "hinted", "reference")
MiB = 2**20


def _catalog(root: Path, symbols: list[str], first: str, last: str) -> lb.BarStore:
    """The catalog at ``root``; a child process writes whatever symbols it lacks first."""
    if any(s not in lb.BarStore(root).symbols() for s in symbols):
        print(f"writing the synthetic catalog {root} in a separate process (not profiled) ...")
        args = ", ".join(map(repr, (str(root), symbols, first, last)))
        code = f"from perf import memory; memory.write({args})"
        subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
    return lb.BarStore(root)


def write(root: str, symbols: list[str], first: str, last: str) -> None:
    """Write the symbols missing from the catalog at ``root``, ten at a time."""
    store = lb.BarStore(root)
    missing = [s for s in symbols if s not in store.symbols()]
    for i in range(0, len(missing), 10):
        frames = lb.synth.catalog(missing[i : i + 10], first, last, session="regular")
        for symbol, frame in frames.items():
            store.write(symbol, frame)


def backtest(store: lb.BarStore, backend: str, end: str = END) -> int:
    """Replay the month (to ``end``); returns the number of history calls."""
    hints = {"timezone": ZONE, "start": START, "end": end, "lookback": LOOKBACK}
    if backend == "lazybars":
        source = lb.DataSource(store, **hints)
    elif backend == "hinted":
        window = WindowedStore(store, *loaded_range(START, end, LOOKBACK, ZONE))
        source = lb.reference.PandasDataSource(window, **hints)
    else:
        source = lb.reference.PandasDataSource(store, **hints)
    ticks = lb.sim.clock(store, SYMBOLS[:1], START, end, cadence="15m", timezone=ZONE)
    calls = 0
    for tick in ticks:
        source.set_datetime(tick)
        for symbol in SYMBOLS:
            assert len(source.get_historical_prices(symbol, 200).df) == 200
            source.get_last_price(symbol)
            calls += 2
    return calls


_NAMES = {
    "lazybars": "lazybars",
    "hinted": "reference, hinted (reads only the hinted window)",
    "reference": "reference (hints ignored: loads every stored bar)",
}


def _peak_of(backend: str, data: Path, end: str) -> int:
    """Run one backend in a fresh process under memray; return its peak heap bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / f"{backend}.bin"
        code = (
            "import memray, sys; from pathlib import Path; from perf import memory; "
            f"store = memory.lb.BarStore(Path({str(data)!r})); "
            f"tracker = memray.Tracker({str(capture)!r}); tracker.__enter__(); "
            f"memory.backtest(store, {backend!r}, {end!r}); tracker.__exit__(None, None, None)"
        )
        # See the README: pyarrow's default pool reserves ~1 GiB that memray would count.
        env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        return memray.FileReader(capture).metadata.peak_memory


def _budget_scenario(root: Path, first: str) -> tuple[int, int, bool]:
    """50 symbols under a 64 MiB budget: (largest cache seen, unbounded cache, same?)."""
    symbols = [f"B{i:02d}" for i in range(50)]
    store = _catalog(root, symbols, first, "2024-01-02")
    budget = 64 * MiB
    bounded = lb.DataSource(store, timezone=ZONE, max_cache_bytes=budget)
    unbounded = lb.DataSource(store, timezone=ZONE, max_cache_bytes=None)
    largest, same = 0, True
    for tick in pd.date_range("2023-10-02 10:00", periods=6, freq="1h", tz=ZONE):
        for source in (bounded, unbounded):
            source.set_datetime(tick)
        for timestep in ("1m", "15m"):
            got = bounded.get_bars(symbols, 100, timestep)
            want = unbounded.get_bars(symbols, 100, timestep)
            same &= all(got[s].df.equals(want[s].df) for s in symbols)
            largest = max(largest, bounded.cache_info().total_bytes)
    return largest, unbounded.cache_info().total_bytes, same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--data", type=Path, default=cache / "lazybars" / "memory")
    parser.add_argument(
        "--quick", action="store_true", help="a week on one year of bars, a 3-month budget run"
    )
    args = parse_args(parser)
    # Quick: the reference loads a quarter of the bars, so its ratio is reported, not checked.
    first, end = ("2023-01-03", "2023-10-07") if args.quick else ("2020-01-02", END)
    ten = args.data / ("ten-quick" if args.quick else "ten")
    store = _catalog(ten, SYMBOLS, first, "2024-01-02")
    if args.backend:
        print(f"{args.backend}: {backtest(store, args.backend, end):,} history calls")
        return 0
    peaks = {b: _peak_of(b, ten, end) for b in BACKENDS}
    on_disk = sum(f.stat().st_size for f in ten.rglob("*.parquet"))
    rows = [
        (_NAMES[b], f"{p / MiB:,.1f}", f"{p / peaks['lazybars']:.1f}x") for b, p in peaks.items()
    ]
    years = "1 year" if args.quick else "4 years"
    print_table(
        f"Peak heap (memray) of a backtest {START} .. {end}, 10 symbols x {years} on "
        f"disk ({on_disk / MiB:,.0f} MiB of parquet), hints start={START} end={end} "
        f"lookback={LOOKBACK}",
        ["backend", "peak MiB", "x lazybars"],
        rows,
    )
    budget_first = "2023-07-03" if args.quick else "2023-01-03"
    fifty = args.data / ("fifty-quick" if args.quick else "fifty")
    largest, unbounded, same = _budget_scenario(fifty, budget_first)
    print_table(
        f"50 symbols, {budget_first} .. 2024-01-02 each, under a 64 MiB cache budget",
        ["run", "largest cache MiB", "answers identical to unbounded"],
        [
            ("max_cache_bytes=64 MiB", f"{largest / MiB:,.1f}", "yes" if same else "NO"),
            ("unbounded", f"{unbounded / MiB:,.1f}", "-"),
        ],
    )
    checks = [
        Check("lazybars peak / hinted reference peak", peaks["lazybars"] / peaks["hinted"], 1.5),
        Check("largest bounded cache, MiB", largest / MiB, 64),
        Check("identical answers under the budget (1 = yes)", float(same), 1, at_least=True),
    ]
    if not args.quick:
        ratio = peaks["lazybars"] / peaks["reference"]
        checks.append(Check("lazybars peak / reference peak", ratio, 1 / 3))
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
