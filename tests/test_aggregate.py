"""Coarser timesteps: bars aggregated into wall-clock buckets (DESIGN.md, "Semantics").

Three kinds of checks:

* hand-worked examples, whose expected buckets (which bars go where, when a bucket becomes
  visible) are written out in the test from the rule itself, run against both the fast
  ``lb.DataSource`` and the pandas oracle ``lb.reference.PandasDataSource``;
* hypothesis parity between the two on synthetic data around DST changes, holidays and half
  days, in exact frame equality;
* a first-principles check that no returned bucket holds a source bar that ends after the
  clock, with the bucket's contents recomputed from the stored minute bars.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import polars.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazybars as lb
from lazybars._aggregate import bar_ends, bucket_bounds, local_day
from lazybars.reference import PandasDataSource

NY = "America/New_York"
LONDON = "Europe/London"
UTC = "UTC"
OHLCV = ["open", "high", "low", "close", "volume"]
NS = pd.Timedelta(1, "ns")
MINUTE = pd.Timedelta(minutes=1)
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(params=[lb.DataSource, PandasDataSource], ids=["fast", "reference"])
def impl(request):
    """The DataSource class under test: the fast path or the pandas oracle."""
    return request.param


# --------------------------------------------------------------------------- helpers
def ts(text: str, tz: str = NY) -> pd.Timestamp:
    return pd.Timestamp(text, tz=tz).as_unit("ns")


def same_zone(stamps) -> pd.DatetimeIndex:
    """Instants given in any zones, as one index in the zone of the first."""
    stamps = list(stamps)
    zone = stamps[0].tz if stamps else NY
    return pd.DatetimeIndex([t.tz_convert(zone) for t in stamps], name="datetime").as_unit("ns")


def hand_bars(starts, extras: bool = False) -> pd.DataFrame:
    """Bars at the given starts with uneven prices, so first/max/min/last all differ."""
    index = same_zone(starts)
    i = np.arange(len(index))
    opens = 100.0 + (7 * i) % 11
    frame = pd.DataFrame(
        {
            "open": opens,
            "high": opens + 1 + i % 3,
            "low": opens - 1 - i % 2,
            "close": opens + 0.5 * (i % 5 - 2),
            "volume": 10.0 + i,
        },
        index=index,
    )
    if extras:
        frame["vwap"] = opens + 0.25
    return frame


def expected(bars: pd.DataFrame, buckets: dict[pd.Timestamp, list[int]]) -> pd.DataFrame:
    """The buckets written out by hand as {label: rows of ``bars`` in it}, reduced by the rule:
    open first, high max, low min, close last, volume sum (rows are in time order), labelled
    in the DataSource's zone (New York here) whatever zone the bars were written in."""
    rows = []
    for rows_in in buckets.values():
        part = bars.iloc[rows_in]
        rows.append(
            [
                part["open"].iloc[0],
                part["high"].max(),
                part["low"].min(),
                part["close"].iloc[-1],
                part["volume"].sum(),
            ]
        )
    index = same_zone(list(buckets)).tz_convert(NY)
    return pd.DataFrame(rows, index=index, columns=OHLCV, dtype="float64")


def source_of(impl, frames: dict, timestep: str = "minute", **kwargs):
    return impl(lb.BarStore.from_frames(frames, timestep=timestep), **kwargs)


def history(src, clock, timestep, length: int = 1000, symbol: str = "X", **kwargs) -> lb.Bars:
    src.set_datetime(clock)
    return src.get_historical_prices(symbol, length, timestep=timestep, **kwargs)


def labels(bars: lb.Bars) -> list[pd.Timestamp]:
    return list(bars.df.index)


def assert_frame(bars: lb.Bars, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(bars.df, want, check_exact=True, check_freq=False)
    polars.testing.assert_frame_equal(bars.pl, pl.from_pandas(want.reset_index()))


def assert_visible_from(src, timestep: str, label: pd.Timestamp, end: pd.Timestamp, **kw) -> None:
    """The bucket ``label`` is missing one nanosecond before ``end`` and last at ``end``."""
    assert label not in labels(history(src, end - NS, timestep, **kw))
    assert labels(history(src, end, timestep, **kw))[-1] == label


# --------------------------------------------------------------- hand-worked buckets
def test_five_minute_buckets_of_minute_bars(impl):
    starts = [ts(f"2024-01-03 10:{m:02d}") for m in (0, 1, 2, 3, 4, 5, 6, 7, 12)]
    bars = hand_bars(starts, extras=True)
    src = source_of(impl, {"X": bars})
    got = history(src, ts("2024-01-03 11:00"), "5m")
    want = expected(
        bars,
        {
            ts("2024-01-03 10:00"): [0, 1, 2, 3, 4],
            ts("2024-01-03 10:05"): [5, 6, 7],
            ts("2024-01-03 10:10"): [8],
        },
    )
    assert_frame(got, want)  # the extra column (vwap) is dropped
    assert got.timestep == "5m"
    assert got.symbol == "X"
    # Hand-checked numbers of the first bucket: opens 100, 107, 103, 110, 106.
    assert list(want.iloc[0]) == [100.0, 111.0, 99.0, 107.0, 60.0]
    # The 10:05 bucket's last bar ends at 10:08, but the bucket only ends at 10:10.
    assert_visible_from(src, "5m", ts("2024-01-03 10:05"), ts("2024-01-03 10:10"))
    # The 10:10 bucket has one bar (ends 10:13) and ends at 10:15.
    assert_visible_from(src, "5m", ts("2024-01-03 10:10"), ts("2024-01-03 10:15"))


def test_forming_bucket_is_never_returned(impl):
    starts = pd.date_range("2024-01-03 10:00", "2024-01-03 10:29", freq="min", tz=NY)
    src = source_of(impl, {"X": hand_bars(starts)})
    for clock in ("10:15", "10:16", "10:20", "10:29:59.999999999"):
        got = history(src, ts(f"2024-01-03 {clock}"), "15m")
        assert labels(got) == [ts("2024-01-03 10:00")], clock
    # The clock inside the very first bucket: nothing is visible yet.
    assert history(src, ts("2024-01-03 10:14:59.999999999"), "15m").empty
    got = history(src, ts("2024-01-03 10:07"), "15m")
    assert got.empty
    assert list(got.df.columns) == OHLCV
    assert str(got.df.index.dtype) == f"datetime64[ns, {NY}]"
    assert got.pl.schema["datetime"] == pl.Datetime("ns", NY)
    assert labels(history(src, ts("2024-01-03 10:30"), "15m"))[-1] == ts("2024-01-03 10:15")


def test_four_hour_bucket_across_the_spring_gap_lasts_three_hours(impl):
    # 2024-03-10: 01:59 EST is followed by 03:00 EDT. 04:00 EDT is the next boundary after
    # 00:00 EST, three hours later.
    starts = [
        ts("2024-03-10 00:30"),
        ts("2024-03-10 01:59"),
        ts("2024-03-10 03:00"),
        ts("2024-03-10 03:59"),
        ts("2024-03-10 04:00"),
    ]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars})
    got = history(src, ts("2024-03-11"), "4h")
    want = expected(bars, {ts("2024-03-10 00:00"): [0, 1, 2, 3], ts("2024-03-10 04:00"): [4]})
    assert_frame(got, want)
    end = ts("2024-03-10 04:00")
    assert end - ts("2024-03-10 00:00") == 3 * HOUR
    assert_visible_from(src, "4h", ts("2024-03-10 00:00"), end)
    assert_visible_from(src, "4h", ts("2024-03-10 04:00"), ts("2024-03-10 08:00"))


