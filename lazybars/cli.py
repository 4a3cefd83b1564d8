"""The ``lazybars`` command line: ``lazybars demo``.

This is the only module that imports the CLI and terminal libraries (typer, rich).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lazybars import synth
from lazybars.reference import PandasDataSource
from lazybars.source import DataSource
from lazybars.store import BarStore

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console()

SYMBOLS = ("MES", "MNQ", "MYM")
ZONE = "America/New_York"
CATALOG_START, CATALOG_END = "2024-01-02", "2025-01-02"
REPLAY_START = "2024-10-01"
LENGTH = 200


def _default_data() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lazybars" / "demo"


@app.callback()
def _main() -> None:
    """lazybars: OHLCV bar history for backtesters, on polars."""


@app.command()
def demo(
    data: Annotated[
        Path | None,
        typer.Option(
            envvar="LAZYBARS_DEMO_DATA",
            help="Catalog directory (default: ~/.cache/lazybars/demo); written if missing.",
        ),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=250, help="Trading days to replay.")] = 21,
) -> None:
    """Replay a backtest clock minute by minute through lazybars and the pandas reference,
    check that every answer is identical, and compare their speed.
    """
    store = _catalog(data or _default_data())
    clocks = _clocks(store, days)
    start, end = clocks[0], clocks[-1]
    backends = {
        "lazybars": DataSource(store, timezone=ZONE, start=start, end=end, lookback="7d"),
        "pandas reference": PandasDataSource(store, timezone=ZONE, start=start, end=end),
    }
    seconds = dict.fromkeys(backends, 0.0)
    mismatches = 0
    columns = (
        TextColumn("replaying {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}", total=len(clocks))
        for clock in clocks:
            answers = []
            for name, source in backends.items():
                t0 = time.perf_counter()
                answers.append(_ask(source, clock))
                seconds[name] += time.perf_counter() - t0
            mismatches += not _same(*answers)
            progress.advance(task)
    calls = len(clocks) * len(SYMBOLS) * 2
    _report(seconds, calls, len(clocks), mismatches)
    if mismatches:
        raise typer.Exit(code=1)


def _catalog(root: Path) -> BarStore:
    store = BarStore(root)
    if sorted(store.symbols()) != sorted(SYMBOLS):
        with console.status(f"writing a synthetic catalog to {root} ..."):
            frames = synth.catalog(SYMBOLS, CATALOG_START, CATALOG_END, session="regular")
            for symbol, frame in frames.items():
                store.write(symbol, frame, timestep="minute")
    rows = sum(store.scan(s).lazy.select(pl.len()).collect().item() for s in SYMBOLS)
    console.print(f"catalog {root}: {len(SYMBOLS)} symbols, {rows:,} minute bars")
    return store


def _clocks(store: BarStore, days: int) -> list[pd.Timestamp]:
    """Every minute close of the first ``days`` trading days from REPLAY_START."""
    ends = (
        store.scan(SYMBOLS[0], timezone=ZONE)
        .between(REPLAY_START, CATALOG_END)
        .lazy.select((pl.col("datetime") + pl.duration(minutes=1)).alias("end"))
        .collect()["end"]
    )
    dates = ends.dt.date().unique(maintain_order=True).head(days)
    ends = ends.filter(ends.dt.date().is_in(dates.implode()))
    return [pd.Timestamp(t) for t in ends.dt.convert_time_zone(ZONE).to_list()]


def _ask(source: DataSource | PandasDataSource, clock: pd.Timestamp) -> list[object]:
    source.set_datetime(clock)
    answers: list[object] = []
    for symbol in SYMBOLS:
        answers.append(source.get_historical_prices(symbol, LENGTH).df)
        answers.append(source.get_last_price(symbol))
    return answers


def _same(fast: list[object], reference: list[object]) -> bool:
    for a, b in zip(fast, reference, strict=True):
        if isinstance(a, pd.DataFrame):
            if not (a.equals(b) and a.index.equals(b.index) and a.dtypes.equals(b.dtypes)):
                return False
        elif a != b:
            return False
    return True


def _report(seconds: dict[str, float], calls: int, ticks: int, mismatches: int) -> None:
    table = Table(title=f"{ticks:,} clock ticks x {len(SYMBOLS)} symbols", title_justify="left")
    for name in ("backend", "history calls", "total s", "us per call", "speedup"):
        table.add_column(name, justify="left" if name == "backend" else "right")
    slowest = max(seconds.values())
    for name, spent in seconds.items():
        table.add_row(
            name,
            f"{calls:,}",
            f"{spent:.2f}",
            f"{spent / calls * 1e6:,.1f}",
            f"{slowest / spent:,.1f}x",
        )
    console.print(table)
    verdict = "yes" if not mismatches else f"NO ({mismatches:,} ticks differ)"
    console.print(f"identical: {verdict}")


def main() -> None:
    """Console-script entry point."""
    app()
