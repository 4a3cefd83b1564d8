"""Ingest through ``BarStore.write``: schema normalisation, time zones, validation, sorting.

Every test writes through the public API and reads back with ``store.scan(sym).collect()``;
expectations are built by hand from the input (zoneinfo, plain Python), not from lazybars.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import os
import subprocess
import sys
import warnings
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import pytest

import lazybars as lb

NY = "America/New_York"
OHLCV = ["datetime", "open", "high", "low", "close", "volume"]
HERE = str(Path(__file__).resolve())


@pytest.fixture(params=["disk", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> lb.BarStore:
    if request.param == "disk":
        return lb.BarStore(tmp_path / "catalog")
    return lb.BarStore.from_frames({})


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    """Three days of minute bars with gaps and the extra vwap/trades columns."""
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-05", gaps=0.01, extras=True)


def small(times: list, **columns: list) -> pl.DataFrame:
    """A hand-built frame: ``datetime`` then OHLC columns (1.0, 2.0, ...) unless given."""
    n = len(times)
    data: dict[str, list] = {"datetime": times}
    for name in ("open", "high", "low", "close"):
        data[name] = columns.pop(name, [float(i + 1) for i in range(n)])
    data.update(columns)
    return pl.DataFrame(data, strict=False)


def minutes(n: int, start: dt.datetime = dt.datetime(2024, 1, 2, 9, 30)) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=i) for i in range(n)]


def test_clean_bars_are_checked_without_a_polars_query(
    frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking bars that need no repair runs no polars query (each costs ~100 us before
    it touches data: most of the check of a day of bars); polars looks for the rows of a
    problem only once one is found."""

    def query(self: pl.DataFrame) -> pl.LazyFrame:
        raise AssertionError("a polars query")

    monkeypatch.setattr(pl.DataFrame, "lazy", query)
    bars = lb.ingest.normalize(frame)
    monkeypatch.undo()
    assert bars.equals(frame)


def _flush_two(folder: Path) -> None:
    from lazybars.ingest import _flush_both

    with (folder / "a").open("wb") as a, (folder / "b").open("wb") as b:
        _flush_both(a.fileno(), b.fileno())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_a_forked_child_flushes_without_its_parents_helper(tmp_path: Path) -> None:
    """An append flushes its files on a helper thread, which a forked child does not
    inherit: the child starts its own instead of waiting for one that is not there.
    (Only the flush: polars itself hangs in a child forked after it ran its threads.)"""
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-10", session="24h", gaps=0)
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")  # the helper thread runs
    child = multiprocessing.get_context("fork").Process(target=_flush_two, args=(tmp_path,))
    with warnings.catch_warnings():  # Python >= 3.12 warns of fork() with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child's flush hung")
    assert child.exitcode == 0


APPEND_AT_EXIT = """
import atexit, sys
import lazybars as lb

root = sys.argv[1]
bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-05", session="24h", gaps=0)
store = lb.BarStore(root)
store.write("MES", bars[:2_000])
atexit.register(lambda: store.write("MES", bars[2_000:2_100], mode="append"))
"""


