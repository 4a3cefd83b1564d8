"""Continuous futures (lazybars.futures, lazybars._continuous): roll rules, stitched scans,
DataSource requests on a root, back-adjustment, no lookahead, errors.

The oracles are built here by hand: roll dates counted on a calendar, the stitched series
cut with pandas boolean masks, the roll gaps read off the pandas frames.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lazybars as lb
from lazybars.futures import CalendarRule, Schedule, VolumeRule, parse_contract

NY = "America/New_York"
# Counted by hand on a calendar: 8 weekdays before the third Friday of the contract month,
# the day itself excluded, at 00:05 New York; the next contract from 00:06.
#   Z3: Fri 2023-12-15 -> 14 13 12 11 8 7 6 5   -> Tue 2023-12-05
#   H4: Fri 2024-03-15 -> 14 13 12 11 8 7 6 5   -> Tue 2024-03-05
#   M4: Fri 2024-06-21 -> 20 19 18 17 14 13 12 11 -> Tue 2024-06-11
#   U4: Fri 2024-09-20 -> 19 18 17 16 13 12 11 10 -> Tue 2024-09-10
ROLLS = {
    "MESZ3": pd.Timestamp("2023-12-05 00:05", tz=NY),
    "MESH4": pd.Timestamp("2024-03-05 00:05", tz=NY),
    "MESM4": pd.Timestamp("2024-06-11 00:05", tz=NY),
    "MESU4": pd.Timestamp("2024-09-10 00:05", tz=NY),
}
MINUTE = pd.Timedelta(minutes=1)


def _hourly_store(contracts=("MESH4", "MESM4", "MESU4"), **options):
    frames = lb.synth.catalog(contracts, "2023-11-15", "2024-09-20", timestep="hour", **options)
    return lb.BarStore.from_frames(frames, timestep="hour"), frames


def _oracle(frames, contracts, adjust=None):
    """The stitched series by pandas masks over the hand-counted windows."""
    names = ["MESZ3", *contracts]
    parts = []
    for before, name in pairwise(names):
        df = frames[name].to_pandas().set_index("datetime").tz_convert(NY)
        start, end = ROLLS[before] + MINUTE, ROLLS[name]
        part = df[(df.index >= start) & (df.index < end)].copy()
        part["contract"] = name
        parts.append(part)
    if adjust is not None:
        for k in range(len(parts) - 2, -1, -1):
            out, into = contracts[k], contracts[k + 1]
            closes = []
            for name in (out, into):
                df = frames[name].to_pandas().set_index("datetime")
                ended = df[df.index + pd.Timedelta(hours=1) <= ROLLS[out]]
                closes.append(ended["close"].iloc[-1])
            for earlier in parts[: k + 1]:
                for col in ("open", "high", "low", "close"):
                    if adjust == "difference":
                        earlier[col] = earlier[col] + (closes[1] - closes[0])
                    else:
                        earlier[col] = earlier[col] * (closes[1] / closes[0])
    return pd.concat(parts)


def _frame(query):
    return query.to_pandas()


# -- the calendar rule ----------------------------------------------------------------------
def test_calendar_rule_hand_counted_dates():
    rule = CalendarRule()
    assert rule.roll_instant(2023, 12) == ROLLS["MESZ3"]
    assert rule.roll_instant(2024, 3) == ROLLS["MESH4"]
    assert rule.roll_instant(2024, 6) == ROLLS["MESM4"]
    assert rule.roll_instant(2024, 9) == ROLLS["MESU4"]
    # 2025-03: Fri 21 -> 20 19 18 17 14 13 12 11: Tue 2025-03-11, after the switch to daylight
    # time on Sunday 03-09. lumibot keeps the offset of 03-01 (EST): 00:05 EST is 01:05 EDT.
    assert rule.roll_instant(2025, 3) == pd.Timestamp("2025-03-11 05:05", tz="UTC")
    wall = CalendarRule(utc_offset="roll_day")
    assert wall.roll_instant(2025, 3) == pd.Timestamp("2025-03-11 00:05", tz=NY)
    # Gold's shape: 8 business days before the delivery month, holidays skipped.
    gold = CalendarRule(anchor="month_start", months=(2, 4, 6, 8, 10, 12), utc_offset="roll_day")
    # 2024-04-01 is a Monday: back 29 28 27 26 25 22 21 20 -> Wed 2024-03-20.
    assert gold.roll_instant(2024, 4) == pd.Timestamp("2024-03-20 00:05", tz=NY)
    good_friday = CalendarRule(
        anchor="month_start", months=(4,), holidays={date(2024, 3, 29)}, utc_offset="roll_day"
    )
    assert good_friday.roll_instant(2024, 4) == pd.Timestamp("2024-03-19 00:05", tz=NY)


def _cme_holidays():
    """Weekdays that CME's trade-date calendar (pandas_market_calendars) does not trade."""
    mcal = pytest.importorskip("pandas_market_calendars")
    valid = {
        d.date() for d in mcal.get_calendar("CME_TradeDate").valid_days("2018-01-01", "2027-12-31")
    }
    return {d.date() for d in pd.bdate_range("2018-01-01", "2027-12-31")} - valid


