"""Timing and table helpers shared by the benchmarks in perf/.

Every figure is a per-call median over several rounds of process CPU time, and every target
is a ratio against a baseline measured in the same run, in alternation, so the numbers hold
on a slower or busier machine.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(width=130)


def each(fn: Callable[[Any], object], args: Sequence[Any]) -> Callable[[], int]:
    """A runner calling ``fn(arg)`` for every arg; returns the call count."""

    def run() -> int:
        for arg in args:
            fn(arg)
        return len(args)

    return run


def _noop(arg: Any) -> None:
    return None


def compare(
    probes: Mapping[Any, tuple[Callable[[Any], object], Sequence[Any]]], *, rounds: int = 7
) -> dict[Any, float]:
    """Per-call us of each ``fn`` over its ``args``, less the cost of the loop and call.

    The probes run round-robin, one pass each per round, and each figure is the median of
    its rounds: on a shared machine every probe sees the same load in each round, so the
    ratios between them hold even when the absolute times drift.
    """
    runs = {name: each(fn, args) for name, (fn, args) in probes.items()}
    loops = {name: each(_noop, args) for name, (_, args) in probes.items()}
    for run in runs.values():
        run()  # warm: loads, caches, first-touch page faults
    samples: dict[Any, list[float]] = {name: [] for name in runs}
    overhead: dict[Any, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            samples[name].append(_pass_us(run))
            overhead[name].append(_pass_us(loops[name]))
    return {
        name: statistics.median(samples[name]) - statistics.median(overhead[name]) for name in runs
    }


def fit(fn: Callable[[Any], object], args: Sequence[Any], *, seconds: float) -> Sequence[Any]:
    """The longest prefix of ``args`` (at least 5) that ``fn`` gets through in about
    ``seconds``: how many calls a baseline a thousand times slower than lazybars gets."""
    fn(args[0])  # first use: loads and caches, not a request's cost
    probe = args[1:4]
    t0 = time.process_time()
    for arg in probe:
        fn(arg)
    cost = (time.process_time() - t0) / len(probe)
    return args[: max(5, min(len(args), int(seconds / max(cost, 1e-9))))]


def _pass_us(run: Callable[[], int]) -> float:
    # CPU time of this process (all its threads), not wall time: on a shared machine other
    # processes stretch wall time by 2-3x from round to round, while a request's own work
    # stays put.
    gc.disable()
    try:
        t0 = time.process_time()
        calls = run()
        return (time.process_time() - t0) / calls * 1e6
    finally:
        gc.enable()


@dataclass
class Check:
    """A target: ``value`` must be <= ``limit`` (or >= it when ``at_least``)."""

    name: str
    value: float
    limit: float
    at_least: bool = False

    @property
    def ok(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse a benchmark's arguments, with ``--markdown`` added: tables as Markdown, ready
    to paste into the README."""
    parser.add_argument("--markdown", action="store_true", help="print tables as Markdown")
    args = parser.parse_args()
    _style["markdown"] = args.markdown
    return args


def require(module: str, extra: str, benchmark: str) -> None:
    """Exit with the pip command that installs ``extra`` when ``module`` is missing."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ValueError:  # sys.modules[module] is None: its import is blocked
        found = False
    if not found:
        command = f"pip install -e '.[{extra}]'"
        msg = f"{benchmark} needs the {extra} extra ({module} is missing): {command}"
        sys.exit(msg)


_style = {"markdown": False}
_REQUEST = re.compile(r"^(get_\w+(?:\([^)]*\))?(?:\.df)?)")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    if _style["markdown"]:
        print(f"\n{title}\n")
        print("| " + " | ".join(columns) + " |")
        print("|---" + "|---:" * (len(columns) - 1) + "|")
        for first, *rest in cells:
            # A request the row starts with reads as code in the README.
            label = _REQUEST.sub(r"`\1`", str(first))
            print("| " + " | ".join([label, *map(str, rest)]) + " |")
        return
    table = Table(title=escape(title), title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(escape(name), justify="left" if i == 0 else "right")
    for row in cells:
        table.add_row(*(v if isinstance(v, Text) else escape(v) for v in row))
    console.print(table)


def print_checks(checks: Sequence[Check]) -> bool:
    rows = [
        (c.name, f"{c.value:.2f}", f"{'>=' if c.at_least else '<='} {c.limit:g}", _verdict(c.ok))
        for c in checks
    ]
    print_table("Targets (ratios measured in this run)", ["target", "measured", "limit", ""], rows)
    return all(c.ok for c in checks)


def _verdict(ok: bool) -> Text:
    return Text("ok", style="green") if ok else Text("MISSED", style="red")


def _cell(value: object) -> str | Text:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    return value if isinstance(value, Text) else str(value)
