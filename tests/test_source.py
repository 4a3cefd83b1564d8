"""Semantic rules of the DataSource API (DESIGN.md, "DataSource" and "Semantics").

Each rule is checked against hand-built bars (or synthetic ones filtered by hand) with the
expected answer worked out in the test from the rule itself. Most tests run against both the
fast ``lb.DataSource`` and the pandas oracle ``lb.reference.PandasDataSource``: the oracle is
only worth something if it follows the rules too. Only stored timesteps are exercised here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import weakref
from collections import namedtuple
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import polars.testing
import pytest
from mutations import PANDAS_MUTATIONS, mutation_id

import lazybars as lb
from lazybars._time import parse_duration
from lazybars.reference import PandasDataSource

NY = "America/New_York"
UTC = "UTC"
OHLCV = ["open", "high", "low", "close", "volume"]
NS = pd.Timedelta(1, "ns")
MINUTE = pd.Timedelta(minutes=1)
HOUR = pd.Timedelta(hours=1)

IMPLEMENTATIONS = [lb.DataSource, PandasDataSource]


@pytest.fixture(params=IMPLEMENTATIONS, ids=["fast", "reference"])
def impl(request):
    """The DataSource class under test: the fast path or the pandas oracle."""
    return request.param


# --------------------------------------------------------------------------- helpers
def ts(text: str, tz: str = NY) -> pd.Timestamp:
    return pd.Timestamp(text, tz=tz)


def hand_bars(starts) -> pd.DataFrame:
    """Bars at the given start instants; bar i closes at i + 1.25 so a close names its bar."""
    index = pd.DatetimeIndex(starts, name="datetime")
    base = np.arange(1, len(index) + 1, dtype=float)
    return pd.DataFrame(
        {
            "open": base,
            "high": base + 0.5,
            "low": base - 0.5,
            "close": base + 0.25,
            "volume": base * 10,
        },
        index=index,
    )


def store_of(frames: dict, timestep: str = "minute") -> lb.BarStore:
    return lb.BarStore.from_frames(frames, timestep=timestep)


def starts_of(bars: lb.Bars) -> list[pd.Timestamp]:
    return list(bars.df.index)


def visible_starts(src, symbol: str, clock, length: int = 10_000, **kwargs):
    src.set_datetime(clock)
    return starts_of(src.get_historical_prices(symbol, length, **kwargs))


def expected_window(
    frame: pl.DataFrame, clock: pd.Timestamp, length: int, step: pd.Timedelta, shift: int = 0
) -> pl.DataFrame:
    """From first principles: the bars with start + step <= clock, shifted, last ``length``,
    shown in the zone of ``clock`` (the DataSource's zone in these tests)."""
    starts = frame["datetime"].dt.epoch("ns").to_numpy()
    visible = int(np.count_nonzero(starts + step.value <= clock.value))
    stop = min(max(visible - shift, 0), frame.height)
    begin = max(stop - length, 0)
    window = frame.slice(begin, stop - begin)
    return window.with_columns(pl.col("datetime").dt.convert_time_zone(str(clock.tz)))


def in_regular_session(frame: pl.DataFrame, zone: str) -> pl.DataFrame:
    """Bars whose local (``zone``) wall-clock start is in [09:30, 16:00), by hand in pandas."""
    local = frame["datetime"].to_pandas().dt.tz_convert(zone)
    minutes = local.dt.hour * 60 + local.dt.minute
    keep = ((minutes >= 9 * 60 + 30) & (minutes < 16 * 60)).to_numpy()
    return frame.filter(pl.Series(keep))


def assert_same_bars(a: lb.Bars, b: lb.Bars) -> None:
    polars.testing.assert_frame_equal(a.pl, b.pl, check_exact=True)
    pd.testing.assert_frame_equal(a.df, b.df, check_exact=True, check_freq=False)


def assert_becomes_visible_at(src, symbol: str, label: pd.Timestamp, end: pd.Timestamp) -> None:
    """The bar labelled ``label`` is invisible one nanosecond before ``end``, visible at it."""
    before = visible_starts(src, symbol, end - NS)
    assert label not in before
    at = visible_starts(src, symbol, end)
    assert at[-1] == label


# ------------------------------------------------------------------------ visibility
def test_minute_bar_visible_exactly_at_its_end(impl):
    bars = hand_bars(pd.date_range("2024-01-03 09:58", periods=4, freq="min", tz=NY))
    src = impl(store_of({"X": bars}))
    label = ts("2024-01-03 10:00")
    # One nanosecond before 10:01 the 10:00 bar is still forming.
    assert visible_starts(src, "X", ts("2024-01-03 10:00:59.999999999"))[-1] == ts(
        "2024-01-03 09:59"
    )
    assert visible_starts(src, "X", ts("2024-01-03 10:01"))[-1] == label
    # A datetime.datetime clock (microseconds) follows the same rule.
    zone = ZoneInfo(NY)
    assert label not in visible_starts(src, "X", dt.datetime(2024, 1, 3, 10, 0, 59, 999999, zone))
    assert visible_starts(src, "X", dt.datetime(2024, 1, 3, 10, 1, tzinfo=zone))[-1] == label
    # The clock may be given in any zone: only the instant matters.
    assert visible_starts(src, "X", ts("2024-01-03 15:01", UTC))[-1] == label
    assert visible_starts(src, "X", ts("2024-01-03 15:00:59.999999999", UTC))[-1] < label


def test_hour_bar_visible_exactly_at_its_end(impl):
    bars = hand_bars(pd.date_range("2024-01-03 09:00", periods=3, freq="h", tz=NY))
    src = impl(store_of({"X": bars}, timestep="hour"))
    label = ts("2024-01-03 10:00")
    assert visible_starts(src, "X", ts("2024-01-03 10:59:59.999999999")) == [ts("2024-01-03 09:00")]
    assert visible_starts(src, "X", ts("2024-01-03 11:00"))[-1] == label
    assert_becomes_visible_at(src, "X", label, label + HOUR)


def test_hour_bars_across_dst_end_one_hour_after_their_start(impl):
    # Spring 2024-03-10: 01:00 EST (06:00 UTC) is followed by 03:00 EDT (07:00 UTC).
    spring = pd.date_range("2024-03-10 05:00", periods=4, freq="h", tz=UTC).tz_convert(NY)
    # Autumn 2024-11-03: 01:00 EDT (05:00 UTC), then 01:00 EST (06:00 UTC), 02:00 EST.
    autumn = pd.date_range("2024-11-03 04:00", periods=4, freq="h", tz=UTC).tz_convert(NY)
    src = impl(store_of({"S": hand_bars(spring), "A": hand_bars(autumn)}, timestep="hour"))
    one_est = ts("2024-03-10 06:00", UTC)
    assert_becomes_visible_at(src, "S", one_est, ts("2024-03-10 03:00"))  # = 07:00 UTC
    first_one = ts("2024-11-03 05:00", UTC)  # 01:00 EDT
    second_one = ts("2024-11-03 06:00", UTC)  # 01:00 EST
    # The clock at the second 01:00 (fold=1) is the end of the first 01:00 bar only.
    fold_clock = dt.datetime(2024, 11, 3, 1, 0, fold=1, tzinfo=ZoneInfo(NY))
    assert visible_starts(src, "A", fold_clock)[-1] == first_one
    first_clock = dt.datetime(2024, 11, 3, 1, 0, fold=0, tzinfo=ZoneInfo(NY))
    assert visible_starts(src, "A", first_clock)[-1] == ts("2024-11-03 04:00", UTC)
    assert_becomes_visible_at(src, "A", second_one, ts("2024-11-03 07:00", UTC))


def test_minute_bars_in_the_repeated_autumn_hour(impl):
    # Minute bars across the repeated 01:xx hour of 2024-11-03, labelled in New York.
    starts = pd.date_range("2024-11-03 05:58", "2024-11-03 06:02", freq="min", tz=UTC)
    src = impl(store_of({"X": hand_bars(starts.tz_convert(NY))}))
    # 01:59 EDT (05:59 UTC) ends at the second 01:00 (06:00 UTC), not at 02:00 EDT.
    assert_becomes_visible_at(src, "X", ts("2024-11-03 05:59", UTC), ts("2024-11-03 06:00", UTC))
    assert_becomes_visible_at(src, "X", ts("2024-11-03 06:00", UTC), ts("2024-11-03 06:01", UTC))


def day_starts(dates: list[str], tz: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(d, tz=tz) for d in dates]


def test_day_bars_on_a_23_hour_day_end_at_the_next_local_midnight(impl):
    dates = ["2024-03-08", "2024-03-09", "2024-03-10", "2024-03-11", "2024-03-12"]
    src = impl(store_of({"D": hand_bars(day_starts(dates, NY))}, timestep="day"))
    start, end = ts("2024-03-10"), ts("2024-03-11")
    assert end - start == pd.Timedelta(hours=23)  # clocks jump 02:00 -> 03:00
    assert_becomes_visible_at(src, "D", start, end)
    # 24 hours after the start is an hour after the bar ended: it is long visible.
    assert visible_starts(src, "D", start + pd.Timedelta(hours=24) - NS)[-1] == start
    # The day before (24 h long) ends at the local midnight starting 03-10.
    assert_becomes_visible_at(src, "D", ts("2024-03-09"), start)


def test_day_bars_on_a_25_hour_day_end_at_the_next_local_midnight(impl):
    dates = ["2024-11-01", "2024-11-02", "2024-11-03", "2024-11-04", "2024-11-05"]
    src = impl(store_of({"D": hand_bars(day_starts(dates, NY))}, timestep="day"))
    start, end = ts("2024-11-03"), ts("2024-11-04")
    assert end - start == pd.Timedelta(hours=25)  # 01:00-02:00 happens twice
    assert_becomes_visible_at(src, "D", start, end)
    # 24 hours after the start (23:00 EST on 11-03) the day is not over yet.
    assert start not in visible_starts(src, "D", start + pd.Timedelta(hours=24))
    assert visible_starts(src, "D", start + pd.Timedelta(hours=24))[-1] == ts("2024-11-02")


def test_utc_candles_end_at_the_next_utc_midnight_in_a_new_york_source(impl):
    dates = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-07-01", "2024-07-02", "2024-07-03"]
    src = impl(store_of({"D": hand_bars(day_starts(dates, UTC))}, timestep="day"))
    # A UTC candle covers a UTC day: the 2024-01-03 candle (2024-01-02 19:00 EST) closes at
    # 2024-01-04 00:00 UTC, not at New York's midnight 5 hours after its start.
    assert_becomes_visible_at(src, "D", ts("2024-01-03", UTC), ts("2024-01-04", UTC))
    assert visible_starts(src, "D", ts("2024-01-03 06:00", UTC))[-1] == ts("2024-01-02", UTC)
    assert_becomes_visible_at(src, "D", ts("2024-07-02", UTC), ts("2024-07-03", UTC))


@pytest.mark.parametrize(
    ("data_zone", "local_zone", "label", "end"),
    [
        # London's 2024-01-03 (09:00 JST) ends at London's next midnight, 00:00 UTC.
        ("Europe/London", "Asia/Tokyo", "2024-01-03", "2024-01-04 00:00"),
        # In British summer time that is 2024-07-04 00:00 BST = 07-03 23:00 UTC.
        ("Europe/London", "Asia/Tokyo", "2024-07-03", "2024-07-03 23:00"),
        # Tokyo's 2024-01-03 ends at 2024-01-04 00:00 JST = 01-03 15:00 UTC, in London too.
        ("Asia/Tokyo", "Europe/London", "2024-01-03", "2024-01-03 15:00"),
        ("Asia/Tokyo", "Europe/London", "2024-07-03", "2024-07-03 15:00"),
        # New York's 2024-03-10 lasts 23 hours, read in UTC as well.
        ("America/New_York", "UTC", "2024-03-10", "2024-03-11 04:00"),
        # London's own spring-forward day 2024-03-31 lasts 23 hours.
        ("Europe/London", "Europe/London", "2024-03-31", "2024-03-31 23:00"),
        # ... and its autumn day 2024-10-27 lasts 25 hours.
        ("Europe/London", "Europe/London", "2024-10-27", "2024-10-28 00:00"),
    ],
)
def test_day_bars_end_at_the_next_midnight_of_the_zone_they_were_written_in(
    impl, data_zone, local_zone, label, end
):
    label_ts = pd.Timestamp(label, tz=data_zone)
    days = [label_ts + pd.DateOffset(days=k) for k in (-2, -1, 0, 1, 2)]
    src = impl(store_of({"D": hand_bars(days)}, timestep="day"), timezone=local_zone)
    assert_becomes_visible_at(src, "D", label_ts, ts(end, UTC))


def edge_store(hours: pd.DatetimeIndex, zone: str) -> lb.BarStore:
    """Hour bars over ``hours``, and day bars written in ``zone`` at each day's first hour."""
    frame = pl.DataFrame({"datetime": hours, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5})
    store = lb.BarStore.from_frames({"H": frame}, timestep="hour")
    store.write("D", frame[::24].with_columns(pl.col("datetime").dt.convert_time_zone(zone)), "day")
    return store


EDGES = [
    pd.date_range("1677-10-01", periods=48, freq="h", tz=UTC),  # the first bars a store takes
    pd.date_range("2262-03-30", periods=48, freq="h", tz=UTC),  # and the last
]


@pytest.mark.parametrize("hours", EDGES, ids=["first", "last"])
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Niue", NY])
def test_bars_at_the_edges_of_the_stored_range_are_answered(impl, zone, hours):
    src = impl(edge_store(hours, zone), timezone=zone)
    for clock in (hours[-1], hours[-1] + pd.Timedelta(days=3)):
        src.set_datetime(clock)
        for symbol, timestep in (("H", "1h"), ("H", "4h"), ("H", "day"), ("D", "day")):
            assert len(src.get_historical_prices(symbol, 5, timestep)) > 0
            src.get_historical_prices(symbol, 5, timestep, after_hours=False)
        assert src.get_last_price("H") == 1.5


def test_day_bar_before_a_day_without_midnight_ends_when_the_next_day_starts(impl):
    # Sao Paulo skipped from 2018-11-04 00:00 (-03) straight to 01:00 (-02): 2018-11-04 has no
    # midnight. The 11-03 bar is over when 11-04 begins, at 01:00 -02 = 03:00 UTC (23 hours);
    # the 11-04 bar is labelled by the first instant of that day.
    zone = "America/Sao_Paulo"
    days = [
        ts("2018-11-02", zone),
        ts("2018-11-03", zone),
        ts("2018-11-04 01:00", zone),
        ts("2018-11-05", zone),
    ]
    src = impl(store_of({"D": hand_bars(days)}, timestep="day"), timezone=zone)
    assert_becomes_visible_at(src, "D", days[1], ts("2018-11-04 03:00", UTC))
    assert_becomes_visible_at(src, "D", days[2], ts("2018-11-05", zone))


# ------------------------------------------------------------ get_historical_prices
@pytest.fixture
def ten_minutes() -> pd.DataFrame:
    return hand_bars(pd.date_range("2024-01-03 10:00", periods=10, freq="min", tz=NY))


def minutes(*hhmm: str) -> list[pd.Timestamp]:
    return [ts(f"2024-01-03 {t}") for t in hhmm]


def test_last_length_visible_bars_oldest_first(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))  # 10:00 .. 10:04 are visible
    bars = src.get_historical_prices("X", 3)
    assert starts_of(bars) == minutes("10:02", "10:03", "10:04")
    assert len(bars) == 3
    assert not bars.empty
    assert bars.symbol == "X"
    assert bars.df["close"].tolist() == [3.25, 4.25, 5.25]
    assert bars.pl["close"].to_list() == [3.25, 4.25, 5.25]
    assert len(src.get_historical_prices("X", 1)) == 1


