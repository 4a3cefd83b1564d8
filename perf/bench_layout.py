"""Catalog file layout: compression and row-group size against read time, write time and disk.

    python -m perf.bench_layout            # a year of 24h minute bars, every layout (~20 s)
    python -m perf.bench_layout --quick    # the same grid, fewer rounds

One symbol's year of 24h minute bars (lazybars.synth, tick-sized prices), written once per
layout exactly as ``lazybars.ingest.write_bars`` writes a catalog file (min/max statistics)
but with each compression (uncompressed, snappy, lz4, zstd at levels 1, 3 and 9) and
row-group size. For each file:

- disk: the file's bytes;
- month: ``pl.scan_parquet(file).filter(one month).collect()``, predicate pushdown onto the
  row-group statistics: a notebook's month read, and what a backtest's cold start (a
  ``DataSource`` loading its window) pays;
- year: the whole file, scanned and collected: a backtest over everything stored;
- write: ``write_parquet`` of the year to a new file.

A new scan per read (footer parsed every time), files in the OS page cache: decode time,
not disk time; the disk column is what a truly cold read (or an S3 GET) has to move. Wall
time (polars decodes on several threads), the median of rounds in which every layout runs
once in turn, so that a loaded machine slows them alike. Ratios are against the layout
``write_bars`` uses now (marked ``*``). Reports only: the choice is made by reading it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

import lazybars as lb
from lazybars import ingest
from perf._harness import parse_args, print_table

ZONE = "America/New_York"
CODECS: tuple[tuple[str, int | None], ...] = (
    ("uncompressed", None),
    ("snappy", None),
    ("lz4", None),
    ("zstd", 1),
    ("zstd", 3),
    ("zstd", 9),
)
ROW_GROUPS = (16_384, 32_768, 65_536, 131_072)
MONTH = (datetime(2024, 6, 3, tzinfo=ZoneInfo(ZONE)), datetime(2024, 7, 3, tzinfo=ZoneInfo(ZONE)))


def _label(codec: str, level: int | None) -> str:
    return codec if level is None else f"{codec}-{level}"


def _write(bars: pl.DataFrame, path: Path, codec: str, level: int | None, rows: int) -> None:
    bars.write_parquet(
        path, compression=codec, compression_level=level, row_group_size=rows, statistics=True
    )


def _month(path: Path) -> Callable[[], object]:
    start, end = MONTH
    window = (pl.col("datetime") >= start) & (pl.col("datetime") < end)
    return lambda: pl.scan_parquet(path).filter(window).collect()


def _year(path: Path) -> Callable[[], object]:
    return lambda: pl.scan_parquet(path).collect()


def _medians(runs: dict[tuple, Callable[[], object]], rounds: int) -> dict[tuple, float]:
    """ms per run, the median of ``rounds``, every run once per round in turn."""
    samples: dict[tuple, list[float]] = {key: [] for key in runs}
    for run in runs.values():
        run()  # warm: page cache, first-touch faults
    for _ in range(rounds):
        for key, run in runs.items():
            t0 = time.perf_counter()
            run()
            samples[key].append(time.perf_counter() - t0)
    return {key: statistics.median(times) * 1e3 for key, times in samples.items()}


def _current() -> tuple[str, int | None, int]:
    return ingest.COMPRESSION, ingest.COMPRESSION_LEVEL, ingest.ROW_GROUP_ROWS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parse_args(parser)
    rounds, write_rounds = (3, 1) if args.quick else (15, 5)
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2025-01-02", tz=ZONE, session="24h")
    current = _current()
    layouts = [(c, lvl, rows) for c, lvl in CODECS for rows in ROW_GROUPS]
    if current not in layouts:
        layouts.append(current)
    with tempfile.TemporaryDirectory(prefix="lazybars-layout-") as tmp:
        files = {}
        for codec, level, rows in layouts:
            files[codec, level, rows] = Path(tmp, f"{_label(codec, level)}-{rows}.parquet")
            _write(bars, files[codec, level, rows], codec, level, rows)
            got = pl.read_parquet(files[codec, level, rows])
            assert got.equals(bars), (codec, level, rows)
        month = _medians({k: _month(p) for k, p in files.items()}, rounds)
        year = _medians({k: _year(p) for k, p in files.items()}, rounds)
        scratch = Path(tmp, "write.parquet")
        write = _medians({k: (lambda k=k: _write(bars, scratch, *k)) for k in files}, write_rounds)
        disk = {k: p.stat().st_size for k, p in files.items()}
    base = (month[current], year[current])
    table = []
    for key in sorted(files, key=lambda k: month[k]):
        codec, level, rows = key
        mark = " *" if key == current else ""
        table.append(
            (
                f"{_label(codec, level)}, {rows // 1024}k rows{mark}",
                disk[key] / 1e6,
                month[key],
                f"{month[key] / base[0]:.2f}x",
                year[key],
                f"{year[key] / base[1]:.2f}x",
                write[key],
            )
        )
    print_table(
        f"Catalog file layouts, a year of 24h minute bars ({bars.height:,} rows), fastest month "
        f"read first. ms (wall, median of {rounds}; write: of {write_rounds}); "
        "* the layout write_bars uses; ratios against it",
        ["layout", "MB", "month ms", "month/*", "year ms", "year/*", "write ms"],
        table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