def test_an_append_at_interpreter_exit_is_flushed_in_turn(tmp_path: Path) -> None:
    """Once the interpreter exits, threads take no new work (an atexit handler runs
    after that): an append made then flushes its files one after the other."""
    done = subprocess.run(
        [sys.executable, "-c", APPEND_AT_EXIT, str(tmp_path)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr.decode()[-2000:]
    store = lb.BarStore(tmp_path)
    assert store.info().select("rows", "parts").row(0) == (2_100, 1)


# -- file layout ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("how", "end"),
    [("frame", "2024-04-01"), ("streamed", "2024-04-01"), ("frame", "2024-01-03")],
    ids=["frame", "streamed", "a day"],
)
def test_catalog_files_are_lz4_in_month_row_groups(tmp_path: Path, how: str, end: str) -> None:
    """The layout perf/bench_layout.py chose (README "File layout"): lz4, whose decode is
    2-3x zstd's, and row groups of about a month of 24h minute bars, with statistics, for
    eager writes, streamed ones and a frame of one row group (an append's part) alike."""
    import pyarrow.parquet as pq

    from lazybars.ingest import ROW_GROUP_ROWS, write_bars

    bars = lb.synth.minute_bars("MES", "2024-01-02", end, session="24h")
    path = tmp_path / "MES.parquet"
    with path.open("wb") as fh:
        write_bars(bars.lazy() if how == "streamed" else bars, fh, {"lazybars": "mine"})
    assert pl.read_parquet_metadata(path)["lazybars"] == "mine"
    assert pl.read_parquet(path).equals(bars)
    meta = pq.ParquetFile(path).metadata
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    assert ROW_GROUP_ROWS == 32_768
    assert [g.num_rows for g in groups[:-1]] == [ROW_GROUP_ROWS] * (len(groups) - 1)
    assert sum(g.num_rows for g in groups) == bars.height
    chunks = [g.column(j) for g in groups for j in range(meta.num_columns)]
    assert {c.compression for c in chunks} == {"LZ4"}
    assert all(c.statistics is not None and c.statistics.has_min_max for c in chunks)


# -- round trips ----------------------------------------------------------------------------
def test_polars_round_trip_is_exact(store: lb.BarStore, frame: pl.DataFrame) -> None:
    store.write("MES", frame)
    out = store.scan("MES").collect()
    assert out.columns == [*OHLCV, "vwap", "trades"]
    assert out.schema == frame.schema
    assert out.equals(frame)


def test_pandas_datetime_index_round_trip(store: lb.BarStore, frame: pl.DataFrame) -> None:
    pdf = frame.to_pandas().set_index("datetime")
    store.write("MES", pdf)
    assert store.scan("MES").collect().equals(frame)


def test_pandas_unnamed_datetime_index(store: lb.BarStore, frame: pl.DataFrame) -> None:
    pdf = frame.to_pandas().set_index("datetime")
    pdf.index.name = None
    store.write("MES", pdf)
    assert store.scan("MES").collect().equals(frame)


def test_pandas_datetime_index_with_any_name(store: lb.BarStore, frame: pl.DataFrame) -> None:
    """DESIGN: "a pandas DataFrame (DatetimeIndex or a time column)": the index name is free."""
    pdf = frame.to_pandas().set_index("datetime")
    pdf.index.name = "bar_start"
    store.write("MES", pdf)
    assert store.scan("MES").collect().equals(frame)


@pytest.mark.parametrize("name", ["datetime", "timestamp", "ts_event", "date", "time"])
@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_pandas_time_column_names(store: lb.BarStore, frame: pl.DataFrame, name, case) -> None:
    pdf = frame.to_pandas().rename(columns={"datetime": case(name)})
    assert isinstance(pdf.index, pd.RangeIndex)
    store.write("MES", pdf)
    assert store.scan("MES").collect().equals(frame)


@pytest.mark.parametrize("name", ["Timestamp", "TS_EVENT", "Date", "time"])
def test_polars_time_column_names(store: lb.BarStore, frame: pl.DataFrame, name: str) -> None:
    store.write("MES", frame.rename({"datetime": name}))
    assert store.scan("MES").collect().equals(frame)


def test_case_insensitive_ohlcv_names(store: lb.BarStore, frame: pl.DataFrame) -> None:
    odd = frame.rename(
        {"open": "Open", "high": "HIGH", "low": "Low", "close": "cLoSe", "volume": "Volume"}
    )
    store.write("MES", odd)
    assert store.scan("MES").collect().equals(frame)


def test_column_order_is_canonical(store: lb.BarStore, frame: pl.DataFrame) -> None:
    shuffled = frame.select("trades", "close", "volume", "low", "vwap", "datetime", "high", "open")
    store.write("MES", shuffled)
    out = store.scan("MES").collect()
    # OHLCV first, then the extras in the caller's order.
    assert out.columns == [*OHLCV, "trades", "vwap"]
    assert out.equals(frame.select(*OHLCV, "trades", "vwap"))


def test_volume_is_optional(store: lb.BarStore, frame: pl.DataFrame) -> None:
    store.write("MES", frame.drop("volume", "vwap", "trades"))
    out = store.scan("MES").collect()
    assert out.columns == OHLCV
    assert out.schema["volume"] == pl.Float64
    assert out["volume"].to_list() == [0.0] * frame.height
    assert out.drop("volume").equals(frame.select(OHLCV[:-1]))


def test_integer_prices_become_float(store: lb.BarStore) -> None:
    bars = small(minutes(3), open=[1, 2, 3], high=[2, 3, 4], low=[0, 1, 2], close=[1, 2, 3])
    store.write("X", bars.with_columns(volume=pl.Series([5, 6, 7], dtype=pl.Int32)), tz="UTC")
    out = store.scan("X").collect()
    for name in ("open", "high", "low", "close", "volume"):
        assert out.schema[name] == pl.Float64
    assert out["high"].to_list() == [2.0, 3.0, 4.0]
    assert out["volume"].to_list() == [5.0, 6.0, 7.0]


def test_extra_numeric_columns_are_kept_with_their_dtype(store: lb.BarStore) -> None:
    bars = small(
        minutes(3),
        volume=[1.0, 2.0, 3.0],
        open_interest=pl.Series([10, 11, 12], dtype=pl.Int64),
        spread=pl.Series([0.25, 0.5, 0.25], dtype=pl.Float32),
        ticks=pl.Series([1, 2, 3], dtype=pl.UInt16),
    )
    store.write("X", bars, tz="UTC")
    out = store.scan("X").collect()
    assert out.columns == [*OHLCV, "open_interest", "spread", "ticks"]
    assert out.schema["open_interest"] == pl.Int64
    assert out.schema["spread"] == pl.Float32
    assert out.schema["ticks"] == pl.UInt16
    assert out["open_interest"].to_list() == [10, 11, 12]
    assert out["ticks"].to_list() == [1, 2, 3]


def test_extra_numeric_column_named_end_is_kept(store: lb.BarStore) -> None:
    """A caller's numeric column is bar data whatever its name (here ``end``)."""
    bars = small(minutes(3), end=[1.0, 2.0, 3.0])
    store.write("X", bars, tz="UTC")
    out = store.scan("X").collect()
    assert out.columns == [*OHLCV, "end"]
    assert out["end"].to_list() == [1.0, 2.0, 3.0]


def test_non_numeric_extra_columns_are_dropped(store: lb.BarStore) -> None:
    bars = small(
        minutes(3),
        volume=[1.0, 2.0, 3.0],
        exchange=["CME", "CME", "CME"],
        halted=[False, True, False],
        settled=[dt.datetime(2024, 1, 3)] * 3,
        kind=pl.Series(["a", "b", "a"], dtype=pl.Categorical),
        vwap=[1.5, 2.5, 3.5],
    )
    store.write("X", bars, tz="UTC")
    out = store.scan("X").collect()
    assert out.columns == [*OHLCV, "vwap"]


def test_non_numeric_pandas_extras_are_dropped(store: lb.BarStore) -> None:
    idx = pd.date_range("2024-01-02 09:30", periods=3, freq="min", tz=NY)
    pdf = pd.DataFrame(
        {
            "open": [1.0, 2.0, 3.0],
            "high": [1.0, 2.0, 3.0],
            "low": [1.0, 2.0, 3.0],
            "close": [1.0, 2.0, 3.0],
            "symbol": ["MES"] * 3,
            "trades": [4, 5, 6],
        },
        index=idx,
    )
    store.write("X", pdf)
    out = store.scan("X").collect()
    assert out.columns == [*OHLCV, "trades"]
    assert out["trades"].to_list() == [4, 5, 6]


# -- time zones -------------------------------------------------------------------------------
@pytest.mark.parametrize("zone", [NY, "UTC", "Asia/Tokyo", "Europe/London"])
def test_naive_times_are_read_in_tz(store: lb.BarStore, zone: str) -> None:
    wall = [dt.datetime(2024, 1, 2, 9, 30), dt.datetime(2024, 7, 2, 9, 30)]
    store.write("X", small(wall), tz=zone)
    out = store.scan("X", timezone=zone).collect()
    assert out.schema["datetime"] == pl.Datetime("ns", zone)
    expected = [w.replace(tzinfo=ZoneInfo(zone)) for w in wall]
    got = out["datetime"].to_list()
    assert got == expected
    # The wall-clock time survives in that zone, whatever its offset on the day.
    assert [(t.hour, t.minute) for t in got] == [(9, 30), (9, 30)]
    assert [t.timestamp() for t in got] == [e.timestamp() for e in expected]


def test_naive_pandas_index_with_tz(store: lb.BarStore) -> None:
    idx = pd.DatetimeIndex(["2024-01-02 09:30", "2024-01-02 09:31"])
    pdf = pd.DataFrame({c: [1.0, 2.0] for c in ("open", "high", "low", "close")}, index=idx)
    store.write("X", pdf, tz=NY)
    got = store.scan("X").collect()["datetime"].to_list()
    assert got == [
        dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 2, 14, 31, tzinfo=dt.UTC),
    ]


