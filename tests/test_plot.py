"""Charts (lazybars._plot via Bars.plot and Query.plot), rendered headless and read back.

Every chart is rendered to PNG with the Agg backend, then its artists are checked against
the bars: one candle per bar with the bar's open/close body and low/high wick, volume
columns as tall as the volumes, the x axis spanning the first bar's start to the last bar's
end, ticks labelled in the bars' own zone, and the title naming the timestep.
"""

from __future__ import annotations

import importlib.util
import io
import itertools
import subprocess
import sys
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

import lazybars as lb

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="charts need the plot extra: pip install 'lazybars[plot]'",
)

NY = "America/New_York"


@pytest.fixture(scope="module")
def store() -> lb.BarStore:
    frames = lb.synth.catalog(("MES", "MNQ"), "2024-03-04", "2024-03-16", session="24h")
    return lb.BarStore.from_frames(frames)


@pytest.fixture(scope="module", autouse=True)
def _agg() -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib

        matplotlib.use("Agg")


def _render(fig: object) -> None:
    """Draw the whole figure headless, as a notebook or savefig would."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # type: ignore[attr-defined]
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def _by_gid(ax: object, gid: str) -> object:
    found = [c for c in ax.collections if c.get_gid() == gid]  # type: ignore[attr-defined]
    assert len(found) == 1, f"expected one {gid!r} collection"
    return found[0]


def _bodies(ax: object) -> np.ndarray:
    """Candle bodies as (n, 4, 2) vertices: x, y of each rectangle's corners."""
    paths = _by_gid(ax, "candles").get_paths()  # type: ignore[attr-defined]
    return np.array([p.vertices[:4] for p in paths])


def _when(x: float, zone: str | None) -> datetime:
    from matplotlib import dates as mdates

    when = mdates.num2date(x, tz=zone)
    return when if zone else when.replace(tzinfo=None)  # naive bars: wall-clock times


def _assert_candles_match(ax: object, frame: pl.DataFrame) -> None:
    bodies = _bodies(ax)
    assert len(bodies) == frame.height
    o, c = frame["open"].to_numpy(), frame["close"].to_numpy()
    np.testing.assert_allclose(bodies[:, :, 1].min(axis=1), np.minimum(o, c))
    np.testing.assert_allclose(bodies[:, :, 1].max(axis=1), np.maximum(o, c))
    wicks = np.array(_by_gid(ax, "wicks").get_segments())  # type: ignore[attr-defined]
    np.testing.assert_allclose(wicks[:, :, 1].min(axis=1), frame["low"].to_numpy())
    np.testing.assert_allclose(wicks[:, :, 1].max(axis=1), frame["high"].to_numpy())
    # Each candle sits inside its own bar's interval, in time order.
    zone = frame.schema["datetime"].time_zone
    starts = frame["datetime"].to_list()
    step = starts[1] - starts[0] if len(starts) > 1 else timedelta(minutes=1)
    first_left, first_right = bodies[0, :, 0].min(), bodies[0, :, 0].max()
    assert starts[0] < _when(first_left, zone) < _when(first_right, zone) < starts[0] + step
    assert np.all(np.diff(bodies[:, 0, 0]) > 0)
    # Green when the close is at or above the open, red below.
    from matplotlib.colors import to_rgba

    from lazybars._plot import DOWN, UP

    faces = _by_gid(ax, "candles").get_facecolors()  # type: ignore[attr-defined]
    np.testing.assert_allclose(faces, [to_rgba(UP if up else DOWN) for up in c >= o])


def _assert_x_range(ax: object, frame: pl.DataFrame, step: timedelta) -> None:
    zone = frame.schema["datetime"].time_zone
    left, right = ax.get_xlim()  # type: ignore[attr-defined]
    first, last = frame["datetime"].min(), frame["datetime"].max()
    assert abs(_when(left, zone) - first) < timedelta(milliseconds=1)
    assert abs(_when(right, zone) - (last + step)) < timedelta(milliseconds=1)


@needs_matplotlib
def test_bars_chart_has_one_candle_per_bar_and_volume_beneath(store: lb.BarStore) -> None:
    bars = store.scan("MES").between("2024-03-12 09:30", "2024-03-12 11:30").bars()
    fig = bars.plot()
    _render(fig)
    price, volume = fig.axes
    _assert_candles_match(price, bars.pl)
    _assert_x_range(price, bars.pl, timedelta(minutes=1))
    assert volume.get_xlim() == price.get_xlim()  # one shared time axis
    assert volume.get_position().y1 <= price.get_position().y0  # beneath the prices
    columns = _by_gid(volume, "volume").get_paths()
    heights = np.array([p.vertices[:4, 1].max() for p in columns])
    np.testing.assert_allclose(heights, bars.pl["volume"].to_numpy())
    assert volume.get_ylim()[0] == 0
    assert fig.get_suptitle() == "MES: 1m bars"