def test_one_hour_buckets_in_the_repeated_autumn_hour(impl):
    # 2024-11-03: 01:00-01:59 happens twice, EDT (05:xx UTC) then EST (06:xx UTC).
    starts = [
        ts("2024-11-03 04:30", UTC),  # 00:30 EDT
        ts("2024-11-03 05:15", UTC),  # 01:15 EDT
        ts("2024-11-03 05:45", UTC),  # 01:45 EDT
        ts("2024-11-03 06:15", UTC),  # 01:15 EST
        ts("2024-11-03 06:45", UTC),  # 01:45 EST
        ts("2024-11-03 07:10", UTC),  # 02:10 EST
    ]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars})
    got = history(src, ts("2024-11-04"), "1h")
    want = expected(
        bars,
        {
            ts("2024-11-03 04:00", UTC): [0],
            ts("2024-11-03 05:00", UTC): [1, 2],  # 01:00 EDT
            ts("2024-11-03 06:00", UTC): [3, 4],  # 01:00 EST
            ts("2024-11-03 07:00", UTC): [5],  # 02:00 EST
        },
    )
    assert_frame(got, want)
    assert [t.tz_convert(NY).strftime("%H:%M%z") for t in got.df.index] == [
        "00:00-0400",
        "01:00-0400",
        "01:00-0500",
        "02:00-0500",
    ]
    assert_visible_from(src, "1h", ts("2024-11-03 05:00", UTC), ts("2024-11-03 06:00", UTC))
    assert_visible_from(src, "1h", ts("2024-11-03 06:00", UTC), ts("2024-11-03 07:00", UTC))


def test_two_hour_bucket_on_the_autumn_day_spans_three_hours(impl):
    # Boundaries: 00:00 EDT (04:00 UTC), then 02:00 EST (07:00 UTC): 02:00 EDT never happens.
    starts = [
        ts("2024-11-03 04:10", UTC),  # 00:10 EDT
        ts("2024-11-03 05:30", UTC),  # 01:30 EDT
        ts("2024-11-03 06:30", UTC),  # 01:30 EST
        ts("2024-11-03 06:59", UTC),  # 01:59 EST
        ts("2024-11-03 07:00", UTC),  # 02:00 EST
    ]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars})
    got = history(src, ts("2024-11-04"), "2h")
    want = expected(bars, {ts("2024-11-03 00:00"): [0, 1, 2, 3], ts("2024-11-03 02:00"): [4]})
    assert_frame(got, want)
    assert_visible_from(src, "2h", ts("2024-11-03 00:00"), ts("2024-11-03 07:00", UTC))
    assert_visible_from(src, "2h", ts("2024-11-03 02:00"), ts("2024-11-03 04:00"))


def test_ninety_minute_buckets_in_the_repeated_autumn_hour(impl):
    # Boundaries 00:00 EDT, 01:30 EDT (05:30 UTC), 01:30 EST (06:30 UTC), 03:00 EST: the bar at
    # 01:10 EST (06:10 UTC) follows 01:30 EDT, so it is in that bucket, not in 00:00's.
    starts = [
        ts("2024-11-03 05:00", UTC),  # 01:00 EDT
        ts("2024-11-03 05:40", UTC),  # 01:40 EDT
        ts("2024-11-03 06:10", UTC),  # 01:10 EST
        ts("2024-11-03 06:40", UTC),  # 01:40 EST
    ]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars})
    want = expected(
        bars,
        {
            ts("2024-11-03 04:00", UTC): [0],
            ts("2024-11-03 05:30", UTC): [1, 2],
            ts("2024-11-03 06:30", UTC): [3],
        },
    )
    assert_frame(history(src, ts("2024-11-04"), "90m"), want)
    assert_visible_from(src, "90m", ts("2024-11-03 05:30", UTC), ts("2024-11-03 06:30", UTC))


