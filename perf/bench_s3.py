"""Bytes transferred from object storage: a month of a multi-year catalog file on S3.

    python -m perf.bench_s3          # needs .[s3,s3-test]: obstore and moto's server (~30 s)
    python -m perf.bench_s3 --quick  # a 1-year file, one round: reports, checks nothing

Starts the test suite's S3 server (moto on 127.0.0.1, with a request log that counts the
bytes of every response), writes a 3-year minute file per session kind (24h futures, and
regular-hours 09:30-16:00) through ``BarStore("s3://...")``, and counts what each read
transfers. The baseline is the whole object: what a reader without predicate pushdown
fetches (``pl.read_parquet(uri)`` then a filter, as a user of pandas or s3fs would write
it). The floor is the compressed size of the row groups that overlap the month: what any
row-group reader must fetch. "Cold" is the first read of a new file version (lazybars
fetches and checks its footer); "warm" reads reuse the footer checked before (memoised per
ETag). Times are medians of 5 rounds on loopback, so they show request overhead, not a
network's bandwidth. Exit code 1 on a missed target.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow.parquet as pq

import lazybars as lb
from perf._harness import Check, parse_args, print_checks, print_table, require

ZONE = "America/New_York"
FIRST, LAST = "2021-01-04", "2024-01-04"
QUICK_FIRST = "2023-01-03"  # a month of a 1-year file is a larger share: no target then
MONTH = (pd.Timestamp("2023-03-01", tz=ZONE), pd.Timestamp("2023-04-01", tz=ZONE))


def _server() -> Any:
    # The server lives with the tests (tests/s3_server.py), which are not a package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import s3_server

    return s3_server.S3Server()


def _measure(server: Any, run: Callable[[], object]) -> tuple[int, int]:
    """(bytes sent, requests) of one run."""
    with server.log() as requests:
        run()
    return sum(r.sent for r in requests), len(requests)


def _median_ms(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _floor(data: bytes) -> int:
    """Compressed bytes of the row groups whose time range overlaps the month."""
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    lo, hi = (t.value for t in MONTH)
    total = 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        stats = group.column(0).statistics
        first, last = (pd.Timestamp(v).value for v in (stats.min, stats.max))
        if first < hi and last >= lo:
            total += sum(group.column(j).total_compressed_size for j in range(group.num_columns))
    return total


def _session(
    server: Any, bucket: str, session: str, first: str, rounds: int
) -> tuple[list[tuple], Check]:
    """The table rows and the target of one file from ``first`` to LAST."""
    import obstore
    import obstore.store

    uri, options = f"s3://{bucket}/catalog", server.options()
    symbol = session.upper()
    bars = lb.synth.minute_bars(symbol, first, LAST, session=session, gaps=0)
    store = lb.BarStore(uri, storage_options=options)
    month = pl.col("datetime").is_between(*MONTH, closed="left")

    def scan() -> pl.DataFrame:
        return store.scan(symbol).between(*MONTH).collect()

    def whole() -> pl.DataFrame:
        object_uri = f"{uri}/1m/{symbol}.parquet"
        return pl.read_parquet(object_uri, storage_options=options).filter(month)

    def backtest() -> object:
        fresh = lb.BarStore(uri, storage_options=options)
        src = lb.DataSource(fresh, timezone=ZONE, start=MONTH[0], end=MONTH[1])
        src.set_datetime(MONTH[0] + pd.Timedelta(hours=12))
        return src.get_historical_prices(symbol, 100)

    # Each "cold" figure is the first read of a new version of the file (a new ETag).
    store.write(symbol, bars.head(-1))
    info = _measure(server, store.info)
    store.write(symbol, bars)
    cold = _measure(server, scan)
    size = store.info().filter(symbol=symbol)["bytes"].item()
    bucket_store = obstore.store.S3Store(bucket, config=options)
    floor = _floor(bytes(obstore.get(bucket_store, f"catalog/1m/{symbol}.parquet").bytes()))
    reads = {
        "whole object, then filter (baseline)": (_measure(server, whole), whole),
        "store.scan(...).between(month), cold": (cold, scan),
        "store.scan(...).between(month), warm": (_measure(server, scan), scan),
        "DataSource, first request (lookback 30d)": (_measure(server, backtest), backtest),
        "store.info(), cold (footers only)": (info, store.info),
    }
    base_ms = _median_ms(whole, rounds)
    rows = [
        (
            f"{session}: row groups overlapping the month (floor)",
            f"{floor:,}",
            "",
            f"{floor / size:.1%}",
            "",
            "",
        )
    ]
    for name, ((sent, count), run) in reads.items():
        ms = base_ms if run is whole else _median_ms(run, rounds)
        rows.append(
            (
                f"{session}: {name}",
                f"{sent:,}",
                count,
                f"{sent / size:.1%}",
                f"{ms:.0f}",
                f"{ms / base_ms:.2f}x",
            )
        )
    limit = 0.1 if session == "24h" else 0.2
    return rows, Check(f"{session}: cold month / whole file, bytes", cold[0] / size, limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1-year file, one round")
    args = parse_args(parser)
    require("obstore", "s3", "bench_s3")
    require("moto", "s3-test", "bench_s3")
    first, rounds = (QUICK_FIRST, 1) if args.quick else (FIRST, 5)
    server = _server()
    rows, checks = [], []
    try:
        bucket = server.bucket()
        for session in ("24h", "regular"):
            found, check = _session(server, bucket, session, first, rounds)
            rows += found
            checks.append(check)
    finally:
        server.stop()
    print_table(
        f"Bytes from S3 for one month ({MONTH[0]:%Y-%m}) of {first} .. {LAST} minute files; "
        f"ms: median of {rounds} on loopback; vs whole: time against the whole-object baseline",
        ["read", "bytes", "requests", "of the file", "ms", "vs whole"],
        rows,
    )
    if args.quick:
        print("--quick: targets are set for 3-year files and not checked here")
        return 0
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