@needs_matplotlib
def test_volume_false_and_bars_without_volume_draw_prices_only(store: lb.BarStore) -> None:
    q = store.scan("MES").between("2024-03-12 09:30", "2024-03-12 10:00")
    assert len(q.bars().plot(volume=False).axes) == 1
    no_volume = q.select("open", "high", "low", "close")
    fig = no_volume.plot()
    _render(fig)
    assert len(fig.axes) == 1
    _assert_candles_match(fig.axes[0], no_volume.collect())


@needs_matplotlib
@pytest.mark.parametrize(
    ("timestep", "step"),
    [("5m", timedelta(minutes=5)), ("1h", timedelta(hours=1)), ("day", timedelta(days=1))],
)
def test_aggregated_query_is_labelled_and_spans_its_bars(
    store: lb.BarStore, timestep: str, step: timedelta
) -> None:
    q = store.scan("MES").between("2024-03-08", "2024-03-13").resample(timestep)
    fig = q.plot()
    _render(fig)
    frame = q.collect()
    name = str(lb.Timestep.parse(timestep))
    assert fig.get_suptitle() == f"MES: {name} bars (aggregated from 1m)"
    _assert_candles_match(fig.axes[0], frame)
    _assert_x_range(fig.axes[0], frame, step)
    # Bars.aggregate is labelled with its timestep too (Bars do not know their source).
    hourly = store.scan("MES").between("2024-03-12", "2024-03-13").bars().aggregate("1h")
    assert hourly.plot().get_suptitle() == "MES: 1h bars"


@needs_matplotlib
def test_time_axis_is_labelled_in_the_bars_own_zone() -> None:
    tokyo = lb.synth.minute_bars("X", "2024-03-04", "2024-03-06", tz="Asia/Tokyo", gaps=0)
    q = lb.BarStore.from_frames({"X": tokyo}).scan("X", timezone="Asia/Tokyo").head(30)
    frame = q.collect()
    zone = frame.schema["datetime"].time_zone
    fig = q.plot()
    _render(fig)
    bottom = fig.axes[-1]
    assert bottom.get_xlabel() == f"time ({zone})"
    first = frame["datetime"][0]
    assert first.utcoffset() != timedelta(0)  # a zone whose wall clock differs from UTC
    formatter = bottom.xaxis.get_major_formatter()
    label = formatter.format_data_short(bottom.get_xlim()[0])
    assert label.startswith(first.strftime("%Y-%m-%d %H:%M")), label
    ticks = [t.get_text() for t in bottom.get_xticklabels() if t.get_text()]
    assert first.strftime("%H:%M") in ticks  # 09:30 local, not 00:30 UTC


@needs_matplotlib
def test_naive_bars_are_drawn_at_their_wall_clock_times(store: lb.BarStore) -> None:
    frame = store.scan("MES").between("2024-03-12 09:30", "2024-03-12 10:00").to_pandas()
    bars = lb.Bars(frame.tz_localize(None), symbol="MES", timestep="1m")
    fig = bars.plot()
    _render(fig)
    bottom = fig.axes[-1]
    assert bottom.get_xlabel() == "time"
    label = bottom.xaxis.get_major_formatter().format_data_short(bottom.get_xlim()[0])
    assert label.startswith("2024-03-12 09:30"), label
    _assert_candles_match(fig.axes[0], bars.pl)


@needs_matplotlib
def test_multi_symbol_query_draws_small_multiples(store: lb.BarStore) -> None:
    symbols = ["MES", "MNQ"]
    q = store.scan(symbols).resample("day")
    fig = q.plot()
    _render(fig)
    frame = q.collect()
    assert len(fig.axes) == 2 * len(symbols)  # a price and a volume panel per symbol
    assert fig.get_suptitle() == "MES, MNQ: 1d bars (aggregated from 1m)"
    for i, symbol in enumerate(symbols):
        price, volume = fig.axes[2 * i], fig.axes[2 * i + 1]
        assert price.get_title(loc="left") == symbol
        rows = frame.filter(pl.col("symbol") == symbol)
        _assert_candles_match(price, rows)
        assert len(_by_gid(volume, "volume").get_paths()) == rows.height
        _assert_x_range(price, frame, timedelta(days=1))
    assert len(q.plot(volume=False).axes) == len(symbols)


@needs_matplotlib
def test_overlay_draws_each_close_as_change_since_its_first_bar(store: lb.BarStore) -> None:
    q = store.scan(["MES", "MNQ"]).resample("1h").between("2024-03-11", "2024-03-13")
    fig = q.plot(overlay=True)
    _render(fig)
    (ax,) = fig.axes
    frame = q.collect()
    lines = {line.get_label(): line for line in ax.get_lines() if line.get_label()[0] != "_"}
    assert set(lines) == {"MES", "MNQ"}
    for symbol, line in lines.items():
        rows = frame.filter(pl.col("symbol") == symbol)
        close = rows["close"].to_numpy()
        y = np.asarray(line.get_ydata())
        np.testing.assert_allclose(y[~np.isnan(y)], (close / close[0] - 1) * 100)
        _assert_breaks_at_gaps(line, rows, timedelta(hours=1))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MES", "MNQ"]
    _assert_x_range(ax, frame, timedelta(hours=1))


