"""Timing and table helpers shared by the benchmarks in perf/.

Every figure is a per-call median over several rounds, and every target is a ratio against
a baseline measured in the same run, so the numbers hold on a slower or busier machine.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=130)


def per_call_us(run: Callable[[], int], *, rounds: int = 7) -> float:
    """Median over ``rounds`` of (wall time of ``run()``) / (the call count it returns), in us."""
    run()  # warm: loads, caches, first-touch page faults
    samples = []
    for _ in range(rounds):
        gc.disable()
        try:
            t0 = time.perf_counter()
            calls = run()
            samples.append((time.perf_counter() - t0) / calls * 1e6)
        finally:
            gc.enable()
    return statistics.median(samples)


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
    """Per-call us of ``fn`` over ``args``, less the cost of the loop and call themselves
    (measured alongside), so that ratios compare the work done, not the harness."""
    loop = per_call_us(each(_noop, args), rounds=rounds)
    return per_call_us(each(fn, args), rounds=rounds) - loop


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
