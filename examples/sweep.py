"""A parameter sweep: twelve momentum backtests, one row of results each.

Run: python examples/sweep.py        (one after the other, in this process)
     python examples/sweep.py ray    (as Ray tasks on a local cluster: pip install 'lazybars[ray]')
"""

import functools
import sys
import tempfile

import lazybars as lb
from lazybars import sim, strategies


def backtest(params: dict, *, catalog: str) -> dict:
    """One combination. It gets the parameters and opens the catalog itself, wherever it runs."""
    store = lb.BarStore(catalog)
    symbols = [params["symbol"]]
    strategy = strategies.MomentumStrategy(symbols, fast=params["fast"], slow=params["slow"])
    ticks = sim.clock(store, symbols, "2024-03-12", "2024-03-13", cadence="5m")
    result = sim.run(strategy, lb.DataSource(store, start="2024-03-12", end="2024-03-13"), ticks)
    return result.stats()


if __name__ == "__main__":
    engine = "ray" if sys.argv[1:] == ["ray"] else "local"
    with tempfile.TemporaryDirectory() as root:
        store = lb.BarStore(root)
        for symbol, frame in lb.synth.catalog(("MES", "MNQ"), "2024-03-01", "2024-03-15").items():
            store.write(symbol, frame, timestep="minute")
        grid = {"symbol": ["MES", "MNQ"], "fast": [5, 9, 13], "slow": [30, 60]}
        table = lb.sweep(functools.partial(backtest, catalog=root), grid, engine=engine)
        print(table.sort("total_return", descending=True).drop("worker"))
