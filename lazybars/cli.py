"""The ``lazybars`` command line: ``lazybars demo``, ``ingest``, ``info`` and ``compact``.

This is the only module that imports the CLI and terminal libraries (typer, rich).
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import Annotated

import pandas as pd
import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lazybars import sim, synth
from lazybars._cli_catalog import Command, Group, compact, info, ingest
from lazybars.reference import PandasDataSource
from lazybars.source import DataSource
from lazybars.store import BarStore
from lazybars.strategies import MomentumStrategy

# Markdown: docstrings are reflowed to the terminal's width, and brackets such as
# 'lazybars[plot]' stay literal (rich markup would take them for style tags).
app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode="markdown", cls=Group
)
app.command(cls=Command)(ingest)
app.command(cls=Command)(info)
app.command(cls=Command)(compact)
console = Console()

SYMBOLS = ("MES", "MNQ", "MYM")
ZONE = "America/New_York"
CATALOG_START, CATALOG_END = "2024-01-02", "2025-01-02"
REPLAY_START = "2024-10-01"


def _default_data() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lazybars" / "demo"


@app.callback()
def _main() -> None:
    """OHLCV bar history for backtesters and notebooks, on polars."""


@app.command(cls=Command)
def demo(
    data: Annotated[
        Path | None,
        typer.Option(
            envvar="LAZYBARS_DEMO_DATA",
            help="Catalog directory (default: ~/.cache/lazybars/demo); written if missing.",
        ),
    ] = None,
    days: Annotated[
        int,
        typer.Option(
            min=1,
            max=250,
            help="Trading days to replay, from 2024-10-01, on both backends (the pandas "
            "reference takes a second or two a day).",
        ),
    ] = 5,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write both equity curves to this PNG (needs the plot extra: "
            "pip install 'lazybars[plot]')."
        ),
    ] = None,
) -> None:
    """Backtest a momentum strategy on lazybars and on the pandas reference.

    Replays MomentumStrategy minute by minute over a synthetic catalog of three futures
    on both backends, compares their speed, and checks that both trade identically (the
    exit code is 1 if they do not).
    """
    store = _catalog(data or _default_data())
    ticks = _ticks(store, days)
    start, end = ticks[0], ticks[-1]
    backends = {
        "lazybars": DataSource(store, timezone=ZONE, start=start, end=end, lookback="7d"),
        "pandas reference": PandasDataSource(store, timezone=ZONE, start=start, end=end),
    }
    results, seconds = {}, {}
    with Progress(*_PROGRESS, console=console) as progress:
        for name, source in backends.items():
            task = progress.add_task(f"{name:<16}", total=len(ticks))
            t0 = time.perf_counter()
            results[name] = sim.run(
                MomentumStrategy(symbols=SYMBOLS),
                source,
                ticks,
                progress=partial(progress.advance, task),
            )
            seconds[name] = time.perf_counter() - t0
    identical = _identical(*results.values())
    _report(results, seconds, ticks, identical)
    if plot is not None:
        _plot(results, plot)
    if not identical:
        raise typer.Exit(code=1)


_PROGRESS = (
    TextColumn("backtest on {task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("ticks"),
    TimeRemainingColumn(),
)


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


def _ticks(store: BarStore, days: int) -> list[pd.Timestamp]:
    """Every minute close of the first ``days`` trading days from REPLAY_START."""
    ticks = sim.clock(store, SYMBOLS, REPLAY_START, CATALOG_END, cadence="1m", timezone=ZONE)
    dates = sorted({t.date() for t in ticks})[:days]
    return [t for t in ticks if t.date() <= dates[-1]]


def _identical(fast: sim.Result, reference: sim.Result) -> bool:
    return (
        fast.trades == reference.trades
        and fast.rejections == reference.rejections
        and fast.equity.equals(reference.equity)
    )


def _report(
    results: dict[str, sim.Result],
    seconds: dict[str, float],
    ticks: list[pd.Timestamp],
    identical: bool,
) -> None:
    title = (
        f"MomentumStrategy, {len(SYMBOLS)} symbols, {len(ticks):,} minutes "
        f"({ticks[0]:%Y-%m-%d} .. {ticks[-1]:%Y-%m-%d})"
    )
    table = Table(title=title, title_justify="left")
    columns = (
        "backend",
        "wall s",
        "speedup",
        "history calls",
        "trades",
        "final equity",
    )
    for name in columns:
        table.add_column(name, justify="left" if name == "backend" else "right")
    slowest = max(seconds.values())
    for name, result in results.items():
        spent = seconds[name]
        table.add_row(
            name,
            f"{spent:.2f}",
            f"{slowest / spent:,.1f}x",
            f"{result.history_calls:,}",
            f"{len(result.trades):,}",
            f"{result.equity.iloc[-1]:,.2f}",
        )
    console.print(table)
    console.print(f"identical trades: {'yes' if identical else 'NO'}")


def _plot(results: dict[str, sim.Result], path: Path) -> None:
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency, imported only when asked

        matplotlib.use("Agg")
        from lazybars._plot import equity_figure  # noqa: PLC0415
    except ImportError:
        console.print(
            "--plot needs matplotlib: pip install 'lazybars[plot]' (no plot written)",
            style="yellow",
            markup=False,
        )
        return
    curves = {name: pl.from_pandas(result.equity.reset_index()) for name, result in results.items()}
    fig = equity_figure(curves, step="1m", title="MomentumStrategy equity (minute closes)")
    fig.savefig(path)
    console.print(f"equity curves written to {path}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
