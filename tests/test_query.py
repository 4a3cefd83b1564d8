"""Query: immutability, identity, windows, selection, multi-symbol scans, display, explain.

Expected rows are computed here from the written frames with plain Python datetimes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import polars.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazybars as lb

NY = "America/New_York"
NYZ = ZoneInfo(NY)
UTC = dt.UTC
OHLCV = ["datetime", "open", "high", "low", "close", "volume"]
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)


def daily_calendar(first: dt.date, last: dt.date) -> pl.DataFrame:
    """Day bars on every calendar date (weekends included), labelled by local midnight."""
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    n = len(days)
    return pl.DataFrame(
        {
            "datetime": [dt.datetime(d.year, d.month, d.day, tzinfo=NYZ) for d in days],
            "open": [100.0 + i for i in range(n)],
            "high": [101.0 + i for i in range(n)],
            "low": [99.0 + i for i in range(n)],
            "close": [100.5 + i for i in range(n)],
            "volume": [1000.0 + i for i in range(n)],
        }
    ).with_columns(pl.col("datetime").dt.cast_time_unit("ns"))


@pytest.fixture(scope="module")
def mes() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-05", gaps=0.01, extras=True)


@pytest.fixture(scope="module")
def mnq() -> pl.DataFrame:
    # Written in UTC: the multi-symbol scan shows it in the local zone.
    return lb.synth.minute_bars("MNQ", "2024-01-02", "2024-01-05", tz="UTC", gaps=0.01)


@pytest.fixture(scope="module")
def days() -> pl.DataFrame:
    return pl.concat(
        [
            daily_calendar(dt.date(2024, 3, 6), dt.date(2024, 3, 13)),
            daily_calendar(dt.date(2024, 10, 30), dt.date(2024, 11, 6)),
        ]
    )


@pytest.fixture(scope="module")
def hours() -> pl.DataFrame:
    return lb.synth.hourly_bars("MYM", "2024-01-02", "2024-01-10", gaps=0.05)


@pytest.fixture(scope="module")
def store(mes, mnq, days, hours) -> lb.BarStore:
    store = lb.BarStore.from_frames({"MES": mes, "MNQ": mnq})
    store.write("DAY", days, timestep="day")
    store.write("MYM", hours, timestep="hour")
    return store


@pytest.fixture(scope="module")
def disk_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("catalog")


@pytest.fixture(scope="module")
def disk(disk_root: Path, mes, days) -> lb.BarStore:
    store = lb.BarStore(disk_root)
    store.write("MES", mes)
    store.write("DAY", days, timestep="day")
    return store


def starts(frame: pl.DataFrame) -> list[dt.datetime]:
    return frame["datetime"].to_list()


def utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(UTC)


# -- immutability and identity ------------------------------------------------------------
def test_builders_return_new_queries_and_leave_the_original(store: lb.BarStore, mes) -> None:
    base = store.scan("MES")
    derived = [
        base.tail(5),
        base.head(5),
        base.between("2024-01-03", "2024-01-04"),
        base.as_of("2024-01-03 10:00"),
        base.select("close"),
        base.resample("1h"),
    ]
    for query in derived:
        assert isinstance(query, lb.Query)
        assert query is not base
        assert query != base
    assert base.collect().equals(mes)
    assert repr(base) == repr(store.scan("MES"))
    assert base == store.scan("MES")
    # Branching from one intermediate query does not leak between branches.
    window = base.between("2024-01-03", "2024-01-04")
    a, b = window.tail(3), window.head(3)
    assert a.collect().height == 3
    assert b.collect().height == 3
    assert window.collect().height > 3


def test_query_has_no_mutable_attributes(store: lb.BarStore) -> None:
    query = store.scan("MES")
    with pytest.raises(AttributeError):
        query.extra = 1  # type: ignore[attr-defined]


def test_equal_plans_compare_and_hash_equal(store: lb.BarStore) -> None:
    def build(start, end, timestep) -> lb.Query:
        return store.scan("MES").between(start, end).tail(10).select("close").resample(timestep)

    q1 = build("2024-01-03", "2024-01-04", "60m")
    q2 = build(
        dt.datetime(2024, 1, 3, tzinfo=NYZ),
        pd.Timestamp("2024-01-04 05:00", tz="UTC"),  # the same instant as NY midnight
        "1h",
    )
    q3 = build(dt.date(2024, 1, 3), "2024-01-04 00:00", "hour")
    assert q1 == q2 == q3
    assert hash(q1) == hash(q2) == hash(q3)
    cache = {q1: "answer"}
    assert cache[q2] == "answer"
    assert cache[q3] == "answer"
    assert len({q1, q2, q3}) == 1
    assert store.scan("MES") == store.scan("MES", None)
    assert store.scan("MES", "1h") == store.scan("MES").resample("1h")


def test_equal_plans_on_two_handles_of_one_catalog(disk: lb.BarStore, disk_root: Path) -> None:
    again = lb.BarStore(str(disk_root))  # the same directory, a second store object
    q1 = disk.scan("MES").as_of("2024-01-03 10:00").tail(3)
    q2 = again.scan("MES").as_of("2024-01-03 10:00").tail(3)
    assert q1 == q2
    assert hash(q1) == hash(q2)


def test_any_difference_makes_plans_unequal(store: lb.BarStore, mes) -> None:
    base = store.scan("MES")
    other_store = lb.BarStore.from_frames({"MES": mes})
    variants = {
        "plain": base,
        "other symbol": store.scan("MNQ"),
        "two symbols": store.scan(["MES", "MNQ"]),
        "swapped symbols": store.scan(["MNQ", "MES"]),
        "other zone": store.scan("MES", timezone="UTC"),
        "other store": other_store.scan("MES"),
        "between": base.between("2024-01-03", "2024-01-04"),
        "between end": base.between("2024-01-03", "2024-01-05"),
        "between start": base.between("2024-01-02", "2024-01-04"),
        "as_of": base.as_of("2024-01-03 10:00"),
        "as_of later": base.as_of("2024-01-03 10:01"),
        "tail 3": base.tail(3),
        "tail 4": base.tail(4),
        "head 3": base.head(3),
        "select close": base.select("close"),
        "select open": base.select("open"),
        "select close open": base.select("close", "open"),
        "select open close": base.select("open", "close"),
        "resample 1h": base.resample("1h"),
        "resample 2h": base.resample("2h"),
        "resample rth": base.resample("1h", after_hours=False),
        "tail then head": base.tail(3).head(2),
        "head then tail": base.head(2).tail(3),
    }
    names = list(variants)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert variants[a] != variants[b], (a, b)
    assert len(set(variants.values())) == len(variants)
    assert base != "MES"
    assert base != None  # noqa: E711


# -- windows --------------------------------------------------------------------------------
def test_between_is_half_open_at_exact_bar_starts(store: lb.BarStore, mes) -> None:
    times = starts(mes)
    lo, hi = times[100], times[110]
    got = starts(store.scan("MES").between(lo, hi).collect())
    assert got == times[100:110]
    assert hi not in got
    assert lo in got
    # One nanosecond either side.
    just_after_lo = pd.Timestamp(lo) + pd.Timedelta(1, "ns")
    assert starts(store.scan("MES").between(just_after_lo, hi).collect()) == times[101:110]
    just_after_hi = pd.Timestamp(hi) + pd.Timedelta(1, "ns")
    assert starts(store.scan("MES").between(lo, just_after_hi).collect()) == times[100:111]


def test_between_with_dates_strings_and_other_zones(store: lb.BarStore, mes) -> None:
    times = starts(mes)
    expected = [t for t in times if t.date() == dt.date(2024, 1, 3)]
    assert expected
    for start, end in [
        ("2024-01-03", "2024-01-04"),
        (dt.date(2024, 1, 3), dt.date(2024, 1, 4)),
        (dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 4)),  # naive: local zone
        (dt.datetime(2024, 1, 3, 5, tzinfo=UTC), dt.datetime(2024, 1, 4, 5, tzinfo=UTC)),
        (pd.Timestamp("2024-01-03", tz=NY), pd.Timestamp("2024-01-04", tz=NY)),
    ]:
        assert starts(store.scan("MES").between(start, end).collect()) == expected


def test_naive_window_is_read_in_the_query_zone(store: lb.BarStore, mes) -> None:
    # 14:30-14:35 UTC is 09:30-09:35 New York in January.
    got = store.scan("MES", timezone="UTC").between("2024-01-03 14:30", "2024-01-03 14:35")
    lo = dt.datetime(2024, 1, 3, 9, 30, tzinfo=NYZ)
    hi = dt.datetime(2024, 1, 3, 9, 35, tzinfo=NYZ)
    expected = [t for t in starts(mes) if lo <= t < hi]
    assert starts(got.collect()) == expected
    # One zone out: the bars are shown in the query's zone, not the zone they were stored in.
    assert got.collect().schema["datetime"] == pl.Datetime("ns", "UTC")


def test_between_edge_cases(store: lb.BarStore) -> None:
    query = store.scan("MES")
    assert query.between("2024-01-03 10:00", "2024-01-03 10:00").collect().height == 0
    assert query.between("2020-01-01", "2020-02-01").collect().height == 0
    with pytest.raises(lb.InvalidRequest, match="before"):
        query.between("2024-01-04", "2024-01-03")
    with pytest.raises(lb.InvalidRequest, match="start"):
        query.between("not a date", "2024-01-03")
    with pytest.raises(lb.InvalidRequest, match="end"):
        query.between("2024-01-03", 20240104)


def _visible_minute(times: list[dt.datetime], at: dt.datetime, step: dt.timedelta) -> list:
    return [t for t in times if utc(t) + step <= utc(at)]


@pytest.mark.parametrize(
    "at",
    [
        dt.datetime(2024, 1, 3, 10, 0, tzinfo=NYZ),
        dt.datetime(2024, 1, 3, 10, 0, 59, tzinfo=NYZ),
        dt.datetime(2024, 1, 3, 10, 1, tzinfo=NYZ),
        dt.datetime(2024, 1, 3, 9, 59, 59, 999999, tzinfo=NYZ),
        dt.datetime(2024, 1, 3, 15, 0, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 9, 30, tzinfo=NYZ),  # the first bar is not finished yet
        dt.datetime(2024, 1, 2, 9, 31, tzinfo=NYZ),
        dt.datetime(2030, 1, 1, tzinfo=UTC),
        dt.datetime(2000, 1, 1, tzinfo=UTC),
    ],
)
def test_as_of_minute_bars(store: lb.BarStore, mes, at: dt.datetime) -> None:
    got = starts(store.scan("MES").as_of(at).collect())
    assert got == _visible_minute(starts(mes), at, MINUTE)


def test_as_of_at_every_bar_end(store: lb.BarStore, mes) -> None:
    times = starts(mes)[200:230]
    for t in times:
        end = utc(t) + MINUTE
        assert starts(store.scan("MES").as_of(end).tail(1).collect()) == [t]
        before = pd.Timestamp(end) - pd.Timedelta(1, "ns")
        assert t not in starts(store.scan("MES").as_of(before).tail(2).collect())


def test_as_of_hour_bars(store: lb.BarStore, hours) -> None:
    times = starts(hours)
    for t in times[5:12]:
        end = utc(t) + HOUR
        assert starts(store.scan("MYM").as_of(end).collect()) == _visible_minute(times, end, HOUR)
        assert starts(store.scan("MYM").as_of(end).tail(1).collect()) == [t]
        early = end - dt.timedelta(seconds=1)
        assert t not in starts(store.scan("MYM").as_of(early).collect())


def test_as_of_naive_is_read_in_the_query_zone(store: lb.BarStore, mes) -> None:
    at = dt.datetime(2024, 1, 3, 10, 0, tzinfo=NYZ)
    expected = _visible_minute(starts(mes), at, MINUTE)
    assert starts(store.scan("MES").as_of("2024-01-03 10:00").collect()) == expected
    in_utc = store.scan("MES", timezone="UTC").as_of("2024-01-03 15:00")
    assert starts(in_utc.collect()) == expected


def _next_local_midnight(t: dt.datetime) -> dt.datetime:
    day = t.astimezone(NYZ).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=NYZ)


def test_day_bars_end_at_the_next_local_midnight(store: lb.BarStore, days) -> None:
    for t in starts(days):
        end = _next_local_midnight(t)
        got = starts(store.scan("DAY").as_of(end).tail(1).collect())
        assert got == [t], t
        before = pd.Timestamp(end) - pd.Timedelta(1, "us")
        assert t not in starts(store.scan("DAY").as_of(before).collect())


def test_day_bars_on_dst_days(store: lb.BarStore) -> None:
    spring = dt.datetime(2024, 3, 10, tzinfo=NYZ)  # 23 hours long
    autumn = dt.datetime(2024, 11, 3, tzinfo=NYZ)  # 25 hours long
    # Visible at the next local midnight, not 24 hours after the start.
    at = dt.datetime(2024, 3, 11, 4, 0, tzinfo=UTC)  # 2024-03-11 00:00 EDT
    assert starts(store.scan("DAY").as_of(at).tail(1).collect()) == [spring]
    at = dt.datetime(2024, 11, 4, 4, 59, tzinfo=UTC)  # 2024-11-03 23:59 EST
    saturday = dt.datetime(2024, 11, 2, tzinfo=NYZ)
    assert starts(store.scan("DAY").as_of(at).tail(1).collect()) == [saturday]
    at = dt.datetime(2024, 11, 4, 5, 0, tzinfo=UTC)  # 2024-11-04 00:00 EST
    assert starts(store.scan("DAY").as_of(at).tail(1).collect()) == [autumn]


def test_day_bars_end_where_they_were_written(store: lb.BarStore) -> None:
    # Read in UTC, the 2024-03-07 New York bar still ends at New York's next midnight
    # (05:00 UTC), not at the UTC midnight before it.
    query = store.scan("DAY", timezone="UTC")
    before = query.as_of(dt.datetime(2024, 3, 8, 4, 59, tzinfo=UTC)).tail(1).collect()
    assert starts(before) == [dt.datetime(2024, 3, 6, tzinfo=NYZ)]
    at = query.as_of(dt.datetime(2024, 3, 8, 5, 0, tzinfo=UTC)).tail(1).collect()
    assert starts(at) == [dt.datetime(2024, 3, 7, tzinfo=NYZ)]


def test_a_day_bucket_of_stored_day_bars_waits_for_their_own_end() -> None:
    # UTC candles in New York day buckets: the 2024-01-03 candle (2024-01-02 19:00 EST) is
    # in the bucket of New York's 01-02, which completes when the candle does, at 01-04
    # 00:00 UTC; the plan order does not matter.
    candles = lb.synth.daily_bars("BTC", "2024-01-02", "2024-01-09", tz="UTC")
    store = lb.BarStore.from_frames({"BTC": candles}, timestep="day")
    query = store.scan("BTC")
    for at, last in (
        (dt.datetime(2024, 1, 3, 6, tzinfo=UTC), dt.datetime(2024, 1, 1, tzinfo=NYZ)),
        (dt.datetime(2024, 1, 4, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=NYZ)),
    ):
        late = query.resample("1d").as_of(at).collect()
        early = query.as_of(at).resample("1d").collect()
        assert starts(late)[-1] == starts(early)[-1] == last
        assert late.equals(early)


def test_several_symbols_end_their_day_bars_in_their_own_zones() -> None:
    # One symbol written in UTC, one in Tokyo: each ends its days at its own midnights.
    utc = lb.synth.daily_bars("BTC", "2024-01-02", "2024-01-09", tz="UTC")
    tokyo = lb.synth.daily_bars("JPX", "2024-01-02", "2024-01-09", tz="Asia/Tokyo")
    store = lb.BarStore.from_frames({"BTC": utc}, timestep="day")
    store.write("JPX", tokyo, timestep="day")
    at = dt.datetime(2024, 1, 5, 6, tzinfo=UTC)  # 15:00 in Tokyo on 01-05
    for plan in (lambda q: q.as_of(at), lambda q: q.resample("1d").as_of(at)):
        both = plan(store.scan(["BTC", "JPX"])).collect()
        for symbol in ("BTC", "JPX"):
            alone = plan(store.scan(symbol)).collect()
            assert both.filter(pl.col("symbol") == symbol).drop("symbol").equals(alone)
    both = store.scan(["BTC", "JPX"]).as_of(at).collect()
    last = both.group_by("symbol").agg(pl.col("datetime").last()).sort("symbol")["datetime"]
    assert last.to_list() == [
        dt.datetime(2024, 1, 4, tzinfo=UTC),  # the 01-05 UTC candle closes at 01-06 00:00 UTC
        dt.datetime(2024, 1, 4, tzinfo=ZoneInfo("Asia/Tokyo")),  # 01-05 JST ends at 15:00 UTC
    ]


@pytest.mark.parametrize("start", ["1677-10-01", "2262-03-30"])
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Niue", NY])
def test_queries_on_the_first_and_last_bars_a_store_takes(start: str, zone: str) -> None:
    hours = pd.date_range(start, periods=48, freq="h", tz="UTC")
    frame = pl.DataFrame({"datetime": hours, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5})
    store = lb.BarStore.from_frames({"H": frame}, timestep="hour")
    store.write("D", frame[::24].with_columns(pl.col("datetime").dt.convert_time_zone(zone)), "day")
    assert store.scan("H", timezone=zone).resample("1d").collect().height in (2, 3)
    assert store.scan("H", "4h", timezone=zone).as_of(hours[-1]).collect().height > 0
    assert store.scan("H", "1d", timezone=zone).collect()["volume"].sum() == 0.0
    assert store.scan("D", timezone=zone).resample("1d").as_of(hours[-1]).collect().height == 2


@pytest.mark.parametrize("n", [0, 1, 5, 10_000])
def test_tail_and_head(store: lb.BarStore, mes, n: int) -> None:
    times = starts(mes)
    assert starts(store.scan("MES").tail(n).collect()) == (times[-n:] if n else [])
    assert starts(store.scan("MES").head(n).collect()) == times[:n]
    assert store.scan("MES").tail(n).collect().equals(mes.tail(n))


@pytest.mark.parametrize("n", [-1, 1.5, True, "3", None])
def test_tail_and_head_reject_bad_counts(store: lb.BarStore, n: object) -> None:
    with pytest.raises(lb.InvalidRequest, match="tail"):
        store.scan("MES").tail(n)  # type: ignore[arg-type]
    with pytest.raises(lb.InvalidRequest, match="head"):
        store.scan("MES").head(n)  # type: ignore[arg-type]


def test_steps_apply_in_order(store: lb.BarStore, mes) -> None:
    times = starts(mes)
    day3 = [t for t in times if t.date() == dt.date(2024, 1, 3)]
    start, end = day3[0], day3[-1] + MINUTE
    # Window, then the last 10 of it.
    assert starts(store.scan("MES").between(start, end).tail(10).collect()) == day3[-10:]
    # The last 10 of everything, then the window: nothing of day 3 is left.
    assert store.scan("MES").tail(10).between(start, end).collect().height == 0
    # as_of then tail: the last 3 visible bars.
    at = day3[50]
    assert starts(store.scan("MES").as_of(at).tail(3).collect()) == day3[47:50]


# -- select ---------------------------------------------------------------------------------
def test_select_keeps_datetime_first(store: lb.BarStore, mes) -> None:
    out = store.scan("MES").select("close", "open").collect()
    assert out.columns == ["datetime", "close", "open"]
    assert out.equals(mes.select("datetime", "close", "open"))
    picked = store.scan("MES").select("datetime", "volume").collect()
    assert picked.columns == ["datetime", "volume"]
    assert store.scan("MES").select("vwap").collect().columns == ["datetime", "vwap"]
    chained = store.scan("MES").select("close", "open").select("open")
    assert chained.collect().columns == ["datetime", "open"]


def test_select_rejects_unknown_columns_listing_available(store: lb.BarStore) -> None:
    with pytest.raises(lb.InvalidRequest) as info:
        store.scan("MES").select("close", "Close", "price")
    message = str(info.value)
    assert "'Close'" in message
    assert "'price'" in message
    for name in ("datetime", "open", "high", "low", "close", "volume", "vwap", "trades"):
        assert f"'{name}'" in message
    with pytest.raises(lb.InvalidRequest, match="'high'"):
        store.scan("MES").select("close").select("high")
    with pytest.raises(lb.InvalidRequest):
        store.scan("MES").select()


_CHAIN_STEPS = st.lists(
    st.sampled_from(["between", "as_of", "tail", "head", "select", "resample"]), max_size=4
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    symbols=st.sampled_from([["MES"], ["MES", "MNQ"], ["MNQ", "MES"], "MES", "MNQ"]),
    chain=_CHAIN_STEPS,
    data=st.data(),
)
def test_select_takes_exactly_the_columns_the_plan_gives(
    store: lb.BarStore, symbols, chain: list[str], data: st.DataObject
) -> None:
    # select() checks names without compiling the plan; the plan's own output is the truth.
    q = store.scan(symbols)
    for step in chain:
        if step == "between":
            q = q.between("2024-01-03", "2024-01-04 12:00")
        elif step == "as_of":
            q = q.as_of("2024-01-04 10:30")
        elif step in ("tail", "head"):
            q = getattr(q, step)(50)
        elif step == "resample" and q._timestep() == "1m":
            q = q.resample("1h")
        elif step == "select":
            present = q.collect().columns
            picked = data.draw(st.lists(st.sampled_from(present), min_size=1, unique=True))
            q = q.select(*picked)
    present = q.collect().columns
    for name in present:
        assert name in q.select(name).collect().columns
    for name in {*OHLCV, "vwap", "trades", "symbol", "contract"} - set(present):
        with pytest.raises(lb.InvalidRequest, match=repr(name)):
            q.select(name)


def test_select_plans_no_scan(disk: lb.BarStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Checking the names costs no polars planning: a quarter of a warm read's time once.
    q = disk.scan("MES").between("2024-01-03", "2024-01-04").resample("1h")
    q.collect()  # the file's footer is read (and remembered) once
    planned: list[object] = []

    def plan(*args: object, **kwargs: object) -> None:
        planned.append(args)

    monkeypatch.setattr(pl.LazyFrame, "collect_schema", plan)
    monkeypatch.setattr(pl, "scan_parquet", plan)
    q.select("close", "open").select("open")
    with pytest.raises(lb.InvalidRequest, match="'vwap'"):
        q.select("vwap")
    assert planned == []


# -- several symbols --------------------------------------------------------------------------
def test_multi_symbol_scan_is_long_format(store: lb.BarStore, mes, mnq) -> None:
    out = store.scan(["MES", "MNQ"]).collect()
    assert out.columns[:2] == ["datetime", "symbol"]
    assert out.columns[2:7] == ["open", "high", "low", "close", "volume"]
    assert out.schema["datetime"] == pl.Datetime("ns", NY)
    assert out.height == mes.height + mnq.height
    for symbol, frame in (("MES", mes), ("MNQ", mnq)):
        part = out.filter(pl.col("symbol") == symbol)
        assert [utc(t) for t in starts(part)] == [utc(t) for t in starts(frame)]
        assert part["close"].to_list() == frame["close"].to_list()
    # Columns only one symbol has are null for the other.
    assert out.filter(pl.col("symbol") == "MNQ")["vwap"].null_count() == mnq.height


def test_a_list_of_one_symbol_is_long_format_too(store: lb.BarStore, mes) -> None:
    """DESIGN: a list always gives the long format, even of one symbol."""
    one = store.scan(["MES"]).between("2024-01-03", "2024-01-04")
    out = one.resample("1h").tail(5).collect()
    assert out.columns[:2] == ["datetime", "symbol"] and set(out["symbol"]) == {"MES"}
    plain = store.scan("MES").between("2024-01-03", "2024-01-04")
    polars.testing.assert_frame_equal(one.collect().drop("symbol"), plain.collect())
    assert one != plain and "symbol" not in plain.collect().columns
    # As Bars, the one symbol's bars: the symbol is its name, not a column.
    polars.testing.assert_frame_equal(one.bars().pl, plain.bars().pl)


def test_multi_symbol_scan_in_another_zone(store: lb.BarStore) -> None:
    out = store.scan(["MES", "MNQ"], timezone="UTC").collect()
    assert out.schema["datetime"] == pl.Datetime("ns", "UTC")


@pytest.mark.parametrize("step", ["tail", "head"])
def test_multi_symbol_tail_and_head_are_per_symbol(store: lb.BarStore, mes, mnq, step) -> None:
    query = getattr(store.scan(["MES", "MNQ"]), step)(3)
    out = query.collect()
    assert out.columns[:2] == ["datetime", "symbol"]
    assert out.height == 6
    for symbol, frame in (("MES", mes), ("MNQ", mnq)):
        part = out.filter(pl.col("symbol") == symbol)
        want = getattr(frame, step)(3)
        assert [utc(t) for t in starts(part)] == [utc(t) for t in starts(want)]


def test_multi_symbol_tail_longer_than_a_history_keeps_all_of_it(store: lb.BarStore, mes) -> None:
    # The per-symbol count is unsigned: n past it once wrapped around and kept nothing.
    out = store.scan(["MES", "MNQ"]).tail(mes.height + 1).collect()
    assert out.filter(pl.col("symbol") == "MES").height == mes.height


def test_multi_symbol_window_and_select(store: lb.BarStore, mes, mnq) -> None:
    at = dt.datetime(2024, 1, 3, 10, 0, tzinfo=NYZ)
    out = store.scan(["MES", "MNQ"]).as_of(at).select("close").collect()
    assert out.columns == ["datetime", "symbol", "close"]
    for symbol, frame in (("MES", mes), ("MNQ", mnq)):
        part = out.filter(pl.col("symbol") == symbol)
        assert [utc(t) for t in starts(part)] == [
            utc(t) for t in _visible_minute(starts(frame), at, MINUTE)
        ]


def test_multi_symbol_bars_is_an_invalid_request(store: lb.BarStore) -> None:
    with pytest.raises(lb.InvalidRequest, match="MNQ"):
        store.scan(["MES", "MNQ"]).bars()


# -- execution --------------------------------------------------------------------------------
def test_lazy_is_a_lazyframe(store: lb.BarStore) -> None:
    query = store.scan("MES").between("2024-01-03", "2024-01-04").tail(5)
    assert isinstance(query.lazy, pl.LazyFrame)
    assert query.lazy.collect().equals(query.collect())


def test_to_pandas_is_indexed_by_datetime(store: lb.BarStore, mes) -> None:
    query = store.scan("MES").between("2024-01-03", "2024-01-04")
    pdf = query.to_pandas()
    expected = [t for t in starts(mes) if t.date() == dt.date(2024, 1, 3)]
    assert isinstance(pdf, pd.DataFrame)
    assert isinstance(pdf.index, pd.DatetimeIndex)
    assert pdf.index.name == "datetime"
    assert str(pdf.index.tz) == NY
    assert list(pdf.index) == [pd.Timestamp(t) for t in expected]
    assert list(pdf.columns) == ["open", "high", "low", "close", "volume", "vwap", "trades"]
    sub = mes.filter(pl.col("datetime").is_in(expected))
    assert pdf["close"].tolist() == sub["close"].to_list()


def test_bars_returns_bars(store: lb.BarStore, mes) -> None:
    query = store.scan("MES").tail(20)
    bars = query.bars()
    assert isinstance(bars, lb.Bars)
    assert bars.symbol == "MES"
    assert bars.timestep == "1m"
    assert bars.pl.equals(mes.tail(20))
    assert store.scan("DAY").bars().timestep == "1d"
    assert store.scan("MES").resample("15m").bars().timestep == "15m"


# -- resample (existence and shape only) -------------------------------------------------------
def test_resample_columns_and_rejections(store: lb.BarStore) -> None:
    out = store.scan("MES").resample("1h").collect()
    assert out.columns == OHLCV
    assert out.schema["datetime"] == pl.Datetime("ns", NY)
    assert out.height > 0
    multi = store.scan(["MES", "MNQ"]).resample("1h").collect()
    assert multi.columns == ["datetime", "symbol", "open", "high", "low", "close", "volume"]
    assert store.scan("MES").resample("1m").collect().columns[:6] == OHLCV  # same timestep
    with pytest.raises(lb.InvalidRequest, match="finer"):
        store.scan("MYM").resample("5m")
    with pytest.raises(lb.InvalidRequest, match="after_hours"):
        store.scan("MES").resample("1h", after_hours="no")  # type: ignore[arg-type]


def test_resample_after_resample_rejects_finer(store: lb.BarStore) -> None:
    """1h bars cannot be made into 15m bars, however the 1h bars came about."""
    with pytest.raises(lb.InvalidRequest, match="finer"):
        store.scan("MES").resample("1h").resample("15m")
    with pytest.raises(lb.InvalidRequest, match="finer"):
        store.scan("MES", "1h").resample("15m")


# -- display and explain ---------------------------------------------------------------------
def test_repr_mentions_symbol_timestep_and_steps(store: lb.BarStore) -> None:
    query = (
        store.scan("MES")
        .between("2024-01-03", "2024-01-04")
        .as_of("2024-01-03 12:00")
        .tail(7)
        .select("close")
        .resample("1h")
    )
    text = repr(query)
    parts = ("MES", "1m", "1h", "between", "as_of", "tail", "7", "select", "close", "resample")
    for part in (*parts, NY):
        assert part in text, part
    assert "2024-01-03" in text
    html_text = query._repr_html_()
    for part in ("MES", "1m", "1h", "between", "as_of", "tail", "select", "resample"):
        assert part in html_text, part
    assert html_text.lstrip().startswith("<")
    multi = repr(store.scan(["MES", "MNQ"]))
    assert "MES" in multi
    assert "MNQ" in multi


def test_repr_html_escapes(store: lb.BarStore, mes) -> None:
    tricky = lb.BarStore.from_frames({"A<B>&C": mes})
    html_text = tricky.scan("A<B>&C")._repr_html_()
    assert "A<B>" not in html_text
    assert "A&lt;B&gt;&amp;C" in html_text


def test_explain_shows_steps_and_polars_plan(store: lb.BarStore) -> None:
    query = store.scan("MES").between("2024-01-03", "2024-01-04").tail(5)
    text = query.explain()
    assert "MES" in text
    assert "between" in text
    assert "tail" in text
    assert "polars plan" in text
    # The polars part is the LazyFrame's own plan.
    assert query.lazy.explain() in text


def _scan_block(plan: str) -> list[str]:
    """The first parquet scan node of a polars plan and the lines attached to it."""
    blocks = _scan_blocks(plan)
    if not blocks:
        raise AssertionError(f"no parquet scan in plan:\n{plan}")
    return blocks[0]


@pytest.mark.parametrize(
    "build",
    [
        lambda q: q.between("2024-01-03", "2024-01-04").tail(5),
        lambda q: q.as_of("2024-01-03 10:00").tail(5),
        lambda q: q.between("2024-01-03", "2024-01-04").select("close"),
    ],
    ids=["between-tail", "as_of-tail", "between-select"],
)
def test_explain_shows_the_window_pushed_into_the_parquet_scan(
    disk: lb.BarStore, disk_root: Path, build
) -> None:
    # A handle of its own: one that holds the window already reads no file.
    text = build(lb.BarStore(disk_root).scan("MES")).explain()
    plan = text.split("polars plan:", 1)[1]
    block = _scan_block(plan)
    selection = [line for line in block if "SELECTION" in line or "filter" in line.lower()]
    assert selection, block
    assert any('"datetime"' in line for line in selection), block


def test_pushdown_gives_the_same_rows_as_memory(disk: lb.BarStore, store: lb.BarStore) -> None:
    for build in (
        lambda q: q.between("2024-01-03 10:00", "2024-01-03 11:00"),
        lambda q: q.as_of("2024-01-03 10:00").tail(30),
        lambda q: q.head(3),
    ):
        assert build(disk.scan("MES")).collect().equals(build(store.scan("MES")).collect())
    at = dt.datetime(2024, 11, 4, 5, tzinfo=UTC)
    assert disk.scan("DAY").as_of(at).collect().equals(store.scan("DAY").as_of(at).collect())


def test_select_then_resample(store: lb.BarStore) -> None:
    """DESIGN's plan order is scan -> window -> tail -> select -> resample.

    A selection followed by a resample must either work (keeping the selected columns)
    or be refused up front with InvalidRequest, never fail inside polars at collect().
    """
    try:
        query = store.scan("MES").select("close").resample("1h")
    except lb.InvalidRequest:
        return
    out = query.collect()
    assert out.columns == ["datetime", "close"]


# -- one zone out ------------------------------------------------------------------------------
@pytest.mark.parametrize("zone", [NY, "UTC", "Asia/Tokyo"])
def test_results_are_in_the_query_zone_whatever_zone_was_stored(store: lb.BarStore, zone) -> None:
    # MNQ was written in UTC, MES in New York.
    for symbol in ("MNQ", "MES", "DAY"):
        query = store.scan(symbol, timezone=zone)
        for q in (query, query.between("2024-01-03", "2024-01-04"), query.resample("day")):
            assert q.collect().schema["datetime"] == pl.Datetime("ns", zone)
            assert str(q.to_pandas().index.tz) == zone
            assert q.bars().pl.schema["datetime"] == pl.Datetime("ns", zone)


def test_day_buckets_of_utc_data_start_at_local_midnight(store: lb.BarStore, mnq) -> None:
    days = store.scan("MNQ").resample("day").collect()["datetime"].to_list()
    assert days == [dt.datetime(2024, 1, d, tzinfo=NYZ) for d in (2, 3, 4)]


# -- plan order does not leak ------------------------------------------------------------------
@pytest.mark.parametrize("clock", ["2024-01-03 10:31", "2024-01-03 10:00", "2024-01-04 15:59:30"])
@pytest.mark.parametrize("timestep", ["5m", "1h", "day"])
def test_as_of_means_the_same_wherever_it_stands(store: lb.BarStore, clock, timestep) -> None:
    at = pd.Timestamp(clock, tz=NY)
    scan = store.scan("MES")
    plans = {
        "as_of last": scan.resample(timestep).as_of(at),
        "as_of first": scan.as_of(at).resample(timestep),
        "as_of between": scan.between("2024-01-02", "2024-01-05").as_of(at).resample(timestep),
        "as_of twice": scan.as_of(at).resample(timestep).as_of(at),
    }
    got = {name: plan.collect() for name, plan in plans.items()}
    # The rule itself: buckets of the final timestep whose end (and whose bars' ends) <= at.
    native = scan.collect()
    bounds = pd.date_range(
        "2024-01-02",
        "2024-01-06",
        freq="5min" if timestep == "5m" else "1h" if timestep == "1h" else "D",
        tz=NY,
    )
    ends = {b: b + (bounds[1] - bounds[0]) for b in bounds}
    wanted = [
        b
        for b in bounds
        if ends[b] <= at
        and native.filter((pl.col("datetime") >= b) & (pl.col("datetime") < ends[b])).height
    ]
    for name, frame in got.items():
        assert frame["datetime"].to_list() == wanted, name


# -- several symbols, resampled ---------------------------------------------------------------
def test_multi_symbol_resample_of_day_bars_equals_each_symbol_alone(tmp_path: Path) -> None:
    store = lb.BarStore.from_frames({}, timestep="day")
    for symbol, seed in (("B", 1), ("A", 2)):
        frame = lb.synth.daily_bars(symbol, "2024-01-02", "2024-03-01", seed=seed)
        store.write(symbol, frame.tail(30 if symbol == "B" else 40), timestep="day")
    for target in ("day",):
        multi = store.scan(["B", "A"]).resample(target).collect()
        # Rows ordered by datetime, then by the order the symbols were given in.
        rank = {"B": 0, "A": 1}
        keys = list(
            zip(multi["datetime"].to_list(), [rank[s] for s in multi["symbol"]], strict=True)
        )
        assert keys == sorted(keys)
        for symbol in ("A", "B"):
            alone = store.scan(symbol).resample(target).collect()
            part = multi.filter(pl.col("symbol") == symbol).drop("symbol")
            assert part.equals(alone), symbol
            assert alone.height == (40 if symbol == "A" else 30)


def test_multi_symbol_rows_are_ordered_by_time_then_symbol_order(store: lb.BarStore) -> None:
    out = store.scan(["MNQ", "MES"]).collect()
    rank = {"MNQ": 0, "MES": 1}
    keys = list(zip(out["datetime"].to_list(), [rank[s] for s in out["symbol"]], strict=True))
    assert keys == sorted(keys)
    assert set(out["symbol"]) == {"MES", "MNQ"}


# -- resample values ----------------------------------------------------------------------------
def _pandas_buckets(frame: pl.DataFrame, rule: str) -> pd.DataFrame:
    """OHLCV buckets by pandas' own resample: exact on days without a DST change."""
    df = frame.to_pandas().set_index("datetime")[["open", "high", "low", "close", "volume"]]
    out = df.resample(rule, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    return out.dropna(subset=["open"])


@pytest.mark.parametrize(("timestep", "rule"), [("5m", "5min"), ("1h", "1h"), ("90m", "90min")])
def test_resample_values_equal_pandas_resample(store: lb.BarStore, mes, timestep, rule) -> None:
    got = store.scan("MES").resample(timestep).to_pandas()
    want = _pandas_buckets(mes, rule)
    want.index = want.index.as_unit("ns")
    pd.testing.assert_frame_equal(got, want, check_freq=False, check_exact=True)


# -- pushdown into every scan, warm reads from the held bars ------------------------------------
@pytest.fixture(scope="module")
def zones_root(tmp_path_factory: pytest.TempPathFactory, mes, mnq) -> Path:
    """A catalog of MES (written in New York), MNQ (written in UTC) and day bars in UTC."""
    root = tmp_path_factory.mktemp("zones")
    store = lb.BarStore(root)
    store.write("MES", mes)
    store.write("MNQ", mnq)
    days = lb.synth.daily_bars("BTC", "2024-01-02", "2024-02-01", tz="UTC")
    store.write("BTC", days, timestep="day")
    more = lb.synth.daily_bars("ETH", "2024-01-02", "2024-02-01", tz="UTC", seed=3)
    store.write("ETH", more, timestep="day")
    return root


def _scan_blocks(plan: str) -> list[list[str]]:
    """Every parquet scan node of a polars plan, with the lines attached to it."""
    lines, blocks = plan.splitlines(), []
    for i, line in enumerate(lines):
        if "parquet" in line.lower() and "scan" in line.lower():
            indent = len(line) - len(line.lstrip())
            block = [line]
            for follow in lines[i + 1 :]:
                if len(follow) - len(follow.lstrip()) != indent:
                    break
                block.append(follow)
            blocks.append(block)
    return blocks


@pytest.mark.parametrize(
    ("symbols", "zone"),
    [
        (["MES"], NY),
        (["MNQ"], NY),  # written in UTC, shown in New York
        (["MES", "MNQ"], NY),
        (["MNQ", "MES"], "Asia/Tokyo"),
        (["BTC", "ETH"], NY),  # day bars: their as_of is no plain start bound
    ],
)
@pytest.mark.parametrize(
    "build",
    [
        lambda q, _: q.between("2024-01-03", "2024-01-04"),
        lambda q, _: q.as_of("2024-01-03 10:00").tail(5),
        lambda q, _: (
            q.select("close").between("2024-01-03", "2024-01-10").as_of("2024-01-04 12:00")
        ),
        lambda q, local: q.between("2024-01-03", "2024-01-09").resample("day").as_of(local),
    ],
    ids=["between", "as_of-tail", "select-between-as_of", "between-resample"],
)
def test_explain_shows_the_window_in_every_parquet_scan(
    zones_root: Path, symbols, zone, build
) -> None:
    store = lb.BarStore(zones_root)  # nothing held yet: the plan reads the files
    query = build(store.scan(symbols, timezone=zone), pd.Timestamp("2024-01-05", tz=zone))
    plan = query.explain().split("polars plan:", 1)[1]
    blocks = _scan_blocks(plan)
    # A scan per file (a resample may show a file's scan more than once).
    assert {s for s in symbols for b in blocks if f"/{s}.parquet" in b[0]} == set(symbols)
    for block in blocks:
        selection = [line for line in block if "SELECTION" in line]
        assert selection and '"datetime"' in selection[0], block
    assert "held     none from memory" in query.explain()
    # Collected, the windows are held: the plan reads no file, and says so.
    cold = query.collect()
    warm = query.explain()
    assert f"held     {', '.join(symbols)} from memory" in warm
    assert not _scan_blocks(warm.split("polars plan:", 1)[1])
    polars.testing.assert_frame_equal(query.collect(), cold)


_T0 = dt.datetime(2024, 1, 2, tzinfo=UTC)


def _instant(minutes: int) -> dt.datetime:
    return _T0 + minutes * MINUTE


@st.composite
def _plans(draw: st.DrawFn) -> list[tuple]:
    """Random plans over MES and MNQ (four days of minute bars): windows, tail, head,
    select and at most one resample, in any order."""
    span = st.integers(-600, 5 * 24 * 60)
    steps, columns, resampled = [], ["open", "high", "low", "close", "volume"], False
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(
            st.sampled_from(["between", "between", "as_of", "tail", "head", "select", "resample"])
        )
        if kind == "between":
            a, b = sorted((draw(span), draw(span)))
            steps.append(("between", _instant(a), _instant(b)))
        elif kind == "as_of":
            steps.append(("as_of", _instant(draw(span))))
        elif kind in ("tail", "head"):
            steps.append((kind, draw(st.integers(0, 3000))))
        elif kind == "select":
            columns = draw(st.lists(st.sampled_from(columns), min_size=1, max_size=3, unique=True))
            steps.append(("select", *columns))
        elif not resampled:
            resampled = True
            steps.append(("resample", draw(st.sampled_from(["5m", "1h", "day"]))))
    return steps


def _run(query: lb.Query, plan: list[tuple]) -> lb.Query:
    for name, *args in plan:
        query = getattr(query, name)(*args)
    return query


@pytest.fixture(scope="module")
def held_store(zones_root: Path) -> lb.BarStore:
    """One handle for every example: random windows meet what earlier examples held."""
    return lb.BarStore(zones_root, cache_bytes=16 * 2**20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=_plans(),
    symbols=st.sampled_from(["MES", "MNQ", ["MES"], ["MES", "MNQ"], ["MNQ", "MES"]]),
    zone=st.sampled_from([NY, "UTC", "Asia/Tokyo"]),
)
def test_warm_and_cold_answers_are_identical(
    zones_root: Path, held_store: lb.BarStore, plan, symbols, zone
) -> None:
    query = _run(held_store.scan(symbols, timezone=zone), plan)
    # The plan on the files alone: nothing is held by a store of no budget.
    cold = _run(lb.BarStore(zones_root, cache_bytes=0).scan(symbols, timezone=zone), plan)
    want = cold.lazy.collect()
    polars.testing.assert_frame_equal(query.collect(), want)
    names = [symbols] if isinstance(symbols, str) else symbols
    assert f"held     {', '.join(names)} from memory" in query.explain()
    polars.testing.assert_frame_equal(query.collect(), want)
    polars.testing.assert_frame_equal(query.lazy.collect(), want)
    assert held_store.held_info().bytes <= 16 * 2**20
    if isinstance(symbols, list):
        # Long format: each symbol's rows are its own query's, ordered by time, then by
        # the order of the list.
        rank = {s: i for i, s in enumerate(symbols)}
        keys = list(zip(want["datetime"], [rank[s] for s in want["symbol"]], strict=True))
        assert keys == sorted(keys)
        for symbol in symbols:
            alone = _run(held_store.scan(symbol, timezone=zone), plan).collect()
            part = want.filter(pl.col("symbol") == symbol).drop("symbol")
            polars.testing.assert_frame_equal(part.select(alone.columns), alone)