@needs_matplotlib
def test_a_close_only_query_draws_a_close_line(store: lb.BarStore) -> None:
    q = store.scan("MES").between("2024-03-12", "2024-03-13").resample("1h").select("close")
    fig = q.plot()
    _render(fig)
    (ax,) = fig.axes
    (line,) = [line for line in ax.get_lines() if line.get_gid() == "close"]
    frame = q.collect()
    y = np.asarray(line.get_ydata())
    np.testing.assert_allclose(y[~np.isnan(y)], frame["close"].to_numpy())
    assert not ax.collections
    _assert_breaks_at_gaps(line, frame, timedelta(hours=1))


def _assert_breaks_at_gaps(line: object, frame: pl.DataFrame, step: timedelta) -> None:
    """The line is lifted (a NaN) exactly between bars further apart than a bar or so."""
    starts = frame["datetime"].to_list()
    gaps = sum(b - a > step * 1.5 for a, b in itertools.pairwise(starts))
    y = np.asarray(line.get_ydata())  # type: ignore[attr-defined]
    assert gaps > 0  # the data has a gap to break at
    assert np.isnan(y).sum() == gaps
    assert not np.isnan(y[0]) and not np.isnan(y[-1])
    x = np.asarray(line.get_xdata())  # type: ignore[attr-defined]
    assert np.all(np.diff(x) > 0)  # still in time order, so the pen lifts, nothing doubles back


@needs_matplotlib
def test_close_line_breaks_over_a_weekend_but_not_across_a_dst_day() -> None:
    days = lb.synth.minute_bars("X", "2024-03-05", "2024-03-15", gaps=0)
    store = lb.BarStore.from_frames({"X": days})
    q = store.scan("X").resample("day").select("close")
    (line,) = q.plot().axes[0].get_lines()
    frame = q.collect()
    # 2024-03-10 (a Sunday) lasts 23 hours in New York; only the weekend breaks the line.
    _assert_breaks_at_gaps(line, frame, timedelta(days=1))


@needs_matplotlib
def test_equity_figure_breaks_at_nights_and_names_its_axes_and_zone() -> None:
    from lazybars._plot import equity_figure

    store = lb.BarStore.from_frames(
        {"X": lb.synth.minute_bars("X", "2024-03-04", "2024-03-07", session="regular")}
    )
    ticks = lb.sim.clock(store, ["X"], "2024-03-04", "2024-03-07", cadence="1m")
    curve = pl.DataFrame({"datetime": ticks, "equity": np.linspace(1e5, 1.1e5, len(ticks))})
    fig = equity_figure({"a": curve, "b": curve}, step="1m", title="equity of a and b")
    _render(fig)
    (ax,) = fig.axes
    assert ax.get_ylabel() == "equity"
    assert ax.get_xlabel() == f"time ({NY})"
    assert fig.get_suptitle() == "equity of a and b"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    for line in ax.get_lines():
        _assert_breaks_at_gaps(line, curve, timedelta(minutes=1))


@needs_matplotlib
def test_nothing_to_draw_raises_invalid_request(store: lb.BarStore) -> None:
    with pytest.raises(lb.InvalidRequest, match="no bars of MES here; ask for a wider window"):
        store.scan("MES").between("2030-01-01", "2030-02-01").plot()
    with pytest.raises(lb.InvalidRequest, match="no 'close' column"):
        store.scan("MES").head(5).select("volume").plot()


@needs_matplotlib
def test_figures_are_not_kept_by_pyplot(store: lb.BarStore) -> None:
    from matplotlib import pyplot as plt

    before = plt.get_fignums()
    bars = store.scan("MES").head(10).bars()
    for _ in range(25):  # more than pyplot's "too many open figures" warning allows
        bars.plot()
    assert plt.get_fignums() == before


def test_without_matplotlib_plot_names_the_extra(
    store: lb.BarStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "lazybars._plot", raising=False)
    bars = store.scan("MES").head(10).bars()
    with pytest.raises(lb.MissingExtra, match=r"pip install 'lazybars\[plot\]'") as info:
        bars.plot()
    assert isinstance(info.value, ImportError)
    with pytest.raises(lb.MissingExtra):
        store.scan(["MES", "MNQ"]).head(10).plot()


def test_import_lazybars_does_not_import_matplotlib() -> None:
    code = "import sys, lazybars; print(sorted(m for m in sys.modules if 'matplotlib' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