def test_seven_minute_buckets_restart_at_midnight(impl):
    # 1440 = 205 * 7 + 5: the day's last bucket starts at 23:55 and ends at midnight.
    starts = [ts("2024-01-03 23:54"), ts("2024-01-03 23:55"), ts("2024-01-03 23:59")]
    starts += [ts("2024-01-04 00:00"), ts("2024-01-04 00:06"), ts("2024-01-04 00:07")]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars})
    want = expected(
        bars,
        {
            ts("2024-01-03 23:48"): [0],
            ts("2024-01-03 23:55"): [1, 2],
            ts("2024-01-04 00:00"): [3, 4],
            ts("2024-01-04 00:07"): [5],
        },
    )
    assert_frame(history(src, ts("2024-01-05"), "7m"), want)
    assert_visible_from(src, "7m", ts("2024-01-03 23:55"), ts("2024-01-04 00:00"))


def test_day_buckets_of_minute_bars_end_at_the_next_local_midnight(impl):
    starts = [
        ts("2024-11-02 12:00"),
        ts("2024-11-03 00:05"),
        ts("2024-11-03 06:30", UTC),  # 01:30 EST
        ts("2024-11-03 23:59"),
        ts("2024-11-04 00:00"),
    ]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars})
    want = expected(
        bars,
        {ts("2024-11-02"): [0], ts("2024-11-03"): [1, 2, 3], ts("2024-11-04"): [4]},
    )
    got = history(src, ts("2024-11-06"), "day")
    assert_frame(got, want)
    assert got.timestep == "1d"
    # The 25-hour day: 2024-11-03 00:00 EDT to 2024-11-04 00:00 EST.
    assert ts("2024-11-04") - ts("2024-11-03") == 25 * HOUR
    assert_visible_from(src, "day", ts("2024-11-03"), ts("2024-11-04"))
    assert_visible_from(src, "1d", ts("2024-11-04"), ts("2024-11-05"))


def test_after_hours_false_drops_bars_outside_the_regular_session(impl):
    hhmm = ["08:00", "09:00", "09:29", "09:30", "09:31", "15:59", "16:00", "17:10"]
    bars = hand_bars([ts(f"2024-01-03 {t}") for t in hhmm])
    src = source_of(impl, {"X": bars})
    clock = ts("2024-01-04")
    regular = expected(bars, {ts("2024-01-03 09:00"): [3, 4], ts("2024-01-03 15:00"): [5]})
    assert_frame(history(src, clock, "1h", after_hours=False), regular)
    everything = expected(
        bars,
        {
            ts("2024-01-03 08:00"): [0],
            ts("2024-01-03 09:00"): [1, 2, 3, 4],
            ts("2024-01-03 15:00"): [5],
            ts("2024-01-03 16:00"): [6],
            ts("2024-01-03 17:00"): [7],
        },
    )
    assert_frame(history(src, clock, "1h", after_hours=True), everything)
    assert_frame(history(src, clock, "1h"), everything)
    day = expected(bars, {ts("2024-01-03"): [3, 4, 5]})
    assert_frame(history(src, clock, "day", after_hours=False), day)
    # The 09:00 bucket is labelled by its boundary even though its first bar is 09:30.
    assert_visible_from(
        src, "1h", ts("2024-01-03 09:00"), ts("2024-01-03 10:00"), after_hours=False
    )


def test_session_filter_reads_the_datasource_zone(impl):
    # London bars read with a New York DataSource: the session is New York's.
    starts = [ts("2024-01-03 14:29", LONDON), ts("2024-01-03 14:30", LONDON)]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars})
    got = history(src, ts("2024-01-04"), "30m", after_hours=False)
    # 14:30 London is 09:30 New York; the bucket is labelled in the DataSource's zone.
    assert_frame(got, expected(bars, {ts("2024-01-03 14:30", LONDON): [1]}))


def test_hourly_bars_to_four_hours_and_day(impl):
    starts = [ts(f"2024-01-03 {h:02d}:00") for h in range(10, 16)]
    starts += [ts("2024-01-04 10:00")]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars}, timestep="hour")
    clock = ts("2024-01-05")
    four = expected(
        bars,
        {
            ts("2024-01-03 08:00"): [0, 1],
            ts("2024-01-03 12:00"): [2, 3, 4, 5],
            ts("2024-01-04 08:00"): [6],
        },
    )
    got = history(src, clock, "4h")
    assert_frame(got, four)
    assert got.timestep == "4h"
    assert_frame(
        history(src, clock, "day"),
        expected(bars, {ts("2024-01-03"): [0, 1, 2, 3, 4, 5], ts("2024-01-04"): [6]}),
    )
    assert_visible_from(src, "4h", ts("2024-01-03 12:00"), ts("2024-01-03 16:00"))
    assert_visible_from(src, "day", ts("2024-01-03"), ts("2024-01-04"))
    # Hour bars are not split: asking for minutes is refused, naming what is stored.
    src.set_datetime(clock)
    with pytest.raises(lb.InvalidRequest, match="1h"):
        src.get_historical_prices("X", 5, timestep="5m")


def test_a_bucket_waits_for_a_source_bar_that_outlasts_it(impl):
    # Hour bars in 90-minute buckets: the 01:00 bar is in the 00:00 bucket (boundary 01:30)
    # but only ends at 02:00, so the bucket is complete at 02:00, not at 01:30.
    starts = [ts("2024-01-03 00:00"), ts("2024-01-03 01:00"), ts("2024-01-03 02:00")]
    bars = hand_bars(starts)
    src = source_of(impl, {"X": bars}, timestep="hour")
    want = expected(bars, {ts("2024-01-03 00:00"): [0, 1], ts("2024-01-03 01:30"): [2]})
    assert_frame(history(src, ts("2024-01-04"), "90m"), want)
    assert history(src, ts("2024-01-03 01:45"), "90m").empty
    assert_visible_from(src, "90m", ts("2024-01-03 00:00"), ts("2024-01-03 02:00"))
    # The 01:30 bucket's only bar (02:00) ends at 03:00, which is also its boundary.
    assert_visible_from(src, "90m", ts("2024-01-03 01:30"), ts("2024-01-03 03:00"))