@pytest.mark.parametrize("kind", ["polars", "pandas-index", "pandas-column"])
def test_naive_without_tz_is_a_schema_error(store: lb.BarStore, kind: str) -> None:
    bars = small(minutes(2))
    if kind == "pandas-index":
        frame = bars.to_pandas().set_index("datetime")
    elif kind == "pandas-column":
        frame = bars.to_pandas()
    else:
        frame = bars
    with pytest.raises(lb.SchemaError, match="naive") as info:
        store.write("X", frame)
    assert "tz=" in str(info.value)
    assert "datetime" in str(info.value)
    assert store.symbols() == []


@pytest.mark.parametrize("zone", ["UTC", NY, "Asia/Tokyo"])
def test_tz_aware_input_keeps_its_zone(store: lb.BarStore, zone: str) -> None:
    times = [
        dt.datetime(2024, 3, 8, 15, 0, tzinfo=ZoneInfo(zone)) + dt.timedelta(days=i)
        for i in range(4)
    ]
    store.write("X", small(times))
    # The instants are kept; a query shows them in its own zone.
    out = store.scan("X", timezone=zone).collect()
    assert out.schema["datetime"] == pl.Datetime("ns", zone)
    assert out["datetime"].to_list() == times
    assert store.scan("X").collect()["datetime"].to_list() == times


