"""End-to-end backtests: the three example strategies on lazybars and on the pandas reference.

    python -m perf.bench_backtest            # about three minutes
    python -m perf.bench_backtest --quick    # a few days per strategy

One year of synthetic regular-session minute bars for MES, MNQ and MYM. Each strategy runs
once per backend; the table shows wall time, the speedup, and the share of each run spent
inside data-source calls (timed by a thin proxy around the source). The strategies are
the ones in lazybars.strategies, unchanged: pandas on ``bars.df``, as users write them.
Exit code 1 if a target is missed or the backends trade differently.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import lazybars as lb
from lazybars import sim, strategies
from perf._harness import Check, parse_args, print_checks, print_table

SYMBOLS = ("MES", "MNQ", "MYM")
ZONE = "America/New_York"


class TimedSource:
    """Forwards to a data source and adds up the wall time spent inside it."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.seconds = 0.0

    def _timed(self, method: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return getattr(self._source, method)(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0

    def set_datetime(self, dt: Any) -> None:
        self._timed("set_datetime", dt)

    def get_historical_prices(self, *args: Any, **kwargs: Any) -> lb.Bars:
        return self._timed("get_historical_prices", *args, **kwargs)

    def get_last_price(self, asset: Any) -> float | None:
        return self._timed("get_last_price", asset)

    def get_bars(self, *args: Any, **kwargs: Any) -> dict[str, lb.Bars]:
        return self._timed("get_bars", *args, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few days per strategy")
    args = parse_args(parser)
    frames = lb.synth.catalog(SYMBOLS, "2024-01-02", "2025-01-02", session="regular")
    store = lb.BarStore.from_frames(frames)
    cases = [
        (
            "MomentumStrategy",
            strategies.MomentumStrategy(),
            "1m",
            "2024-10-01",
            "2024-10-08" if args.quick else "2024-10-30",
        ),
        (
            "RotationStrategy",
            strategies.RotationStrategy(),
            "1d",
            "2024-04-01",
            "2024-05-01" if args.quick else "2024-10-01",
        ),
        (
            "IntradayBreakoutStrategy",
            strategies.IntradayBreakoutStrategy(),
            "5m",
            "2024-10-01",
            "2024-10-02" if args.quick else "2024-10-04",
        ),
    ]
    rows, checks = [], []
    for name, strategy, cadence, start, end in cases:
        ticks = sim.clock(store, SYMBOLS, start, end, cadence=cadence, timezone=ZONE)
        runs = {}
        for backend, source in (
            ("lazybars", lb.DataSource(store, timezone=ZONE, start=start, end=end)),
            ("reference", lb.reference.PandasDataSource(store, timezone=ZONE)),
        ):
            timed = TimedSource(source)
            t0 = time.perf_counter()
            result = sim.run(strategy, timed, ticks)
            wall = time.perf_counter() - t0
            runs[backend] = (result, wall, timed.seconds)
        (fast, fast_wall, fast_data), (ref, ref_wall, ref_data) = (
            runs["lazybars"],
            runs["reference"],
        )
        same = fast.trades == ref.trades and fast.equity.equals(ref.equity)
        speedup = ref_wall / fast_wall
        rows.append(
            (
                f"{name} ({cadence}, {len(ticks):,} ticks)",
                fast_wall,
                f"{fast_data / fast_wall:.0%}",
                ref_wall,
                f"{ref_data / ref_wall:.0%}",
                f"{speedup:.1f}x",
                f"{fast.history_calls:,}",
                len(fast.trades),
                "yes" if same else "NO",
            )
        )
        checks.append(
            Check(f"{name}: identical trades and equity (1 = yes)", float(same), 1, at_least=True)
        )
        if name == "MomentumStrategy":
            checks.append(
                Check(f"{name}: reference wall / lazybars wall", speedup, 5, at_least=True)
            )
            checks.append(
                Check(f"{name}: data-layer share of the lazybars run", fast_data / fast_wall, 0.2)
            )
    print_table(
        f"Backtests over one year of minute bars of {len(SYMBOLS)} symbols",
        [
            "strategy",
            "lazybars s",
            "in data layer",
            "reference s",
            "in data layer",
            "speedup",
            "history calls",
            "trades",
            "identical",
        ],
        rows,
    )
    return 0 if print_checks(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