def test_daily_bars_at_day_are_the_stored_bars(impl):
    starts = [ts("2024-03-08"), ts("2024-03-11"), ts("2024-03-12")]
    bars = hand_bars(starts, extras=True)  # stored bars are served as stored: vwap stays
    src = source_of(impl, {"X": bars}, timestep="day")
    for spelling in ("day", "1d", "1 day", None):
        got = history(src, ts("2024-03-13"), spelling)
        pd.testing.assert_frame_equal(got.df, bars, check_exact=True, check_freq=False)
        assert got.timestep == "1d"
    assert_visible_from(src, "day", ts("2024-03-08"), ts("2024-03-09"))
    src.set_datetime(ts("2024-03-13"))
    with pytest.raises(lb.InvalidRequest, match="1d"):
        src.get_historical_prices("X", 5, timestep="4h")


def test_a_stored_coarser_timestep_is_served_as_stored(impl):
    # Minute and hour bars stored for one symbol: "1h" reads the stored hour bars (whose
    # numbers need not agree with the minute bars), "4h" aggregates the finest (minutes).
    minutes = hand_bars(pd.date_range("2024-01-03 10:00", periods=120, freq="min", tz=NY))
    hours = hand_bars([ts("2024-01-03 10:00"), ts("2024-01-03 11:00")]) * 3
    store = lb.BarStore.from_frames({"X": minutes})
    store.write("X", hours, timestep="hour")
    src = impl(store)
    got = history(src, ts("2024-01-04"), "1h")
    pd.testing.assert_frame_equal(got.df, hours, check_exact=True, check_freq=False)
    want = expected(minutes, {ts("2024-01-03 08:00"): list(range(120))})
    assert_frame(history(src, ts("2024-01-04"), "4h"), want)


def test_timeshift_counts_buckets(impl):
    starts = pd.date_range("2024-01-03 10:00", "2024-01-03 11:59", freq="min", tz=NY)
    src = source_of(impl, {"X": hand_bars(starts)})
    quarter = [ts("2024-01-03 10:00") + k * pd.Timedelta(minutes=15) for k in range(8)]
    clock = ts("2024-01-03 10:50")  # 10:00, 10:15, 10:30 visible; 10:45 forming
    assert labels(history(src, clock, "15m", 2)) == quarter[1:3]
    assert labels(history(src, clock, "15m", 2, timeshift=1)) == quarter[0:2]
    assert labels(history(src, clock, "15m", 2, timeshift=5)) == []
    # Lookahead: later buckets, complete (the forming 10:45 bucket is whole here).
    ahead = history(src, clock, "15m", 2, timeshift=-2)
    assert labels(ahead) == quarter[3:5]
    whole = history(src, ts("2024-01-04"), "15m", 8)
    pd.testing.assert_frame_equal(ahead.df, whole.df.iloc[3:5], check_freq=False)
    assert labels(history(src, clock, "15m", 3, timeshift=-10)) == quarter[5:8]
    # A timedelta evaluates as of clock - timeshift.
    shift = dt.timedelta(minutes=20)
    assert labels(history(src, clock, "15m", 5, timeshift=shift)) == quarter[0:2]
    assert labels(history(src, clock, "15m", 5, timeshift=-shift)) == quarter[0:4]


def test_get_bars_aggregates_each_asset(impl):
    starts = pd.date_range("2024-01-03 10:00", periods=30, freq="min", tz=NY)
    frames = {"A": hand_bars(starts), "B": hand_bars(starts[:12])}
    src = source_of(impl, frames)
    src.set_datetime(ts("2024-01-03 11:00"))
    got = src.get_bars(["A", "B"], 5, timestep="10 minutes")
    assert [labels(got[s]) for s in ("A", "B")] == [
        [ts("2024-01-03 10:00"), ts("2024-01-03 10:10"), ts("2024-01-03 10:20")],
        [ts("2024-01-03 10:00"), ts("2024-01-03 10:10")],
    ]
    assert {b.timestep for b in got.values()} == {"10m"}


@pytest.mark.parametrize(
    ("spelling", "label"),
    [("5 minutes", "5m"), ("60m", "1h"), ("hour", "1h"), ("2 hours", "2h"), ("90min", "90m")],
)
def test_result_timestep_is_canonical(impl, spelling, label):
    starts = pd.date_range("2024-01-03 10:00", periods=10, freq="min", tz=NY)
    src = source_of(impl, {"X": hand_bars(starts)})
    assert history(src, ts("2024-01-04"), spelling).timestep == label


# -------------------------------------------------------------------- parity (hypothesis)
MINUTE_TARGETS = ("5m", "15m", "30m", "1h", "4h", "day", "7m", "90m", None)


@dataclass(frozen=True)
class Case:
    """A synthetic data set, the DataSource zone to read it in and the timesteps to ask for."""

    frame: pl.DataFrame
    stored: str
    timezone: str = NY
    targets: tuple[str | None, ...] = MINUTE_TARGETS


