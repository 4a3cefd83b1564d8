"""BarStore: the directory catalog, the same catalog on S3 (the test server), the in-memory
store; symbols, safety, atomic writes, damaged files."""

from __future__ import annotations

import datetime as dt
import io
import os
import pickle
from pathlib import Path

import polars as pl
import pytest
from catalogs import Catalog

import lazybars as lb
from lazybars import Timestep
from lazybars._backend import manifest_metadata
from lazybars.ingest import write_bars
from lazybars.reference import PandasDataSource

NY = "America/New_York"


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes), hidden ones included."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def without_locks(files: dict[str, str]) -> dict[str, str]:
    """A catalog's files but the writers' lock files."""
    return {name: digest for name, digest in files.items() if not name.endswith(".parquet.lock")}


def epoch_ns(value: dt.datetime) -> int:
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


@pytest.fixture(scope="module")
def minute() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-04", gaps=0.01)


@pytest.fixture(scope="module")
def daily() -> pl.DataFrame:
    return lb.synth.daily_bars("MES", "2023-06-01", "2024-01-02")


@pytest.fixture(params=["disk", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> lb.BarStore:
    if request.param == "disk":
        return lb.BarStore(tmp_path / "catalog")
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        return lb.BarStore(f"s3://{server.bucket()}/catalog", storage_options=server.options())
    return lb.BarStore.from_frames({})


# -- construction ---------------------------------------------------------------------------
def test_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "catalog"
    assert not root.exists()
    store = lb.BarStore(root)
    assert root.is_dir()
    assert store.symbols() == []


def test_root_as_str_and_existing_directory(tmp_path: Path, minute: pl.DataFrame) -> None:
    lb.BarStore(str(tmp_path)).write("MES", minute)
    again = lb.BarStore(str(tmp_path))
    assert again.symbols() == ["MES"]
    assert again.scan("MES").collect().equals(minute)


def test_catalog_layout_and_reopen(
    tmp_path: Path, minute: pl.DataFrame, daily: pl.DataFrame
) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", minute, timestep="minute")
    store.write("MES", daily, timestep="day")
    # The layout documented in lazybars/store.py: root/<timestep>/<symbol>.parquet, and
    # a hidden lock file beside each.
    assert sorted(tree(tmp_path)) == [
        "1d/.MES.parquet.lock",
        "1d/MES.parquet",
        "1m/.MES.parquet.lock",
        "1m/MES.parquet",
    ]
    reopened = lb.BarStore(tmp_path)
    assert reopened.timesteps("MES") == ["1m", "1d"]
    assert reopened.scan("MES").collect().equals(minute)
    assert reopened.scan("MES", "day").collect().equals(daily)


def test_a_relative_root_is_resolved_when_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minute: pl.DataFrame
) -> None:
    """A relative root is the directory it names in the working directory at open: scans
    and DataSources work, and a later change of directory does not move the catalog."""
    monkeypatch.chdir(tmp_path)
    store = lb.BarStore("data/bars")
    store.write("MES", minute)
    assert (tmp_path / "data" / "bars" / "1m" / "MES.parquet").is_file()
    monkeypatch.chdir(tmp_path.parent)
    assert store.scan("MES").collect().equals(minute)
    src = lb.DataSource(store, timezone=NY)
    src.set_datetime(minute["datetime"][-1] + dt.timedelta(minutes=1))
    assert src.get_historical_prices("MES", 10).pl.equals(
        minute.tail(10).with_columns(pl.col("datetime").dt.convert_time_zone(NY))
    )
    assert str(tmp_path / "data" / "bars") in repr(store)


def test_from_frames_touches_no_disk(tmp_path: Path, monkeypatch, minute: pl.DataFrame) -> None:
    monkeypatch.chdir(tmp_path)
    store = lb.BarStore.from_frames({"MES": minute, "MNQ": minute}, timestep="minute")
    store.write("MYM", minute)
    assert store.symbols() == ["MES", "MNQ", "MYM"]
    assert list(tmp_path.iterdir()) == []


def test_from_frames_behaves_like_the_directory_store(
    tmp_path: Path, minute: pl.DataFrame, daily: pl.DataFrame
) -> None:
    naive = minute.with_columns(pl.col("datetime").dt.replace_time_zone(None))
    memory = lb.BarStore.from_frames({"MES": naive, "MNQ": naive}, timestep="1m", tz=NY)
    memory.write("MES", daily, timestep="day")
    disk = lb.BarStore(tmp_path)
    for symbol in ("MES", "MNQ"):
        disk.write(symbol, naive, timestep="1m", tz=NY)
    disk.write("MES", daily, timestep="day")

    assert memory.symbols() == disk.symbols() == ["MES", "MNQ"]
    assert memory.symbols(timestep="day") == disk.symbols(timestep="day") == ["MES"]
    assert memory.timesteps("MES") == disk.timesteps("MES") == ["1m", "1d"]
    for symbol in ("MES", "MNQ"):
        assert memory.scan(symbol).collect().equals(disk.scan(symbol).collect())
        assert memory.scan(symbol).collect().equals(minute)
    assert memory.scan("MES", "day").collect().equals(disk.scan("MES", "day").collect())
    both_memory = memory.scan(["MES", "MNQ"]).between("2024-01-03", "2024-01-04").collect()
    both_disk = disk.scan(["MES", "MNQ"]).between("2024-01-03", "2024-01-04").collect()
    assert both_memory.equals(both_disk)
    one_minute = Timestep.parse("1m")
    assert memory._bounds("MES", one_minute) == disk._bounds("MES", one_minute)
    with pytest.raises(lb.UnknownAsset):
        memory.scan("MYM")
    with pytest.raises(lb.UnknownAsset):
        disk.scan("MYM")


def test_from_frames_validates_like_write(minute: pl.DataFrame) -> None:
    with pytest.raises(lb.SchemaError, match="'close'"):
        lb.BarStore.from_frames({"MES": minute.drop("close")})
    with pytest.raises(lb.InvalidRequest):
        lb.BarStore.from_frames({"../MES": minute})
    with pytest.raises(lb.InvalidRequest):
        lb.BarStore.from_frames({"MES": minute}, timestep="fortnight")


def test_repr_names_where_and_how_many(tmp_path: Path, minute: pl.DataFrame) -> None:
    disk = lb.BarStore(tmp_path)
    disk.write("MES", minute)
    disk.write("MNQ", minute)
    assert str(tmp_path) in repr(disk)
    assert "2" in repr(disk)
    memory = lb.BarStore.from_frames({"MES": minute})
    assert "memory" in repr(memory)


# -- catalog queries --------------------------------------------------------------------------
def test_symbols_and_timesteps(
    store: lb.BarStore, minute: pl.DataFrame, daily: pl.DataFrame
) -> None:
    hourly = lb.synth.hourly_bars("MNQ", "2024-01-02", "2024-01-10")
    five = minute.filter(pl.col("datetime").dt.minute() % 5 == 0)
    store.write("MNQ", hourly, timestep="1h")
    store.write("MES", daily, timestep="day")
    store.write("MES", minute, timestep="1m")
    store.write("MES", hourly, timestep="hour")
    store.write("MES", five, timestep="5 minutes")
    store.write("ES=F", daily, timestep="1d")
    assert store.symbols() == ["ES=F", "MES", "MNQ"]
    assert store.symbols(timestep="day") == ["ES=F", "MES"]
    assert store.symbols(timestep="60m") == ["MES", "MNQ"]
    assert store.symbols(timestep="5m") == ["MES"]
    assert store.symbols(timestep="4h") == []
    # Finest first.
    assert store.timesteps("MES") == ["1m", "5m", "1h", "1d"]
    assert store.timesteps("MNQ") == ["1h"]
    # None means the finest stored timestep.
    assert store.scan("MES").collect().equals(minute)
    assert store.scan("MES").bars().timestep == "1m"
    assert store.scan("MNQ").bars().timestep == "1h"
    # A stored coarser timestep is read as stored, not aggregated.
    assert store.scan("MES", "day").collect().equals(daily)
    assert store.scan("MES", "5m").collect().equals(five)


def test_overwrite_replaces(store: lb.BarStore, minute: pl.DataFrame) -> None:
    store.write("MES", minute)
    store.write("MES", minute.tail(10))
    assert store.scan("MES").collect().equals(minute.tail(10))
    assert store.symbols() == ["MES"]


def test_unknown_symbol(store: lb.BarStore, minute: pl.DataFrame) -> None:
    store.write("MES", minute)
    for action in (
        lambda: store.scan("ZZZ"),
        lambda: store.scan(["MES", "ZZZ"]),
        lambda: store.timesteps("ZZZ"),
        lambda: store.scan("mes"),  # symbols are case-sensitive
    ):
        with pytest.raises(lb.UnknownAsset) as info:
            action()
        assert "MES" in str(info.value)
    with pytest.raises(lb.UnknownAsset, match="ZZZ"):
        store.scan("ZZZ")


def test_unknown_symbol_in_an_empty_store(store: lb.BarStore) -> None:
    with pytest.raises(lb.UnknownAsset, match="MES"):
        store.scan("MES")


def test_finer_than_stored_is_an_invalid_request(store: lb.BarStore, daily: pl.DataFrame) -> None:
    store.write("MES", daily, timestep="day")
    with pytest.raises(lb.InvalidRequest, match="1d"):
        store.scan("MES", "1h")


def test_scan_needs_symbols_and_a_known_zone(store: lb.BarStore, minute: pl.DataFrame) -> None:
    store.write("MES", minute)
    with pytest.raises(lb.InvalidRequest):
        store.scan([])
    with pytest.raises(lb.InvalidRequest, match="Mars/Base"):
        store.scan("MES", timezone="Mars/Base")


def test_scan_of_symbols_at_different_timesteps(
    store: lb.BarStore, minute: pl.DataFrame, daily: pl.DataFrame
) -> None:
    store.write("MES", minute)
    store.write("MNQ", daily, timestep="day")
    # One long-format plan needs one stored timestep; the message says what to do instead.
    for timestep in (None, "day"):
        with pytest.raises(lb.InvalidRequest, match="scan them one by one"):
            store.scan(["MES", "MNQ"], timestep)
    daily_mes = store.scan("MES", "day").collect()
    assert daily_mes.columns == ["datetime", "open", "high", "low", "close", "volume"]
    assert store.scan("MNQ", "day").collect().height == daily.height


def test_a_store_pickles(store: lb.BarStore, minute: pl.DataFrame) -> None:
    """Workers of a sweep get the store pickled: the copy reads the same bars."""
    store.write("MES", minute)
    again = pickle.loads(pickle.dumps(store))
    assert again.scan("MES").collect().equals(minute)


def test_bounds_are_first_and_last_start(store: lb.BarStore, minute: pl.DataFrame) -> None:
    store.write("MES", minute)
    times = minute["datetime"].to_list()
    assert store._bounds("MES", Timestep.parse("1m")) == (epoch_ns(times[0]), epoch_ns(times[-1]))
    # The public form takes write's spellings and answers datetimes (UTC).
    for spelling in ("minute", "1min", "1m", Timestep.parse("1m")):
        first, last = store.bounds("MES", spelling)
        assert (first, last) == (times[0], times[-1])
        assert isinstance(first, dt.datetime) and first.utcoffset() == dt.timedelta(0)
    with pytest.raises(lb.UnknownAsset, match=r"MES is not stored at 1h.*\['1m'\]"):
        store.bounds("MES", "hour")


def test_bounds_across_row_groups(catalog: Catalog) -> None:
    """A file with several row groups: bounds are the first and last start overall."""
    big = lb.synth.minute_bars("MES", "2024-01-02", "2024-04-02", session="24h", gaps=0)
    assert big.height > 2 * 32_768
    store = catalog.open()
    store.write("MES", big)
    times = big["datetime"].to_list()
    assert store._bounds("MES", Timestep.parse("1m")) == (epoch_ns(times[0]), epoch_ns(times[-1]))


# -- the zone bars were written in ---------------------------------------------------------
def test_the_written_zone_is_kept(store: lb.BarStore, daily: pl.DataFrame) -> None:
    utc = daily.with_columns(pl.col("datetime").dt.convert_time_zone("UTC"))
    store.write("UTC", utc, timestep="day")
    store.write("NY", daily, timestep="day")
    store.write("NY", lb.synth.minute_bars("NY", "2024-01-02", "2024-01-03", tz="UTC"))
    assert store.zone("UTC") == store.zone("UTC", "day") == "UTC"
    assert (store.zone("NY", "1d"), store.zone("NY"), store.zone("NY", "1h")) == (NY, "UTC", "UTC")
    # Appended bars take the stored zone, whatever zone they come in.
    store.write("NY", daily.tail(5).with_columns(pl.col("datetime").dt.convert_time_zone("UTC")))
    assert store.zone("NY", "day") == NY
    with pytest.raises(lb.UnknownAsset):
        store.zone("XYZ")


def test_utc_candles_are_not_seen_before_their_utc_day_ends(store: lb.BarStore) -> None:
    """UTC daily candles read in New York: the 2024-01-03 candle closes at 2024-01-04 00:00
    UTC, so at 2024-01-03 06:00 UTC the last candle seen is 2024-01-02's, on every backend,
    through the DataSource, the pandas reference and Query.as_of."""
    candles = lb.synth.daily_bars("BTC", "2024-01-01", "2024-01-09", tz="UTC")
    store.write("BTC", candles, timestep="day")
    utc = dt.UTC
    for at, last in (
        (dt.datetime(2024, 1, 3, 6, tzinfo=utc), dt.datetime(2024, 1, 2, tzinfo=utc)),
        (
            dt.datetime(2024, 1, 4, tzinfo=utc) - dt.timedelta.resolution,
            dt.datetime(2024, 1, 2, tzinfo=utc),
        ),
        (dt.datetime(2024, 1, 4, tzinfo=utc), dt.datetime(2024, 1, 3, tzinfo=utc)),
    ):
        for source in (lb.DataSource(store), PandasDataSource(store)):
            source.set_datetime(at)
            assert source.get_historical_prices("BTC", 3).df.index[-1] == last, source
            assert (
                source.get_last_price("BTC")
                == candles.filter(pl.col("datetime") == last)["close"].item()
            )
        shown = store.scan("BTC").as_of(at).tail(1).collect()["datetime"]
        assert shown.to_list() == [last]


def test_a_file_with_bars_past_the_stored_range_is_refused(catalog: Catalog) -> None:
    # Written before lazybars refused them at ingest: 2262-04-10 bars, whose day ends and
    # buckets are no int64 nanoseconds, are named, not a pandas crash.
    hours = pl.datetime_range(
        dt.datetime(2262, 4, 9), dt.datetime(2262, 4, 10), "1h", time_unit="ns", eager=True
    )
    bars = pl.DataFrame(
        {"datetime": hours.dt.replace_time_zone("UTC"), "open": 1.0, "high": 1.0, "low": 1.0}
    ).with_columns(close=pl.lit(1.0), volume=pl.lit(0.0))
    when = bars["datetime"].dt.epoch("ns")
    buffer = io.BytesIO()
    write_bars(bars, buffer, manifest_metadata(bars.height, when[0], when[-1]))
    catalog.put("1h/FAR.parquet", buffer.getvalue())
    store = catalog.open()
    source = lb.DataSource(store)
    source.set_datetime(dt.datetime(2262, 4, 10, 12, tzinfo=dt.UTC))
    for ask in (
        lambda: store.scan("FAR", "1d").collect(),
        lambda: store.scan("FAR").resample("4h").collect(),
        lambda: source.get_historical_prices("FAR", 5),
    ):
        with pytest.raises(lb.SchemaError, match=r"FAR.parquet holds bars outside .*2262-03-31"):
            ask()


# -- symbol names ---------------------------------------------------------------------------
BAD_SYMBOLS = [
    "",
    ".",
    "..",
    "../x",
    "../../x",
    "a/b",
    "a\\b",
    "/abs",
    "a\x00b",
    " padded ",
    " lead",
    "trail ",
    ".hidden",
    "tab\there",
    "new\nline",
    "x" * 129,
]


@pytest.mark.parametrize("symbol", BAD_SYMBOLS)
def test_unsafe_symbols_are_rejected_and_write_nothing(
    catalog: Catalog, symbol: str, minute: pl.DataFrame
) -> None:
    store = catalog.open()
    store.write("MES", minute)
    before = catalog.tree()
    with pytest.raises(lb.InvalidRequest) as info:
        store.write(symbol, minute)
    assert repr(symbol) in str(info.value)
    with pytest.raises(lb.InvalidRequest):
        store.scan(symbol)
    with pytest.raises(lb.InvalidRequest):
        store.timesteps(symbol)
    with pytest.raises(lb.InvalidRequest):
        lb.BarStore.from_frames({symbol: minute})
    assert catalog.tree() == before
    assert store.symbols() == ["MES"]
    assert not Path("/abs.parquet").exists()
    assert not Path("/abs").exists()


@pytest.mark.parametrize("symbol", [None, 5, b"MES", ("MES",)])
def test_non_string_symbols_are_rejected(store: lb.BarStore, symbol: object, minute) -> None:
    with pytest.raises(lb.InvalidRequest):
        store.write(symbol, minute)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "symbol", ["BRK.B", "ES=F", "Ä€", "6E", "EUR-USD", "a b", "x" * 128, "#?%", "a*[b]", "c%20d"]
)
def test_unusual_but_safe_symbols_round_trip(store: lb.BarStore, symbol: str, minute) -> None:
    store.write(symbol, minute)
    assert store.symbols() == [symbol]
    assert store.timesteps(symbol) == ["1m"]
    assert store.scan(symbol).collect().equals(minute)
    assert store.scan(symbol).bars().symbol == symbol


