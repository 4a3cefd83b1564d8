"""``lazybars ingest``, ``info`` and ``compact``: the catalog commands of the CLI, and the
command classes every command of the CLI uses.

Registered on the app by ``lazybars/cli.py``; like it, an outermost module (typer, rich).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from lazybars._backend import is_uri
from lazybars.errors import LazyBarsError
from lazybars.intake import ingest_into
from lazybars.store import BarStore

__all__ = ["Command", "Group", "cli_words", "compact", "info", "ingest"]

console = Console()
errors = Console(stderr=True)

# Library messages name Python arguments (tz='UTC'); on the command line they are options.
_RENAMES = re.compile(r"\bsymbol=\{'([^']*)': '([^']*)'\}")
_ARGUMENT = re.compile(r"\b(tz|timestep|symbol)=(?:'([^']*)')?")


def cli_words(message: str) -> str:
    """``message`` with the Python arguments it names written as the CLI's options.

    >>> cli_words("pass tz= naming the zone, e.g. tz='UTC'; or symbol={'A': 'B'}")
    'pass --tz naming the zone, e.g. --tz UTC; or --symbol A=B'
    """
    message = _RENAMES.sub(r"--symbol \1=\2", message)
    return _ARGUMENT.sub(lambda m: f"--{m[1]}" + ("" if m[2] is None else f" {m[2]}"), message)


def _flags_without_type(params: list[Any]) -> list[Any]:
    # Typer's help shows a value type after flags ('--append <bool>'); flags take no value.
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A CLI command: a ``LazyBarsError`` is one line on stderr in the CLI's words and
    exit status 1, never a traceback; flags are shown without a value type."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LazyBarsError as exc:
            # One line however long: soft_wrap leaves the wrapping to the terminal.
            message = f"error: {cli_words(str(exc))}"
            errors.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(code=1) from None


class Group(TyperGroup):
    """The CLI's command group: its own ``--help`` shown without a value type."""

    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _flags_without_type(super().get_params(ctx))


def ingest(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Files (.dbn, .dbn.zst, .csv, .csv.gz, .csv.zst, .parquet) or folders of them.",
            show_default=False,
        ),
    ],
    store: Annotated[
        str,
        typer.Option(
            help="Catalog directory (created if missing), or s3://bucket/prefix (credentials "
            "and endpoint from the AWS_* environment variables; AWS_ALLOW_HTTP=true for an "
            "http:// endpoint)."
        ),
    ],
    symbol: Annotated[
        list[str] | None,
        typer.Option(
            help="Catalog symbol of a one-symbol source, or SOURCE=NAME to rename "
            "(repeatable). Default: the file's symbols, else its name."
        ),
    ] = None,
    timestep: Annotated[
        str | None,
        typer.Option(help="Bar size, e.g. 1m or day. Default: as the file says, or inferred."),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(help="Zone of naive times and of DataBento day bars' dates."),
    ] = None,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add to the stored bars (overlaps must be identical); "
            "default: replace the symbols read.",
        ),
    ] = False,
) -> None:
    """Read vendor files into a catalog: DataBento DBN, CSV, parquet (bars, and contract
    definitions from DataBento definition files)."""
    renames = _symbols(symbol or [])
    catalog = BarStore(store)
    defined = catalog.definitions().height
    with Progress(*_COLUMNS, console=console, transient=True) as bar:
        summary = ingest_into(
            catalog,
            *sources,
            symbol=renames,
            timestep=timestep,
            tz=tz,
            append=append,
            progress=_Reporter(bar),
        )
    if summary.height or defined == catalog.definitions().height:
        _print_summary(summary, store, append)
    now = catalog.definitions().height
    if now != defined:
        shown = f"{store}: {now:,} contract definitions ({now - defined:+,})"
        console.print(shown, markup=False, highlight=False, soft_wrap=True)


