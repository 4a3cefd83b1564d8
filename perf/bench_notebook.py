"""Notebook workloads: lazybars against ArcticDB (optional) and a bare polars floor.

    python -m perf.bench_notebook            # 10 symbols x a year of 24h minutes (~1 min)
    python -m perf.bench_notebook --quick    # 10 symbols x a quarter, fewer rounds

What a notebook user does with bar history, on 10 symbols of synthetic 24h minute bars
(``lazybars.synth``, New York time) stored once in each contender:

- lazybars: a directory catalog, ``lb.BarStore(dir)``, read through the public API only
  (``scan().between().select().to_pandas()``, ``.resample("1h")``, ``scan([list])``,
  ``write(..., mode="append")``, ``DataSource.get_historical_prices``);
- polars floor: ``pl.scan_parquet`` on lazybars' own catalog files with the same window
  filter, then polars' ``to_pandas()`` where the workload ends in pandas: the least work
  that reads those files (no manifest, no checks, no zone handling), a floor and not a
  library. For the as-of requests it is one such scan per request; for the append, one
  new parquet file per symbol (what an append-as-a-part costs at least);
- ArcticDB (``pip install -e '.[bench]'``): an ``lmdb://`` library in a temporary
  directory, written with the same bars as pandas frames (it keeps their New York zone),
  read as its documentation shows. ``date_range`` is inclusive at both ends, so a window
  [start, end) is asked as ``(start, end - 1 ns)``; its resample gives columns in another
  order, put back; its ``read_batch`` gives a frame per symbol, made long as a user would
  (``assign(symbol=...)``, ``concat``, a stable ``sort_index``). Without arcticdb its
  column is left out, with a line saying how to install it.

Every contender's answer is checked equal to lazybars' (``pandas.testing``) before any
timing. The workloads:

- a one-month ``close`` read to pandas, warm: the same store object, the cell run again;
- the same in a fresh process: one subprocess per contender and round, timed from after
  its imports (opening the store plus the read; OS page cache warm). The floor's
  ``to_pandas`` goes through pyarrow, whose first conversion in a process costs more than
  lazybars' own, so there it need not be the least. A row beneath gives the engine's
  floor: polars' scan and collect alone in a fresh process, a polars frame and no pandas,
  which pays polars' first use (its thread pools, its parquet reader's start);
- that month to 1h OHLCV;
- the 10 symbols' month as one long frame;
- one day appended to each of the 10 symbols: every round appends the next day, so no
  round's bars are appended twice;
- as-of requests "the last 100 bars at t" at sorted random clocks. lazybars:
  ``DataSource.get_historical_prices(symbol, 100).df`` (the first request, in the untimed
  warm-up round, loads the bars); ArcticDB: ``read(date_range=(t - 7 days, t - 1
  minute)).data.tail(100)``, the bars that ended by t. The slower contenders answer as
  many of the clocks as fit in a short budget, scaled up to the full count.

Wall time (polars and ArcticDB both read on several threads), the median of rounds run in
alternation. Ratios are contender time / lazybars time: above 1, lazybars is faster.
Targets (issue 19): ArcticDB / lazybars >= 1 on every workload, >= 100 on the as-of
requests; reported with ``--quick``, enforced (exit code 1) on the full run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

import lazybars as lb
from perf._harness import Check, fit, parse_args, print_checks, print_table

ZONE = "America/New_York"
SYMBOLS = tuple(f"S{i}" for i in range(10))
OHLCV = ["open", "high", "low", "close", "volume"]
AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
LENGTH = 100
LOOKBACK = pd.Timedelta(days=7)  # ArcticDB's as-of read: wide enough for weekends, holidays
ROOT = Path(__file__).resolve().parents[1]
PIP = "pip install -e '.[bench]'"
AS_OF_LIMIT, READ_LIMIT = 100.0, 1.0


def _arcticdb() -> Any:
    """The arcticdb module, or None when it is not installed (or its import is blocked)."""
    try:
        import arcticdb
    except ImportError:
        return None
    return arcticdb


def _ns(t: pd.Timestamp) -> pd.Timestamp:
    # ArcticDB's date_range includes its end: the last instant of a half-open window.
    return t - pd.Timedelta(1, "ns")


@dataclass
class Setup:
    """The same bars in each contender, and the windows every workload reads."""

    root: Path  # lazybars' catalog
    store: lb.BarStore
    days: list[dict[str, pl.DataFrame]]  # bars to append, a day per round, per symbol
    start: pd.Timestamp
    end: pd.Timestamp
    clocks: list[pd.Timestamp]
    lib: Any  # ArcticDB library, or None
    uri: str

    def files(self, symbol: str) -> list[Path]:
        """lazybars' catalog files of ``symbol`` at 1m: ``1m/<symbol>.parquet`` and any
        parts kept beside it under ``1m/<symbol>/`` (hidden files are not bars)."""
        whole, beside = self.root / "1m" / f"{symbol}.parquet", self.root / "1m" / symbol
        found = [whole] if whole.exists() else []
        found += sorted(beside.rglob("*.parquet")) if beside.is_dir() else []
        found = [p for p in found if not p.name.startswith(".")]
        if not found:
            msg = f"no catalog file of {symbol} in {self.root}: update Setup.files to its layout"
            raise FileNotFoundError(msg)
        return found

    def window(self) -> pl.Expr:
        when = pl.col("datetime")
        return (when >= self.start.to_pydatetime()) & (when < self.end.to_pydatetime())


def _build(tmp: Path, quick: bool, arcticdb: Any, rounds: int) -> Setup:
    start, history_end, end = (
        ("2024-01-02", "2024-04-01", "2024-04-20")
        if quick
        else ("2024-01-02", "2025-01-02", "2025-01-25")
    )
    cut = pd.Timestamp(history_end, tz=ZONE)
    store = lb.BarStore(tmp / "lazybars")
    lib = None
    uri = f"lmdb://{tmp / 'arctic'}"
    if arcticdb is not None:
        lib = arcticdb.Arctic(uri).get_library("bars", create_if_missing=True)
    days: list[dict[str, pl.DataFrame]] = []
    for symbol in SYMBOLS:
        bars = lb.synth.minute_bars(symbol, start, end, tz=ZONE, session="24h")
        history = bars.filter(pl.col("datetime") < cut)
        store.write(symbol, history)
        if lib is not None:
            lib.write(symbol, lb.bars.frame_to_pandas(history))
        later = bars.filter(pl.col("datetime") >= cut)
        by_day = later.with_columns(day=pl.col("datetime").dt.date()).partition_by(
            "day", maintain_order=True, include_key=False
        )
        for i, day in enumerate(by_day[: rounds + 2]):  # + a warm-up and a checked one
            if len(days) <= i:
                days.append({})
            days[i][symbol] = day
    month = ("2024-02-01", "2024-03-01") if quick else ("2024-06-01", "2024-07-01")
    month_start, month_end = (pd.Timestamp(day, tz=ZONE) for day in month)
    first = store.scan(SYMBOLS[0]).collect()["datetime"]
    ends = first.dt.offset_by("1m").slice(1_000).to_list()
    clocks = sorted(random.Random(0).sample(ends, 3_000 if not quick else 300))
    return Setup(
        tmp / "lazybars",
        store,
        days,
        month_start,
        month_end,
        [pd.Timestamp(c) for c in clocks],
        lib,
        uri,
    )


# -- the contenders' code, one function per workload ------------------------------------------
def lb_month(s: Setup) -> pd.DataFrame:
    return s.store.scan(SYMBOLS[0]).between(s.start, s.end).select("close").to_pandas()


def floor_month(s: Setup) -> pd.DataFrame:
    lf = pl.scan_parquet(s.files(SYMBOLS[0])).filter(s.window()).select("datetime", "close")
    return lf.collect().to_pandas().set_index("datetime")


def arctic_month(s: Setup) -> pd.DataFrame:
    return s.lib.read(SYMBOLS[0], date_range=(s.start, _ns(s.end)), columns=["close"]).data


def lb_hourly(s: Setup) -> pd.DataFrame:
    return s.store.scan(SYMBOLS[0]).between(s.start, s.end).resample("1h").to_pandas()


def floor_hourly(s: Setup) -> pd.DataFrame:
    lf = pl.scan_parquet(s.files(SYMBOLS[0])).filter(s.window())
    lf = lf.group_by_dynamic("datetime", every="1h").agg(
        pl.col("open").first(),
        pl.col("high").max(),
        pl.col("low").min(),
        pl.col("close").last(),
        pl.col("volume").sum(),
    )
    return lf.collect().to_pandas().set_index("datetime")


def arctic_hourly(s: Setup) -> pd.DataFrame:
    import arcticdb

    q = arcticdb.QueryBuilder().date_range((s.start, _ns(s.end))).resample("1h").agg(AGG)
    return s.lib.read(SYMBOLS[0], query_builder=q).data[OHLCV]


def lb_long(s: Setup) -> pd.DataFrame:
    return s.store.scan(list(SYMBOLS)).between(s.start, s.end).to_pandas()


def floor_long(s: Setup) -> pd.DataFrame:
    window = s.window()
    parts = [
        pl.scan_parquet(s.files(symbol)).filter(window).with_columns(symbol=pl.lit(symbol))
        for symbol in SYMBOLS
    ]
    lf = pl.concat(parts).sort("datetime", maintain_order=True)
    return lf.select("datetime", "symbol", *OHLCV).collect().to_pandas().set_index("datetime")


def arctic_batch(s: Setup) -> list[Any]:
    from arcticdb import ReadRequest

    window = (s.start, _ns(s.end))
    return s.lib.read_batch([ReadRequest(symbol, date_range=window) for symbol in SYMBOLS])


def arctic_long(s: Setup) -> pd.DataFrame:
    frames = [item.data.assign(symbol=item.symbol) for item in arctic_batch(s)]
    return pd.concat(frames).sort_index(kind="stable")[["symbol", *OHLCV]]


def _as_of(contender: str, s: Setup) -> Callable[[pd.Timestamp], pd.DataFrame]:
    symbol = SYMBOLS[0]
    if contender == "lazybars":
        src = lb.DataSource(s.store, timezone=ZONE)

        def ask(t: pd.Timestamp) -> pd.DataFrame:
            src.set_datetime(t)
            return src.get_historical_prices(symbol, LENGTH).df

        return ask
    if contender == "floor":
        files = s.files(symbol)

        def scan(t: pd.Timestamp) -> pd.DataFrame:
            when = pl.col("datetime")
            lf = pl.scan_parquet(files).filter(
                (when >= (t - LOOKBACK).to_pydatetime())
                & (when <= (t - pd.Timedelta(minutes=1)).to_pydatetime())
            )
            return lf.tail(LENGTH).collect().to_pandas().set_index("datetime")

        return scan
    lookback = LOOKBACK

    def read(t: pd.Timestamp) -> pd.DataFrame:
        # Bars visible at t ended by t: they started at least a minute before.
        window = (t - lookback, t - pd.Timedelta(minutes=1))
        return s.lib.read(symbol, date_range=window).data.tail(LENGTH)

    return read


# -- checks and timing -------------------------------------------------------------------------
def _same(name: str, ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    try:
        pd.testing.assert_frame_equal(ours, theirs, check_freq=False, check_names=False)
    except AssertionError as exc:
        msg = f"{name}: the answer differs from lazybars', so its timing would mean nothing\n{exc}"
        raise AssertionError(msg) from None


def _medians(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """ms per run: the median of ``rounds``, every run once per round in turn, after one
    warm-up round."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds + 1):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t[1:]) * 1e3 for name, t in samples.items()}