def _case(name: str) -> Case:
    synth = lb.synth
    if name == "spring-regular":  # regular session, NY spring DST, extra columns
        frame = synth.minute_bars("ES", "2024-03-05", "2024-03-14", seed=1, extras=True)
        return Case(frame, "minute")
    if name == "spring-24h":
        return Case(synth.minute_bars("NQ", "2024-03-07", "2024-03-13", session="24h"), "minute")
    if name == "autumn-24h":
        return Case(synth.minute_bars("YM", "2024-10-31", "2024-11-06", session="24h"), "minute")
    if name == "thanksgiving":  # a holiday, a half day, gaps and outages
        frame = synth.minute_bars("RTY", "2024-11-26", "2024-12-03", session="24h", gaps=0.05)
        return Case(frame, "minute")
    if name == "half-day-regular":
        frame = synth.minute_bars("CL", "2024-11-27", "2024-12-04", gaps=0.05)
        return Case(frame, "minute")
    if name == "london-spring":  # London bars read in New York around NY's change
        frame = synth.minute_bars("FT", "2024-03-07", "2024-03-12", tz=LONDON, session="24h")
        return Case(frame, "minute")
    if name == "london-autumn":  # London changes 10-27, New York 11-03
        frame = synth.minute_bars("FT", "2024-10-25", "2024-11-05", tz=LONDON, session="24h")
        return Case(frame, "minute", targets=("15m", "1h", "4h", "day", "90m", "7m"))
    if name == "lord-howe":  # read where DST moves clocks back half an hour (04-07 02:00)
        frame = synth.minute_bars("NK", "2024-04-03", "2024-04-09", session="24h")
        targets = ("15m", "30m", "1h", "90m", "day", "7m")
        return Case(frame, "minute", timezone="Australia/Lord_Howe", targets=targets)
    if name == "hourly":
        frame = synth.hourly_bars("GC", "2024-10-21", "2024-11-12", session="24h")
        return Case(frame, "hour", targets=("1h", "90m", "4h", "day", None))
    if name == "hourly-spring-london":
        frame = synth.hourly_bars("FT", "2024-03-04", "2024-04-05", tz=LONDON, session="24h")
        return Case(frame, "hour", targets=("90m", "4h", "day"))
    if name == "daily":
        return Case(
            synth.daily_bars("ZN", "2024-02-20", "2024-04-10"), "day", targets=("day", None)
        )
    if name == "havana-repeated-midnight":  # 2024-11-03: 01:00 CDT back to 00:00 CST
        frame = around_the_clock("2024-11-02 04:00", "2024-11-05 05:00")
        return Case(frame, "minute", timezone="America/Havana", targets=DST_MIDNIGHT_TARGETS)
    if name == "santiago-skipped-midnight":  # 2024-09-08: 00:00 -04 jumps to 01:00 -03
        frame = around_the_clock("2024-09-06 04:00", "2024-09-10 03:00")
        return Case(frame, "minute", timezone="America/Santiago", targets=DST_MIDNIGHT_TARGETS)
    if name == "beirut-hourly":  # 03-31 skips midnight; 10-27 repeats 23:00 the night before
        frame = around_the_clock("2024-03-29", "2024-04-02", step="1h")
        frame = pl.concat([frame, around_the_clock("2024-10-25", "2024-10-29", step="1h")])
        return Case(frame, "hour", timezone="Asia/Beirut", targets=("90m", "4h", "day", None))
    raise AssertionError(name)


DST_MIDNIGHT_TARGETS = ("5m", "1h", "90m", "4h", "day", "7m")


def around_the_clock(first: str, last: str, step: str = "1min") -> pl.DataFrame:
    """Bars every ``step`` between two UTC instants (weekends too), with a few gaps."""
    starts = pd.date_range(first, last, freq=step, tz=UTC, inclusive="left", name="datetime")
    rng = np.random.default_rng(len(starts))
    starts = starts[rng.random(len(starts)) > 0.05]
    bars = hand_bars(list(starts))
    return pl.from_pandas(bars.reset_index())


CASES = (
    "spring-regular",
    "spring-24h",
    "autumn-24h",
    "thanksgiving",
    "half-day-regular",
    "london-spring",
    "london-autumn",
    "lord-howe",
    "hourly",
    "hourly-spring-london",
    "daily",
    "havana-repeated-midnight",
    "santiago-skipped-midnight",
    "beirut-hourly",
)


@cache
def case(name: str) -> Case:
    return _case(name)


@cache
def reference(name: str) -> PandasDataSource:
    """The oracle over the case's bars; it keeps no state but its clock, so it is shared."""
    c = case(name)
    return PandasDataSource(store(name), timezone=c.timezone)


@cache
def store(name: str) -> lb.BarStore:
    c = case(name)
    return lb.BarStore.from_frames({"X": c.frame}, timestep=c.stored)