def test_fewer_bars_when_history_is_shorter(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    assert starts_of(src.get_historical_prices("X", 5)) == minutes(
        "10:00", "10:01", "10:02", "10:03", "10:04"
    )
    assert len(src.get_historical_prices("X", 500)) == 5
    src.set_datetime(ts("2024-01-03 23:00"))
    assert len(src.get_historical_prices("X", 500)) == 10


def assert_empty_bars(bars: lb.Bars, zone: str, columns: list[str]) -> None:
    assert len(bars) == 0
    assert bars.empty
    assert bars.get_last_price() is None
    frame = bars.df
    assert frame.empty
    assert list(frame.columns) == columns
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert frame.index.name == "datetime"
    assert str(frame.index.tz) == zone
    assert bars.pl.columns == ["datetime", *columns]
    assert bars.pl.height == 0
    assert bars.pl.schema["datetime"] == pl.Datetime("ns", zone)


@pytest.mark.parametrize(
    "clock",
    [
        "2024-01-03 10:00:59.999999999",  # the first bar is still forming
        "2024-01-03 10:00",  # the first bar just started
        "2024-01-02 12:00",  # a day before any data
        "1990-01-01 00:00",  # long before any data
    ],
)
def test_empty_bars_when_nothing_is_visible(impl, ten_minutes, clock):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts(clock))
    assert_empty_bars(src.get_historical_prices("X", 5), NY, OHLCV)
    assert src.get_last_price("X") is None