def info(
    store: Annotated[
        str,
        typer.Argument(help="Catalog directory, or s3://bucket/prefix.", show_default=False),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show what a catalog holds: rows, first and last bar, bytes per symbol and timestep."""
    table = _open(store).info()
    if as_json:
        rows = table.with_columns(pl.col("first", "last").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"))
        typer.echo(json.dumps(rows.to_dicts(), indent=2))
        return
    _print_frame(f"{store}: {table.height} catalog files", table)


def compact(
    store: Annotated[
        str,
        typer.Argument(help="Catalog directory, or s3://bucket/prefix.", show_default=False),
    ],
    symbol: Annotated[
        list[str] | None,
        typer.Option(help="Only this symbol (repeatable). Default: every symbol."),
    ] = None,
    timestep: Annotated[
        str | None, typer.Option(help="Only this timestep, e.g. 1m. Default: every one.")
    ] = None,
) -> None:
    """Fold the parts that appends added into each symbol's base file."""
    catalog = _open(store)
    with Progress(*_COLUMNS, console=console, transient=True) as bar:
        task = bar.add_task("compact", total=None, shown="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, shown=f"{done:,} of {total:,} files")

        summary = catalog.compact(symbol or None, timestep, progress=progress)
    folded = summary.filter(pl.col("parts") > 0)
    title = f"{store}: compacted {folded.height} of {summary.height} catalog files"
    if folded.height:
        _print_frame(title, folded)
    else:
        console.print(f"{title} (no appended parts to fold)", markup=False, highlight=False)


def _open(store: str) -> BarStore:
    if not is_uri(store) and not Path(store).is_dir():  # reading never creates a catalog
        errors.print(f"error: no catalog directory at {store}", style="red", markup=False)
        raise typer.Exit(code=1)
    return BarStore(store)


_COLUMNS = (
    TextColumn("{task.description:<8}"),
    BarColumn(),
    TextColumn("{task.fields[shown]}"),
    TimeRemainingColumn(),
)


class _Reporter:
    """Turns ``ingest_into`` progress calls into two bars: input bytes, catalog files."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "read":
            shown = f"{_size(done)} of {_size(total)}"
        else:
            shown = f"{done:,} of {total:,} catalog files"
        if stage not in self._tasks:
            label = "reading" if stage == "read" else "writing"
            self._tasks[stage] = self._bar.add_task(label, total=total, shown=shown)
        self._bar.update(self._tasks[stage], completed=done, total=total, shown=shown)


def _symbols(values: list[str]) -> str | dict[str, str] | None:
    if not values:
        return None
    pairs = [v.partition("=") for v in values]
    if len(values) == 1 and not pairs[0][1]:
        return values[0]
    if any(not sep for _, sep, _ in pairs):
        errors.print(
            "error: several --symbol options must each be SOURCE=NAME renames", style="red"
        )
        raise typer.Exit(code=2)
    return {src: dst for src, _, dst in pairs}


def _print_summary(summary: pl.DataFrame, store: str, append: bool) -> None:
    _print_frame(f"{'appended to' if append else 'written to'} {store}", summary)


_HEADERS = {"first": "first (UTC)", "last": "last (UTC)"}
_CELLS = {
    "rows": "{:,}".format,
    "added": "{:+,}".format,
    "first": "{:%Y-%m-%d %H:%M}".format,
    "last": "{:%Y-%m-%d %H:%M}".format,
}


def _print_frame(title: str, frame: pl.DataFrame) -> None:
    out = Table(title=title, title_justify="left")
    for name in frame.columns:
        justify = "left" if name in ("symbol", "timestep") else "right"
        out.add_column(_HEADERS.get(name, name), justify=justify)
    for row in frame.iter_rows():
        cells = (
            _size(v) if n == "bytes" else _CELLS.get(n, str)(v)
            for n, v in zip(frame.columns, row, strict=True)
        )
        out.add_row(*cells)
    console.print(out)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    exponent = min(3, (n.bit_length() - 1) // 10)
    return f"{n / 1024**exponent:,.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"
