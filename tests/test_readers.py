"""CSV and parquet files of the common shapes, ingested with ``lb.ingest_into``.

Each file is written here as text (the vendor's own layout), and the expected bars are
built by hand from the same values.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import lazybars as lb

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def ingest(tmp_path: Path, name: str, text: str, **kw) -> lb.BarStore:
    path = tmp_path / name
    path.write_text(text)
    lb.ingest_into(tmp_path / "cat", path, **kw)
    return lb.BarStore(tmp_path / "cat")


def test_yahoo_daily_csv(tmp_path: Path) -> None:
    text = (
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700\n"
        "2024-01-03,184.22,185.88,183.43,184.25,183.55,58414500\n"
        "2024-01-04,182.15,183.09,180.88,181.91,181.22,71983600\n"
        "2024-01-05,181.99,182.76,180.17,181.18,180.50,62303300\n"
        "2024-01-08,182.09,185.60,181.50,185.56,184.86,59144500\n"
    )
    store = ingest(tmp_path, "AAPL.csv", text, tz="America/New_York")
    assert store.symbols() == ["AAPL"] and store.timesteps("AAPL") == ["1d"]
    got = store.scan("AAPL").collect()
    assert got.columns == ["datetime", "open", "high", "low", "close", "volume", "adj_close"]
    days = [2, 3, 4, 5, 8]
    assert got["datetime"].to_list() == [dt.datetime(2024, 1, d, tzinfo=NY) for d in days]
    assert got["close"].to_list() == [185.64, 184.25, 181.91, 181.18, 185.56]
    assert got["adj_close"].to_list() == [184.94, 183.55, 181.22, 180.50, 184.86]
    assert got["volume"].to_list() == [82488700.0, 58414500.0, 71983600.0, 62303300.0, 59144500.0]


def test_spreadsheet_csv_with_bom_and_windows_line_ends(tmp_path: Path) -> None:
    text = "\ufeffDate;Open;High;Low;Close\r\n2024-01-02;1,5;2;1;1,75\r\n2024-01-03;2;3;1;2\r\n"
    path = tmp_path / "X.csv"
    path.write_bytes(text.replace(",", ".").encode("utf-8"))
    lb.ingest_into(tmp_path / "cat", path, tz="Europe/Paris")
    got = lb.BarStore(tmp_path / "cat").scan("X").collect()
    assert got["close"].to_list() == [1.75, 2.0]
    assert got["datetime"].to_list() == [
        dt.datetime(2024, 1, d, tzinfo=ZoneInfo("Europe/Paris")) for d in (2, 3)
    ]


def test_naive_times_without_tz_say_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(lb.SchemaError, match=r"AAPL.csv .*naive timestamps; pass tz="):
        ingest(tmp_path, "AAPL.csv", "Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1.5\n")


EPOCHS = {
    "s": 1_704_205_800,
    "ms": 1_704_205_800_000,
    "us": 1_704_205_800_000_000,
    "ns": 1_704_205_800_000_000_000,
}


@pytest.mark.parametrize("unit", EPOCHS)
def test_alpaca_polygon_shape_with_epoch_times(tmp_path: Path, unit: str) -> None:
    step = EPOCHS[unit] // 1_704_205_800 * 60
    lines = ["t,o,h,l,c,v,vw,n"] + [
        f"{EPOCHS[unit] + i * step},{100 + i},{101 + i},{99 + i},{100.5 + i},"
        f"{1000 + i},{100.2 + i},{7 + i}"
        for i in range(5)
    ]
    store = ingest(tmp_path, "SPY.csv", "\n".join(lines) + "\n")
    got = store.scan("SPY").collect()
    assert store.timesteps("SPY") == ["1m"]
    assert got.columns == [
        "datetime",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "trade_count",
    ]
    start = dt.datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    assert got["datetime"].to_list() == [start + dt.timedelta(minutes=i) for i in range(5)]
    assert got["open"].to_list() == [100.0 + i for i in range(5)]
    assert got["trade_count"].to_list() == [7 + i for i in range(5)]


def test_iso_times_with_offsets_across_a_dst_change(tmp_path: Path) -> None:
    text = (
        "timestamp,open,high,low,close,volume\n"
        "2024-03-08T16:00:00-05:00,1,2,0.5,1.5,10\n"
        "2024-03-11T09:30:00-04:00,2,3,1.5,2.5,20\n"
    )
    got = ingest(tmp_path, "X.csv", text, timestep="1h").scan("X").collect()
    assert got["datetime"].to_list() == [
        dt.datetime(2024, 3, 8, 21, tzinfo=UTC),
        dt.datetime(2024, 3, 11, 13, 30, tzinfo=UTC),
    ]


def test_lumibot_style_csv_with_tz(tmp_path: Path) -> None:
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-04")
    naive = frame.with_columns(pl.col("datetime").dt.replace_time_zone(None))
    (tmp_path / "MES.csv").write_text(naive.write_csv())
    lb.ingest_into(tmp_path / "cat", tmp_path / "MES.csv", tz="America/New_York")
    assert lb.BarStore(tmp_path / "cat").scan("MES").collect().equals(frame)


def test_a_pandas_to_csv_round_trip_is_exact(tmp_path: Path) -> None:
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-09", extras=True)
    frame.to_pandas().set_index("datetime").to_csv(tmp_path / "MES.csv")
    lb.ingest_into(tmp_path / "cat", tmp_path / "MES.csv")
    got = lb.BarStore(tmp_path / "cat").scan("MES").collect()
    assert got.with_columns(pl.col("datetime").dt.convert_time_zone("America/New_York")).equals(
        frame
    )


def test_a_symbol_column_splits_the_file(tmp_path: Path) -> None:
    text = "ticker;window_start;open;high;low;close;volume\n" + "".join(
        f"{s};{1_704_205_800_000_000_000 + i * 60_000_000_000};"
        f"{p + i};{p + i + 1};{p + i - 1};{p + i};{i}\n"
        for i in range(4)
        for s, p in (("AAA", 10), ("BBB", 20))
    )
    store = ingest(tmp_path, "flat.csv", text)
    assert store.symbols() == ["AAA", "BBB"]
    assert store.scan("BBB").collect()["open"].to_list() == [20.0, 21.0, 22.0, 23.0]


def test_timestep_is_inferred_from_the_common_spacing(tmp_path: Path) -> None:
    times = [dt.datetime(2024, 1, 2, 9, 30) + dt.timedelta(minutes=5 * i) for i in range(20)]
    times = times[:7] + times[9:]  # a gap does not change the spacing
    lines = ["datetime,open,high,low,close"] + [f"{t.isoformat()},1,2,0.5,1.5" for t in times]
    store = ingest(tmp_path, "X.csv", "\n".join(lines) + "\n", tz="America/New_York")
    assert store.timesteps("X") == ["5m"]


def test_odd_spacing_needs_a_timestep(tmp_path: Path) -> None:
    lines = ["timestamp,open,high,low,close"] + [
        f"{1_704_205_800 + 90 * i},1,2,0.5,1.5" for i in range(5)
    ]
    with pytest.raises(lb.SchemaError, match=r"90 s apart.*pass timestep="):
        ingest(tmp_path, "X.csv", "\n".join(lines) + "\n")
    store = ingest(tmp_path, "X.csv", "\n".join(lines) + "\n", timestep="1m")
    assert store.timesteps("X") == ["1m"]


def test_bars_off_the_minute_grid_need_a_timestep(tmp_path: Path) -> None:
    seconds = [0, 60, 120, 210, 300, 360]  # one bar stamped half a minute late
    lines = ["timestamp,open,high,low,close"] + [
        f"{1_704_205_800 + s},1,2,0.5,1.5" for s in seconds
    ]
    with pytest.raises(lb.SchemaError, match=r"spacings of its bars are multiples of 30 s"):
        ingest(tmp_path, "X.csv", "\n".join(lines) + "\n")


def test_compressed_csv(tmp_path: Path) -> None:
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-04")
    with pa.CompressedOutputStream(str(tmp_path / "MES.csv.zst"), "zstd") as out:
        out.write(frame.write_csv().encode())
    lb.ingest_into(tmp_path / "cat", tmp_path / "MES.csv.zst")
    got = lb.BarStore(tmp_path / "cat").scan("MES").collect()
    assert got.with_columns(pl.col("datetime").dt.convert_time_zone("America/New_York")).equals(
        frame
    )


def test_big_csv_in_many_blocks_names_the_line(tmp_path: Path) -> None:
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-02-01", session="24h", gaps=0)
    text = frame.write_csv()
    lines = text.splitlines()
    line = 30_001  # a line number as an editor shows it (the header is line 1)
    lines[line - 1] = lines[line - 1].replace(lines[line - 1].split(",")[0], "not a time")
    (tmp_path / "MES.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        lb.SchemaError, match=rf"MES.csv \(MES\): .*cannot be parsed at lines \[{line}\]"
    ):
        lb.ingest_into(tmp_path / "cat", tmp_path / "MES.csv", buffer_rows=4000)
    lines[line - 1] = text.splitlines()[line - 1]
    (tmp_path / "MES.csv").write_text("\n".join(lines) + "\n")
    lb.ingest_into(tmp_path / "cat", tmp_path / "MES.csv", buffer_rows=4000)
    got = lb.BarStore(tmp_path / "cat").scan("MES").collect()
    assert got.with_columns(pl.col("datetime").dt.convert_time_zone("America/New_York")).equals(
        frame
    )


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "datetime,open,high,close\n2024-01-02T09:30:00Z,1,2,1.5\n",
            r"missing price column\(s\) \['low'\]",
        ),
        (
            "datetime,open,high,low,close\n2024-01-02T09:30:00Z,1,2,0.5,1.5\nyesterday,1,2,0.5,1.5\n",
            r"cannot be parsed at lines \[3\]",
        ),
        (
            "datetime,open,high,low,close\n2024-01-02T09:30:00Z,1,2,0.5,1.5\n2024-01-02T09:30:00Z,1,2,0.5,1.5\n",
            r"share a timestamp",
        ),
        (
            "datetime,open,high,low,close\n2024-01-02T09:30:00Z,1,2,0.5,\n",
            r"'close' has missing.* at lines \[2\]",
        ),
        ("open,high,low,close\n1,2,0.5,1.5\n", r"no time column"),
        ("", r"empty or has no header"),
        (
            "datetime,open,high,low,close\n2024-01-02T09:30:00Z,1,2,0.5,1.5\n2024-01-02T09:31:00Z,1,2,x,1.5\n",
            r"'low' has dtype String|cannot parse",
        ),
    ],
    ids=[
        "missing-column",
        "bad-time",
        "duplicates",
        "missing-price",
        "no-time",
        "empty",
        "text-price",
    ],
)
def test_bad_csv_names_file_and_fix_and_writes_nothing(
    tmp_path: Path, text: str, pattern: str
) -> None:
    root = tmp_path / "cat"
    lb.BarStore(root).write("BAD", lb.synth.minute_bars("BAD", "2024-01-02", "2024-01-03"))
    before = snapshot(root)
    (tmp_path / "BAD.csv").write_text(text)
    with pytest.raises(lb.LazyBarsError, match=pattern) as err:
        lb.ingest_into(root, tmp_path / "BAD.csv", timestep="1m")
    assert str(tmp_path / "BAD.csv") in str(err.value)
    assert snapshot(root) == before


# -- DataBento exports ----------------------------------------------------------------------
def test_databento_csv_export_with_fixed_point_prices(tmp_path: Path) -> None:
    text = (
        "ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume,symbol\n"
        + "".join(
            f"{1_704_205_800_000_000_000 + i * 60_000_000_000},33,1,42,"
            f"{4500_250000000 + i},{4501_000000000},{4499_000000000},{4500_500000000},{i},MESH4\n"
            for i in range(3)
        )
    )
    got = ingest(tmp_path, "glbx.ohlcv-1m.csv", text).scan("MESH4").collect()
    assert got.columns == ["datetime", "open", "high", "low", "close", "volume"]
    assert got["open"].to_list() == [4500.25, 4500.250000001, 4500.250000002]
    assert got["high"].to_list() == [4501.0] * 3


def test_databento_parquet_export(tmp_path: Path) -> None:
    index = pd.date_range("2024-01-02 14:30", periods=4, freq="1h", tz="UTC", name="ts_event")
    frame = pd.DataFrame(
        {
            "rtype": 34,
            "publisher_id": 1,
            "instrument_id": 42,
            "open": [1.25, 2.5, 3.75, 4.0],
            "high": 5.0,
            "low": 0.5,
            "close": 2.0,
            "volume": [1, 2, 3, 4],
            "symbol": ["MES.c.0", "MES.c.0", "MNQ.c.0", "MNQ.c.0"],
        },
        index=index,
    )
    frame.to_parquet(tmp_path / "glbx.parquet")
    summary = lb.ingest_into(tmp_path / "cat", tmp_path / "glbx.parquet")
    assert summary["timestep"].to_list() == ["1h", "1h"]
    store = lb.BarStore(tmp_path / "cat")
    got = store.scan("MNQ.c.0").collect()
    assert got["datetime"].to_list() == list(index[2:].to_pydatetime())
    assert got["open"].to_list() == [3.75, 4.0]
    assert got.columns == ["datetime", "open", "high", "low", "close", "volume"]


def test_databento_day_export_needs_tz_and_is_relabelled(tmp_path: Path) -> None:
    text = (
        "ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume,symbol\n"
        + "".join(
            f"2024-01-0{d}T00:00:00.000000000Z,35,1,42,1.0,2.0,0.5,1.5,{d},ESH4\n"
            for d in (2, 3, 4)
        )
    )
    with pytest.raises(lb.SchemaError, match="pass tz="):
        ingest(tmp_path, "d.csv", text)
    got = ingest(tmp_path, "d.csv", text, tz="America/Chicago").scan("ESH4").collect()
    chicago = ZoneInfo("America/Chicago")
    assert got["datetime"].to_list() == [dt.datetime(2024, 1, d, tzinfo=chicago) for d in (2, 3, 4)]


def test_float_epoch_times(tmp_path: Path) -> None:
    text = "timestamp,open,high,low,close\n" + "".join(
        f"{1_704_205_800 + 60 * i}.5,1,2,0.5,1.5\n" for i in range(3)
    )
    got = ingest(tmp_path, "X.csv", text).scan("X", timezone="UTC").collect()["datetime"]
    start = dt.datetime(2024, 1, 2, 14, 30, 0, 500_000, tzinfo=UTC)
    assert got.to_list() == [start + dt.timedelta(minutes=i) for i in range(3)]


@pytest.mark.parametrize(
    ("times", "lines", "shown"),
    [
        # Seconds in 2264: nanoseconds would wrap around to 1680.
        (["9300000000", "9300000060"], "[2, 3]", "9300000000"),
        (["-9300000060", "-9300000000"], "[2, 3]", "-9300000060"),
        (["9300000000.5", "9300000060.5"], "[2, 3]", "9300000000.5"),
        (["1704205800", "inf"], "[3]", "inf"),
        (["1704205800", "1e300"], "[3]", "1e+300"),
        # Past int64 altogether, and the last nanosecond int64 holds (2262-04-11).
        (["1704205800000000000", "18446744073709551615"], "[3]", "18446744073709551615"),
        (["1704205800000000000", "9223372036854775807"], "[3]", "9223372036854775807"),
    ],
)
def test_epoch_times_out_of_range_name_their_lines(
    tmp_path: Path, times: list[str], lines: str, shown: str
) -> None:
    text = "timestamp,open,high,low,close\n" + "".join(f"{t},1,2,0.5,1.5\n" for t in times)
    path = tmp_path / "X.csv"
    path.write_text(text)
    with pytest.raises(lb.SchemaError) as err:
        lb.ingest_into(tmp_path / "cat", path, timestep="1m")
    message = str(err.value)
    assert str(path) in message and "'timestamp'" in message
    assert f"lines {lines}" in message and shown in message
    assert "1677-10-01 to 2262-03-31" in message
    assert not (tmp_path / "cat" / "1m").exists()


@pytest.mark.parametrize("late", ["2300-01-02 14:30:00", "2262-04-12 00:00:00"])
def test_iso_times_past_nanoseconds_name_their_lines(tmp_path: Path, late: str) -> None:
    # polars alone would read 2300-01-02 as a date in 1715.
    text = f"datetime,open,high,low,close\n2024-01-02 14:30:00,1,2,0.5,1.5\n{late},1,2,0.5,1.5\n"
    path = tmp_path / "X.csv"
    path.write_text(text)
    with pytest.raises(lb.SchemaError, match=r"X.csv: .*'datetime' .*1677-10-01 to 2262-03-31"):
        lb.ingest_into(tmp_path / "cat", path, tz="UTC", timestep="1m")
    with pytest.raises(lb.SchemaError, match=r"at lines \[3\]"):
        lb.ingest_into(tmp_path / "cat", path, tz="UTC", timestep="1m")


def test_nan_epoch_times_name_their_lines(tmp_path: Path) -> None:
    text = "timestamp,open,high,low,close\n1704205800,1,2,0.5,1.5\nNaN,1,2,0.5,1.5\n"
    path = tmp_path / "X.csv"
    path.write_text(text)
    with pytest.raises(
        lb.SchemaError, match=r"'timestamp' has missing \(NaN\) times at lines \[3\]"
    ):
        lb.ingest_into(tmp_path / "cat", path, timestep="1m")


def test_vendor_day_bars_at_new_york_midnight_in_utc_take_the_zone_of_tz(tmp_path: Path) -> None:
    # Daily bars labelled at New York midnight in epoch milliseconds (05:00 UTC in winter).
    starts = [dt.datetime(2024, 1, d, tzinfo=NY) for d in (2, 3, 4)]
    text = "t,o,h,l,c\n" + "".join(f"{int(t.timestamp()) * 1000},1,2,0.5,1.5\n" for t in starts)
    store = ingest(tmp_path, "SPY.csv", text, tz="America/New_York", timestep="day")
    assert store.zone("SPY") == "America/New_York"
    src = lb.DataSource(store)
    src.set_datetime(dt.datetime(2024, 1, 3, 23, tzinfo=NY))  # 01-03 has not ended yet
    assert src.get_historical_prices("SPY", 5).pl["datetime"].to_list() == starts[:1]


SANTIAGO = ZoneInfo("America/Santiago")
# 2024-09-08 has no midnight in Santiago (00:00 -04 becomes 01:00 -03): it starts at 01:00.
SANTIAGO_DAYS = [
    dt.datetime(2024, 9, 7, tzinfo=SANTIAGO),
    dt.datetime(2024, 9, 8, 1, tzinfo=SANTIAGO),
    dt.datetime(2024, 9, 9, tzinfo=SANTIAGO),
]


def test_daily_csv_in_a_zone_whose_midnight_is_skipped(tmp_path: Path) -> None:
    text = "Date,Open,High,Low,Close\n" + "".join(
        f"2024-09-0{d},1.0,2.0,0.5,1.5\n" for d in (7, 8, 9)
    )
    store = ingest(tmp_path, "SQM.csv", text, tz="America/Santiago", timestep="day")
    assert store.scan("SQM").collect()["datetime"].to_list() == SANTIAGO_DAYS


def test_databento_day_export_in_a_zone_whose_midnight_is_skipped(tmp_path: Path) -> None:
    text = (
        "ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume,symbol\n"
        + "".join(
            f"2024-09-0{d}T00:00:00.000000000Z,35,1,42,1.0,2.0,0.5,1.5,{d},SQM\n" for d in (7, 8, 9)
        )
    )
    store = ingest(tmp_path, "d.csv", text, tz="America/Santiago")
    assert store.scan("SQM").collect()["datetime"].to_list() == SANTIAGO_DAYS


def test_a_non_ohlcv_databento_export_is_rejected(tmp_path: Path) -> None:
    text = (
        "ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume\n"
        "1,0,1,42,1,2,0.5,1.5,1\n"
    )
    with pytest.raises(lb.SchemaError, match="rtype 0, not OHLCV"):
        ingest(tmp_path, "trades.csv", text)


def test_plain_parquet_round_trip(tmp_path: Path) -> None:
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-09", extras=True)
    frame.write_parquet(tmp_path / "MES.parquet", row_group_size=500)
    lb.ingest_into(tmp_path / "cat", tmp_path / "MES.parquet", buffer_rows=1500)
    assert lb.BarStore(tmp_path / "cat").scan("MES").collect().equals(frame)


# -- spacings that are no lazybars timestep -------------------------------------------------
@pytest.mark.parametrize(
    ("dates", "apart"),
    [
        (pd.date_range("2024-01-01", periods=8, freq="W-MON"), "7 days"),  # yahoo 1wk
        (pd.date_range("2024-01-01", periods=6, freq="MS"), "29 days"),  # yahoo 1mo
    ],
)
def test_weekly_and_monthly_bars_are_refused_not_stored_as_days(
    tmp_path: Path, dates: pd.DatetimeIndex, apart: str
) -> None:
    text = "Date,Open,High,Low,Close,Adj Close,Volume\n" + "".join(
        f"{d:%Y-%m-%d},10,12,9,11,11,1000\n" for d in dates
    )
    with pytest.raises(lb.SchemaError, match=rf"SPY\.csv: its bars are {apart} apart.*timestep="):
        ingest(tmp_path, "SPY.csv", text, tz="America/New_York")
    assert not (tmp_path / "cat" / "1d").exists()
    # Told their size, the caller owns it.
    store = ingest(tmp_path, "SPY.csv", text, tz="America/New_York", timestep="1d")
    assert store.timesteps("SPY") == ["1d"]


def test_day_bars_across_a_dst_change_are_days(tmp_path: Path) -> None:
    # Every day of March 2024 in New York: one day is 23 hours long.
    text = "date,open,high,low,close\n" + "".join(
        f"2024-03-{d:02},1,2,0.5,1.5\n" for d in range(1, 32)
    )
    assert ingest(tmp_path, "BTC.csv", text, tz="America/New_York").timesteps("BTC") == ["1d"]


def test_local_4h_bars_across_a_dst_change_are_4h(tmp_path: Path) -> None:
    # 00:00, 04:00, ... New York time: the bar of 00:00 on March 10 lasts 3 hours.
    starts = pd.date_range("2024-03-08", "2024-03-12", freq="4h")
    text = "datetime,open,high,low,close\n" + "".join(f"{t},1,2,0.5,1.5\n" for t in starts)
    assert ingest(tmp_path, "X.csv", text, tz="America/New_York").timesteps("X") == ["4h"]


# -- symbols --------------------------------------------------------------------------------
def test_symbols_keep_the_whole_file_name(tmp_path: Path) -> None:
    frame = lb.synth.minute_bars("X", "2024-01-02", "2024-01-03")
    for name in ("BRK.A.csv", "BRK.B.csv", "MES.c.0.parquet", "ES.FUT.csv.zst", "6E.v.1.CSV.GZ"):
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        if name.endswith(".parquet"):
            frame.write_parquet(path)
            continue
        codec = {"zst": "zstd", "GZ": "gzip"}.get(name.rpartition(".")[2])
        if codec is None:
            frame.write_csv(path)
            continue
        with pa.CompressedOutputStream(str(path), codec) as out:
            out.write(frame.write_csv().encode())
    summary = lb.ingest_into(tmp_path / "cat", tmp_path / "in")
    assert summary["symbol"].to_list() == ["6E.v.1", "BRK.A", "BRK.B", "ES.FUT", "MES.c.0"]
    store = lb.BarStore(tmp_path / "cat")
    assert all(store.scan(s).collect().equals(frame) for s in store.symbols())


@pytest.mark.parametrize("empty", ["", " "])
def test_rows_without_a_symbol_are_refused_naming_them(tmp_path: Path, empty: str) -> None:
    text = "ticker,timestamp,open,high,low,close\n" + "".join(
        f"{s},{1_704_205_800 + 60 * i},1,2,0.5,1.5\n"
        for i, s in enumerate(["A", "A", empty, "A", empty])
    )
    with pytest.raises(lb.SchemaError, match=r"2 rows have no symbol \(lines \[4, 6\]\)"):
        ingest(tmp_path, "flat.csv", text)
    assert not (tmp_path / "cat" / "1m").exists()


def test_null_symbols_in_parquet_are_refused(tmp_path: Path) -> None:
    frame = lb.synth.minute_bars("X", "2024-01-02", "2024-01-03").head(4)
    frame = frame.with_columns(symbol=pl.Series(["A", None, "A", "A"]))
    frame.write_parquet(tmp_path / "flat.parquet")
    with pytest.raises(lb.SchemaError, match=r"1 rows have no symbol \(rows \[1\]\)"):
        lb.ingest_into(tmp_path / "cat", tmp_path / "flat.parquet")


@pytest.mark.parametrize(
    ("first", "second"),
    [("ticker", "symbol"), ("t", "timestamp"), ("v", "volume"), ("Adj Close", "adj_close")],
)
def test_clashing_aliases_are_refused(tmp_path: Path, first: str, second: str) -> None:
    header = list(dict.fromkeys(["timestamp", "open", "high", "low", "close", first, second]))
    values = ["1704205800", "1", "2", "0.5", "1.5", "1", "1"][: len(header)]
    text = ",".join(header) + "\n" + ",".join(values)
    with pytest.raises(lb.SchemaError, match=r"columns '.*' and '.*' both mean .*drop one of them"):
        ingest(tmp_path, "X.csv", text + "\n")


def test_databento_export_without_symbols_splits_instruments(tmp_path: Path) -> None:
    index = pd.date_range("2024-01-02 14:30", periods=3, freq="1min", tz="UTC", name="ts_event")
    es = pd.DataFrame({"instrument_id": 1111, "open": [4700.0, 4701.0, 4702.0]}, index=index)
    nq = pd.DataFrame({"instrument_id": 2222, "open": [16800.0, 16801.0, 16802.0]}, index=index)
    frame = pd.concat([es, nq]).sort_index(kind="stable")  # interleaved, as DataBento writes
    frame = frame.assign(rtype=33, publisher_id=1, high=frame["open"] + 1, low=frame["open"] - 1)
    frame = frame.assign(close=frame["open"], volume=5)
    frame.to_parquet(tmp_path / "glbx.ohlcv-1m.parquet")
    summary = lb.ingest_into(tmp_path / "cat", tmp_path / "glbx.ohlcv-1m.parquet")
    assert summary["symbol"].to_list() == ["1111", "2222"]
    store = lb.BarStore(tmp_path / "cat")
    assert store.scan("1111").collect()["open"].to_list() == [4700.0, 4701.0, 4702.0]
    assert store.scan("2222").collect()["open"].to_list() == [16800.0, 16801.0, 16802.0]
    # An export of one instrument takes the file's name, as a plain file does.
    es.assign(rtype=33, publisher_id=1, high=1e4, low=1.0, close=4700.0, volume=5).to_parquet(
        tmp_path / "ES.parquet"
    )
    summary = lb.ingest_into(tmp_path / "cat2", tmp_path / "ES.parquet")
    assert summary["symbol"].to_list() == ["ES"]


def test_databento_csv_export_without_symbols_splits_instruments(tmp_path: Path) -> None:
    text = "ts_event,rtype,publisher_id,instrument_id,open,high,low,close,volume\n" + "".join(
        f"{1_704_205_800_000_000_000 + i * 60_000_000_000},33,1,{iid},"
        f"{price + i}000000000,{price + 9}000000000,{price - 9}000000000,{price}000000000,1\n"
        for i in range(3)
        for iid, price in ((1111, 4700), (2222, 16800))
    )
    store = ingest(tmp_path, "glbx.csv", text)
    assert store.symbols() == ["1111", "2222"]
    assert store.scan("2222").collect()["open"].to_list() == [16800.0, 16801.0, 16802.0]
