"""Timing and table helpers shared by the benchmarks in perf/.

Every figure is a per-call median over several rounds, and every target is a ratio against
a baseline measured in the same run, so the numbers hold on a slower or busier machine.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

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


def timed(fn: Callable[[Any], object], args: Sequence[Any], *, rounds: int = 7) -> float:
    """Per-call us of ``fn`` over ``args``: :func:`compare` with one probe."""
    return compare({"": (fn, args)}, rounds=rounds)[""]


def compare(
    probes: Mapping[str, tuple[Callable[[Any], object], Sequence[Any]]], *, rounds: int = 7
) -> dict[str, float]:
    """Per-call us of each ``fn`` over its ``args``, less the cost of the loop and call.

    The probes run round-robin, one pass each per round, and each figure is the median of
    its rounds: on a shared machine every probe sees the same load in each round, so the
    ratios between them hold even when the absolute times drift.
    """
    runs = {name: each(fn, args) for name, (fn, args) in probes.items()}
    loops = {name: each(_noop, args) for name, (_, args) in probes.items()}
    for run in runs.values():
        run()  # warm: loads, caches, first-touch page faults
    samples: dict[str, list[float]] = {name: [] for name in runs}
    overhead: dict[str, list[float]] = {name: [] for name in runs}
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
    t0 = time.perf_counter()
    for arg in probe:
        fn(arg)
    cost = (time.perf_counter() - t0) / len(probe)
    return args[: max(5, min(len(args), int(seconds / max(cost, 1e-9))))]


def _pass_us(run: Callable[[], int]) -> float:
    gc.disable()
    try:
        t0 = time.perf_counter()
        calls = run()
        return (time.perf_counter() - t0) / calls * 1e6
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


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


def print_checks(checks: Sequence[Check]) -> bool:
    rows = [
        (c.name, f"{c.value:.2f}", f"{'>=' if c.at_least else '<='} {c.limit:g}", _verdict(c.ok))
        for c in checks
    ]
    print_table("Targets (ratios measured in this run)", ["target", "measured", "limit", ""], rows)
    return all(c.ok for c in checks)


def _verdict(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[red]MISSED[/]"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    return str(value)
