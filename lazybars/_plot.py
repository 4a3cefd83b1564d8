"""Charts of bars with matplotlib: candlesticks with volume beneath, for notebooks.

An edge module: :meth:`lazybars.Bars.plot` and :meth:`lazybars.Query.plot` import it only
when called, so ``import lazybars`` never imports matplotlib. It reads polars frames and
timesteps, nothing from the layers below it.

The x axis is real time, labelled in the bars' own zone: a bar covers its interval
[start, start + timestep), so nights and weekends show as gaps and a user can draw on the
axes with datetimes. Figures are made through pyplot, which loads the notebook's display
backend, and closed from pyplot before they are returned: a returned figure shows exactly
once as a cell's value, ``fig.savefig(path)`` writes it, and charts drawn in a loop never
pile up in pyplot's registry.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from lazybars.errors import InvalidRequest, MissingExtra
from lazybars.timestep import Timestep

try:
    from matplotlib import dates as mdates
    from matplotlib import pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter
except ModuleNotFoundError as exc:
    _msg = f"charts need matplotlib ({exc.name} is missing): pip install 'lazybars[plot]'"
    raise MissingExtra(_msg) from exc

__all__ = ["bars_figure", "equity_figure", "query_figure"]

UP, DOWN = "#26a69a", "#ef5350"  # close >= open, close < open
_LINE = "#1f77b4"  # a close line, when the bars have no open/high/low
_BODY = 0.8  # share of its interval that a candle's body covers, centred
_WIDTH = 10.0  # inches
_PANEL_HEIGHTS = (3.0, 1.0)  # inches: prices, and volume beneath
_OHLC = ("open", "high", "low", "close")
_NS_PER_DAY = 86_400 * 10**9
# Points further apart than this many timesteps are not joined: a line breaks at nights and
# weekends as the candles do, yet a day bar of 23 or 25 hours (DST) stays joined.
_GAP = 1.5


def bars_figure(
    frame: pl.DataFrame,
    *,
    symbol: str,
    timestep: str | Timestep,
    source: str | Timestep | None = None,
    volume: bool = True,
) -> Figure:
    """Candlesticks of one symbol's bars (a close line without OHLC), volume beneath.

    ``source`` is the timestep the bars were aggregated from, if any, for the title.
    """
    return query_figure(frame, symbols=[symbol], timestep=timestep, source=source, volume=volume)


def query_figure(
    frame: pl.DataFrame,
    *,
    symbols: Sequence[str],
    timestep: str | Timestep,
    source: str | Timestep | None = None,
    overlay: bool = False,
    volume: bool = True,
) -> Figure:
    """One chart of ``frame`` (long format with a ``symbol`` column when it holds several).

    Small multiples (candlesticks, volume beneath, one pair of panels per symbol, sharing
    the time axis), or with ``overlay`` every symbol's close on one panel, as the change
    since its first close in percent so that assets of any price level compare.
    """
    step = Timestep.parse(timestep)
    panels = _panels(frame, symbols)
    title = _title(symbols, step, None if source is None else Timestep.parse(source))
    if overlay:
        return _overlay(panels, step, title)
    with_volume = volume and "volume" in frame.columns
    fig = _new_figure(len(panels) * (sum(_PANEL_HEIGHTS) if with_volume else _PANEL_HEIGHTS[0]))
    ratios = list(_PANEL_HEIGHTS) * len(panels) if with_volume else [1] * len(panels)
    axes = fig.subplots(len(ratios), 1, sharex=True, squeeze=False, height_ratios=ratios)[:, 0]
    per_panel = 2 if with_volume else 1
    for i, (symbol, bars) in enumerate(panels):
        price_ax = axes[i * per_panel]
        _prices(price_ax, bars, step)
        if len(panels) > 1:
            price_ax.set_title(symbol, loc="left", fontsize="medium")
        if with_volume:
            _volume(axes[i * per_panel + 1], bars, step)
    return _finish(fig, axes, frame, step, title)


def _panels(frame: pl.DataFrame, symbols: Sequence[str]) -> list[tuple[str, pl.DataFrame]]:
    if "close" not in frame.columns:
        msg = (
            f"nothing to draw: the bars have no 'close' column (columns {frame.columns}); "
            "select 'close', and 'open', 'high', 'low' for candlesticks"
        )
        raise InvalidRequest(msg)
    if frame.is_empty():
        msg = (
            f"nothing to draw: there are no bars of {', '.join(symbols)} here; "
            "ask for a wider window (between, tail) or a later clock (as_of)"
        )
        raise InvalidRequest(msg)
    if "symbol" not in frame.columns:
        return [(symbols[0], frame)]
    return [(symbol, frame.filter(pl.col("symbol") == symbol)) for symbol in symbols]


def _title(symbols: Sequence[str], step: Timestep, source: Timestep | None) -> str:
    title = f"{', '.join(symbols)}: {step} bars"
    if source is not None and source != step:
        title += f" (aggregated from {source})"
    return title


def _new_figure(height: float) -> Figure:
    return plt.figure(figsize=(_WIDTH, max(height, 2.5)), layout="constrained")


def _starts(bars: pl.DataFrame) -> np.ndarray:
    """Bar starts as matplotlib date numbers (days since its epoch, in UTC)."""
    return mdates.date2num(bars["datetime"].dt.epoch("ns").to_numpy().astype("datetime64[ns]"))


def _width(step: Timestep) -> float:
    """A bar's interval in matplotlib date units (days; a nominal day for day bars)."""
    return step.nanos / _NS_PER_DAY


