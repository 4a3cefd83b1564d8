"""lazybars in thirty lines: a catalog, a notebook query, history requests, a backtest.

Run: python examples/quickstart.py
"""

import tempfile
from datetime import datetime
from zoneinfo import ZoneInfo

import lazybars as lb
from lazybars import sim, strategies

NY = ZoneInfo("America/New_York")

with tempfile.TemporaryDirectory() as root:
    store = lb.BarStore(root)
    for symbol, frame in lb.synth.catalog(("MES", "MNQ"), "2024-03-01", "2024-04-01").items():
        store.write(symbol, frame, timestep="minute")

    # A notebook user composes a lazy plan and looks at it before running it.
    query = store.scan("MES").between("2024-03-11", "2024-03-12").resample("1h").select("close")
    print(query.explain())
    print(query.to_pandas().head())

    # A backtester's adapter asks history questions as of its clock.
    src = lb.DataSource(store, start="2024-03-11", end="2024-03-15", lookback="5d")
    src.set_datetime(datetime(2024, 3, 12, 10, 31, tzinfo=NY))
    bars = src.get_historical_prices("MES", 200)
    print(bars)
    print("last close:", src.get_last_price("MES"), "momentum(30):", bars.get_momentum(30))
    print(src.get_bars(["MES", "MNQ"], 3, timestep="15m")["MNQ"].df)

    # A backtest: the same strategy code runs on any data source.
    ticks = sim.clock(store, ["MES", "MNQ"], "2024-03-12", "2024-03-13", cadence="1m")
    result = sim.run(strategies.MomentumStrategy(symbols=("MES", "MNQ")), src, ticks)
    print(len(result.trades), "trades;", {k: round(v, 4) for k, v in result.stats().items()})