def test_empty_bars_keep_extra_columns(impl):
    frame = lb.synth.minute_bars("X", end="2024-01-04", extras=True)
    src = impl(store_of({"X": frame}))
    src.set_datetime(ts("2024-01-01 12:00"))
    bars = src.get_historical_prices("X", 5)
    assert_empty_bars(bars, NY, [*OHLCV, "vwap", "trades"])


# ------------------------------------------------------------------------- timeshift
def test_int_timeshift_ends_the_window_k_bars_earlier(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))  # last visible: 10:04
    assert starts_of(src.get_historical_prices("X", 2, timeshift=2)) == minutes("10:01", "10:02")
    assert starts_of(src.get_historical_prices("X", 2, timeshift=0)) == minutes("10:03", "10:04")
    # More shift than history: the window runs out of bars (fewer, then none).
    assert starts_of(src.get_historical_prices("X", 3, timeshift=3)) == minutes("10:00", "10:01")
    assert src.get_historical_prices("X", 3, timeshift=5).empty
    assert src.get_historical_prices("X", 3, timeshift=50).empty


def test_negative_timeshift_looks_ahead(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))  # last visible: 10:04
    ahead = src.get_historical_prices("X", 3, timeshift=-2)
    assert starts_of(ahead) == minutes("10:04", "10:05", "10:06")
    assert all(start + MINUTE > ts("2024-01-03 10:05:30") for start in starts_of(ahead)[1:])
    # Past the end of the data the window stops at the last stored bar.
    assert starts_of(src.get_historical_prices("X", 2, timeshift=-50)) == minutes("10:08", "10:09")
    # Lookahead from before the first bar: the first bars of the data.
    src.set_datetime(ts("2024-01-02 12:00"))
    assert starts_of(src.get_historical_prices("X", 5, timeshift=-2)) == minutes("10:00", "10:01")


@pytest.mark.parametrize(
    "shift", [dt.timedelta(minutes=3), pd.Timedelta(minutes=3), pd.Timedelta("180s")]
)
def test_timedelta_timeshift_evaluates_earlier(impl, ten_minutes, shift):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))  # as of 10:02:30: 10:00 and 10:01 visible
    shifted = src.get_historical_prices("X", 5, timeshift=shift)
    assert starts_of(shifted) == minutes("10:00", "10:01")
    src.set_datetime(ts("2024-01-03 10:02:30"))
    assert_same_bars(shifted, src.get_historical_prices("X", 5))


def test_timedelta_timeshift_is_exact_to_the_nanosecond(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05"))  # 10:04 is still forming
    assert starts_of(src.get_historical_prices("X", 1)) == minutes("10:04")
    assert starts_of(src.get_historical_prices("X", 1, timeshift=NS)) == minutes("10:03")
    assert starts_of(src.get_historical_prices("X", 1, timeshift=-NS)) == minutes("10:04")


def test_negative_timedelta_timeshift_looks_ahead(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))  # as of 10:07:30: up to 10:06 visible
    ahead = src.get_historical_prices("X", 2, timeshift=dt.timedelta(minutes=-2))
    assert starts_of(ahead) == minutes("10:05", "10:06")


def test_timeshift_keeps_the_window_length(impl):
    frame = lb.synth.minute_bars("X", start="2024-01-02", end="2024-01-04", gaps=0)
    src = impl(store_of({"X": frame}))
    src.set_datetime(ts("2024-01-03 12:00"))
    for shift in (None, 0, 1, 7, -1, -7, dt.timedelta(minutes=13), pd.Timedelta(hours=-1)):
        assert len(src.get_historical_prices("X", 25, timeshift=shift)) == 25


@pytest.mark.parametrize(
    "shift",
    [1.0, 2.5, "1", "1min", True, False, np.True_, np.float64(1.0), [1], (1,), object()],
    # The same ids in every process: pytest-xdist workers must collect identical tests.
    ids=lambda shift: "object()" if type(shift) is object else repr(shift),
)
def test_timeshift_of_another_type_is_rejected(impl, ten_minutes, shift):
    # DESIGN: an int or a timedelta, "any other type -> InvalidRequest". A bool is an int
    # subclass, but a bool timeshift is a mistake: it is rejected like the bool length.
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    with pytest.raises(lb.InvalidRequest):
        src.get_historical_prices("X", 2, timeshift=shift)