@pytest.mark.parametrize("root", ["MES", "ES", "NQ", "GC"])
def test_calendar_rule_matches_lumibot_build_roll_schedule(root):
    pytest.importorskip("lumibot")
    from lumibot.entities import Asset
    from lumibot.tools.futures_roll import build_roll_schedule

    roll = None  # the root's default rule
    if root == "GC":
        roll = CalendarRule(
            anchor="month_start",
            months=(2, 4, 6, 8, 10, 12),
            utc_offset="roll_day",
            holidays=_cme_holidays(),
        )
    zone = ZoneInfo(NY)
    start, end = datetime(2019, 1, 2, tzinfo=zone), datetime(2026, 12, 30, tzinfo=zone)
    schedule = build_roll_schedule(Asset(root, Asset.AssetType.CONT_FUTURE), start, end, 1)
    # One small daily series per contract, in the quarter before it rolls: the one-digit
    # year is read from these bars.
    frames = {}
    for symbol, _, seg_end in schedule[:-1]:
        days = pd.date_range(seg_end - timedelta(days=80), seg_end, freq="D", tz="UTC")
        frames[symbol] = pd.DataFrame(
            {"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0}, index=days.normalize().unique()
        )
    store = lb.BarStore.from_frames(frames, timestep="day")
    rolls = store.rolls(root, roll).to_pandas()
    assert len(rolls) == len(schedule) - 2 > 20
    for k, row in rolls.iterrows():
        out, _, out_end = schedule[k]
        into, into_start, _ = schedule[k + 1]
        assert (row["out"], row["in"]) == (out, into)
        assert row["roll"] == pd.Timestamp(out_end)
        assert row["in_from"] == pd.Timestamp(into_start)


def test_contract_years_come_from_the_bars():
    first_2014 = int(pd.Timestamp("2013-12-02", tz="UTC").value)
    first_2024 = int(pd.Timestamp("2023-12-02", tz="UTC").value)
    assert parse_contract("MESH4", "MES", first_2014).year == 2014
    assert parse_contract("MESH4", "MES", first_2024).year == 2024
    assert parse_contract("MESZ3", "MES", first_2024).year == 2023
    january = int(pd.Timestamp("2024-01-02", tz="UTC").value)
    assert parse_contract("MESZ3", "MES", january).year == 2033  # Z3 expired before January
    assert parse_contract("MESH24", "MES", first_2024).year == 2024
    assert parse_contract("MESH2024", "MES").year == 2024
    assert parse_contract("MESH4", "MES") is None  # a one-digit year needs the bars
    assert parse_contract("MNQH4", "MES", first_2024) is None
    assert parse_contract("MESA4", "MES", first_2024) is None
    # The same contract in a decade-old catalog rolls in its own decade: Fri 2014-03-21 ->
    # 20 19 18 17 14 13 12 11, after daylight time began on 03-09 (00:05 EST, lumibot's way).
    old = lb.synth.daily_bars("MES", "2013-12-01", "2014-06-30")
    store = lb.BarStore.from_frames({"MESH4": old, "MESM4": old}, timestep="day")
    assert store.rolls("MES")["roll"].item() == pd.Timestamp("2014-03-11 05:05", tz="UTC")


# -- the stitched series ----------------------------------------------------------------------
def test_stitched_scan_equals_pandas_oracle():
    store, frames = _hourly_store()
    contracts = ["MESH4", "MESM4", "MESU4"]
    oracle = _oracle(frames, contracts)
    got = _frame(store.scan("MES"))
    pd.testing.assert_frame_equal(got, oracle, check_freq=False)
    rolls = store.rolls("MES").to_pandas()
    assert list(rolls["out"]) == contracts[:2] and list(rolls["in"]) == contracts[1:]
    assert list(rolls["roll"]) == [ROLLS["MESH4"], ROLLS["MESM4"]]
    assert list(rolls["in_from"]) == [ROLLS["MESH4"] + MINUTE, ROLLS["MESM4"] + MINUTE]
    # Windows, as_of, tail and resample compose as on any symbol.
    at = pd.Timestamp("2024-03-05 03:00", tz=NY)
    got = _frame(store.scan("MES").as_of(at).tail(6))
    visible = oracle[oracle.index + pd.Timedelta(hours=1) <= at]
    pd.testing.assert_frame_equal(got, visible.tail(6), check_freq=False)
    assert list(got["contract"]) == ["MESH4"] * 4 + ["MESM4"] * 2  # 21:00-00:00, 01:00-02:00
    got = _frame(store.scan("MES").between("2024-06-01", "2024-07-01"))
    window = oracle[(oracle.index >= "2024-06-01") & (oracle.index < "2024-07-01")]
    pd.testing.assert_frame_equal(got, window, check_freq=False)
    days = store.scan("MES").resample("day").collect()
    assert days["volume"].sum() == oracle["volume"].sum()
    assert days["high"].max() == oracle["high"].max()


def test_stitched_scan_pushes_windows_into_every_contract(tmp_path):
    _, frames = _hourly_store()
    store = lb.BarStore(tmp_path)
    for name, frame in frames.items():
        store.write(name, frame, timestep="hour")
    plan = store.scan("MES").between("2024-03-01", "2024-03-08").lazy.explain()
    # Each contract's parquet scan carries the window (and its own roll window).
    assert plan.count("Parquet SCAN") == 3
    assert plan.count("SELECTION") >= 3
    q = store.scan("MES").between("2024-03-01", "2024-03-08")
    assert q == store.scan("MES").between("2024-03-01", "2024-03-08")
    assert q != store.scan("MES", roll=VolumeRule()).between("2024-03-01", "2024-03-08")


def test_datasource_requests_on_a_root():
    store, frames = _hourly_store()
    oracle = _oracle(frames, ["MESH4", "MESM4", "MESU4"])
    src = lb.DataSource(store, timezone=NY)
    for at in ("2024-03-05 00:00", "2024-03-05 02:00", "2024-06-11 05:00", "2024-08-01 12:00"):
        clock = pd.Timestamp(at, tz=NY)
        src.set_datetime(clock.to_pydatetime())
        visible = oracle[oracle.index + pd.Timedelta(hours=1) <= clock]
        bars = src.get_historical_prices("MES", 5)
        pd.testing.assert_frame_equal(bars.df, visible.tail(5), check_freq=False)
        assert src.get_last_price("MES") == visible["close"].iloc[-1]


def test_minute_bars_around_the_roll_follow_lumibot():
    frames = lb.synth.catalog(("MESH4", "MESM4"), "2024-03-04", "2024-03-06")
    store = lb.BarStore.from_frames(frames)
    got = store.scan("MES").between("2024-03-05 00:03", "2024-03-05 00:08").collect()
    # The bar starting at the roll instant (00:05) is in neither contract.
    assert got["datetime"].dt.strftime("%H:%M").to_list() == ["00:03", "00:04", "00:06", "00:07"]
    assert got["contract"].to_list() == ["MESH4", "MESH4", "MESM4", "MESM4"]
    assert (
        got["close"][2]
        == frames["MESM4"].filter(pl.col("datetime") == got["datetime"][2])["close"].item()
    )


def test_roots_in_long_format_and_coarser_timesteps():
    names = ("MESH4", "MESM4", "MNQH4", "MNQM4")
    frames = lb.synth.catalog(names, "2024-02-26", "2024-03-09", timestep="hour")
    store = lb.BarStore.from_frames({**frames, "SPY": frames["MESH4"]}, timestep="hour")
    long = store.scan(["MES", "MNQ", "SPY"], "day").collect()
    for symbol in ("MES", "MNQ"):
        one = store.scan(symbol, "day").collect()
        mine = long.filter(pl.col("symbol") == symbol).drop("symbol")
        assert mine.equals(one) and one.height > 5
    hourly = store.scan(["MES", "MNQ"]).collect()
    assert hourly.filter(pl.col("symbol") == "MNQ")["contract"].unique().sort().to_list() == [
        "MNQH4",
        "MNQM4",
    ]


def test_root_written_as_a_symbol_wins_again():
    store, frames = _hourly_store()
    assert "contract" in store.scan("MES").collect().columns
    store.write("MES", frames["MESH4"], timestep="hour")
    assert store.scan("MES").collect().equals(frames["MESH4"])


@pytest.mark.parametrize("adjust", ["difference", "ratio"])
def test_back_adjustment_equals_pandas_oracle(adjust):
    store, frames = _hourly_store()
    contracts = ["MESH4", "MESM4", "MESU4"]
    oracle = _oracle(frames, contracts, adjust)
    got = _frame(store.scan("MES", adjust=adjust))
    pd.testing.assert_frame_equal(got, oracle, check_freq=False, rtol=1e-12)
    rolls = store.rolls("MES", adjust=adjust)
    assert rolls.columns[-3:] == ["out_close", "in_close", "adjustment"]


def test_schedule_rule_serves_the_given_windows():
    store, frames = _hourly_store(("MESH4", "MESM4"))
    rule = Schedule([("MESH4", "2024-01-10 10:00"), ("MESM4", "2024-02-20 12:30")])
    got = _frame(store.scan("MES", roll=rule))
    h = frames["MESH4"].to_pandas().set_index("datetime").tz_convert(NY)
    m = frames["MESM4"].to_pandas().set_index("datetime").tz_convert(NY)
    split, first = pd.Timestamp("2024-02-20 12:30", tz=NY), pd.Timestamp("2024-01-10 10:00", tz=NY)
    oracle = pd.concat(
        [h[(h.index >= first) & (h.index < split)].assign(contract="MESH4"), m[m.index >= split]]
    )
    oracle["contract"] = oracle["contract"].fillna("MESM4")
    pd.testing.assert_frame_equal(got, oracle, check_freq=False)


# -- the volume rule and no lookahead ---------------------------------------------------------
def _volume_store(seed: int):
    """Two contracts of hourly 24h bars; the next one's volume grows past the current one's."""
    frames = lb.synth.catalog(("MESH4", "MESM4"), "2024-02-01", "2024-03-20", timestep="hour")
    rng = np.random.default_rng(seed)
    h, m = frames["MESH4"], frames["MESM4"]
    frames["MESH4"] = h.with_columns(volume=pl.Series(rng.uniform(50, 150, h.height)))
    ramp = np.linspace(0.0, 200.0, m.height) * rng.uniform(0.5, 1.5, m.height)
    frames["MESM4"] = m.with_columns(volume=pl.Series(ramp))
    return frames


def test_volume_rule_rolls_after_the_first_session_the_next_trades_more():
    frames = _volume_store(0)
    store = lb.BarStore.from_frames(frames, timestep="hour")
    rolls = store.rolls("MES", VolumeRule())
    assert rolls.height == 1
    # The oracle: sessions 18:00 to 18:00 New York, by pandas.
    sums = {}
    for name in ("MESH4", "MESM4"):
        df = frames[name].to_pandas().set_index("datetime").tz_convert(NY)
        session = (df.index.tz_localize(None) + pd.Timedelta(hours=6)).normalize()
        sums[name] = df["volume"].groupby(session).sum()
    both = pd.concat(sums, axis=1).fillna(0).sort_index()
    day = both.index[(both["MESM4"] > both["MESH4"]).to_numpy()][0]
    end = (day + pd.Timedelta(hours=18)).tz_localize(NY)  # the session ends at 18:00 of its day
    assert rolls["roll"].item() == end
    assert rolls["in_from"].item() == end
    got = store.scan("MES", roll=VolumeRule()).collect()
    assert got.filter(pl.col("contract") == "MESH4")["datetime"].max() < end
    assert got.filter(pl.col("contract") == "MESM4")["datetime"].min() >= end


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    cut=st.floats(0.05, 0.95),
    near=st.none() | st.floats(-30.0, 30.0),
    adjust=st.sampled_from(["difference", "ratio"]),
)
def test_no_lookahead_mutating_bars_after_t_changes_nothing_as_of_t(seed, cut, near, adjust):
    frames = _volume_store(seed)
    span = frames["MESH4"]["datetime"]
    t = span[0] + (span[-1] - span[0]) * cut
    if near is not None:  # hours around the volume roll, where a lookahead would show
        roll = lb.BarStore.from_frames(frames, timestep="hour").rolls("MES", VolumeRule())
        t = roll["roll"].item() + timedelta(hours=near)
    rng = np.random.default_rng(seed + 1)
    mutated = {}
    for name, frame in frames.items():
        later = frame["datetime"] + timedelta(hours=1) > t  # bars not yet ended at t
        factor = pl.Series(rng.uniform(0.0, 5.0, frame.height))
        mutated[name] = frame.with_columns(
            volume=pl.when(later).then(pl.col("volume") * factor).otherwise(pl.col("volume")),
            close=pl.when(later).then(pl.col("close") + 7.0).otherwise(pl.col("close")),
            high=pl.when(later).then(pl.col("high") + 7.0).otherwise(pl.col("high")),
        )
    before = lb.BarStore.from_frames(frames, timestep="hour")
    after = lb.BarStore.from_frames(mutated, timestep="hour")
    for rule in (VolumeRule(), CalendarRule()):
        one, two = (s.rolls("MES", rule, adjust=adjust) for s in (before, after))
        assert one.filter(pl.col("roll") <= t).equals(two.filter(pl.col("roll") <= t))
        one, two = (s.scan("MES", roll=rule).as_of(t).collect() for s in (before, after))
        assert one.equals(two)