def test_tz_aware_input_with_tz_keeps_its_instants(store: lb.BarStore) -> None:
    times = [
        dt.datetime(2024, 1, 2, 15, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 2, 16, tzinfo=dt.UTC),
    ]
    store.write("X", small(times), tz="Asia/Tokyo")
    got = store.scan("X").collect()["datetime"].to_list()
    # Aware times are instants: tz= may change the display zone, never the instant.
    assert [t.timestamp() for t in got] == [t.timestamp() for t in times]


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_any_time_unit_is_stored_as_ns(store: lb.BarStore, unit: str) -> None:
    bars = small(minutes(3)).with_columns(pl.col("datetime").cast(pl.Datetime(unit)))
    store.write("X", bars, tz="UTC")
    out = store.scan("X", timezone="UTC").collect()
    assert out.schema["datetime"] == pl.Datetime("ns", "UTC")
    assert out["datetime"].to_list() == [t.replace(tzinfo=dt.UTC) for t in minutes(3)]


def test_date_column_is_local_midnight(store: lb.BarStore) -> None:
    days = [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    bars = small(days).rename({"datetime": "Date"})
    store.write("X", bars, timestep="day", tz=NY)
    got = store.scan("X").collect()["datetime"].to_list()
    assert got == [dt.datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(NY)) for d in days]


@pytest.mark.parametrize(
    ("wall", "what"),
    [
        (dt.datetime(2024, 11, 3, 1, 30), "ambiguous"),
        (dt.datetime(2024, 3, 10, 2, 30), "non-existent"),
    ],
)
def test_naive_times_on_dst_edges_are_schema_errors(store: lb.BarStore, wall, what) -> None:
    with pytest.raises(lb.SchemaError, match=what):
        store.write("X", small([wall]), tz=NY)


def test_naive_times_on_dst_edges_name_their_rows(store: lb.BarStore) -> None:
    walls = [dt.datetime(2024, 3, 10, 1, 30), dt.datetime(2024, 3, 10, 2, 30)]
    with pytest.raises(lb.SchemaError, match=r"rows \[1\] .*2024-03-10 02:30"):
        store.write("X", small(walls), tz=NY)


def test_a_repeated_midnight_among_intraday_times_is_ambiguous(store: lb.BarStore) -> None:
    # Minute bars: Havana's 2024-11-03 00:00 happens twice, and a minute bar there could
    # be either; only a column of dates (day bars) means the first.
    walls = [dt.datetime(2024, 11, 2, 23, 59), dt.datetime(2024, 11, 3)]
    with pytest.raises(lb.SchemaError, match=r"rows \[1\] .*ambiguous or non-existent"):
        store.write("X", small(walls), tz="America/Havana")