def test_numpy_int_timeshift_counts_bars(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    assert_same_bars(
        src.get_historical_prices("X", 2, timeshift=np.int64(2)),
        src.get_historical_prices("X", 2, timeshift=2),
    )


# ---------------------------------------------------------------- argument checking
@pytest.mark.parametrize(
    "length", [0, -1, 1.5, 3.0, True, False, np.True_, "3", None, [3]], ids=repr
)
def test_bad_length_is_rejected(impl, ten_minutes, length):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    with pytest.raises(lb.InvalidRequest) as info:
        src.get_historical_prices("X", length)
    assert isinstance(info.value, lb.LazyBarsError)
    assert isinstance(info.value, ValueError)
    assert "length" in str(info.value)
    with pytest.raises(lb.InvalidRequest):
        src.get_bars(["X"], length)


def test_numpy_int_length_is_accepted_like_the_reference(impl, ten_minutes):
    # DESIGN: "length must be an int >= 1". A numpy integer is an int (numbers.Integral);
    # the reference accepts it, and so does the fast path for timeshift.
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    assert_same_bars(src.get_historical_prices("X", np.int64(3)), src.get_historical_prices("X", 3))


def test_unknown_asset(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    for call in (
        lambda: src.get_historical_prices("NOPE", 3),
        lambda: src.get_last_price("NOPE"),
        lambda: src.get_bars(["X", "NOPE"], 3),
    ):
        with pytest.raises(lb.UnknownAsset) as info:
            call()
        assert isinstance(info.value, KeyError)
        assert isinstance(info.value, lb.LazyBarsError)
        assert "NOPE" in str(info.value)


@pytest.mark.parametrize("asset", [5, None, 1.5], ids=repr)
def test_asset_that_is_not_a_symbol_is_rejected(impl, ten_minutes, asset):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    with pytest.raises(lb.InvalidRequest):
        src.get_historical_prices(asset, 3)


class SlotAsset:
    __slots__ = ("symbol",)

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol


@dataclass(frozen=True)
class FrozenAsset:
    symbol: str
    asset_type: str = "future"


@dataclass
class PlainAsset:  # eq=True without frozen: unhashable, like many user classes
    symbol: str
    multiplier: int = 5


TupleAsset = namedtuple("TupleAsset", ["symbol", "exchange"])


@pytest.mark.parametrize(
    "asset",
    [SlotAsset("X"), FrozenAsset("X"), PlainAsset("X"), TupleAsset("X", "CME")],
    ids=["slots", "frozen-dataclass", "plain-dataclass", "namedtuple"],
)
def test_asset_objects_with_a_symbol_attribute(impl, ten_minutes, asset):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    for _ in range(2):  # the second call may be served from a per-asset cache
        bars = src.get_historical_prices(asset, 3)
        assert bars.symbol == "X"
        assert_same_bars(bars, src.get_historical_prices("X", 3))
        assert src.get_last_price(asset) == src.get_last_price("X")
        got = src.get_bars([asset], 3)
        assert list(got) == ["X"]
        assert_same_bars(got["X"], bars)


@pytest.mark.parametrize(
    "clock",
    [dt.datetime(2024, 1, 3, 10, 5), pd.Timestamp("2024-01-03 10:05"), "2024-01-03 10:05", 17],
    ids=["naive-datetime", "naive-timestamp", "string", "int"],
)
def test_set_datetime_needs_a_tz_aware_datetime(impl, ten_minutes, clock):
    src = impl(store_of({"X": ten_minutes}))
    with pytest.raises(lb.InvalidRequest):
        src.set_datetime(clock)


def test_requests_before_set_datetime_are_rejected(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    assert src.get_datetime() is None
    with pytest.raises(lb.InvalidRequest):
        src.get_historical_prices("X", 3)
    with pytest.raises(lb.InvalidRequest):
        src.get_last_price("X")
    with pytest.raises(lb.InvalidRequest):
        src.get_bars(["X"], 3)


def test_get_datetime_returns_the_clock(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}), timezone="Asia/Tokyo")
    clock = pd.Timestamp("2024-01-03 10:05:30.000000001", tz=UTC)
    src.set_datetime(clock)
    got = src.get_datetime()
    assert got == clock
    assert got.value == clock.value
    assert str(got.tz) == "Asia/Tokyo"
    src.set_datetime(dt.datetime(2024, 1, 3, 10, 6, tzinfo=ZoneInfo(NY)))
    assert src.get_datetime() == ts("2024-01-03 10:06")


@pytest.mark.parametrize("spelling", ["minute", "1m", "1min", "1 minute", "1 min"])
def test_native_timestep_spellings(impl, ten_minutes, spelling):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    assert_same_bars(
        src.get_historical_prices("X", 3, timestep=spelling), src.get_historical_prices("X", 3)
    )


@pytest.mark.parametrize("spelling", ["fortnight", "1x", "", "m1"])
def test_unknown_timestep_spelling(impl, ten_minutes, spelling):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    with pytest.raises(lb.InvalidRequest):
        src.get_historical_prices("X", 3, timestep=spelling)


def _outcome(call):
    """A request's answer as a polars frame, or the name of the lazybars error it raised."""
    try:
        return call().pl
    except lb.LazyBarsError as exc:
        return type(exc).__name__


def _assert_same_outcome(fast, reference) -> None:
    assert type(fast) is type(reference), (fast, reference)
    if isinstance(fast, pl.DataFrame):
        polars.testing.assert_frame_equal(fast, reference, check_exact=True)
    else:
        assert fast == reference


@pytest.mark.parametrize("warm", [False, True], ids=["fresh", "after-bool-requests"])
@pytest.mark.parametrize("after_hours", [1, 0, "yes", None, np.True_, np.False_], ids=repr)
def test_after_hours_validation_agrees_with_the_reference(ten_minutes, after_hours, warm):
    """DESIGN only says True/False. Whatever else is accepted, both sources must agree, and
    the answer must not depend on what was asked before (1 == True for a cache key)."""
    store = store_of({"X": ten_minutes})
    outcomes = []
    for cls in IMPLEMENTATIONS:
        src = cls(store)
        src.set_datetime(ts("2024-01-03 10:05:30"))
        if warm:
            src.get_historical_prices("X", 2, after_hours=True)
            src.get_historical_prices("X", 2, after_hours=False)
        outcomes.append(
            _outcome(lambda src=src: src.get_historical_prices("X", 2, after_hours=after_hours))
        )
    _assert_same_outcome(*outcomes)


# ----------------------------------------------------------- last price and get_bars
def test_get_last_price_is_the_close_of_the_last_visible_bar(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:00:59.999999999"))
    assert src.get_last_price("X") is None
    src.set_datetime(ts("2024-01-03 10:01"))
    assert src.get_last_price("X") == 1.25  # the 10:00 bar, the first one
    src.set_datetime(ts("2024-01-03 10:05:30"))
    price = src.get_last_price("X")
    assert price == 5.25  # the 10:04 bar, the fifth one
    assert isinstance(price, float)
    src.set_datetime(ts("2024-06-01 12:00"))
    with pytest.warns(lb.StaleDataWarning, match="X: the clock"):  # months past the data
        assert src.get_last_price("X") == 10.25


def test_get_last_price_uses_the_finest_stored_timestep(impl):
    store = store_of(
        {"X": hand_bars(pd.date_range("2024-01-03 10:00", periods=90, freq="min", tz=NY))}
    )
    hours = hand_bars(pd.date_range("2024-01-03 10:00", periods=2, freq="h", tz=NY)) * 1000
    store.write("X", hours, timestep="hour")
    src = impl(store)
    src.set_datetime(ts("2024-01-03 11:30"))
    assert src.get_last_price("X") == 90.25  # the 11:29 minute bar, the 90th
    hourly = src.get_historical_prices("X", 5, timestep="hour")
    assert starts_of(hourly) == minutes("10:00")  # the stored hour bar, not an aggregate
    assert hourly.df["close"].tolist() == [1250.0]
    assert starts_of(src.get_historical_prices("X", 1)) == minutes("11:29")


def test_get_bars_matches_individual_requests(impl):
    frames = {
        "A": lb.synth.minute_bars("A", end="2024-01-05", extras=True),
        "B": lb.synth.minute_bars("B", end="2024-01-05", seed=3),
        "C": lb.synth.minute_bars("C", end="2024-01-05", seed=4),
    }
    src = impl(store_of(frames))
    src.set_datetime(ts("2024-01-03 11:17:00.5"))
    for shift in (None, 3, -2, dt.timedelta(minutes=30)):
        got = src.get_bars(["A", SlotAsset("B"), "C"], 7, timeshift=shift)
        assert list(got) == ["A", "B", "C"]
        for symbol, bars in got.items():
            assert bars.symbol == symbol
            assert_same_bars(bars, src.get_historical_prices(symbol, 7, timeshift=shift))
    single = src.get_bars("B", 4)
    assert list(single) == ["B"]
    assert_same_bars(single["B"], src.get_historical_prices("B", 4))


# --------------------------------------------------------------------- after_hours
@pytest.mark.parametrize(
    ("data_zone", "local_zone"),
    [(NY, NY), (UTC, NY), ("Europe/London", "Asia/Tokyo")],
)
def test_after_hours_false_keeps_the_local_regular_session(impl, data_zone, local_zone):
    frame = lb.synth.minute_bars(
        "X", start="2024-03-06", end="2024-03-14", tz=NY, session="24h", gaps=0.01
    ).with_columns(pl.col("datetime").dt.convert_time_zone(data_zone))
    session = in_regular_session(frame, local_zone)
    assert 0 < session.height < frame.height
    src = impl(store_of({"X": frame}), timezone=local_zone)
    clocks = [
        pd.Timestamp("2024-03-07 10:00:30", tz=local_zone),
        pd.Timestamp("2024-03-08 20:00", tz=local_zone),
        pd.Timestamp("2024-03-11 09:31", tz=local_zone),  # after the NY DST change
        pd.Timestamp("2024-03-12 16:00", tz=local_zone),
        pd.Timestamp("2024-03-12 15:59:59.999999999", tz=local_zone),
        pd.Timestamp("2024-03-14 03:00", tz=local_zone),
    ]
    for clock in clocks:
        src.set_datetime(clock)
        for length, shift in ((1, 0), (45, 0), (500, 0), (10, 3), (10, -4)):
            got = src.get_historical_prices("X", length, timeshift=shift, after_hours=False)
            want = expected_window(session, clock, length, MINUTE, shift)
            polars.testing.assert_frame_equal(got.pl, want, check_exact=True)
            everything = src.get_historical_prices("X", length, timeshift=shift)
            want_all = expected_window(frame, clock, length, MINUTE, shift)
            polars.testing.assert_frame_equal(everything.pl, want_all, check_exact=True)


def test_after_hours_false_on_hour_bars(impl):
    # Hour bars start on whole hours: 10:00 .. 15:00 are in [09:30, 16:00), 09:00 and 16:00 not.
    starts = pd.date_range("2024-01-03 06:00", "2024-01-03 20:00", freq="h", tz=NY)
    src = impl(store_of({"X": hand_bars(starts)}, timestep="hour"))
    src.set_datetime(ts("2024-01-04 00:00"))
    got = src.get_historical_prices("X", 100, after_hours=False)
    assert starts_of(got) == [ts(f"2024-01-03 {h}:00") for h in range(10, 16)]


# ------------------------------------------------------------------ frames returned
def test_extra_columns_and_frame_layout(impl):
    frame = lb.synth.minute_bars("X", end="2024-01-05", extras=True, gaps=0.01)
    assert frame.columns == ["datetime", *OHLCV, "vwap", "trades"]
    src = impl(store_of({"X": frame}))
    clock = ts("2024-01-03 11:00:00.25")
    src.set_datetime(clock)
    bars = src.get_historical_prices("X", 20)
    want = expected_window(frame, clock, 20, MINUTE)
    assert bars.pl.columns[0] == "datetime"
    polars.testing.assert_frame_equal(bars.pl, want, check_exact=True)
    df = bars.df
    assert isinstance(df.index, pd.DatetimeIndex)
    assert df.index.name == "datetime"
    assert str(df.index.tz) == NY
    assert list(df.columns) == [*OHLCV, "vwap", "trades"]
    assert df["vwap"].dtype == np.float64
    assert df["trades"].dtype == np.int64
    assert list(df.index) == list(want["datetime"].to_pandas())
    for column in [*OHLCV, "vwap", "trades"]:
        assert df[column].tolist() == want[column].to_list()
    assert bars.get_last_price() == want["close"][-1] == src.get_last_price("X")


@pytest.mark.parametrize(
    ("data_zone", "local_zone"), [(UTC, NY), ("Europe/London", "Asia/Tokyo"), (NY, UTC)]
)
@pytest.mark.parametrize("timestep", [None, "5m", "day"])
def test_one_zone_out_whatever_zone_the_bars_were_written_in(impl, data_zone, local_zone, timestep):
    frame = lb.synth.minute_bars("X", end="2024-01-05", session="24h", gaps=0).with_columns(
        pl.col("datetime").dt.convert_time_zone(data_zone)
    )
    src = impl(store_of({"X": frame}), timezone=local_zone)
    clock = pd.Timestamp("2024-01-04 12:00", tz=NY)
    src.set_datetime(clock)
    assert str(src.get_datetime().tz) == local_zone
    bars = src.get_historical_prices("X", 5, timestep=timestep)
    assert bars.pl.schema["datetime"] == pl.Datetime("ns", local_zone)
    assert str(bars.df.index.tz) == local_zone
    if timestep is None:
        want = expected_window(frame, clock, 5, MINUTE)["datetime"].to_list()
        assert bars.pl["datetime"].to_list() == want  # the same instants
    else:  # buckets start on local boundaries, which read as round local wall times
        minute = 0 if timestep == "day" else 5
        assert all(
            t.minute % minute == 0 if minute else t.hour == t.minute == 0 for t in bars.df.index
        )


def test_day_buckets_of_utc_data_are_labelled_at_local_midnight(impl):
    frame = lb.synth.minute_bars("X", end="2024-01-08", session="24h", gaps=0, tz=UTC)
    src = impl(store_of({"X": frame}))
    src.set_datetime(ts("2024-01-05 10:00"))
    days = src.get_historical_prices("X", 3, timestep="day")
    assert list(days.df.index) == [ts("2024-01-02"), ts("2024-01-03"), ts("2024-01-04")]


def test_bars_filter_reads_naive_bounds_in_the_datasource_zone(impl):
    frame = lb.synth.minute_bars("X", end="2024-01-05", session="24h", gaps=0, tz=UTC)
    src = impl(store_of({"X": frame}))
    src.set_datetime(ts("2024-01-03 12:00"))
    bars = src.get_historical_prices("X", 600)
    morning = bars.filter("2024-01-03 09:30", "2024-01-03 10:00")
    assert list(morning.df.index) == list(
        pd.date_range(ts("2024-01-03 09:30"), periods=31, freq="min")
    )


# ------------------------------------------------------------ assets are their symbols
@dataclass(eq=True)  # eq without frozen: instances are unhashable, like many asset classes
class PlainAsset:
    symbol: str


class IdentityAsset:  # hashable by identity: every new object would be a new dict key
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol


@pytest.mark.parametrize("make", [PlainAsset, IdentityAsset])
def test_a_new_asset_object_per_call_keeps_no_state(impl, ten_minutes, make):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:06"))
    want = src.get_historical_prices("X", 3)
    price = src.get_last_price("X")
    before = len(getattr(src, "_entries", {}))
    for _ in range(500):
        asset = make("X")
        gone = weakref.ref(asset)
        assert_same_bars(src.get_historical_prices(asset, 3), want)
        assert src.get_last_price(asset) == price
        del asset
        assert gone() is None  # nothing holds on to the asset object
    assert len(getattr(src, "_entries", {})) == before


# ----------------------------------------------------------------- out-of-range instants
@contextlib.contextmanager
def within_seconds(seconds: float):
    """Fail instead of hanging: the code under test must return (or raise) in time."""

    def expire(*_):
        msg = f"did not finish within {seconds} s"
        raise TimeoutError(msg)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "clock",
    [
        dt.datetime(2300, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1600, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
        pd.Timestamp.max.tz_localize(UTC),
        pd.Timestamp.min.tz_localize(UTC),
    ],
    ids=["2300", "1600", "9999", "Timestamp.max", "Timestamp.min"],
)
def test_clocks_outside_the_int64_range_are_rejected_at_once(impl, ten_minutes, clock):
    src = impl(store_of({"X": ten_minutes}))
    with within_seconds(5), pytest.raises(lb.InvalidRequest, match="outside"):
        src.set_datetime(clock)
        src.get_last_price("X")


def test_clocks_at_the_edges_of_the_range_answer(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    with within_seconds(10):
        src.set_datetime(dt.datetime(2262, 1, 1, tzinfo=dt.UTC))
        with pytest.warns(lb.StaleDataWarning):  # centuries past the data
            assert src.get_last_price("X") == ten_minutes["close"].iloc[-1]
        assert len(src.get_historical_prices("X", 3)) == 3
        src.set_datetime(dt.datetime(1678, 1, 1, tzinfo=dt.UTC))
        assert src.get_last_price("X") is None
        assert src.get_historical_prices("X", 3).empty


@pytest.mark.parametrize(
    "shift",
    [-dt.timedelta(days=200_000), dt.timedelta(days=200_000), pd.Timedelta.min],
    ids=["-200000d", "200000d", "Timedelta.min"],
)
def test_timeshifts_that_leave_the_range_are_rejected_at_once(impl, ten_minutes, shift):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:06"))
    with within_seconds(5), pytest.raises(lb.InvalidRequest, match="outside"):
        src.get_historical_prices("X", 3, timeshift=shift)


def test_huge_bar_timeshifts_answer_at_once(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:06"))
    with within_seconds(5):
        assert src.get_historical_prices("X", 3, timeshift=10**30).empty
        assert len(src.get_historical_prices("X", 3, timeshift=-(10**30))) == 3


@pytest.mark.parametrize(
    "hints",
    [{"start": "2300-01-01"}, {"end": "1600-01-01"}, {"start": dt.datetime(2300, 1, 1)}],
    ids=["start 2300", "end 1600", "naive start 2300"],
)
def test_hints_outside_the_int64_range_are_rejected(ten_minutes, hints):
    with pytest.raises(lb.InvalidRequest, match="outside"):
        lb.DataSource(store_of({"X": ten_minutes}), **hints)


# ---------------------------------------------------------------- DST at local midnight
HAVANA, SANTIAGO = "America/Havana", "America/Santiago"


def every_minute(zone: str, first: str, last: str) -> pd.DataFrame:
    """A bar every minute (24h, weekends too) from local ``first`` to ``last``."""
    starts = pd.date_range(ts(first, zone), ts(last, zone), freq="min", inclusive="left")
    return hand_bars(starts)


def test_a_repeated_midnight_is_not_a_second_day_boundary(impl):
    # Havana, 2024-11-03: 01:00 CDT goes back to 00:00 CST, so midnight happens twice, at
    # 04:00 and 05:00 UTC. The day 11-03 starts at the first; it ends at 11-04 00:00 CST.
    first_midnight = ts("2024-11-03 04:00", UTC).tz_convert(HAVANA)
    days = [ts("2024-11-01", HAVANA), ts("2024-11-02", HAVANA), first_midnight]
    days.append(ts("2024-11-04", HAVANA))
    src = impl(store_of({"D": hand_bars(days)}, timestep="day"), timezone=HAVANA)
    second_midnight = ts("2024-11-03 05:00", UTC)
    # At 00:30 after the second midnight the 11-03 bar is still forming: not visible.
    assert visible_starts(src, "D", second_midnight + pd.Timedelta(minutes=30))[-1] == days[1]
    assert_becomes_visible_at(src, "D", days[1], first_midnight)
    assert_becomes_visible_at(src, "D", days[2], ts("2024-11-04", HAVANA))


def test_day_buckets_over_a_repeated_midnight(impl):
    bars = every_minute(HAVANA, "2024-11-02", "2024-11-05")
    src = impl(store_of({"X": bars}), timezone=HAVANA)
    src.set_datetime(ts("2024-11-05", HAVANA))
    days = src.get_historical_prices("X", 10, timestep="day")
    first_midnight = ts("2024-11-03 04:00", UTC).tz_convert(HAVANA)
    want = [ts("2024-11-02", HAVANA), first_midnight, ts("2024-11-04", HAVANA)]
    assert list(days.df.index) == want
    # The 11-03 bucket holds every bar of that date, both midnights' hours: 25 hours.
    local = bars.index.tz_convert(HAVANA)
    on_the_third = bars[(local >= first_midnight) & (local < ts("2024-11-04", HAVANA))]
    assert len(on_the_third) == 25 * 60
    assert days.df["volume"].iloc[1] == on_the_third["volume"].sum()
    assert days.df["open"].iloc[1] == on_the_third["open"].iloc[0]
    assert days.df["close"].iloc[1] == on_the_third["close"].iloc[-1]
    src.set_datetime(ts("2024-11-03 05:30", UTC))  # 00:30 after the second midnight
    assert days.df.index[1] not in list(src.get_historical_prices("X", 10, timestep="day").df.index)


@pytest.mark.parametrize("timestep", [None, "1h", "day"])
def test_hints_on_a_day_without_midnight(impl, timestep):
    # Santiago skipped from 2024-09-08 00:00 (-04) to 01:00 (-03).
    bars = every_minute(SANTIAGO, "2024-09-05", "2024-09-11")
    src = impl(
        store_of({"X": bars}),
        timezone=SANTIAGO,
        start="2024-09-08 12:00",
        end="2024-09-10",
        lookback="1h",  # the first load starts on 09-08, a day without midnight
    )
    clock = ts("2024-09-09 00:00", SANTIAGO)
    src.set_datetime(clock)
    got = src.get_historical_prices("X", 30, timestep=timestep)
    plain = lb.reference.PandasDataSource(store_of({"X": bars}), timezone=SANTIAGO)
    plain.set_datetime(clock)
    assert_same_bars(got, plain.get_historical_prices("X", 30, timestep=timestep))
    if timestep == "day":
        assert got.df.index[-1] == ts("2024-09-08 01:00", SANTIAGO)  # the day's first instant


# ---------------------------------------------------------------------- isolation
@pytest.mark.isolation
@pytest.mark.parametrize("mutate", PANDAS_MUTATIONS, ids=mutation_id)
def test_mutating_a_returned_df_changes_no_later_answer(impl, mutate, copy_on_write):
    frame = lb.synth.minute_bars("X", end="2024-01-05", extras=True)
    src = impl(store_of({"X": frame}))
    clock = ts("2024-01-03 11:00")
    src.set_datetime(clock)
    pristine = {
        (n, s): src.get_historical_prices("X", n, timeshift=s).df.copy(deep=True)
        for n in (5, 30)
        for s in (0, 2)
    }
    want_last = src.get_last_price("X")
    # Mutate a window that overlaps every later one, from the same and another request.
    mutate(src.get_historical_prices("X", 30).df)
    mutate(src.get_historical_prices("X", 5, timeshift=2).df)
    for (n, s), expected in pristine.items():
        pd.testing.assert_frame_equal(
            src.get_historical_prices("X", n, timeshift=s).df, expected, check_exact=True
        )
    assert src.get_last_price("X") == want_last
    polars.testing.assert_frame_equal(
        src.get_historical_prices("X", 30).pl, expected_window(frame, clock, 30, MINUTE)
    )


def _insert_column(frame: pl.DataFrame) -> None:
    frame.insert_column(1, pl.Series("signal", [1.0] * frame.height))


def _set_item(frame: pl.DataFrame) -> None:
    frame[0, "close"] = -1.0


def _replace_column(frame: pl.DataFrame) -> None:
    frame.replace_column(1, pl.Series("open", [-2.0] * frame.height))


def _drop_in_place(frame: pl.DataFrame) -> None:
    frame.drop_in_place("volume")


def _with_columns(frame: pl.DataFrame) -> None:
    frame = frame.with_columns(pl.col("close") * 2)
    frame[0, "high"] = -3.0


def _extend(frame: pl.DataFrame) -> None:
    frame.extend(frame)


POLARS_MUTATIONS = [
    _insert_column,
    _set_item,
    _replace_column,
    _drop_in_place,
    _with_columns,
    _extend,
]


@pytest.mark.isolation
@pytest.mark.parametrize("mutate", POLARS_MUTATIONS, ids=lambda f: f.__name__.strip("_"))
def test_mutating_a_returned_pl_changes_no_later_answer(impl, mutate):
    frame = lb.synth.minute_bars("X", end="2024-01-05", extras=True)
    src = impl(store_of({"X": frame}))
    clock = ts("2024-01-03 11:00")
    src.set_datetime(clock)
    first = src.get_historical_prices("X", 30)
    mutate(first.pl)
    mutate(src.get_historical_prices("X", 5, timeshift=2).pl)
    for n, s in ((30, 0), (5, 2), (31, 0)):
        got = src.get_historical_prices("X", n, timeshift=s)
        want = expected_window(frame, clock, n, MINUTE, s)
        polars.testing.assert_frame_equal(got.pl, want, check_exact=True)
        assert list(got.df.columns) == [*OHLCV, "vwap", "trades"]
        assert got.df["close"].tolist() == want["close"].to_list()
    assert src.get_last_price("X") == expected_window(frame, clock, 1, MINUTE)["close"][0]


def test_df_is_built_once_and_cached(impl, ten_minutes):
    src = impl(store_of({"X": ten_minutes}))
    src.set_datetime(ts("2024-01-03 10:05:30"))
    bars = src.get_historical_prices("X", 3)
    assert bars.df is bars.df
    assert bars.pl is bars.pl


# ------------------------------------------------------- start / end / lookback hints
HINT_CASES = {
    "narrow": {"start": "2024-02-05", "end": "2024-02-06", "lookback": "1d"},
    "zero-lookback": {
        "start": ts("2024-02-14 10:00"),
        "end": ts("2024-02-14 11:00"),
        "lookback": "0s",
    },
    "timedelta-lookback": {
        "start": dt.datetime(2024, 2, 20, tzinfo=ZoneInfo(NY)),
        "end": dt.date(2024, 2, 21),
        "lookback": dt.timedelta(hours=2),
    },
    "start-only": {"start": "2024-02-26"},
    "end-only": {"end": "2024-01-04", "lookback": "1h"},
    "before-the-data": {"end": "2023-12-01"},
    "after-the-data": {"start": "2024-06-03", "end": "2024-06-04", "lookback": "2d"},
}

# (clock, length, timeshift, after_hours): inside, far after `end`, far before
# `start - lookback`, long histories, lookahead past `end`, lookahead from before the range.
HINT_REQUESTS = [
    ("2024-02-05 10:00", 10, None, True),
    ("2024-02-28 14:00", 10, None, True),
    ("2024-01-08 10:30", 10, None, True),
    ("2024-02-05 10:00", 3000, None, True),
    ("2024-02-05 10:00", 20, -3000, True),
    ("2024-01-08 10:30", 1, -2, True),
    ("2024-01-08 10:30", 5, -40, False),
    ("2024-01-08 10:30", 50, 2, False),
    ("2024-02-06 15:00", 5, 5000, True),
    ("2024-02-14 10:30", 400, dt.timedelta(days=-3), True),
    ("2024-02-14 10:30", 400, dt.timedelta(days=20), True),
    ("2024-03-05 10:00", 5, None, True),
    ("2023-12-01 10:00", 5, -1, True),
    ("2023-12-01 10:00", 5, None, True),
    ("2024-02-05 10:00", 12, 1, False),
]


@pytest.fixture(scope="module")
def hint_frame() -> pl.DataFrame:
    return lb.synth.minute_bars("X", start="2024-01-02", end="2024-03-01", gaps=0.01, extras=True)


def stale_at(clock: str, hints: dict, frame: pl.DataFrame) -> AbstractContextManager:
    """Expect a StaleDataWarning where ``clock`` is past the last bar of ``frame`` by more
    than the hints' lookback (a hinted DataSource warns of it), else nothing."""
    lookback = pd.Timedelta(parse_duration(hints.get("lookback", "30d"), argument="lookback"))
    if ts(clock) - (frame["datetime"][-1] + MINUTE) > lookback:
        return pytest.warns(lb.StaleDataWarning)
    return contextlib.nullcontext()


def hint_store(kind: str, frame: pl.DataFrame, tmp_path: Path) -> lb.BarStore:
    if kind == "memory":
        return store_of({"X": frame})
    store = lb.BarStore(tmp_path / "catalog")
    store.write("X", frame, timestep="minute")
    return store


@pytest.mark.parametrize("kind", ["memory", "disk"])
@pytest.mark.parametrize("hints", list(HINT_CASES.values()), ids=list(HINT_CASES))
def test_start_end_lookback_are_hints_not_limits(impl, kind, hints, hint_frame, tmp_path):
    store = hint_store(kind, hint_frame, tmp_path)
    plain = impl(store)
    shared = impl(store, **hints)  # one source answering the whole sequence
    for clock, length, shift, after_hours in HINT_REQUESTS:
        fresh = impl(store, **hints)  # a source whose first request is this one
        for src in (plain, shared, fresh):
            src.set_datetime(ts(clock))
        want = plain.get_historical_prices("X", length, timeshift=shift, after_hours=after_hours)
        with stale_at(clock, hints, hint_frame):
            for src in (shared, fresh):
                got = src.get_historical_prices(
                    "X", length, timeshift=shift, after_hours=after_hours
                )
                assert_same_bars(got, want)
            assert shared.get_last_price("X") == plain.get_last_price("X")
        fresh_price = impl(store, **hints)
        fresh_price.set_datetime(ts(clock))
        with stale_at(clock, hints, hint_frame):
            assert fresh_price.get_last_price("X") == plain.get_last_price("X")


def test_hints_agree_with_first_principles(hint_frame):
    """The narrow hinted fast source against the rule itself, not only another source."""
    src = lb.DataSource(store_of({"X": hint_frame}), **HINT_CASES["narrow"])
    for clock, length, shift, after_hours in HINT_REQUESTS:
        if not isinstance(shift, int | None) or not after_hours:
            continue
        src.set_datetime(ts(clock))
        with stale_at(clock, HINT_CASES["narrow"], hint_frame):
            got = src.get_historical_prices("X", length, timeshift=shift)
        want = expected_window(hint_frame, ts(clock), length, MINUTE, shift or 0)
        polars.testing.assert_frame_equal(got.pl, want, check_exact=True)


def test_lookahead_from_before_the_loaded_range():
    """Minimal form of a request that reaches before `start - lookback` with lookahead."""
    week = [ts("2024-01-03 10:00") + k * MINUTE for k in range(10)]
    later = [ts("2024-01-10 10:00") + k * MINUTE for k in range(10)]
    store = store_of({"X": hand_bars(week + later)})
    hinted = lb.DataSource(store, start="2024-01-10", end="2024-01-11", lookback="0s")
    hinted.set_datetime(ts("2024-01-03 10:05:30"))  # last visible: 10:04 on 01-03
    # Two bars after the last visible one: 10:06 on 01-03 (not a bar of the loaded 01-10).
    assert starts_of(hinted.get_historical_prices("X", 1, timeshift=-2)) == minutes("10:06")


@pytest.mark.parametrize(
    "hints",
    [
        {"end": "2024-01-01"},  # the whole hinted range is before the first bar
        {"start": "2024-01-10", "lookback": "1d"},  # ... after the last bar
    ],
)
def test_hints_outside_the_data(impl, ten_minutes, hints):
    """Minimal form of a hinted range that holds no bar at all."""
    src = impl(store_of({"X": ten_minutes}), **hints)
    src.set_datetime(ts("2024-01-03 10:05:30"))
    assert starts_of(src.get_historical_prices("X", 2)) == minutes("10:03", "10:04")
    assert src.get_last_price("X") == 5.25


@pytest.mark.parametrize(
    "hints",
    [
        {"start": "2024-11-03 01:30"},  # ambiguous naive time in New York
        {"end": "2024-03-10 02:30"},  # nonexistent naive time in New York
    ],
)
def test_awkward_naive_hints_are_accepted_or_rejected_cleanly(impl, ten_minutes, hints):
    """A hint that names no single instant may be refused, but only with a lazybars error."""
    store = store_of({"X": ten_minutes})
    try:
        src = impl(store, **hints)
    except lb.LazyBarsError:
        return
    src.set_datetime(ts("2024-01-03 10:05:30"))
    assert starts_of(src.get_historical_prices("X", 2)) == minutes("10:03", "10:04")


@pytest.mark.parametrize(
    "options",
    [
        {"start": "2024-02-01", "end": "2024-01-01"},
        {"start": ts("2024-01-05", UTC), "end": ts("2024-01-04", UTC)},
        {"lookback": "-1d"},
        {"lookback": "soon"},
        {"lookback": None},
        {"start": "not a date"},
        {"timezone": "Mars/Olympus_Mons"},
    ],
    ids=repr,
)
def test_constructor_validation_agrees_with_the_reference(ten_minutes, options):
    """Both sources accept, or both reject with InvalidRequest, the same options (DESIGN:
    "PandasDataSource has the same constructor")."""
    store = store_of({"X": ten_minutes})
    outcomes = []
    for cls in IMPLEMENTATIONS:
        try:
            src = cls(store, **options)
        except lb.InvalidRequest:
            outcomes.append("InvalidRequest")
            continue
        src.set_datetime(ts("2024-01-03 10:05:30"))
        outcomes.append(src.get_historical_prices("X", 3).pl)
    _assert_same_outcome(*outcomes)


@pytest.mark.parametrize(
    ("zone", "date", "first_instant"),
    [
        (HAVANA, "2024-11-03", "2024-11-03 04:00"),  # midnight repeated: its first occurrence
        (SANTIAGO, "2024-09-08", "2024-09-08 04:00"),  # midnight skipped: 01:00 -03
    ],
)
def test_a_naive_date_is_the_first_instant_of_that_day(zone, date, first_instant):
    bars = every_minute(zone, "2024-09-01", "2024-11-10")
    src = lb.DataSource(store_of({"X": bars}), timezone=zone, start=date, end=date, lookback="1h")
    src.set_datetime(ts(first_instant, UTC) + HOUR)
    day = src.get_historical_prices("X", 3000).filter(date, None)
    assert len(day) == 60
    assert day.df.index[0] == ts(first_instant, UTC).tz_convert(zone)
    query = (
        lb.BarStore.from_frames({"X": bars}).scan("X", timezone=zone).between(date, "2024-11-11")
    )
    # (As int64: Python never finds a datetime in a repeated hour equal to another zone's.)
    assert query.collect()["datetime"].dt.epoch("ns")[0] == ts(first_instant, UTC).value
    # A wall time that the change repeats or skips is not a day: it names no single instant.
    wall = "2024-11-03 00:30" if zone == HAVANA else "2024-09-08 00:30"
    with pytest.raises(lb.InvalidRequest, match="ambiguous or does not exist"):
        lb.DataSource(store_of({"X": bars}), timezone=zone, start=wall)