@pytest.mark.parametrize("symbol", ["BRK.B", "ES=F", "Ä€"])
def test_safe_symbols_stay_inside_the_root(tmp_path: Path, symbol: str, minute) -> None:
    root = tmp_path / "catalog"
    lb.BarStore(root).write(symbol, minute)
    files = tree(tmp_path)
    assert sorted(files) == [f"catalog/1m/.{symbol}.parquet.lock", f"catalog/1m/{symbol}.parquet"]
    assert lb.BarStore(root).symbols() == [symbol]


# -- what is listed ---------------------------------------------------------------------------
def test_hidden_and_foreign_files_are_not_symbols(catalog: Catalog, minute: pl.DataFrame) -> None:
    store = catalog.open()
    store.write("MES", minute)
    good = catalog.get("1m/MES.parquet")
    # Leftovers of a crash mid-write, and other clutter.
    clutter = {
        "1m/.MNQ.abc123.tmp": good[:100],
        "1m/.MYM.parquet": good,
        "1m/notes.txt": b"hello",
        "1m/MES.parquet.bak": good,
        "1m/.parquet": good,
        ".1m/HID.parquet": good,
        "junk/JNK.parquet": good,
        "60m/SIX.parquet": good,  # not the canonical name of a timestep
        "README.parquet": good,
        "1m/deeper/DEEP.parquet": good,
    }
    for name, data in clutter.items():
        catalog.put(name, data)
    assert store.symbols() == ["MES"]
    assert store.timesteps("MES") == ["1m"]
    assert store.info()["symbol"].to_list() == ["MES"]
    for name in ("MNQ", "MYM", "HID", "JNK", "SIX", "README", "DEEP"):
        with pytest.raises(lb.UnknownAsset):
            store.scan(name)