@pytest.mark.parametrize(
    ("zone", "days", "first_instants"),
    [
        # Santiago skips 2024-09-08 00:00 (-04) to 01:00 (-03): that day starts at 01:00.
        (
            "America/Santiago",
            [dt.date(2024, 9, d) for d in (7, 8, 9)],
            ["2024-09-07T00:00-04:00", "2024-09-08T01:00-03:00", "2024-09-09T00:00-03:00"],
        ),
        # Havana repeats 2024-11-03 00:00 (-04, then -05): the day starts at the first.
        (
            "America/Havana",
            [dt.date(2024, 11, d) for d in (2, 3, 4)],
            ["2024-11-02T00:00-04:00", "2024-11-03T00:00-04:00", "2024-11-04T00:00-05:00"],
        ),
    ],
)
@pytest.mark.parametrize("kind", ["date", "naive midnight"])
def test_day_bars_where_midnight_is_skipped_or_repeated(
    store: lb.BarStore, zone: str, days: list, first_instants: list, kind: str
) -> None:
    # A day bar starts at the first instant of its date (DESIGN), so a date or a naive
    # midnight names that instant even on the day a DST change skips or repeats midnight.
    times = days if kind == "date" else [dt.datetime(d.year, d.month, d.day) for d in days]
    store.write("X", small(times), timestep="day", tz=zone)
    got = store.scan("X", timezone=zone).collect()["datetime"].dt.convert_time_zone("UTC")
    # Compared in UTC: Python never finds a repeated wall time equal across zones (PEP 495).
    assert got.to_list() == [
        dt.datetime.fromisoformat(t).astimezone(dt.UTC) for t in first_instants
    ]


OUT_OF_RANGE = [
    # Stored once, these broke every resample, day scan and hourly request later.
    (
        "ns",
        [dt.datetime(2262, 3, 31, 23, tzinfo=dt.UTC), dt.datetime(2262, 4, 10, tzinfo=dt.UTC)],
        [1],
    ),
    ("ns", [dt.datetime(1677, 9, 22, tzinfo=dt.UTC), dt.datetime(1677, 10, 1, tzinfo=dt.UTC)], [0]),
    # Microseconds reach far past nanoseconds: 2300 is no int64 nanosecond at all.
    ("us", [dt.datetime(2024, 1, 2, tzinfo=dt.UTC), dt.datetime(2300, 1, 1, tzinfo=dt.UTC)], [1]),
    ("date", [dt.date(2024, 1, 2), dt.date(2300, 1, 1)], [1]),
    ("string", ["2024-01-02T00:00:00", "2300-01-01T00:00:00"], [1]),
    # In range as a wall time, but Niue (-11) puts the instant past the last day.
    ("naive", [dt.datetime(2024, 1, 2), dt.datetime(2262, 3, 31, 14)], [1]),
]


@pytest.mark.parametrize(("kind", "times", "bad"), OUT_OF_RANGE)
def test_times_outside_the_stored_range_name_their_rows(
    store: lb.BarStore, kind: str, times: list, bad: list[int]
) -> None:
    frame = small(times)
    if kind == "ns":
        frame = frame.with_columns(pl.col("datetime").dt.cast_time_unit("ns"))
    with pytest.raises(lb.SchemaError) as err:
        store.write("X", frame, timestep="1d", tz="Pacific/Niue" if kind == "naive" else "UTC")
    message = str(err.value)
    assert "'datetime' has times outside" in message and f"at rows {bad}" in message
    assert "1677-10-01 to 2262-03-31 UTC" in message
    assert store.symbols() == []


@pytest.mark.parametrize("zone", ["Mars/Base", "", "utc+1"])
def test_unknown_tz_is_an_invalid_request(store: lb.BarStore, zone: str) -> None:
    with pytest.raises(lb.InvalidRequest, match="tz"):
        store.write("X", small(minutes(2)), tz=zone)


def test_non_string_tz_is_an_invalid_request(store: lb.BarStore) -> None:
    with pytest.raises(lb.InvalidRequest, match="tz"):
        store.write("X", small(minutes(2)), tz=5)  # type: ignore[arg-type]