_FRESH = {
    "lazybars": (
        "import lazybars as lb",
        "lb.BarStore(root).scan(symbol).between(start, end).select('close').to_pandas()",
    ),
    "floor": (
        "import polars as pl, pyarrow",  # polars' to_pandas goes through pyarrow
        "w = pl.col('datetime'); pl.scan_parquet(files).filter((w >= start.to_pydatetime()) & "
        "(w < end.to_pydatetime())).select('datetime', 'close').collect().to_pandas()"
        ".set_index('datetime')",
    ),
    # The engine's own floor: polars' first parquet read in a process, no pandas.
    "engine": (
        "import polars as pl",
        "w = pl.col('datetime'); pl.scan_parquet(files).filter((w >= start.to_pydatetime()) & "
        "(w < end.to_pydatetime())).select('datetime', 'close').collect()",
    ),
    "ArcticDB": (
        "import arcticdb",
        "arcticdb.Arctic(uri).get_library('bars').read(symbol, date_range=(start, end - "
        "pd.Timedelta(1, 'ns')), columns=['close']).data",
    ),
}


def _fresh(contender: str, s: Setup) -> float:
    """ms to open the store and read the month in a new process, after its imports."""
    imports, read = _FRESH[contender]
    code = (
        "import sys, time, pandas as pd\n"
        f"{imports}\n"
        "root, uri, symbol = sys.argv[1:4]\n"
        "files = sys.argv[6:]\n"
        f"start, end = (pd.Timestamp(t).tz_convert({ZONE!r}) for t in sys.argv[4:6])\n"
        "t0 = time.perf_counter()\n"
        f"{read}\n"
        "print((time.perf_counter() - t0) * 1e3)\n"
    )
    files = [str(p) for p in s.files(SYMBOLS[0])]
    args = [str(s.root), s.uri, SYMBOLS[0], s.start.isoformat(), s.end.isoformat(), *files]
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if out.returncode:
        msg = f"the fresh-process read of {contender} failed:\n{out.stderr}"
        raise RuntimeError(msg)
    return float(out.stdout.split()[-1])