# -- errors -----------------------------------------------------------------------------------
def test_errors_name_the_problem():
    store, frames = _hourly_store(("MESH4", "MESU4"))
    with pytest.raises(lb.UnknownAsset, match=r"MESM4 .*front contract of MES in \[2024-03-05"):
        store.scan("MES")
    with pytest.raises(lb.UnknownAsset, match="MESM4"):
        store.rolls("MES", VolumeRule())
    cl = lb.BarStore.from_frames({"CLF4": frames["MESH4"]}, timestep="hour")
    with pytest.raises(lb.InvalidRequest, match=r"CL has no default roll rule.*roll="):
        cl.scan("CL")
    assert cl.scan("CL", roll=CalendarRule(months=tuple(range(1, 13)))).collect().height > 0
    with pytest.raises(lb.UnknownAsset, match="unknown asset 'NQ'"):
        store.scan("NQ", roll=CalendarRule())
    with pytest.raises(lb.UnknownAsset, match="unknown asset 'XYZ'"):
        store.scan("XYZ")
    mixed = lb.BarStore.from_frames({"MESH4": frames["MESH4"]}, timestep="hour")
    mixed.write("MESM4", lb.synth.daily_bars("MES", "2023-12-01", "2024-06-30"), timestep="day")
    with pytest.raises(lb.SchemaError, match=r"share no stored timestep \(MESH4: \['1h'\]"):
        mixed.scan("MES")
    twice = lb.BarStore.from_frames(
        {"MESH4": frames["MESH4"], "MESH24": frames["MESH4"]}, timestep="hour"
    )
    with pytest.raises(lb.InvalidRequest, match="MESH24 and MESH4 name the same contract"):
        twice.scan("MES")
    with pytest.raises(lb.InvalidRequest, match=r"roll must be a rule of lazybars\.futures"):
        store.scan("MES", roll="calendar")
    with pytest.raises(lb.InvalidRequest, match="adjust must be"):
        store.scan("MES", adjust="log")
    with pytest.raises(lb.InvalidRequest, match="months must be"):
        CalendarRule(months=(0, 3))
    missing = Schedule([("MESH4", "2024-01-02"), ("MESM4", "2024-03-01")])
    with pytest.raises(lb.UnknownAsset, match=r"MESM4 is in the schedule of MES from 2024-03-01"):
        store.scan("MES", roll=missing)
    with pytest.raises(lb.InvalidRequest, match="instants increasing"):
        Schedule([("MESH4", "2024-02-01"), ("MESM4", "2024-01-01")])
    late = lb.BarStore.from_frames(
        {
            "MESH4": frames["MESH4"],
            "MESM4": frames["MESU4"].filter(pl.col("datetime") > ROLLS["MESH4"]),
        },
        timestep="hour",
    )
    with pytest.raises(lb.SchemaError, match=r"MESM4 has no 1h bar ended by then.*adjust=None"):
        late.scan("MES", adjust="difference")
    assert CalendarRule().at == time(0, 5)