# -- atomic writes ----------------------------------------------------------------------------
def _failing_write_parquet(self: pl.DataFrame, file, *args, **kwargs) -> None:
    """Write a few bytes to the target, as a real write would before failing, then fail."""
    if hasattr(file, "write"):
        file.write(b"PAR1 partial")
    else:
        Path(file).write_bytes(b"PAR1 partial")
    msg = "disk full"
    raise OSError(msg)


def test_failed_write_keeps_the_previous_bars(catalog: Catalog, monkeypatch, minute) -> None:
    store = catalog.open()
    store.write("MES", minute)
    before = catalog.tree()
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write_parquet)
    with pytest.raises(OSError, match="disk full"):
        store.write("MES", minute.tail(5))
    with pytest.raises(OSError, match="disk full"):
        store.write("NEW", minute.tail(5))
    monkeypatch.undo()
    # Unchanged bytes, no temporary file left (the writer's lock file may stay, empty and
    # hidden), the new symbol not listed.
    assert without_locks(catalog.tree()) == without_locks(before)
    assert store.symbols() == ["MES"]
    assert store.scan("MES").collect().equals(minute)
    assert catalog.open().scan("MES").collect().equals(minute)
    with pytest.raises(lb.UnknownAsset):
        store.scan("NEW")


def test_crash_before_the_rename_keeps_the_previous_bars(
    tmp_path: Path, monkeypatch, minute
) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", minute)
    before = tree(tmp_path)

    def no_rename(src, dst) -> None:
        msg = "power cut"
        raise OSError(msg)

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="power cut"):
        store.write("MES", minute.tail(5))
    monkeypatch.undo()
    assert tree(tmp_path) == before
    assert store.scan("MES").collect().equals(minute)


