"""Appending a day of minute bars to 1 and to 10 years of history (issue 19, item 4).

    python -m perf.bench_append            # 24h minute bars: 1 and 10 years (~15 s)
    python -m perf.bench_append --quick    # regular-session bars, fewer rounds

For each history, a catalog directory holding it, and one more day of minute bars
appended per round, two ways:

- part: ``store.write(symbol, day, mode="append")``, the day after the stored bars: written
  as a part of its own, reading and rewriting none of the history (lazybars' append);
- rewrite: the same day with the last stored bar in front (identical, as a re-sent bar
  would be), which an append merges into a new base: it reads and rewrites the whole
  history, as every append did before parts (the "before" column).

Each way has its own copy of the catalog. The appended catalogs are checked equal to the
history plus the days before timing is reported. Wall time (an append is I/O as much as
CPU), the median of rounds run in alternation. Exit code 1 on a missed target.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

import lazybars as lb
from perf._harness import Check, parse_args, print_checks, print_table

END = "2024-01-02"
# A part append must not grow with the history: 10 years may cost at most this many times
# 1 year (the noise of a loaded machine, not the 10x of the history).
FLAT = 2.0
# At 10 years the part append must beat the whole-file rewrite at least this many times.
FASTER = 10.0


def _days(session: str, count: int) -> list[pl.DataFrame]:
    """The first ``count`` local dates of minute bars after the history, one frame each."""
    after = lb.synth.minute_bars("MES", END, "2024-03-01", session=session, seed=1)
    dates = after["datetime"].dt.date()
    days = [after.filter(dates == d) for d in dates.unique(maintain_order=True)]
    return days[:count]


def _catalogs(history: pl.DataFrame, root: Path) -> dict[str, lb.BarStore]:
    """The history stored once, copied for each way of appending."""
    lb.BarStore(root / "part").write("MES", history)
    shutil.copytree(root / "part", root / "rewrite")
    return {way: lb.BarStore(root / way) for way in ("part", "rewrite")}


def _timed(run: object) -> float:
    t0 = time.perf_counter()
    run()  # type: ignore[operator]
    return (time.perf_counter() - t0) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="regular-session bars, fewer rounds")
    args = parse_args(parser)
    session, rounds = ("regular", 3) if args.quick else ("24h", 5)
    days = _days(session, rounds + 1)  # the first warms up and is dropped
    samples: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="lazybars-bench-append-") as folder:
        stores, histories = {}, {}
        for years in (1, 10):
            start = f"{int(END[:4]) - years}{END[4:]}"
            histories[years] = lb.synth.minute_bars("MES", start, END, session=session)
            for way, store in _catalogs(histories[years], Path(folder) / str(years)).items():
                stores[(years, way)] = store
                samples[(years, way)] = []
        for i, day in enumerate(days):
            for (years, way), store in stores.items():
                if way == "part":
                    bars = day
                else:  # the last stored bar again, in front: the append overlaps by one bar
                    before = histories[years] if i == 0 else days[i - 1]
                    bars = pl.concat([before[-1:], day])
                ms = _timed(lambda s=store, b=bars: s.write("MES", b, mode="append"))
                if i:
                    samples[(years, way)].append(ms)
        for (years, _), store in stores.items():
            want = pl.concat([histories[years], *days])
            if not store.scan("MES").collect().equals(want):
                sys.exit(f"the {years}-year catalog does not hold the history and the days")
        parts = {key: store.info()["parts"].item() for key, store in stores.items()}
    ms = {key: statistics.median(times) for key, times in samples.items()}
    rows = [
        (
            f"{years} year{'s' * (years > 1)} ({histories[years].height:,} bars)",
            ms[(years, "rewrite")],
            ms[(years, "part")],
            f"{ms[(years, 'rewrite')] / ms[(years, 'part')]:.1f}x",
            parts[(years, "part")],
        )
        for years in (1, 10)
    ]
    flat = ms[(10, "part")] / ms[(1, "part")]
    rows.append(("10 years / 1 year", ms[(10, "rewrite")] / ms[(1, "rewrite")], flat, "", ""))
    print_table(
        f"Appending one day ({days[1].height:,} {session} minute bars) to a catalog, ms (wall, "
        f"median of {rounds}). rewrite: the whole history merged and rewritten (every append "
        "before parts); part: the day written as a part",
        ["history", "rewrite (before)", "part (now)", "rewrite/part", "parts after"],
        rows,
    )
    checks = [
        Check("part append: 10 years / 1 year", flat, FLAT),
        Check("10 years: rewrite / part", ms[(10, "rewrite")] / ms[(10, "part")], FASTER, True),
    ]
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