def _colors(bars: pl.DataFrame) -> np.ndarray:
    if "open" not in bars.columns:
        return np.full(bars.height, UP)
    return np.where((bars["close"] >= bars["open"]).to_numpy(), UP, DOWN)


def _prices(ax: Axes, bars: pl.DataFrame, step: Timestep) -> None:
    width, left = _width(step), _starts(bars)
    if not all(c in bars.columns for c in _OHLC):
        x, y = _broken(left + width / 2, bars["close"].to_numpy(), width)
        ax.plot(x, y, color=_LINE, gid="close")
        ax.set_ylabel("close")
        return
    o, h, lo, c = (bars[name].to_numpy() for name in _OHLC)
    colors = _colors(bars)
    x0, x1, mid = left + width * (1 - _BODY) / 2, left + width * (1 + _BODY) / 2, left + width / 2
    bottom, top = np.minimum(o, c), np.maximum(o, c)
    bodies = np.stack([[x0, bottom], [x0, top], [x1, top], [x1, bottom]]).transpose(2, 0, 1)
    wicks = np.stack([[mid, lo], [mid, h]]).transpose(2, 0, 1)
    ax.add_collection(LineCollection(wicks, colors=colors, linewidths=0.8, gid="wicks"))
    # Edges in the face colour keep a doji (open == close) visible as a line.
    body = PolyCollection(bodies, facecolors=colors, edgecolors=colors, linewidths=0.5)
    body.set_gid("candles")
    ax.add_collection(body)
    ax.autoscale_view()
    ax.set_ylabel("price")


def _volume(ax: Axes, bars: pl.DataFrame, step: Timestep) -> None:
    width = _width(step)
    left = _starts(bars) + width * (1 - _BODY) / 2
    right = left + width * _BODY
    v = bars["volume"].cast(pl.Float64).fill_null(0.0).to_numpy()
    colors = _colors(bars)
    zero = np.zeros_like(v)
    rects = np.stack([[left, zero], [left, v], [right, v], [right, zero]]).transpose(2, 0, 1)
    columns = PolyCollection(rects, facecolors=colors, edgecolors=colors, linewidths=0.5)
    columns.set_alpha(0.6)
    columns.set_gid("volume")
    ax.add_collection(columns)
    ax.autoscale_view()
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, not 150000
    ax.set_ylabel("volume")


def _overlay(panels: list[tuple[str, pl.DataFrame]], step: Timestep, title: str) -> Figure:
    fig = _new_figure(_PANEL_HEIGHTS[0] + 1)
    ax = fig.subplots()
    mid = _width(step) / 2
    for symbol, bars in panels:
        close = bars["close"].to_numpy()
        if close.size:
            x, y = _broken(_starts(bars) + mid, (close / close[0] - 1) * 100, 2 * mid)
            ax.plot(x, y, label=symbol)
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set_ylabel("close, % change since first bar")
    ax.legend(loc="upper left")
    frame = pl.concat([bars.select("datetime") for _, bars in panels])
    return _finish(fig, np.array([ax]), frame, step, title)


def equity_figure(curves: dict[str, pl.DataFrame], *, step: str | Timestep, title: str) -> Figure:
    """Equity curves on one panel, each a frame of ``datetime`` and ``equity`` marks.

    ``step`` is the spacing of the marks: a line breaks where marks are further apart (the
    nights and weekends a backtest's clock skips).
    """
    step = Timestep.parse(step)
    fig = _new_figure(_PANEL_HEIGHTS[0] + 1)
    ax = fig.subplots()
    # Dashes after the first curve keep equal curves (a parity check) both visible.
    for (name, curve), style in zip(curves.items(), itertools.cycle(("-", "--")), strict=False):
        x, y = _broken(_starts(curve), curve["equity"].to_numpy(), _width(step))
        ax.plot(x, y, style, label=name)
    ax.set_ylabel("equity")
    ax.legend(loc="upper left")
    frame = pl.concat([curve.select("datetime") for curve in curves.values()])
    return _finish(fig, np.array([ax]), frame, step, title)


def _broken(x: np.ndarray, y: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """A line's points with a NaN after each gap, where matplotlib lifts the pen.

    The NaN point sits at the end of the bar before the gap, so ``x`` stays increasing.
    """
    gaps = np.flatnonzero(np.diff(x) > width * _GAP) + 1
    return np.insert(x, gaps, x[gaps - 1] + width), np.insert(y.astype(float), gaps, np.nan)


def _finish(
    fig: Figure, axes: np.ndarray, frame: pl.DataFrame, step: Timestep, title: str
) -> Figure:
    zone = frame.schema["datetime"].time_zone
    tz = ZoneInfo(zone) if zone else None
    bottom = axes[-1]
    locator = mdates.AutoDateLocator(tz=tz)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))
    bottom.set_xlabel(f"time ({zone})" if zone else "time")
    starts = _starts(frame.select(pl.col("datetime").min()))
    ends = _starts(frame.select(pl.col("datetime").max()))
    bottom.set_xlim(starts[0], ends[0] + _width(step))
    for ax in axes:
        ax.grid(True, color="0.92")
    fig.suptitle(title)
    # Off pyplot's registry: shown once as a cell's value, never accumulating in loops.
    plt.close(fig)
    return fig