# -- string times -------------------------------------------------------------------------------
def test_naive_iso_strings_are_parsed_in_tz(store: lb.BarStore) -> None:
    bars = small(["2024-01-02 09:30:00", "2024-01-02 09:31:00"]).rename({"datetime": "time"})
    store.write("X", bars, tz=NY)
    got = store.scan("X").collect()["datetime"].to_list()
    assert got == [dt.datetime(2024, 1, 2, 9, m, tzinfo=ZoneInfo(NY)) for m in (30, 31)]


def test_iso_strings_with_offsets_need_no_tz(store: lb.BarStore) -> None:
    # Across the spring DST change: two offsets, two exact instants.
    text = ["2024-03-08T09:30:00-05:00", "2024-03-11T09:30:00-04:00"]
    store.write("X", small(text))
    got = store.scan("X").collect()["datetime"].to_list()
    assert [t.timestamp() for t in got] == [
        dt.datetime(2024, 3, 8, 14, 30, tzinfo=dt.UTC).timestamp(),
        dt.datetime(2024, 3, 11, 13, 30, tzinfo=dt.UTC).timestamp(),
    ]


def test_pandas_string_times(store: lb.BarStore) -> None:
    pdf = pd.DataFrame(
        {
            "Timestamp": ["2024-01-02 09:30:00", "2024-01-02 09:31:00"],
            "OPEN": [1.0, 2.0],
            "High": [1.0, 2.0],
            "low": [1.0, 2.0],
            "Close": [1.0, 2.0],
            "Volume": [3, 4],
        }
    )
    store.write("X", pdf, tz="UTC")
    out = store.scan("X").collect()
    assert out["datetime"].to_list() == [
        dt.datetime(2024, 1, 2, 9, m, tzinfo=ZoneInfo("UTC")) for m in (30, 31)
    ]
    assert out["volume"].to_list() == [3.0, 4.0]


def test_unparseable_strings_name_the_rows(store: lb.BarStore) -> None:
    text = ["2024-01-02 09:30:00", "soon", "2024-01-02 09:32:00", "later", "2024-01-02 09:34:00"]
    with pytest.raises(lb.SchemaError) as info:
        store.write("X", small(text), tz="UTC")
    message = str(info.value)
    assert "[1, 3]" in message
    assert "'soon'" in message
    assert "datetime" in message
    assert store.symbols() == []


def test_missing_times_name_the_rows(store: lb.BarStore) -> None:
    times = [dt.datetime(2024, 1, 2, 9, 30), None, dt.datetime(2024, 1, 2, 9, 32)]
    with pytest.raises(lb.SchemaError, match=r"\[1\]"):
        store.write("X", small(times), tz="UTC")


def test_numeric_time_column_is_a_schema_error(store: lb.BarStore) -> None:
    with pytest.raises(lb.SchemaError, match="timestamp"):
        store.write("X", small([1, 2, 3]).rename({"datetime": "timestamp"}), tz="UTC")


# -- missing and bad columns -----------------------------------------------------------------
@pytest.mark.parametrize("missing", ["open", "high", "low", "close"])
def test_missing_price_column_is_named(store: lb.BarStore, missing: str) -> None:
    with pytest.raises(lb.SchemaError, match=f"'{missing}'"):
        store.write("X", small(minutes(2)).drop(missing), tz="UTC")


def test_all_missing_price_columns_are_named(store: lb.BarStore) -> None:
    bars = small(minutes(2)).drop("open", "low")
    with pytest.raises(lb.SchemaError) as info:
        store.write("X", bars, tz="UTC")
    assert "'open'" in str(info.value)
    assert "'low'" in str(info.value)


def test_no_time_column_is_a_schema_error(store: lb.BarStore) -> None:
    bars = small(minutes(2)).rename({"datetime": "when"})
    with pytest.raises(lb.SchemaError, match="time column") as info:
        store.write("X", bars, tz="UTC")
    assert "datetime" in str(info.value)  # lists the accepted names


