"""Rebuild examples/composing_queries.ipynb from the cells below and execute it, so that the
saved notebook shows real outputs. Run from the repository root:

    .venv/bin/python examples/build_notebook.py
"""

import nbformat
from nbclient import NotebookClient

# Cells in "percent" format: "# %% md" starts a markdown cell, "# %%" a code cell.
SOURCE = """
# %% md
# Composing queries with lazybars

A `Query` is an immutable lazy plan over stored bars. Each method returns a new plan;
nothing runs until you call `collect()`, `to_pandas()` or `bars()`. This notebook makes its
own data with `lazybars.synth`, so it runs anywhere. Charts (`.plot()`) need the plot extra:
`pip install 'lazybars[plot]'`.
# %%
import lazybars as lb

frames = lb.synth.catalog(("MES", "MNQ"), "2024-03-01", "2024-04-01", session="24h")
store = lb.BarStore.from_frames(frames)
store
# %% md
## A plan is a value

`scan` starts a plan at the finest stored timestep. Steps read like the question you ask.
# %%
week = store.scan("MES").between("2024-03-11", "2024-03-16")
hourly = week.resample("1h").select("close", "volume")
hourly
# %%
# Builders never mutate: equal plans compare (and hash) equal.
same_week = store.scan("MES").between("2024-03-11", "2024-03-16")
week.resample("1h").select("close", "volume") == hourly, week == same_week
# %% md
## Look before you run

`explain()` shows the lazybars steps and the optimised polars plan that runs them. With a
directory catalog the window becomes a predicate pushed into the parquet scan.
# %%
print(hourly.explain())
# %%
hourly.to_pandas().head()
# %% md
## See it

`plot()` runs the plan and draws it: candlesticks with volume beneath, on a time axis in the
bars' own zone, titled with the timestep (and the one it was aggregated from). A query that
kept only `close` is drawn as a line.
# %%
week.resample("1h").plot()
# %%
hourly.select("close").plot()
# %% md
## As of a moment, without lookahead

`as_of(dt)` keeps the bars completed by `dt`: a bar is visible once its end has passed.
An aggregated bucket is visible only once it is complete.
# %%
q = store.scan("MES").resample("15m").as_of("2024-03-12 10:07").tail(3)
q.to_pandas()
# %%
# The last 40 completed 15-minute bars at 10:07: the 10:00 bucket is still forming.
store.scan("MES").resample("15m").as_of("2024-03-12 10:07").tail(40).plot()
# %% md
## Several symbols, long format

A multi-symbol scan has a `symbol` column after `datetime`; `tail` and `head` work per
symbol.
# %%
both = store.scan(["MES", "MNQ"]).resample("day").between("2024-03-18", "2024-03-23")
both.collect()
# %%
# Compare the two assets side by side in pandas.
both.to_pandas().pivot_table(index="datetime", columns="symbol", values="close")
# %% md
A multi-symbol chart draws small multiples, one price and volume panel per symbol on a
shared time axis; `overlay=True` draws every close on one panel, as the change since its
first bar, so that assets at different price levels compare.
# %%
month = store.scan(["MES", "MNQ"]).resample("day")
month.plot()
# %%
month.plot(overlay=True)
# %% md
## Bars

`bars()` returns `lb.Bars`: polars inside (`.pl`), pandas on first access (`.df`), and a
few helpers.
# %%
bars = store.scan("MES").as_of("2024-03-12 10:00").tail(60).bars()
bars
# %%
bars.get_last_price(), round(bars.get_momentum(30), 6), bars.get_total_volume()
# %%
bars.aggregate("15m").df
# %%
bars.plot()
"""


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    for chunk in SOURCE.split("# %%")[1:]:
        kind, _, body = chunk.partition("\n")
        if kind.strip() == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(body.strip()))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(body.strip()))
    return nb


if __name__ == "__main__":
    nb = notebook()
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nbformat.write(nb, "examples/composing_queries.ipynb")
    print("written examples/composing_queries.ipynb")