def fast(name: str, hinted: bool = False) -> lb.DataSource:
    """A new fast source (its cache is fresh, so a failing example replays alone); ``hinted``
    loads only a day or so around the middle of the data first."""
    c = case(name)
    if not hinted:
        return lb.DataSource(store(name), timezone=c.timezone)
    middle = pd.Timestamp(starts_ns(name)[len(starts_ns(name)) // 2], tz=UTC)
    end = middle + pd.Timedelta(days=1)
    return lb.DataSource(store(name), timezone=c.timezone, start=middle, end=end, lookback="1d")


@cache
def starts_ns(name: str) -> np.ndarray:
    return case(name).frame["datetime"].dt.epoch("ns").to_numpy()


@cache
def oracle_zone(zone: str) -> ZoneInfo:
    """``zone`` for the oracles' pandas calls: a ZoneInfo, as pandas 2 would otherwise use
    pytz, whose offsets before 1970 are rounded to whole minutes (Abidjan's -00:16:08)."""
    return ZoneInfo(zone)


def boundaries(zone: str, minutes: int, first: int, last: int) -> np.ndarray:
    """Every instant (int64 ns, sorted) whose wall time in ``zone`` is midnight plus a multiple
    of ``minutes``, over the local days around [first, last]: the definition, enumerated."""
    tz = oracle_zone(zone)
    lo = pd.Timestamp(first, tz=UTC).tz_convert(tz).tz_localize(None).normalize()
    hi = pd.Timestamp(last, tz=UTC).tz_convert(tz).tz_localize(None).normalize()
    days = pd.date_range(lo - pd.Timedelta(days=2), hi + pd.Timedelta(days=3), freq="D")
    offsets = pd.to_timedelta(np.arange(0, 1440, minutes), unit="m")
    walls = pd.DatetimeIndex([day + offset for day in days for offset in offsets]).as_unit("ns")
    found = set()
    for first_time in (True, False):
        flags = np.full(len(walls), first_time)
        local = walls.tz_localize(tz, ambiguous=flags, nonexistent="NaT")
        found.update(int(t.value) for t in local if t is not pd.NaT)
    return np.array(sorted(found), dtype=np.int64)


def minutes_of(timestep: str | None, stored: str) -> int:
    return lb.Timestep.parse(timestep or stored).minutes


@cache
def anchors(name: str, timestep: str | None) -> np.ndarray:
    """Instants where a bucket (or bar) may become visible: bucket boundaries and bar ends."""
    c = case(name)
    starts = starts_ns(name)
    grid = boundaries(c.timezone, minutes_of(timestep, c.stored), int(starts[0]), int(starts[-1]))
    step = minutes_of(None, c.stored)
    ends = starts + step * 60_000_000_000 if step < 1440 else grid
    points = np.union1d(grid, ends)
    return points[(points >= starts[0]) & (points <= starts[-1] + 3 * 86_400_000_000_000)]


NUDGES = [0, 0, 0, -1, 1, -1_000_000_000, 60_000_000_000, -30 * 60_000_000_000]


@st.composite
def clocks(draw, name: str, timestep: str | None) -> pd.Timestamp:
    points = anchors(name, timestep)
    kind = draw(st.sampled_from(["anchor", "anchor", "anchor", "inside", "outside"]))
    if kind == "anchor":  # exactly at, 1 ns either side of, or just after a boundary
        at = int(draw(st.sampled_from(points))) + draw(st.sampled_from(NUDGES))
    elif kind == "inside":  # anywhere between two anchors
        i = draw(st.integers(0, len(points) - 2))
        at = draw(st.integers(int(points[i]), int(points[i + 1])))
    else:  # before the data or long after it
        at = int(points[0]) - draw(st.integers(0, 3 * 86_400_000_000_000))
        at = draw(st.sampled_from([at, int(points[-1]) + 86_400_000_000_000]))
    zone = draw(st.sampled_from([NY, UTC, LONDON]))
    return pd.Timestamp(at, tz=UTC).tz_convert(zone)


TIMESHIFTS = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.timedeltas(min_value=dt.timedelta(hours=-6), max_value=dt.timedelta(days=2)),
    st.sampled_from(
        [
            dt.timedelta(minutes=1),
            dt.timedelta(hours=1),
            dt.timedelta(days=1),
            pd.Timedelta(1, "ns"),
            pd.Timedelta(-1, "ns"),
            pd.Timedelta(hours=4, nanoseconds=1),
        ]
    ),
)


def assert_same_bars(a: lb.Bars, b: lb.Bars) -> None:
    assert (a.symbol, a.timestep, len(a)) == (b.symbol, b.timestep, len(b))
    pd.testing.assert_frame_equal(a.df, b.df, check_exact=True, check_freq=False)
    polars.testing.assert_frame_equal(a.pl, b.pl)


def check_requests(name: str, data, src: lb.DataSource) -> None:
    """A few random requests to ``src`` and to the oracle, whose answers must be equal."""
    oracle = reference(name)
    latest = []
    with warnings.catch_warnings(record=True) as caught:
        # A clock long after the data can be past it by more than a hinted source's
        # lookback: its StaleDataWarning is recorded, and checked below.
        warnings.simplefilter("always", lb.StaleDataWarning)
        for _ in range(data.draw(st.integers(1, 3), label="requests")):
            timestep = data.draw(st.sampled_from(case(name).targets), label="timestep")
            clock = data.draw(clocks(name, timestep), label="clock")
            length = data.draw(st.sampled_from([1, 2, 3, 5, 20, 400]), label="length")
            timeshift = data.draw(TIMESHIFTS, label="timeshift")
            after_hours = data.draw(st.booleans(), label="after_hours")
            args = (length, timestep, timeshift, after_hours)
            src.set_datetime(clock)
            oracle.set_datetime(clock)
            assert_same_bars(
                src.get_historical_prices("X", *args), oracle.get_historical_prices("X", *args)
            )
            if after_hours:  # get_bars has no after_hours argument
                got = src.get_bars(["X"], length, timestep, timeshift)["X"]
                assert_same_bars(got, oracle.get_bars("X", length, timestep, timeshift)["X"])
            shift = timeshift if isinstance(timeshift, dt.timedelta) else dt.timedelta(0)
            latest.append(max(clock, clock - shift).value)
    assert all(issubclass(w.category, lb.StaleDataWarning) for w in caught), caught
    assert all(str(w.message).startswith("X: the clock") for w in caught), caught
    if caught:  # only of a clock past the last bar's start
        assert max(latest) > starts_ns(name)[-1]


PARITY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", CASES)
@settings(PARITY, max_examples=40)
@given(data=st.data())
def test_fast_aggregation_matches_reference(name, data):
    check_requests(name, data, fast(name))


@pytest.mark.parametrize("name", CASES)
@settings(PARITY, max_examples=12)
@given(data=st.data())
def test_fast_aggregation_with_loading_hints_matches_reference(name, data):
    # start/end/lookback are hints: the answers are those of the oracle, which loads all.
    check_requests(name, data, fast(name, hinted=True))


# ------------------------------------------------------ no source bar after the clock
@pytest.mark.parametrize("name", ["spring-24h", "autumn-24h", "london-autumn", "thanksgiving"])
@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_no_bucket_holds_a_bar_that_ends_after_the_clock(name, data):
    """Every returned bucket, recomputed from the stored minute bars by the definition, is
    complete at the clock: its boundary end and each of its bars' ends are <= the clock."""
    c = case(name)
    starts = starts_ns(name)
    frame = c.frame
    clock = data.draw(clocks(name, "1h"), label="clock")
    after_hours = data.draw(st.booleans(), label="after_hours")
    if not after_hours:
        local = frame["datetime"].dt.convert_time_zone(c.timezone)
        minute = local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)
        keep = ((minute >= 570) & (minute < 960)).to_numpy()
        frame, starts = frame.filter(pl.Series(keep)), starts[keep]
    for src in (reference(name), fast(name)):
        src.set_datetime(clock)
        for timestep in ("5m", "30m", "1h", "4h", "day", "7m", "90m"):
            got = src.get_historical_prices("X", 30, timestep=timestep, after_hours=after_hours)
            grid = boundaries(c.timezone, minutes_of(timestep, "minute"), starts[0], starts[-1])
            for row, label in enumerate(got.pl["datetime"].dt.epoch("ns").to_list()):
                end = int(grid[np.searchsorted(grid, label, side="right")])
                assert label in grid
                assert end <= clock.value, (timestep, label)
                inside = (starts >= label) & (starts < end)
                assert inside.any()
                assert starts[inside].max() + 60_000_000_000 <= clock.value
                part = frame.filter(pl.Series(inside))
                bucket = got.pl.row(row, named=True)
                assert [bucket[c] for c in OHLCV] == [
                    part["open"][0],
                    part["high"].max(),
                    part["low"].min(),
                    part["close"][-1],
                    part["volume"].sum(),
                ]