def _fresh_medians(s: Setup, contenders: Sequence[str], rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        turn = list(contenders[r % len(contenders) :]) + list(contenders[: r % len(contenders)])
        for name in turn:
            samples[name].append(_fresh(name, s))
    return {name: statistics.median(t) for name, t in samples.items()}


def _appends(s: Setup, contenders: Sequence[str], rounds: int, scratch: Path) -> dict[str, float]:
    """ms to append one day to every symbol, a new day each round (day 0: checked, day 1:
    warm-up, both untimed)."""

    def append(name: str, day: dict[str, pl.DataFrame], n: int) -> None:
        for symbol, bars in day.items():
            if name == "lazybars":
                s.store.write(symbol, bars, mode="append")
            elif name == "floor":
                bars.write_parquet(scratch / f"{symbol}-{n}.parquet")
            else:
                s.lib.append(symbol, lb.bars.frame_to_pandas(bars))

    for name in contenders:
        append(name, s.days[0], 0)
    if "ArcticDB" in contenders:
        for symbol in SYMBOLS:
            ours = s.store.scan(symbol).to_pandas()
            _same(f"ArcticDB after an append ({symbol})", ours, s.lib.read(symbol).data)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for n, day in enumerate(s.days[1 : rounds + 2], start=1):
        for name in contenders:
            t0 = time.perf_counter()
            append(name, day, n)
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t[1:]) * 1e3 for name, t in samples.items()}


