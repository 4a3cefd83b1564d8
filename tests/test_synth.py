"""Tests of lazybars.synth, the synthetic bar generator.

Expected calendars are rebuilt here independently, with pandas and the rules as the
generator's documentation states them, rather than compared with recorded outputs.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from lazybars.errors import InvalidRequest
from lazybars.synth import catalog, daily_bars, hourly_bars, minute_bars

NY = "America/New_York"
OHLCV = ["open", "high", "low", "close", "volume"]
ROOT = Path(__file__).resolve().parents[1]


def closed_and_half_days(year: int) -> tuple[set[dt.date], set[dt.date]]:
    """The documented holiday rules, written out independently of the generator."""
    thanksgiving = [d for d in (dt.date(year, 11, k) for k in range(1, 31)) if d.weekday() == 3][3]
    closed = set()
    for day in (dt.date(year, 1, 1), dt.date(year, 7, 4), thanksgiving, dt.date(year, 12, 25)):
        closed.add(day)
        if day.weekday() == 5:
            closed.add(day - dt.timedelta(days=1))
        elif day.weekday() == 6:
            closed.add(day + dt.timedelta(days=1))
    return closed, {thanksgiving + dt.timedelta(days=1), dt.date(year, 12, 24)}


def calendar(years: range) -> tuple[set[dt.date], set[dt.date]]:
    closed, half = set(), set()
    for year in years:
        c, h = closed_and_half_days(year)
        closed |= c
        half |= h
    return closed, half


def expected_starts(start: str, end: str, tz: str, session: str) -> pd.DatetimeIndex:
    """Every in-session minute start of local dates [start, end), as tz-aware timestamps."""
    margin = pd.Timedelta(days=1)
    utc = pd.date_range(
        pd.Timestamp(start) - margin,
        pd.Timestamp(end) + margin,
        freq="min",
        tz="UTC",
        inclusive="left",
    )
    local = utc.tz_convert(tz)
    wall = local.tz_localize(None)
    dates = pd.Index(wall.date)
    minute = wall.hour * 60 + wall.minute
    weekday = wall.day_of_week
    closed, half = calendar(range(wall.year.min() - 1, wall.year.max() + 2))
    is_closed = dates.isin(closed)
    is_half = dates.isin(half)
    in_range = (dates >= pd.Timestamp(start).date()) & (dates < pd.Timestamp(end).date())
    if session == "regular":
        close = np.where(is_half, 13 * 60, 16 * 60)
        ok = (weekday < 5) & (minute >= 9 * 60 + 30) & (minute < close)
    else:
        after_break = minute >= 18 * 60
        before_break = minute < 17 * 60
        ok = (
            ((weekday == 6) & after_break)
            | ((weekday <= 3) & (before_break | after_break))
            | ((weekday == 4) & before_break)
        )
        ok &= ~(is_half & (minute >= 13 * 60) & ~after_break)
    return local[in_range & ok & ~is_closed]


def utc_ns(frame: pl.DataFrame) -> list[int]:
    return frame["datetime"].dt.epoch("ns").to_list()


def as_ns(index: pd.DatetimeIndex) -> list[int]:
    return index.as_unit("ns").asi8.tolist()


def local_times(frame: pl.DataFrame) -> pd.Series:
    """The bar starts as pandas tz-aware timestamps (local wall time via pandas/zoneinfo)."""
    return frame["datetime"].to_pandas()


# ---------------------------------------------------------------- determinism


def test_same_arguments_give_equal_frames():
    kwargs = {"start": "2024-03-01", "end": "2024-03-09", "session": "24h", "extras": True}
    assert minute_bars(**kwargs).equals(minute_bars(**kwargs))
    first, second = catalog(end="2024-01-09"), catalog(end="2024-01-09")
    assert all(first[s].equals(second[s]) for s in first)


def test_other_seed_or_symbol_gives_other_bars():
    base = minute_bars(end="2024-01-05")
    assert not base.equals(minute_bars(end="2024-01-05", seed=1))
    assert not base.equals(minute_bars("MNQ", end="2024-01-05"))
    assert not base.equals(minute_bars(end="2024-01-05", seed=-1))


def test_identical_across_processes_and_hash_seeds():
    code = (
        "from lazybars.synth import minute_bars;"
        "print(minute_bars('ABC', end='2024-01-04', session='24h').write_csv(), end='')"
    )
    here = minute_bars("ABC", end="2024-01-04", session="24h").write_csv()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        assert run.stdout == here


def test_extras_and_gaps_do_not_change_the_bars_kept():
    plain = minute_bars(end="2024-01-10", gaps=0)
    extra = minute_bars(end="2024-01-10", gaps=0, extras=True)
    assert extra.select(["datetime", *OHLCV]).equals(plain)
    gappy = minute_bars(end="2024-01-10", gaps=0.05)
    assert gappy.equals(plain.join(gappy.select("datetime"), on="datetime", how="semi"))


# ---------------------------------------------------------------- schema and invariants

FRAMES = {
    "minute-regular": lambda: minute_bars(extras=True),
    "minute-24h": lambda: minute_bars("X", session="24h", tz="Europe/London", extras=True),
    "hourly": lambda: hourly_bars(session="24h", end="2024-06-01", extras=True),
    "daily": lambda: daily_bars(extras=True),
    "catalog": lambda: catalog(end="2024-02-01", extras=True)["MNQ"],
    "tiny-price": lambda: minute_bars(price=1.0, extras=True),
}


@pytest.mark.parametrize("make", FRAMES.values(), ids=FRAMES.keys())
def test_schema_and_ohlc_invariants(make):
    frame = make()
    assert frame.columns == ["datetime", *OHLCV, "vwap", "trades"]
    assert frame.schema["datetime"] == pl.Datetime("ns", frame["datetime"].dtype.time_zone)
    assert all(frame.schema[c] == pl.Float64 for c in [*OHLCV, "vwap"])
    assert frame.schema["trades"] == pl.Int64
    assert frame.height > 0
    times = np.array(utc_ns(frame))
    assert (np.diff(times) > 0).all(), "sorted, no duplicate instants"
    o, h, lo, c, v = (frame[col].to_numpy() for col in OHLCV)
    assert (lo > 0).all()
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
    for prices in (o, h, lo, c):
        assert (prices * 4 == np.round(prices * 4)).all(), "prices on a 0.25 tick"
    assert (v >= 1).all() and (v == np.round(v)).all()
    vwap, trades = frame["vwap"].to_numpy(), frame["trades"].to_numpy()
    assert (vwap >= lo).all() and (vwap <= h).all()
    assert (trades >= 1).all() and (trades <= v).all()


def test_without_extras_only_ohlcv():
    frame = minute_bars(end="2024-01-03")
    assert frame.columns == ["datetime", *OHLCV]
    assert frame["datetime"].dtype == pl.Datetime("ns", NY)


def test_minute_walk_is_continuous_with_realistic_volatility():
    frame = minute_bars(session="24h", gaps=0)
    t = np.array(utc_ns(frame))
    o, c = frame["open"].to_numpy(), frame["close"].to_numpy()
    adjacent = np.diff(t) == 60 * 10**9
    jump = np.abs(o[1:] - c[:-1])[adjacent] / c[:-1][adjacent]
    assert np.median(jump) < 2e-4 and np.quantile(jump, 0.99) < 1e-3
    returns = np.diff(np.log(c))[adjacent]
    assert 2e-4 < returns.std() < 1e-3


@pytest.mark.parametrize("seed", range(4))
def test_a_year_stays_near_its_base_price(seed):
    year = minute_bars(start="2024-01-01", end="2025-01-01", session="24h", seed=seed)
    assert year["low"].min() > 2500 and year["high"].max() < 10000
    days = daily_bars(start="2020-01-01", end="2025-01-01", seed=seed)
    assert 0.005 < np.diff(np.log(days["close"].to_numpy())).std() < 0.02
    assert days["low"].min() > 2500 and days["high"].max() < 10000


# ---------------------------------------------------------------- sessions and calendar


def test_regular_session_matches_the_calendar_exactly():
    frame = minute_bars(start="2023-12-20", end="2024-01-10", gaps=0)
    assert utc_ns(frame) == as_ns(expected_starts("2023-12-20", "2024-01-10", NY, "regular"))
    local = local_times(frame)
    assert (local.dt.day_of_week < 5).all()
    clock = local.dt.hour * 60 + local.dt.minute
    assert ((clock >= 570) & (clock < 960)).all()


def test_24h_session_matches_the_calendar_exactly_across_dst():
    for start, end in [("2024-03-07", "2024-03-14"), ("2024-10-30", "2024-11-06")]:
        frame = minute_bars(start=start, end=end, session="24h", gaps=0)
        assert utc_ns(frame) == as_ns(expected_starts(start, end, NY, "24h"))
        local = local_times(frame)
        assert not (local.dt.hour == 17).any(), "no bars in the 17:00-18:00 break"
        assert not (local.dt.day_of_week == 5).any(), "no bars on Saturday"
        assert not ((local.dt.day_of_week == 6) & (local.dt.hour < 18)).any()


def test_ordinary_regular_day_has_390_minutes():
    frame = minute_bars(start="2024-01-09", end="2024-01-10", gaps=0)
    day = pd.date_range("2024-01-09 09:30", "2024-01-09 15:59", freq="min", tz=NY)
    assert frame.height == len(day) == 390
    assert utc_ns(frame) == as_ns(day)


def test_random_gaps_drop_about_the_requested_fraction():
    full = minute_bars(session="24h", gaps=0).height
    assert full == len(expected_starts("2024-01-02", "2024-02-01", NY, "24h"))
    kept = minute_bars(session="24h", gaps=0.01).height
    assert 0.95 * full < kept < 0.995 * full


@pytest.mark.parametrize("session", ["regular", "24h"])
def test_holidays_have_no_bars(session):
    # Christmas 2022 and New Year 2023 fell on Sundays (observed on Mondays), New Year 2022
    # on a Saturday (observed Friday 2021-12-31); the Sunday itself has no evening session.
    frame = minute_bars(start="2021-12-20", end="2024-12-31", session=session, gaps=0)
    dates = set(local_times(frame).dt.date)
    thursdays = [d for d in pd.date_range("2024-11-01", "2024-11-30") if d.day_of_week == 3]
    for holiday in [
        dt.date(2024, 7, 4),
        thursdays[3].date(),
        dt.date(2024, 12, 25),
        dt.date(2024, 1, 1),
        dt.date(2022, 12, 25),
        dt.date(2022, 12, 26),
        dt.date(2023, 1, 1),
        dt.date(2023, 1, 2),
        dt.date(2021, 12, 31),
    ]:
        assert holiday not in dates
    assert dt.date(2024, 7, 5) in dates


def test_half_days_end_at_1300():
    friday = minute_bars(start="2024-11-29", end="2024-11-30", gaps=0)
    local = local_times(friday)
    assert local.iloc[-1].strftime("%H:%M") == "12:59" and friday.height == 210
    eve = minute_bars(start="2024-12-24", end="2024-12-25", session="24h", gaps=0)
    clock = local_times(eve).dt.strftime("%H:%M")
    assert not clock.between("13:00", "17:59").any()
    assert {"12:59", "18:00"} <= set(clock)


def test_dst_in_new_york():
    # US clocks change on Sundays, which a CME-like 24h session spends closed until 18:00.
    spring = minute_bars(start="2024-03-08", end="2024-03-12", session="24h", gaps=0)
    local = local_times(spring)
    assert not ((local.dt.date == dt.date(2024, 3, 10)) & (local.dt.hour == 2)).any()
    fall = minute_bars(start="2024-11-01", end="2024-11-05", session="24h", gaps=0)
    wall = local_times(fall).dt.strftime("%Y-%m-%d %H:%M")
    assert (wall == "2024-11-03 01:30").sum() == 0, "Sunday 01:30 is outside the session"
    # The regular open stays at 09:30 local, moving by an hour in UTC.
    regular = minute_bars(start="2024-03-08", end="2024-03-12", gaps=0)
    first = local_times(regular).groupby(local_times(regular).dt.date).min()
    assert [t.strftime("%H:%M") for t in first] == ["09:30", "09:30"]
    assert [t.tz_convert("UTC").hour for t in first] == [14, 13]


def test_repeated_and_skipped_hours_on_session_days():
    # Cairo left DST at midnight ending Thursday 2024-10-31 (23:xx repeats); Jerusalem began
    # DST at 02:00 on Friday 2024-03-29 (02:xx skipped): both inside the 24h session.
    cairo = pd.date_range("2024-10-31 18:00", "2024-11-01", freq="min", tz="UTC")
    repeated = cairo.tz_convert("Africa/Cairo").strftime("%Y-%m-%d %H:%M") == "2024-10-31 23:30"
    assert repeated.sum() == 2, "the zone data repeats the hour"
    frame = minute_bars(
        start="2024-10-31", end="2024-11-01", tz="Africa/Cairo", session="24h", gaps=0
    )
    wall = local_times(frame).dt.strftime("%Y-%m-%d %H:%M")
    assert (wall == "2024-10-31 23:30").sum() == 2
    hours = hourly_bars(
        start="2024-10-31", end="2024-11-01", tz="Africa/Cairo", session="24h", gaps=0
    )
    assert local_times(hours).dt.hour.tolist().count(23) == 2
    israel = minute_bars(
        start="2024-03-29", end="2024-03-30", tz="Asia/Jerusalem", session="24h", gaps=0
    )
    clock = set(local_times(israel).dt.strftime("%H:%M"))
    assert "01:59" in clock and "03:00" in clock
    assert not any(c.startswith("02:") for c in clock)
    assert israel.height == 17 * 60 - 60


def test_other_time_zone():
    tz = "Europe/London"
    frame = minute_bars(start="2024-06-03", end="2024-06-08", tz=tz, gaps=0)
    assert frame["datetime"].dtype == pl.Datetime("ns", tz)
    assert utc_ns(frame) == as_ns(expected_starts("2024-06-03", "2024-06-08", tz, "regular"))
    assert local_times(frame).iloc[0] == pd.Timestamp("2024-06-03 08:30", tz="UTC")
    day = minute_bars(start="2024-06-04", end="2024-06-05", tz=tz, gaps=0)
    assert day.height == 390


def test_start_and_end_accept_dates_and_datetimes():
    by_string = minute_bars(start="2024-01-03", end="2024-01-05")
    by_date = minute_bars(start=dt.date(2024, 1, 3), end=dt.date(2024, 1, 5))
    by_datetime = minute_bars(start=dt.datetime(2024, 1, 3, 12), end=dt.datetime(2024, 1, 5))
    assert by_string.equals(by_date) and by_string.equals(by_datetime)


# ---------------------------------------------------------------- hourly and daily


def test_hourly_bars_are_whole_in_session_hours():
    start, end = "2024-11-25", "2024-12-03"
    regular = hourly_bars(start=start, end=end, gaps=0)
    expected = expected_starts(start, end, NY, "regular")
    assert utc_ns(regular) == as_ns(expected[expected.minute == 0])
    assert set(local_times(regular).dt.hour) == {10, 11, 12, 13, 14, 15}
    full = hourly_bars(start=start, end=end, session="24h", gaps=0)
    expected = expected_starts(start, end, NY, "24h")
    assert utc_ns(full) == as_ns(expected[expected.minute == 0])


def test_hourly_volatility_scales_with_time():
    frame = hourly_bars(session="24h", end="2024-12-31", gaps=0)
    returns = np.diff(np.log(frame["close"].to_numpy()))
    assert 0.002 < returns.std() < 0.008


def test_daily_bars_are_trading_days_at_local_midnight():
    frame = daily_bars()
    closed, _ = calendar(range(2022, 2025))
    days = [d for d in pd.bdate_range("2023-01-03", "2024-01-01") if d.date() not in closed]
    assert local_times(frame).tolist() == [pd.Timestamp(d, tz=NY) for d in days]
    assert dt.date(2023, 11, 24) in {d.date() for d in days}, "half days still trade"


def test_daily_labels_in_a_zone_whose_midnight_can_be_skipped():
    # Cairo began DST at midnight starting Friday 2024-04-26: that day starts at 01:00.
    # pandas 2 raises pytz's NonExistentTimeError, pandas 3 a ValueError saying so.
    with pytest.raises(Exception) as raised:
        pd.Timestamp("2024-04-26 00:00").tz_localize("Africa/Cairo")
    said = f"{raised.typename} {raised.value}".lower().replace("-", "")
    assert "nonexistent" in said or "does not exist" in said
    frame = daily_bars(start="2024-04-22", end="2024-04-29", tz="Africa/Cairo")
    local = local_times(frame).dt.strftime("%Y-%m-%d %H:%M").tolist()
    assert local == [f"2024-04-{d} 00:00" for d in (22, 23, 24, 25)] + ["2024-04-26 01:00"]


# ---------------------------------------------------------------- catalog


def minute_returns(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return frame.select(
        "datetime",
        pl.when(pl.col("datetime").diff() == pl.duration(minutes=1))
        .then(pl.col("close").log().diff())
        .alias(name),
    ).drop_nulls()


@pytest.mark.parametrize(("rho", "low", "high"), [(0.6, 0.45, 0.75), (0.0, -0.08, 0.08)])
def test_catalog_correlation(rho, low, high):
    bars = catalog(("MES", "MNQ"), start="2024-01-08", end="2024-01-13", correlation=rho)
    joined = minute_returns(bars["MES"], "a").join(minute_returns(bars["MNQ"], "b"), on="datetime")
    assert joined.height > 6000
    assert low < np.corrcoef(joined["a"], joined["b"])[0, 1] < high


def test_catalog_symbols_prices_and_gaps():
    bars = catalog(("MYM", "MES", "ZZZ", "MNQ"), end="2024-01-20")
    assert list(bars) == ["MYM", "MES", "ZZZ", "MNQ"]
    for symbol, base in {"MES": 5000, "MNQ": 17000, "MYM": 38000}.items():
        assert abs(bars[symbol]["open"][0] / base - 1) < 0.01
    assert bars["ZZZ"]["open"][0] > 0
    expected = len(expected_starts("2024-01-02", "2024-01-20", NY, "24h"))
    heights = {frame.height for frame in bars.values()}
    assert all(0.97 * expected < h < expected for h in heights)
    assert len({tuple(utc_ns(frame)) for frame in bars.values()}) == 4, "own gaps per symbol"
    assert catalog("MES", end="2024-01-05").keys() == {"MES"}


@pytest.mark.parametrize("timestep", ["hour", "1h", "day", "1d", "minute", "1m"])
def test_catalog_timesteps(timestep):
    bars = catalog(("MES",), start="2024-01-02", end="2024-01-06", timestep=timestep)["MES"]
    step = pd.Series(local_times(bars)).diff().dropna()
    expected = {"hour": "1h", "1h": "1h", "day": "1D", "1d": "1D", "minute": "1min", "1m": "1min"}
    assert step.min() == pd.Timedelta(expected[timestep])


# ---------------------------------------------------------------- bad arguments

BAD = {
    "session": lambda: minute_bars(session="rth"),
    "end before start": lambda: minute_bars(start="2024-02-01", end="2024-01-01"),
    "end equals start": lambda: daily_bars(start="2024-02-01", end="2024-02-01"),
    "bad date": lambda: minute_bars(start="yesterday"),
    "bad date type": lambda: minute_bars(start=20240101),
    "time zone": lambda: minute_bars(tz="Mars/Olympus"),
    "gaps": lambda: minute_bars(gaps=1.0),
    "negative gaps": lambda: hourly_bars(gaps=-0.1),
    "price": lambda: minute_bars(price=0.0),
    "correlation": lambda: catalog(correlation=1.5),
    "timestep": lambda: catalog(timestep="fortnight"),
    "unsupported timestep": lambda: catalog(timestep="5m"),
    "duplicate symbols": lambda: catalog(("MES", "MES")),
    "catalog session": lambda: catalog(session="overnight"),
}


@pytest.mark.parametrize("call", BAD.values(), ids=BAD.keys())
def test_bad_arguments_raise_invalid_request(call):
    with pytest.raises(InvalidRequest):
        call()


def test_session_error_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match="rth") as info:
        minute_bars(session="rth")
    assert "'regular'" in str(info.value) and "'24h'" in str(info.value)


def test_a_range_without_sessions_gives_an_empty_frame_with_the_schema():
    weekend = minute_bars(start="2024-01-06", end="2024-01-07", extras=True)
    assert weekend.height == 0
    assert weekend.schema == minute_bars(end="2024-01-03", extras=True).schema
    assert daily_bars(start="2024-07-04", end="2024-07-05").height == 0