def test_keyboard_interrupt_mid_write_leaves_no_temporary_file(
    catalog: Catalog, monkeypatch, minute
) -> None:
    store = catalog.open()
    store.write("MES", minute)
    before = catalog.tree()

    def interrupted(self, file, *args, **kwargs) -> None:
        file.write(b"PAR1")
        raise KeyboardInterrupt

    monkeypatch.setattr(pl.DataFrame, "write_parquet", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write("MES", minute.head(3))
    monkeypatch.undo()
    assert catalog.tree() == before


def test_schema_error_keeps_the_previous_bars(store: lb.BarStore, minute: pl.DataFrame) -> None:
    store.write("MES", minute)
    bad_versions = [
        minute.drop("close"),
        minute.with_columns(pl.col("datetime").dt.replace_time_zone(None)),
        pl.concat([minute, minute.tail(1)]),
        minute.with_columns(pl.lit(None, dtype=pl.Float64).alias("open")),
        minute.head(0),
    ]
    for bad in bad_versions:
        with pytest.raises(lb.SchemaError):
            store.write("MES", bad)
    assert store.scan("MES").collect().equals(minute)
    assert store.symbols() == ["MES"]


def test_schema_error_writes_no_file(catalog: Catalog, minute: pl.DataFrame) -> None:
    store = catalog.open()
    store.write("MES", minute)
    before = catalog.tree()
    with pytest.raises(lb.SchemaError):
        store.write("MES", minute.drop("high"))
    with pytest.raises(lb.SchemaError):
        store.write("NEW", minute.drop("high"))
    with pytest.raises(lb.SchemaError):  # an append whose overlap differs
        store.write("MES", minute.with_columns(pl.col("close") + 1), mode="append")
    assert catalog.tree() == before


def test_interrupted_write_is_invisible_to_a_second_store(tmp_path: Path, minute) -> None:
    """A temp file left by a crashed process is neither a symbol nor a timestep folder."""
    store = lb.BarStore(tmp_path)
    store.write("MES", minute)
    (tmp_path / "1h").mkdir()
    (tmp_path / "1h" / ".MES.x1y2.tmp").write_bytes(b"PAR1 half written")
    assert lb.BarStore(tmp_path).symbols() == ["MES"]
    assert lb.BarStore(tmp_path).timesteps("MES") == ["1m"]
    assert lb.BarStore(tmp_path).symbols(timestep="1h") == []


# -- corrupt files ------------------------------------------------------------------------------
def _corrupt_variants(good: bytes) -> dict[str, bytes]:
    return {
        "garbage": b"this is not parquet at all",
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "magic-only": b"PAR1",
    }


@pytest.mark.parametrize("variant", ["garbage", "truncated", "empty", "magic-only"])
def test_corrupt_file_bounds_name_the_file(catalog: Catalog, minute, variant: str) -> None:
    store = catalog.open()
    store.write("MES", minute)
    catalog.put("1m/BAD.parquet", _corrupt_variants(catalog.get("1m/MES.parquet"))[variant])
    with pytest.raises(lb.LazyBarsError, match=r"BAD\.parquet"):
        store.bounds("BAD", Timestep.parse("1m"))
    with pytest.raises(lb.LazyBarsError, match=r"BAD\.parquet"):
        store.info()
    # The rest of the catalog still reads.
    assert store.scan("MES").collect().equals(minute)


@pytest.mark.parametrize("variant", ["garbage", "truncated", "empty", "magic-only"])
def test_corrupt_file_scan_names_the_file(catalog: Catalog, minute, variant: str) -> None:
    store = catalog.open()
    store.write("MES", minute)
    catalog.put("1m/BAD.parquet", _corrupt_variants(catalog.get("1m/MES.parquet"))[variant])
    with pytest.raises(lb.LazyBarsError, match=r"BAD\.parquet"):
        store.scan("BAD").tail(5).collect()


def test_a_footer_larger_than_the_first_read(catalog: Catalog) -> None:
    """Many extra columns make a footer larger than the first read: read in a second go."""
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)
    wide = bars.with_columns(pl.col("close").alias(f"feature_{i:04d}") for i in range(400))
    store = catalog.open()
    store.write("WIDE", wide)
    assert store.info()["rows"].to_list() == [wide.height]
    assert store.scan("WIDE").collect().equals(wide)