def test_lookahead_from_a_clock_before_the_loaded_range(impl):
    # start/end/lookback only say what to load first. A clock before that range with a
    # negative timeshift must still get the buckets right after the clock.
    starts = pd.date_range("2024-01-02 09:30", "2024-01-05 15:59", freq="min", tz=NY)
    hints = {"start": "2024-01-04", "end": "2024-01-05", "lookback": "1h"}
    src = source_of(impl, {"X": hand_bars(starts)}, **hints)
    clock = ts("2024-01-02 10:00")  # the 09:30 bucket is complete, 10:00 is next
    assert labels(history(src, clock, "30m", 1, timeshift=-1)) == [ts("2024-01-02 10:00")]
    assert labels(history(src, clock, "30m", 2, timeshift=-1)) == [
        ts("2024-01-02 09:30"),
        ts("2024-01-02 10:00"),
    ]
    assert labels(history(src, clock, None, 1, timeshift=-1)) == [ts("2024-01-02 10:00")]


def test_extra_columns_named_like_internal_ones_do_not_collide():
    """Found by fuzzing: an extra column called ``end`` broke aggregation."""
    frame = lb.synth.minute_bars("X", "2024-01-02", "2024-01-04")
    clashing = frame.with_columns(
        end=pl.lit(1, pl.Int8), bucket=pl.lit(2.0), __lazybars_bucket_end=pl.lit(3.0)
    )
    plain = lb.DataSource(lb.BarStore.from_frames({"X": frame}))
    tricky = lb.DataSource(lb.BarStore.from_frames({"X": clashing}))
    for src in (plain, tricky):
        src.set_datetime(ts("2024-01-03 12:00"))
    for timestep in ("5m", "1h", "day"):
        got = tricky.get_historical_prices("X", 50, timestep=timestep)
        want = plain.get_historical_prices("X", 50, timestep=timestep)
        polars.testing.assert_frame_equal(got.pl, want.pl)
    store = lb.BarStore.from_frames({"X": clashing, "Y": clashing.with_columns(_rank=pl.lit(9))})
    multi = store.scan(["Y", "X"]).resample("1h").collect()
    assert multi.columns == ["datetime", "symbol", "open", "high", "low", "close", "volume"]
    assert multi["symbol"].to_list()[:2] == ["Y", "X"]


# ------------------------------------------- bucket boundaries in native polars plans
@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.scan("X").resample("5m"),
        lambda s: s.scan("X").resample("90m", after_hours=False).as_of("2024-01-03 12:00"),
        lambda s: s.scan("X").as_of("2024-01-03 12:00").resample("day"),
        lambda s: s.scan(["X", "Y"]).resample("4h"),
        lambda s: s.scan("D").as_of("2024-01-04").resample("day"),
    ],
    ids=["5m", "90m-as-of", "as-of-day", "multi-symbol", "day-bars"],
)
def test_resample_plans_run_no_python(build):
    """Buckets are found by polars itself: a Python function in the plan would run once per
    batch, holding the GIL, and cost several times pandas' resample."""
    minute = lb.synth.minute_bars("X", "2024-01-02", "2024-01-05")
    store = lb.BarStore.from_frames({"X": minute, "Y": minute})
    store.write("D", lb.synth.daily_bars("D", "2024-01-01", "2024-01-10"), "day")
    query = build(store)
    assert "python" not in query.explain().lower()
    assert query.collect().height > 0


# Zones whose changes repeat or skip midnight (Havana, Santiago, Asuncion, Beirut, Tehran,
# Sao Paulo until 2019), repeat the end of the previous date (Goose Bay and Moncton until
# 2010: 00:01 back to 23:01), move by half an hour (Lord Howe), skip a whole date (Samoa,
# 2011-12-30) or sit at odd offsets.
ORACLE_ZONES = [
    NY,
    LONDON,
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "Asia/Beirut",
    "Asia/Tehran",
    "America/Sao_Paulo",
    "America/Goose_Bay",
    "America/Moncton",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "Pacific/Apia",
]
DAY_NS = 86_400_000_000_000
MINUTE_NS = 60_000_000_000


