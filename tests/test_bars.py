"""Bars: polars inside, pandas on first ``.df``; prices, momentum, volume, filter, display."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import pytest
from mutations import PANDAS_MUTATIONS, mutation_id

import lazybars as lb

NY = "America/New_York"
NYZ = ZoneInfo(NY)
OHLCV = ["datetime", "open", "high", "low", "close", "volume"]


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-04", gaps=0.01, extras=True)


@pytest.fixture
def bars(frame: pl.DataFrame) -> lb.Bars:
    return lb.Bars(frame, symbol="MES", timestep="1m")


def hand_bars(closes: list[float], volumes: list[float] | None = None) -> lb.Bars:
    n = len(closes)
    times = [dt.datetime(2024, 1, 2, 9, 30, tzinfo=NYZ) + dt.timedelta(minutes=i) for i in range(n)]
    data = pl.DataFrame(
        {
            "datetime": pl.Series(times, dtype=pl.Datetime("ns", NY)),
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": volumes if volumes is not None else [1.0] * n,
        },
        schema_overrides={c: pl.Float64 for c in ("open", "high", "low", "close", "volume")},
    )
    return lb.Bars(data, symbol="X", timestep="1m")


# -- construction ---------------------------------------------------------------------------
def test_from_polars_and_from_pandas_agree(frame: pl.DataFrame) -> None:
    pdf = frame.to_pandas().set_index("datetime")
    from_pl = lb.Bars(frame, symbol="MES", timestep="1m")
    from_pd = lb.Bars(pdf, symbol="MES", timestep="1m")
    assert from_pl.pl.equals(frame)
    assert from_pd.pl.equals(frame)
    pd.testing.assert_frame_equal(from_pl.df, pdf)
    pd.testing.assert_frame_equal(from_pd.df, pdf)
    assert len(from_pl) == len(from_pd) == frame.height


def test_df_is_indexed_by_datetime_in_the_source_zone(bars: lb.Bars, frame: pl.DataFrame) -> None:
    df = bars.df
    assert isinstance(df.index, pd.DatetimeIndex)
    assert df.index.name == "datetime"
    assert str(df.index.tz) == NY
    assert list(df.columns) == ["open", "high", "low", "close", "volume", "vwap", "trades"]
    assert list(df.index) == [pd.Timestamp(t) for t in frame["datetime"].to_list()]
    assert df["close"].tolist() == frame["close"].to_list()


def test_df_is_built_once(bars: lb.Bars) -> None:
    first = bars.df
    assert bars.df is first
    assert bars.df is first


def test_pl_from_pandas_is_built_once(frame: pl.DataFrame) -> None:
    bars = lb.Bars(frame.to_pandas().set_index("datetime"), symbol="MES", timestep="1m")
    assert bars.pl is bars.pl


def test_attributes(bars: lb.Bars) -> None:
    assert bars.symbol == "MES"
    assert bars.timestep == "1m"


@pytest.mark.parametrize("data", [None, [1, 2], {"close": [1.0]}, pl.Series([1.0])])
def test_bars_need_a_frame(data: object) -> None:
    with pytest.raises(lb.InvalidRequest, match="DataFrame"):
        lb.Bars(data, symbol="X", timestep="1m")  # type: ignore[arg-type]


# -- len and empty ---------------------------------------------------------------------------
def test_len_and_empty(frame: pl.DataFrame) -> None:
    assert len(lb.Bars(frame, symbol="MES", timestep="1m")) == frame.height
    assert not lb.Bars(frame, symbol="MES", timestep="1m").empty
    empty = lb.Bars(frame.head(0), symbol="MES", timestep="1m")
    assert len(empty) == 0
    assert empty.empty
    empty_pd = lb.Bars(frame.head(0).to_pandas().set_index("datetime"), symbol="MES", timestep="1m")
    assert len(empty_pd) == 0
    assert empty_pd.empty


def test_empty_bars_answer_none_or_zero(frame: pl.DataFrame) -> None:
    empty = lb.Bars(frame.head(0), symbol="MES", timestep="1m")
    assert empty.get_last_price() is None
    assert empty.get_momentum() is None
    assert empty.get_momentum(3) is None
    assert empty.get_total_volume() == 0.0
    assert empty.filter("2024-01-02", "2024-01-03").empty
    assert empty.df.empty
    assert empty.df.index.name == "datetime"


# -- prices ----------------------------------------------------------------------------------
def test_get_last_price(bars: lb.Bars, frame: pl.DataFrame) -> None:
    last = frame["close"].to_list()[-1]
    assert bars.get_last_price() == last
    assert isinstance(bars.get_last_price(), float)
    assert hand_bars([1.0, 2.0, 3.5]).get_last_price() == 3.5


@pytest.mark.parametrize("n", [1, 2, 5, 60, 300])
def test_get_momentum(bars: lb.Bars, frame: pl.DataFrame, n: int) -> None:
    closes = frame["close"].to_list()
    expected = closes[-1] / closes[-1 - n] - 1
    assert bars.get_momentum(n) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_get_momentum_by_hand() -> None:
    bars = hand_bars([100.0, 110.0, 99.0, 121.0])
    assert bars.get_momentum(1) == pytest.approx(121.0 / 99.0 - 1)
    assert bars.get_momentum(2) == pytest.approx(0.1)
    assert bars.get_momentum(3) == pytest.approx(0.21)
    # None: over all bars held.
    assert bars.get_momentum() == pytest.approx(0.21)
    assert bars.get_momentum(None) == pytest.approx(0.21)


def test_get_momentum_too_short_is_none() -> None:
    bars = hand_bars([100.0, 110.0, 99.0, 121.0])
    assert bars.get_momentum(4) is None
    assert bars.get_momentum(100) is None
    assert hand_bars([5.0]).get_momentum() is None
    assert hand_bars([5.0]).get_momentum(1) is None


@pytest.mark.parametrize("n", [0, -1, 1.5, True, False, "3", [2]])
def test_get_momentum_bad_n(bars: lb.Bars, n: object) -> None:
    with pytest.raises(lb.InvalidRequest, match="get_momentum"):
        bars.get_momentum(n)  # type: ignore[arg-type]


# -- volume and filter ------------------------------------------------------------------------
def _expected_volume(frame: pl.DataFrame, lo: dt.datetime | None, hi: dt.datetime | None) -> float:
    total = 0.0
    for t, v in zip(frame["datetime"].to_list(), frame["volume"].to_list(), strict=True):
        if (lo is None or t >= lo) and (hi is None or t <= hi):
            total += v
    return total


def test_get_total_volume_inclusive(bars: lb.Bars, frame: pl.DataFrame) -> None:
    times = frame["datetime"].to_list()
    lo, hi = times[10], times[20]
    assert bars.get_total_volume(lo, hi) == _expected_volume(frame, lo, hi)
    # Both ends included: the sum of rows 10..20.
    assert bars.get_total_volume(lo, hi) == sum(frame["volume"].to_list()[10:21])
    assert bars.get_total_volume() == sum(frame["volume"].to_list())
    assert bars.get_total_volume(start=lo) == sum(frame["volume"].to_list()[10:])
    assert bars.get_total_volume(end=hi) == sum(frame["volume"].to_list()[:21])
    assert bars.get_total_volume(hi, lo) == 0.0
    assert isinstance(bars.get_total_volume(), float)


def test_get_total_volume_by_hand() -> None:
    bars = hand_bars([1.0, 1.0, 1.0, 1.0], volumes=[10.0, 20.0, 30.0, 40.0])
    assert bars.get_total_volume("2024-01-02 09:31", "2024-01-02 09:32") == 50.0
    assert bars.get_total_volume("2024-01-02 09:30:30", "2024-01-02 09:32:30") == 50.0
    assert bars.get_total_volume("2024-01-02 09:32") == 70.0
    # Aware bounds in another zone: 14:31 UTC is 09:31 New York.
    assert bars.get_total_volume(dt.datetime(2024, 1, 2, 14, 31, tzinfo=dt.UTC)) == 90.0


def test_filter_inclusive(bars: lb.Bars, frame: pl.DataFrame) -> None:
    times = frame["datetime"].to_list()
    lo, hi = times[100], times[150]
    out = bars.filter(lo, hi)
    assert isinstance(out, lb.Bars)
    assert out.symbol == "MES"
    assert out.timestep == "1m"
    assert out.pl["datetime"].to_list() == times[100:151]
    assert out.pl.equals(frame.slice(100, 51))
    assert bars.filter().pl.equals(frame)
    assert bars.filter(start=lo).pl["datetime"].to_list() == times[100:]
    assert bars.filter(end=hi).pl["datetime"].to_list() == times[:151]
    # Date strings and naive times are read in the data's zone.
    day = [t for t in times if t.date() == dt.date(2024, 1, 3)]
    assert bars.filter("2024-01-03", "2024-01-03 23:59").pl["datetime"].to_list() == day
    # The original is untouched.
    assert len(bars) == frame.height


def test_filter_result_is_independent(bars: lb.Bars, frame: pl.DataFrame) -> None:
    out = bars.filter(frame["datetime"][0], frame["datetime"][4])
    out.df["close"] = -1.0
    assert bars.pl.equals(frame)
    assert bars.df["close"].tolist() == frame["close"].to_list()


# -- aggregate (existence and shape only) --------------------------------------------------------
@pytest.mark.parametrize("timestep", ["1m", "5m", "15 minutes", "1h", "4h", "day"])
def test_aggregate_columns(bars: lb.Bars, timestep: str) -> None:
    out = bars.aggregate(timestep)
    assert isinstance(out, lb.Bars)
    assert out.pl.columns == OHLCV
    assert out.pl.schema["datetime"] == pl.Datetime("ns", NY)
    assert out.symbol == "MES"
    assert out.timestep == str(lb.Timestep.parse(timestep))
    assert 0 < len(out) <= len(bars)
    assert out.df.index.name == "datetime"


@pytest.mark.parametrize(
    ("timestep", "rule"), [("5m", "5min"), ("15 minutes", "15min"), ("4h", "4h"), ("day", "D")]
)
def test_aggregate_values_equal_pandas_resample(bars: lb.Bars, frame, timestep, rule) -> None:
    # January has no DST change, so pandas' fixed-grid resample is the rule here.
    df = frame.to_pandas().set_index("datetime")[OHLCV[1:]]
    want = df.resample(rule, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    want = want.dropna(subset=["open"])
    want.index = want.index.as_unit("ns")
    got = bars.aggregate(timestep)
    pd.testing.assert_frame_equal(got.df, want, check_freq=False, check_exact=True)


def test_aggregate_of_utc_bars_uses_the_bars_zone_or_the_given_one(frame) -> None:
    utc = frame.with_columns(pl.col("datetime").dt.convert_time_zone("UTC"))
    plain = lb.Bars(utc, symbol="MES", timestep="1m").aggregate("day")
    assert plain.df.index[0] == pd.Timestamp("2024-01-02", tz="UTC")  # UTC days
    local = lb.Bars(utc, symbol="MES", timestep="1m", timezone=NY).aggregate("day")
    assert list(local.df.index) == [pd.Timestamp(d, tz=NY) for d in ("2024-01-02", "2024-01-03")]


def test_aggregate_rejects_finer_and_unknown(frame: pl.DataFrame) -> None:
    hourly = lb.Bars(
        lb.synth.hourly_bars("MES", "2024-01-02", "2024-01-04"), symbol="MES", timestep="1h"
    )
    with pytest.raises(lb.InvalidRequest, match="finer"):
        hourly.aggregate("15m")
    with pytest.raises(lb.InvalidRequest, match="finer"):
        hourly.aggregate("1m")
    with pytest.raises(lb.InvalidRequest, match="fortnight"):
        lb.Bars(frame, symbol="MES", timestep="1m").aggregate("fortnight")


def test_aggregate_of_empty_bars(frame: pl.DataFrame) -> None:
    out = lb.Bars(frame.head(0), symbol="MES", timestep="1m").aggregate("1h")
    assert out.empty
    assert out.pl.columns == OHLCV


# -- display ---------------------------------------------------------------------------------
def test_repr_shows_symbol_timestep_shape_and_span(bars: lb.Bars, frame: pl.DataFrame) -> None:
    text = repr(bars)
    first, last = frame["datetime"][0], frame["datetime"][-1]
    for part in ("MES", "1m", str(frame.height), str(first), str(last), NY):
        assert part in text, part
    # A head/tail preview, not the whole frame.
    assert text.count("\n") < 40
    assert str(frame["close"][0]) in text


def test_repr_html_shows_symbol_timestep_shape_and_span(bars: lb.Bars, frame: pl.DataFrame) -> None:
    html_text = bars._repr_html_()
    first, last = frame["datetime"][0], frame["datetime"][-1]
    for part in ("MES", "1m", str(frame.height), str(first), str(last)):
        assert part in html_text, part
    assert html_text.lstrip().startswith("<")
    assert "<table" in html_text
    assert html_text.count("<tr") < 30


def test_repr_of_empty_bars(frame: pl.DataFrame) -> None:
    empty = lb.Bars(frame.head(0), symbol="MES", timestep="1m")
    assert "MES" in repr(empty)
    assert "0" in repr(empty)
    assert "MES" in empty._repr_html_()


def test_repr_html_escapes_the_symbol(frame: pl.DataFrame) -> None:
    odd = lb.Bars(frame.head(3), symbol="<b>X&Y</b>", timestep="1m")
    html_text = odd._repr_html_()
    assert "<b>X" not in html_text
    assert "&lt;b&gt;X&amp;Y" in html_text


# -- isolation -------------------------------------------------------------------------------------
@pytest.mark.isolation
def test_changing_returned_frames_does_not_change_the_store(frame: pl.DataFrame) -> None:
    store = lb.BarStore.from_frames({"MES": frame})
    bars = store.scan("MES").tail(5).bars()
    bars.df["close"] *= 2
    bars.df["new"] = 1.0
    out = bars.pl
    out = out.with_columns(pl.col("open") * 3)
    assert store.scan("MES").tail(5).collect().equals(frame.tail(5))
    again = store.scan("MES").tail(5).bars()
    assert again.df["close"].tolist() == frame.tail(5)["close"].to_list()
    assert "new" not in again.df.columns


@pytest.mark.isolation
@pytest.mark.parametrize("mutate", PANDAS_MUTATIONS, ids=mutation_id)
@pytest.mark.parametrize("kind", ["bars", "to_pandas", "resampled"])
def test_changing_a_handed_out_frame_changes_no_later_one(
    frame: pl.DataFrame, kind: str, mutate: Callable[[pd.DataFrame], None], copy_on_write: bool
) -> None:
    """Values, columns and the axes' own names and freq: each frame is the caller's alone."""

    def ask(store: lb.BarStore) -> pd.DataFrame:
        query = store.scan("MES")
        query = query.resample("5m").tail(6) if kind == "resampled" else query.tail(30)
        return query.to_pandas() if kind == "to_pandas" else query.bars().df

    store = lb.BarStore.from_frames({"MES": frame})
    mutate(ask(store))
    mutate(ask(store))
    untouched = ask(lb.BarStore.from_frames({"MES": frame}))
    pd.testing.assert_frame_equal(ask(store), untouched, check_exact=True)


def test_bars_of_a_selection(frame: pl.DataFrame) -> None:
    """Bars made from ``select("close")`` answer price questions; volume ones fail cleanly."""
    store = lb.BarStore.from_frames({"MES": frame})
    closes = store.scan("MES").select("close").bars()
    assert closes.pl.columns == ["datetime", "close"]
    assert closes.get_last_price() == frame["close"][-1]
    want = frame["close"][-1] / frame["close"][-3] - 1
    assert closes.get_momentum(2) == pytest.approx(want)
    with pytest.raises(lb.LazyBarsError, match="volume"):
        closes.get_total_volume()


# -- pandas 2 windows ----------------------------------------------------------------------------
@pytest.mark.isolation
@pytest.mark.skipif(pd.__version__ >= "3", reason="pandas 3 always copies on write")
def test_pandas_2_windows_follow_the_copy_on_write_option(frame: pl.DataFrame) -> None:
    """A copy without copy-on-write; a view of the shared mirror once the caller turns it on
    (its writes then copy), so no one pays for a copy they do not need."""
    src = lb.DataSource(lb.BarStore.from_frames({"MES": frame}), NY)
    src.set_datetime(frame["datetime"][-1] + dt.timedelta(minutes=1))

    def two_windows() -> tuple[pd.DataFrame, pd.DataFrame]:
        return src.get_historical_prices("MES", 5).df, src.get_historical_prices("MES", 5).df

    a, b = two_windows()
    assert not np.shares_memory(a["open"].to_numpy(), b["open"].to_numpy())
    with pd.option_context("mode.copy_on_write", True):
        a, b = two_windows()
        assert np.shares_memory(a["open"].to_numpy(), b["open"].to_numpy())
        a.iloc[0, 0] = -1.0
        assert b.iloc[0, 0] == frame["open"][-5]
    assert src.get_historical_prices("MES", 5).df.iloc[0, 0] == frame["open"][-5]


@pytest.mark.parametrize("nulls", [False, True])
@pytest.mark.parametrize("distinct", [1, 10, 256, 257, 5000])
def test_string_columns_reach_pandas_as_their_values(distinct: int, nulls: bool) -> None:
    # Few distinct strings go through codes, many (or nulls) through a Python string per
    # row: both give the column pandas makes of the values themselves.
    rows = 6000
    names = [None if nulls and i % 97 == 0 else f"S{i % distinct}" for i in range(rows)]
    start = dt.datetime(2024, 1, 2)
    frame = pl.DataFrame(
        {
            "datetime": pl.datetime_range(
                start, start + dt.timedelta(minutes=rows - 1), "1m", time_zone="UTC", eager=True
            ),
            "symbol": names,
        }
    )
    got = lb.bars.frame_to_pandas(frame)["symbol"]
    want = pd.DataFrame({"symbol": names}, index=got.index)["symbol"]
    pd.testing.assert_series_equal(got, want)