def test_index_and_column_both_named_datetime(store: lb.BarStore) -> None:
    idx = pd.date_range("2024-01-02", periods=2, freq="min", tz="UTC", name="datetime")
    pdf = pd.DataFrame(
        {"datetime": idx, **{c: [1.0, 2.0] for c in ("open", "high", "low", "close")}}
    )
    pdf.index = idx
    with pytest.raises(lb.SchemaError, match="datetime"):
        store.write("X", pdf)


def test_columns_equal_ignoring_case_are_rejected(store: lb.BarStore) -> None:
    bars = small(minutes(2)).with_columns(Close=pl.lit(1.0))
    with pytest.raises(lb.SchemaError, match="Close"):
        store.write("X", bars, tz="UTC")


@pytest.mark.parametrize(
    "values",
    [["a", "b"], [True, False], [dt.datetime(2024, 1, 1)] * 2],
    ids=["string", "bool", "datetime"],
)
def test_non_numeric_prices_are_schema_errors(store: lb.BarStore, values: list) -> None:
    with pytest.raises(lb.SchemaError, match="'high'"):
        store.write("X", small(minutes(2), high=values), tz="UTC")


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("column", ["open", "high", "low", "close", "volume"])
def test_bad_values_name_column_and_rows(store: lb.BarStore, column: str, bad) -> None:
    values = [1.0, bad, 3.0, bad]
    extra = {} if column == "volume" else {"volume": [1.0] * 4}
    bars = small(minutes(4), **{column: pl.Series(values, dtype=pl.Float64)}, **extra)
    with pytest.raises(lb.SchemaError) as info:
        store.write("X", bars, tz="UTC")
    assert f"'{column}'" in str(info.value)
    assert "[1, 3]" in str(info.value)
    assert store.symbols() == []


def test_pandas_nan_prices(store: lb.BarStore) -> None:
    idx = pd.date_range("2024-01-02", periods=3, freq="min", tz="UTC")
    pdf = pd.DataFrame({c: [1.0, 2.0, 3.0] for c in ("open", "high", "low", "close")}, index=idx)
    pdf.loc[idx[2], "low"] = np.nan
    with pytest.raises(lb.SchemaError, match=r"'low'.*\[2\]"):
        store.write("X", pdf)


def test_negative_volume_names_rows(store: lb.BarStore) -> None:
    bars = small(minutes(3), volume=[1.0, -2.0, 0.0])
    with pytest.raises(lb.SchemaError, match=r"'volume'.*\[1\]"):
        store.write("X", bars, tz="UTC")


def test_zero_volume_is_fine(store: lb.BarStore) -> None:
    store.write("X", small(minutes(2), volume=[0.0, 0.0]), tz="UTC")
    assert store.scan("X").collect()["volume"].to_list() == [0.0, 0.0]


def test_duplicate_timestamps_are_shown(store: lb.BarStore) -> None:
    times = minutes(5)
    times[2] = times[1]
    times[4] = times[3]
    with pytest.raises(lb.SchemaError, match=r"duplicate|share") as info:
        store.write("X", small(times), tz="UTC")
    message = str(info.value)
    assert "2024-01-02 09:31:00" in message
    assert "2024-01-02 09:33:00" in message
    assert "2024-01-02 09:30:00" not in message
    assert store.symbols() == []


def test_duplicate_instants_in_different_zones(store: lb.BarStore) -> None:
    """The same instant written twice (once as 09:30 NY, once as 14:30 UTC) is a duplicate."""
    ny = pd.Timestamp("2024-01-02 09:30", tz=NY)
    pdf = pd.DataFrame(
        {
            "datetime": [ny, ny + pd.Timedelta(minutes=1)],
            **{c: [1.0, 2.0] for c in ("open", "high", "low", "close")},
        }
    )
    store.write("X", pdf)  # fine
    both = pd.concat([pdf, pdf]).sort_values("datetime", kind="stable").reset_index(drop=True)
    with pytest.raises(lb.SchemaError, match="09:30"):
        store.write("Y", both)


@pytest.mark.parametrize("kind", ["polars", "pandas"])
def test_empty_frame_is_a_schema_error(store: lb.BarStore, frame: pl.DataFrame, kind: str) -> None:
    empty = frame.head(0)
    data = empty if kind == "polars" else empty.to_pandas().set_index("datetime")
    with pytest.raises(lb.SchemaError, match="no rows"):
        store.write("MES", data)
    assert store.symbols() == []


