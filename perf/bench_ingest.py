"""Ingest speed and peak memory: lazybars against what a user would do by hand.

    python -m perf.bench_ingest              # 20 million bars per file (a few minutes)
    python -m perf.bench_ingest --quick      # 2 million bars, a smoke run
    (needs the databento extra; the bench extra adds DataBento's client as the DBN baseline)

Generates (once, in ~/.cache/lazybars/bench_ingest or --data) a DataBento DBN file of
ohlcv-1m records for 4 instruments and the same bars as a CSV (ISO times, a symbol
column), each of --rows bars, plus quarter-size versions of both. Then, each in a fresh
process, it ingests them into an empty catalog and reports wall time, rows per second and
peak RSS (the process's ``ru_maxrss``):

- lazybars: ``lb.ingest_into(store, file)``, i.e. ``lazybars ingest FILE --store DIR``;
- DBN baseline: ``databento.DBNStore.from_file(f).to_df()`` then ``store.write`` per
  symbol, what a DataBento user writes today (``pip install -e '.[bench]'``); without the
  databento package, ``databento_dbn.DBNDecoder`` records turned into a pandas frame;
- CSV baselines: ``pandas.read_csv`` and ``polars.read_csv``, then ``store.write`` per
  symbol.

Every baseline's catalog must equal lazybars' (and the DBN catalog the CSV one) bar for
bar. lazybars' peak RSS on the quarter-size files shows that its memory does not grow
with the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import polars as pl

import lazybars as lb
from lazybars._dbn import RECORD
from perf._harness import Check, parse_args, print_checks, print_table, require

SYMBOLS = ("MES.c.0", "MNQ.c.0", "MYM.c.0", "M2K.c.0")
START_NS = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC
MINUTE_NS = 60_000_000_000
CHUNK = 1_000_000
MiB = 2**20


# -- generated inputs -----------------------------------------------------------------------
def _chunks(rows: int):
    """Records in chunks: instruments interleaved minute by minute, random-walk prices."""
    rng = np.random.default_rng(7)
    level = np.full(len(SYMBOLS), 5000 * 4, dtype=np.int64)  # in quarter points
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        i = np.arange(start, start + n)
        inst = i % len(SYMBOLS)
        steps = rng.integers(-2, 3, n)
        walk = np.zeros(n, dtype=np.int64)
        for k in range(len(SYMBOLS)):
            mine = inst == k
            walk[mine] = level[k] + np.cumsum(steps[mine])
            if mine.any():
                level[k] = walk[mine][-1]
        out = np.zeros(n, dtype=RECORD)
        out["length"], out["rtype"], out["publisher_id"] = RECORD.itemsize // 4, 0x21, 1
        out["instrument_id"] = inst + 100
        out["ts_event"] = START_NS + (i // len(SYMBOLS)) * MINUTE_NS
        quarter = 250_000_000  # 0.25 in fixed point
        out["open"] = walk * quarter
        out["high"] = (walk + rng.integers(0, 4, n)) * quarter
        out["low"] = (walk - rng.integers(0, 4, n)) * quarter
        out["close"] = (walk + rng.integers(-1, 2, n)) * quarter
        out["volume"] = rng.integers(0, 2000, n)
        yield out


def _metadata(rows: int) -> bytes:
    import databento_dbn as dbn

    end = dt.date(2262, 1, 1)
    mappings = [
        types.SimpleNamespace(
            raw_symbol=s,
            intervals=[
                types.SimpleNamespace(
                    start_date=dt.date(2024, 1, 1), end_date=end, symbol=str(100 + k)
                )
            ],
        )
        for k, s in enumerate(SYMBOLS)
    ]
    return dbn.Metadata(
        dataset="GLBX.MDP3",
        start=START_NS,
        end=START_NS + rows // len(SYMBOLS) * MINUTE_NS,
        stype_in=dbn.SType.CONTINUOUS,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.OHLCV_1M,
        symbols=list(SYMBOLS),
        mappings=mappings,
    ).encode()


def _generate(folder: Path, rows: int) -> tuple[Path, Path]:
    dbn_path, csv_path = folder / f"bars-{rows}.dbn", folder / f"bars-{rows}.csv"
    if dbn_path.exists() and csv_path.exists():
        return dbn_path, csv_path
    folder.mkdir(parents=True, exist_ok=True)
    print(f"generating {rows:,} bars as DBN and CSV in {folder} ...", flush=True)
    names = pl.Series(SYMBOLS)
    dbn_tmp, csv_tmp = (p.with_name(p.name + ".tmp") for p in (dbn_path, csv_path))
    with open(dbn_tmp, "wb") as dbn_out, open(csv_tmp, "wb") as csv_out:
        dbn_out.write(_metadata(rows))
        for k, chunk in enumerate(_chunks(rows)):
            dbn_out.write(chunk.tobytes())
            frame = pl.DataFrame(
                {
                    "timestamp": pl.Series(chunk["ts_event"].astype(np.int64)).cast(
                        pl.Datetime("ns", "UTC")
                    ),
                    "symbol": names.gather(chunk["instrument_id"].astype(np.int64) - 100),
                    # numpy's division is correctly rounded (polars' is not): the
                    # CSV holds the decimal prices the DBN's fixed-point ones stand for.
                    **{
                        p: chunk[p].astype(np.float64) / 1e9
                        for p in ("open", "high", "low", "close")
                    },
                    "volume": chunk["volume"].astype(np.int64),
                }
            )
            frame.write_csv(csv_out, include_header=k == 0, datetime_format="%Y-%m-%dT%H:%M:%SZ")
    dbn_tmp.rename(dbn_path)
    csv_tmp.rename(csv_path)
    return dbn_path, csv_path


# -- the methods, each run in a fresh process ------------------------------------------------
def run_lazybars(path: str, root: str) -> int:
    return int(lb.ingest_into(root, path)["rows"].sum())


def run_databento(path: str, root: str) -> int:
    import databento

    frame = databento.DBNStore.from_file(path).to_df()
    return _write_groups(frame, root)


def run_dbn_records(path: str, root: str) -> int:
    """databento-dbn without the databento package: a Python record each, then pandas."""
    import databento_dbn as dbn
    import pandas as pd

    decoder = dbn.DBNDecoder()
    with open(path, "rb") as fh:
        while block := fh.read(64 * MiB):
            decoder.write(block)
    records = decoder.decode()
    metadata, bars = records[0], records[1:]
    names = {int(iv["symbol"]): s for s, ivs in metadata.mappings.items() for iv in ivs}
    frame = pd.DataFrame(
        {
            "ts_event": pd.to_datetime([r.ts_event for r in bars], utc=True),
            "symbol": [names[r.instrument_id] for r in bars],
            **{
                p: [getattr(r, f"pretty_{p}") for r in bars]
                for p in ("open", "high", "low", "close")
            },
            "volume": [float(r.volume) for r in bars],
        }
    ).set_index("ts_event")
    return _write_groups(frame, root)


def run_pandas_csv(path: str, root: str) -> int:
    import pandas as pd

    frame = pd.read_csv(path, parse_dates=["timestamp"]).set_index("timestamp")
    return _write_groups(frame, root)


def run_polars_csv(path: str, root: str) -> int:
    frame = pl.read_csv(path, try_parse_dates=True)
    store, rows = lb.BarStore(root), 0
    for (symbol,), group in frame.group_by("symbol", maintain_order=True):
        store.write(str(symbol), group.drop("symbol"))
        rows += group.height
    return rows


def _write_groups(frame, root: str) -> int:
    store, rows = lb.BarStore(root), 0
    for symbol, group in frame.groupby("symbol", sort=False):
        bars = group[["open", "high", "low", "close", "volume"]]
        store.write(str(symbol), bars)
        rows += len(bars)
    return rows


METHODS = {
    "lazybars": run_lazybars,
    "databento": run_databento,
    "dbn_records": run_dbn_records,
    "pandas_csv": run_pandas_csv,
    "polars_csv": run_polars_csv,
}


def _measure(method: str, path: Path, root: Path) -> dict:
    """Run ``method`` in a fresh process; its wall time, rows and peak RSS."""
    shutil.rmtree(root, ignore_errors=True)
    code = (
        "import json, resource, sys, time; from perf import bench_ingest as b; "
        "t0 = time.perf_counter(); "
        f"rows = b.METHODS[{method!r}]({str(path)!r}, {str(root)!r}); "
        "seconds = time.perf_counter() - t0; "
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024; "
        "print(json.dumps({'rows': rows, 'seconds': seconds, 'peak': peak}))"
    )
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _same_catalog(a: Path, b: Path) -> bool:
    sa, sb = lb.BarStore(a), lb.BarStore(b)
    if sa.symbols() != sb.symbols():
        return False
    return all(
        sa.scan(s)
        .collect()
        .with_columns(pl.col("datetime").dt.convert_time_zone("UTC"))
        .equals(sb.scan(s).collect().with_columns(pl.col("datetime").dt.convert_time_zone("UTC")))
        for s in sa.symbols()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--quick", action="store_true", help="2 million bars")
    parser.add_argument(
        "--data", type=Path, default=Path.home() / ".cache" / "lazybars" / "bench_ingest"
    )
    args = parse_args(parser)
    # DBN files are written and read with DataBento's decoder (the databento extra); the
    # full client (the bench extra) only makes the DBN baseline DataBento's own.
    require("databento_dbn", "databento", "bench_ingest")
    rows = 2_000_000 if args.quick else args.rows
    dbn_file, csv_file = _generate(args.data, rows)
    dbn_small, csv_small = _generate(args.data, rows // 4)
    try:
        import databento  # noqa: F401

        dbn_baseline = ("databento", "DBNStore.to_df() + store.write")
    except ImportError:
        print(
            "databento is missing (the bench extra: pip install -e '.[bench]'): the DBN "
            "baseline is DBNDecoder records turned into pandas instead of DBNStore.to_df()"
        )
        dbn_baseline = ("dbn_records", "DBNDecoder records -> pandas + store.write")
    runs = [
        ("DBN", dbn_file, "lazybars", "lazybars ingest"),
        ("DBN", dbn_file, *dbn_baseline),
        ("CSV", csv_file, "lazybars", "lazybars ingest"),
        ("CSV", csv_file, "pandas_csv", "pandas.read_csv + store.write"),
        ("CSV", csv_file, "polars_csv", "polars.read_csv + store.write"),
        ("DBN, 1/4 size", dbn_small, "lazybars", "lazybars ingest"),
        ("CSV, 1/4 size", csv_small, "lazybars", "lazybars ingest"),
    ]
    results, table = {}, []
    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        for kind, path, method, label in runs:
            root = Path(tmp) / f"{kind}-{method}".replace(" ", "").replace("/", "")
            print(f"{kind}: {label} ...", flush=True)
            results[(kind, method)] = r = _measure(method, path, root)
            r["root"] = root
        same = {
            "DBN": _same_catalog(
                results[("DBN", "lazybars")]["root"], results[("DBN", dbn_baseline[0])]["root"]
            ),
            "CSV pandas": _same_catalog(
                results[("CSV", "lazybars")]["root"], results[("CSV", "pandas_csv")]["root"]
            ),
            "CSV polars": _same_catalog(
                results[("CSV", "lazybars")]["root"], results[("CSV", "polars_csv")]["root"]
            ),
            "DBN = CSV": _same_catalog(
                results[("DBN", "lazybars")]["root"], results[("CSV", "lazybars")]["root"]
            ),
        }
    for kind, path, method, label in runs:
        r = results[(kind, method)]
        ours = results[(kind.split(",")[0], "lazybars")]
        table.append(
            (
                f"{kind}: {label}",
                f"{r['rows']:,}",
                f"{path.stat().st_size / MiB:,.0f}",
                f"{r['seconds']:.1f}",
                f"{r['rows'] / r['seconds'] / 1e6:.2f}",
                f"{r['peak'] / MiB:,.0f}",
                f"{r['seconds'] / ours['seconds']:.2f}x",
                f"{r['peak'] / ours['peak']:.2f}x",
            )
        )
    print_table(
        f"Ingest of {rows:,} ohlcv-1m bars, 4 symbols (each method in a fresh process)",
        [
            "method",
            "rows",
            "file MiB",
            "wall s",
            "M rows/s",
            "peak RSS MiB",
            "time x lazybars",
            "RSS x lazybars",
        ],
        table,
    )
    print_table(
        "Catalogs identical",
        ["pair", "same bars"],
        [(k, "yes" if v else "NO") for k, v in same.items()],
    )
    dbn_full, dbn_quarter = results[("DBN", "lazybars")], results[("DBN, 1/4 size", "lazybars")]
    csv_full, csv_quarter = results[("CSV", "lazybars")], results[("CSV, 1/4 size", "lazybars")]
    checks = [
        Check(
            "lazybars DBN peak RSS, full / quarter file",
            dbn_full["peak"] / dbn_quarter["peak"],
            1.5,
        ),
        Check(
            "lazybars CSV peak RSS, full / quarter file",
            csv_full["peak"] / csv_quarter["peak"],
            1.5,
        ),
        Check(
            "DBN baseline time / lazybars",
            results[("DBN", dbn_baseline[0])]["seconds"] / dbn_full["seconds"],
            1,
            at_least=True,
        ),
        Check(
            "pandas CSV time / lazybars",
            results[("CSV", "pandas_csv")]["seconds"] / csv_full["seconds"],
            1,
            at_least=True,
        ),
        Check("identical catalogs (1 = yes)", float(all(same.values())), 1, at_least=True),
    ]
    if not args.quick:  # a small file is smaller than the fixed RSS of the libraries
        checks += [
            Check(
                "lazybars DBN peak RSS / file size", dbn_full["peak"] / dbn_file.stat().st_size, 1
            ),
            Check(
                "lazybars CSV peak RSS / file size", csv_full["peak"] / csv_file.stat().st_size, 1
            ),
        ]
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