@cache
def offset_changes(zone: str) -> np.ndarray:
    """Instants (int64 ns, to the hour) around which ``zone`` changed its UTC offset,
    1970-2099, found by comparing the offsets of consecutive hours."""
    hours = pd.date_range("1970-01-01", "2099-12-31", freq="h", tz=UTC)
    local = hours.tz_convert(oracle_zone(zone))
    offsets = np.asarray((local.tz_localize(None) - hours.tz_localize(None)).asi8)
    return hours.asi8[1:][offsets[1:] != offsets[:-1]]


def first_of_date(zone: str, day: pd.Timestamp) -> int:
    """The first instant whose local date is ``day`` or later, by the definition: the
    midnight itself (its first occurrence), or, for a skipped one, a bisection over instants
    for the first one past the gap."""
    flags = np.array([True])
    local = (
        pd.DatetimeIndex([day])
        .as_unit("ns")
        .tz_localize(oracle_zone(zone), ambiguous=flags, nonexistent="NaT")
    )
    if not pd.isna(local[0]):
        return int(local.asi8[0])
    lo, hi = day.value - 2 * DAY_NS, day.value + 2 * DAY_NS
    while hi - lo > 1:
        mid = (lo + hi) // 2
        wall = pd.Timestamp(mid, tz=UTC).tz_convert(oracle_zone(zone)).tz_localize(None)
        lo, hi = (lo, mid) if wall >= day else (mid, hi)
    return hi


def enumerated_bounds(zone: str, minutes: int, starts: np.ndarray) -> tuple[list, list]:
    """Each start's bucket start and next boundary, with the boundaries enumerated from the
    definition (the previous numpy algorithm, with days found by bisection)."""
    first, last = int(starts.min()), int(starts.max())
    if minutes < 1440:
        grid = boundaries(zone, minutes, first, last)
    else:
        tz = oracle_zone(zone)
        lo = pd.Timestamp(first, tz=UTC).tz_convert(tz).tz_localize(None).normalize()
        hi = pd.Timestamp(last, tz=UTC).tz_convert(tz).tz_localize(None).normalize()
        days = pd.date_range(lo - pd.Timedelta(days=2), hi + pd.Timedelta(days=3), freq="D")
        grid = np.unique([first_of_date(zone, day) for day in days])
    slot = np.searchsorted(grid, starts, side="right") - 1
    return grid[slot].tolist(), grid[slot + 1].tolist()


@st.composite
def bar_starts(draw, zone: str) -> np.ndarray:
    """Up to 40 minute-aligned bar starts in any order, within a day and a half of one
    instant: mostly one of the zone's offset changes, else any time in 1970-2099."""
    changes = offset_changes(zone)
    anywhere = st.integers(0, 130 * 365 * 24 * 60).map(lambda m: m * MINUTE_NS)
    around = draw(st.one_of(st.sampled_from(changes), st.sampled_from(changes), anywhere))
    minutes = st.integers(-36 * 60, 36 * 60)
    values = draw(st.lists(minutes, min_size=1, max_size=40))
    return around // MINUTE_NS * MINUTE_NS + np.array(values, dtype=np.int64) * MINUTE_NS


TIMESTEP_MINUTES = st.one_of(
    st.sampled_from([1, 5, 7, 40, 90, 240, 1439, 1440, 1440, 1440]), st.integers(1, 1440)
)


@settings(PARITY, max_examples=200)
@given(data=st.data())
def test_bucket_bounds_equal_the_enumerated_boundaries(data):
    zone = data.draw(st.sampled_from(ORACLE_ZONES), label="zone")
    minutes = data.draw(TIMESTEP_MINUTES, label="minutes")
    starts = data.draw(bar_starts(zone), label="starts")
    got = bucket_bounds(starts, lb.Timestep(minutes), zone)
    want = enumerated_bounds(zone, minutes, starts)
    assert (got[0].tolist(), got[1].tolist()) == want
    if minutes == 1440:  # a day bar ends where its date's bucket does
        assert bar_ends(starts, lb.Timestep(minutes), zone).tolist() == want[1]
        assert [local_day(int(s), zone) for s in starts] == list(zip(*want, strict=True))


@pytest.mark.parametrize(
    ("zone", "date", "first"),
    [
        # Samoa skipped 2011-12-30 entirely: the 29th lasts until the 31st's midnight.
        ("Pacific/Apia", "2011-12-30", "2011-12-31 00:00+14:00"),
        # Abidjan left local mean time (-00:16:08) at midnight: the day starts 16m08s later.
        ("Africa/Abidjan", "1912-01-01", "1912-01-01 00:16:08+00:00"),
        ("America/Santiago", "2024-09-08", "2024-09-08 01:00-03:00"),
    ],
)
def test_a_day_whose_midnight_is_skipped_starts_at_its_first_instant(zone, date, first):
    """pandas' ``nonexistent='shift_forward'`` moves a skipped time to the next whole hour,
    which is the first instant only when the gap is one hour from midnight."""
    start = pd.Timestamp(first).value
    before = np.array([start - 1, start - MINUTE_NS], dtype=np.int64)
    after = np.array([start, start + MINUTE_NS], dtype=np.int64)
    day = lb.Timestep.parse("day")
    assert bucket_bounds(before, day, zone)[1].tolist() == [start, start]
    # Its bucket lasts until the next date (the one after 2011-12-31 for Samoa).
    end = first_of_date(zone, pd.Timestamp(first[:10]) + pd.Timedelta(days=1))
    assert [b.tolist() for b in bucket_bounds(after, day, zone)] == [[start, start], [end, end]]
    assert bar_ends(before, day, zone).tolist() == [start, start]
    assert bar_ends(after, day, zone).tolist() == [end, end]
    assert start == first_of_date(zone, pd.Timestamp(date))