@pytest.mark.parametrize("data", [None, [1, 2, 3], {"open": [1.0]}, np.zeros((2, 5))])
def test_not_a_frame_is_a_schema_error(store: lb.BarStore, data: object) -> None:
    with pytest.raises(lb.SchemaError, match="DataFrame"):
        store.write("X", data, tz="UTC")


# -- ordering -------------------------------------------------------------------------------
def test_unsorted_input_is_sorted_with_a_warning(store: lb.BarStore, frame: pl.DataFrame) -> None:
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=7)
    assert not shuffled["datetime"].is_sorted()
    with pytest.warns(lb.UnsortedBarsWarning, match="sorted") as record:
        store.write("MES", shuffled)
    assert len(record) == 1
    assert store.scan("MES").collect().equals(frame)


def test_unsorted_warning_points_at_the_caller_of_write(tmp_path: Path) -> None:
    store = lb.BarStore(tmp_path)
    bars = small(minutes(3)[::-1])
    with pytest.warns(lb.UnsortedBarsWarning) as record:
        store.write("X", bars, tz="UTC")  # <- the warning should point here
    assert record[0].filename == HERE


def test_unsorted_warning_points_at_the_caller_of_from_frames() -> None:
    bars = small(minutes(3)[::-1])
    with pytest.warns(lb.UnsortedBarsWarning) as record:
        lb.BarStore.from_frames({"X": bars}, tz="UTC")
    assert record[0].filename == HERE


def test_unsorted_pandas_is_sorted_with_its_rows(store: lb.BarStore) -> None:
    idx = pd.DatetimeIndex(["2024-01-02 09:32", "2024-01-02 09:30", "2024-01-02 09:31"], tz="UTC")
    pdf = pd.DataFrame(
        {
            "open": [3.0, 1.0, 2.0],
            "high": [3.0, 1.0, 2.0],
            "low": [3.0, 1.0, 2.0],
            "close": [3.0, 1.0, 2.0],
            "volume": [30.0, 10.0, 20.0],
        },
        index=idx,
    )
    with pytest.warns(lb.UnsortedBarsWarning):
        store.write("X", pdf)
    out = store.scan("X").collect()
    assert [t.minute for t in out["datetime"].to_list()] == [30, 31, 32]
    # Every column moved with its row.
    assert out["close"].to_list() == [1.0, 2.0, 3.0]
    assert out["volume"].to_list() == [10.0, 20.0, 30.0]


def test_sorted_input_does_not_warn(store: lb.BarStore, frame: pl.DataFrame) -> None:
    # filterwarnings=error in pyproject turns any warning into a failure here.
    store.write("MES", frame)


def test_unsorted_duplicates_are_still_rejected(store: lb.BarStore) -> None:
    times = [
        dt.datetime(2024, 1, 2, 9, 31),
        dt.datetime(2024, 1, 2, 9, 30),
        dt.datetime(2024, 1, 2, 9, 31),
    ]
    with pytest.raises(lb.SchemaError, match="09:31"), pytest.warns(lb.UnsortedBarsWarning):
        store.write("X", small(times), tz="UTC")


# -- the caller's frames -----------------------------------------------------------------------
def test_write_does_not_change_the_callers_frames(store: lb.BarStore, frame: pl.DataFrame) -> None:
    pdf = frame.to_pandas().set_index("datetime").iloc[::-1]
    pdf_before = pdf.copy(deep=True)
    pl_before = frame.clone()
    with pytest.warns(lb.UnsortedBarsWarning):
        store.write("A", pdf)
    store.write("B", frame.rename({"close": "Close"}))
    pd.testing.assert_frame_equal(pdf, pdf_before)
    assert frame.equals(pl_before)


def test_editing_the_callers_pandas_frame_later_does_not_change_stored_bars(
    store: lb.BarStore, frame: pl.DataFrame
) -> None:
    pdf = frame.to_pandas().set_index("datetime")
    store.write("MES", pdf)
    pdf.iloc[0, pdf.columns.get_loc("close")] = -1.0
    pdf.loc[pdf.index[1], "high"] = 1e9
    out = store.scan("MES").collect()
    assert out["close"][0] == frame["close"][0]
    assert out["high"][1] == frame["high"][1]
    assert out.equals(frame)