def test_a_replaced_file_is_checked_again(catalog: Catalog, minute: pl.DataFrame) -> None:
    """Schema checks are memoised per file version: a foreign replacement is caught."""
    store = catalog.open()
    store.write("MES", minute)
    assert store._bounds("MES", Timestep.parse("1m"))[1] == epoch_ns(minute["datetime"][-1])
    # The same name, other contents: a file that is not bars.
    payload = catalog.get("1m/MES.parquet")
    buffer = io.BytesIO()
    minute.rename({"close": "last"}).write_parquet(buffer)
    catalog.put("1m/MES.parquet", buffer.getvalue())
    with pytest.raises(lb.SchemaError, match=r"MES\.parquet is not a lazybars bar file"):
        store.scan("MES").collect()
    catalog.put("1m/MES.parquet", payload)
    assert store.scan("MES").collect().equals(minute)


def test_a_file_renamed_over_while_its_footer_is_read(
    tmp_path: Path, monkeypatch, minute: pl.DataFrame
) -> None:
    """The version checked and the bytes read come from one open file: a writer renaming a
    new file over it in between changes neither."""
    from lazybars._directory import _OpenFile

    store = lb.BarStore(tmp_path)
    first = minute.head(100)
    store.write("MES", first)
    read_tail = _OpenFile.tail
    renamed = []

    def renamed_first(self, start: int) -> bytes:
        if not renamed:  # a larger file takes the name after the version was read
            renamed.append(True)
            lb.BarStore(tmp_path).write("MES", minute)
        return read_tail(self, start)

    monkeypatch.setattr(_OpenFile, "tail", renamed_first)
    when = first["datetime"].dt.epoch("ns")
    assert store._bounds("MES", Timestep.parse("1m")) == (when[0], when[-1])
    assert renamed
    when = minute["datetime"].dt.epoch("ns")  # the next look sees the new version
    assert store._bounds("MES", Timestep.parse("1m")) == (when[0], when[-1])


# -- locations ----------------------------------------------------------------------------------
def test_a_file_uri_is_a_directory_catalog(tmp_path: Path, minute: pl.DataFrame) -> None:
    lb.BarStore((tmp_path / "a b").as_uri()).write("MES", minute)
    assert (tmp_path / "a b" / "1m" / "MES.parquet").is_file()
    assert lb.BarStore(tmp_path / "a b").scan("MES").collect().equals(minute)


@pytest.mark.parametrize(
    ("root", "words"),
    [
        ("gs://bucket/prefix", "s3://"),
        ("https://example.com/catalog", "s3://"),
        ("file://otherhost/catalog", "remote host"),
        (42, "path or a URI"),
    ],
)
def test_unsupported_locations_are_named(root: object, words: str) -> None:
    with pytest.raises(lb.InvalidRequest, match=words) as info:
        lb.BarStore(root)  # type: ignore[arg-type]
    assert str(root) in str(info.value)


def test_storage_options_are_for_object_storage(tmp_path: Path) -> None:
    with pytest.raises(lb.InvalidRequest, match="s3://"):
        lb.BarStore(tmp_path, storage_options={"aws_region": "eu-west-1"})
    assert not any(tmp_path.iterdir())