def _as_of_ms(s: Setup, contenders: Sequence[str], rounds: int, budget: float) -> dict[str, float]:
    """ms for all the clocks: lazybars asks every one; the slower contenders as many as fit
    in ``budget`` seconds a round, scaled up."""
    asks = {name: _as_of(name, s) for name in contenders}
    for t in s.clocks[:: max(1, len(s.clocks) // 50)]:
        ours = asks["lazybars"](t)
        for name in contenders[1:]:
            _same(f"{name}, as of {t}", ours, asks[name](t))
    clocks = {
        name: s.clocks if name == "lazybars" else fit(ask, s.clocks, seconds=budget)
        for name, ask in asks.items()
    }

    def each(ask: Callable[[pd.Timestamp], pd.DataFrame], clocks: list[pd.Timestamp]) -> None:
        # Each answer dropped as the next is asked, as a loop over clocks would: a list of
        # all of them would charge the contender answering the most clocks (lazybars, all
        # 3,000, where the slower ones answer a budget's worth) with the garbage
        # collector's passes over the frames kept.
        for t in clocks:
            ask(t)

    runs = {name: (lambda a=ask, c=clocks[name]: each(a, c)) for name, ask in asks.items()}
    ms = _medians(runs, rounds)
    return {name: ms[name] * len(s.clocks) / len(clocks[name]) for name in contenders}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter, fewer rounds")
    args = parse_args(parser)
    rounds, fresh_rounds, budget = (3, 2, 0.05) if args.quick else (11, 5, 0.3)
    arcticdb = _arcticdb()
    contenders = ["lazybars", "floor"] + ([] if arcticdb is None else ["ArcticDB"])
    if arcticdb is None:
        print(f"ArcticDB is not installed: its column is left out ({PIP} adds it)")
    with tempfile.TemporaryDirectory(prefix="lazybars-notebook-") as tmp:
        s = _build(Path(tmp), args.quick, arcticdb, rounds)
        code = {
            "month": {"lazybars": lb_month, "floor": floor_month, "ArcticDB": arctic_month},
            "hourly": {"lazybars": lb_hourly, "floor": floor_hourly, "ArcticDB": arctic_hourly},
            "long": {"lazybars": lb_long, "floor": floor_long, "ArcticDB": arctic_long},
        }
        for workload, fns in code.items():
            ours = fns["lazybars"](s)
            for name in contenders[1:]:
                _same(f"{name}, {workload}", ours, fns[name](s))
        ms = {
            w: _medians({name: (lambda f=fns[name]: f(s)) for name in contenders}, rounds)
            for w, fns in code.items()
        }
        if arcticdb is not None:
            ms["batch"] = {"ArcticDB": _medians({"b": lambda: arctic_batch(s)}, rounds)["b"]}
        fresh = _fresh_medians(s, [*contenders, "engine"], fresh_rounds)
        ms["engine"] = {"floor": fresh.pop("engine")}
        ms["fresh"] = fresh
        ms["as_of"] = _as_of_ms(s, contenders, rounds, budget)
        scratch = Path(tmp, "floor-parts")
        scratch.mkdir()
        ms["append"] = _appends(s, contenders, min(rounds, len(s.days) - 2), scratch)
    title = (
        f"Notebook workloads, {len(SYMBOLS)} symbols of 24h minute bars (month "
        f"{s.start:%Y-%m-%d} to {s.end:%Y-%m-%d}), ms (wall, median of {rounds} rounds in "
        f"alternation; fresh process: of {fresh_rounds}). pandas {pd.__version__}, polars "
        f"{pl.__version__}; "
        + (f"ArcticDB {arcticdb.__version__} on LMDB" if arcticdb else f"ArcticDB left out ({PIP})")
        + ". x/lb > 1: lazybars faster"
    )
    checks = _report(title, ms, len(s.clocks), with_peer=arcticdb is not None)
    if not checks:
        return 0
    met = print_checks(checks)
    if args.quick:
        print("--quick: targets reported, not enforced; the full run holds them")
        return 0
    return 0 if met else 1


def _report(
    title: str, ms: dict[str, dict[str, float]], clocks: int, *, with_peer: bool
) -> list[Check]:
    """Print the table; return the targets against ArcticDB (none without it)."""
    rows_of = [
        ("month", "one month, close, to pandas (warm)"),
        ("fresh", "same, fresh process (open + read)"),
        ("engine", "  polars' read alone, no pandas (the engine's floor)"),
        ("hourly", "one month to 1h OHLCV"),
        ("long", f"{len(SYMBOLS)} symbols x 1 month, long frame"),
        ("batch", "  ArcticDB read_batch alone (frames per symbol)"),
        ("append", f"append one day to {len(SYMBOLS)} symbols"),
        ("as_of", f"{clocks:,} as-of requests, last {LENGTH} bars at t"),
    ]
    columns = ["workload", "lazybars", "polars floor", "floor/lb"]
    if with_peer:
        columns += ["ArcticDB", "ArcticDB/lb"]
    table, checks = [], []
    for key, label in rows_of:
        if key not in ms:
            continue
        lb_key = {"batch": "long", "engine": "fresh"}.get(key, key)
        ours = ms[lb_key]["lazybars"]
        row: list[object] = [label, ours if lb_key == key else "-"]
        floor = ms[key].get("floor")
        row += ["-", "-"] if floor is None else [floor, f"{floor / ours:.2f}x"]
        theirs = ms[key].get("ArcticDB")
        if with_peer:
            row += ["-", "-"] if theirs is None else [theirs, f"{theirs / ours:.2f}x"]
            if theirs is not None and key != "batch":
                limit = AS_OF_LIMIT if key == "as_of" else READ_LIMIT
                checks.append(
                    Check(f"{label.strip()}: ArcticDB / lazybars", theirs / ours, limit, True)
                )
        table.append(row)
    print_table(title, columns, table)
    return checks


if __name__ == "__main__":
    sys.exit(main())
