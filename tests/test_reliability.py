"""Hostile input at every boundary: bad frames, bad requests, damaged catalogs, unsafe symbols.

lazybars sits under money decisions: a wrong bar, a silently dropped row or a corrupted
catalog is worse than a crash. Each bad input must be answered by a specific
:class:`lb.LazyBarsError` subclass whose message names the problem and says how to fix it,
and must leave the catalog byte-for-byte as it was.

What ``test_ingest``, ``test_store``, ``test_source`` and ``test_errors`` already check (each
bad value's row numbers, the unsafe symbol list on ``write``/``scan``, corrupt files read by
``scan``/``bounds``) is not repeated here; this file adds the cross-cutting guarantees: message
quality and an untouched store for the whole battery, damaged catalogs seen through a
``DataSource``, files and directories that vanish under a live store, and symbols that try to
leave the catalog through the backtester API. The battery and the damaged-catalog tests run on
a directory catalog and on the same catalog on S3 (the test server).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import re
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import catalogs
import numpy as np
import pandas as pd
import polars as pl
import polars.testing
import pytest
from catalogs import Catalog

import lazybars as lb
from lazybars.reference import PandasDataSource

NY = "America/New_York"
OHLCV = ["open", "high", "low", "close", "volume"]
# A message says how to fix the problem: it carries at least one of these words.
FIX_WORDS = re.compile(
    r"\b(use|pass|drop|rewrite|call|give|write|ask|repair|fill|name it|must be|needs?|create|"
    r"store it|check|sort|aggregate|swap)\b",
    re.IGNORECASE,
)


# ------------------------------------------------------------------------------ helpers
def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) -> sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def ts(text: str, tz: str = NY) -> pd.Timestamp:
    return pd.Timestamp(text, tz=tz).as_unit("ns")


def minute_frame(start: str = "2024-01-02", end: str = "2024-01-04") -> pl.DataFrame:
    return lb.synth.minute_bars("MES", start, end, gaps=0)


def assert_same_bars(got: lb.Bars, want: lb.Bars) -> None:
    polars.testing.assert_frame_equal(got.pl, want.pl, check_exact=True)
    pd.testing.assert_frame_equal(got.df, want.df, check_exact=True, check_freq=False)


def raised(error: type[BaseException], what: str, call: Callable[[], Any]) -> BaseException:
    """The ``error`` that ``call`` raises; fails naming ``what`` when it raises nothing."""
    try:
        result = call()
    except error as exc:
        return exc
    pytest.fail(f"{what}: no {error.__name__}; returned {str(result)[:300]}")


def assert_fix_message(err: BaseException, *names: str) -> None:
    text = str(err)
    for name in names:
        assert name in text, f"{type(err).__name__} message does not name {name!r}: {text}"
    assert FIX_WORDS.search(text), f"{type(err).__name__} message suggests no fix: {text}"


# -------------------------------------------------------------------- the battery
@dataclass
class World:
    """A small catalog and a fast source on it, shared by the battery."""

    catalog: Catalog
    store: lb.BarStore
    minute: pl.DataFrame
    src: lb.DataSource
    ref: PandasDataSource


CLOCK = ts("2024-01-03 12:00")


@pytest.fixture(scope="module", params=["disk", "s3"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> World:
    catalog = catalogs.make(request.param, request, tmp_path_factory.mktemp("battery") / "cat")
    store = catalog.open()
    minute = minute_frame()
    store.write("MES", minute)
    store.write("MES", lb.synth.daily_bars("MES", "2023-12-01", "2024-01-04"), timestep="day")
    store.write("MNQ", lb.synth.minute_bars("MNQ", "2024-01-02", "2024-01-04", gaps=0))
    src = lb.DataSource(store)
    src.set_datetime(CLOCK)
    ref = PandasDataSource(store)
    ref.set_datetime(CLOCK)
    return World(catalog, store, minute, src, ref)


def _pandas(frame: pl.DataFrame) -> pd.DataFrame:
    return frame.to_pandas().set_index("datetime")


def _naive_pandas(w: World) -> pd.DataFrame:
    pdf = _pandas(w.minute.head(5))
    pdf.index = pdf.index.tz_localize(None)
    return pdf


def _duplicated(w: World) -> pd.DataFrame:
    pdf = _pandas(w.minute.head(4))
    index = pdf.index.to_list()
    index[2] = index[1]  # 09:31 twice
    pdf.index = pd.DatetimeIndex(index, name="datetime")
    return pdf


def _all_prices_null(w: World) -> pl.DataFrame:
    row = pl.int_range(pl.len()) == 2
    return w.minute.head(4).with_columns(
        pl.when(~row).then(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")
    )


def _with_value(w: World, column: str, row: int, value: float) -> pd.DataFrame:
    pdf = _pandas(w.minute.head(4))
    pdf.iloc[row, pdf.columns.get_loc(column)] = value
    return pdf


def _string_prices(w: World) -> pd.DataFrame:
    pdf = _pandas(w.minute.head(3))
    pdf["close"] = pdf["close"].map(str)  # "5000.25": looks numeric, is not
    return pdf


def _upper_case_without_close(w: World) -> pd.DataFrame:
    pdf = _pandas(w.minute.head(3)).drop(columns="close")
    return pdf.rename(columns=str.upper)


def _empty_pandas(w: World) -> pd.DataFrame:
    return _pandas(w.minute.head(0))


def _naive_ts_event(w: World) -> pl.DataFrame:
    return (
        w.minute.head(3)
        .rename({"datetime": "ts_event"})
        .with_columns(pl.col("ts_event").dt.replace_time_zone(None))
    )


def _out_of_ns_range(w: World) -> pl.DataFrame:
    # Microsecond times in the year 2300: past what int64 nanoseconds can hold (2262).
    shifted = w.minute.head(3).with_columns(
        pl.col("datetime").dt.cast_time_unit("us").dt.offset_by("276y")
    )
    return shifted


class Tagged:
    """An asset object, as backtesters pass them."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol


@dataclass(frozen=True)
class Case:
    call: Callable[[World], Any]
    error: type[lb.LazyBarsError]
    names: tuple[str, ...]
    request: bool = False  # a DataSource request: the reference must raise the same class


def _hist(**kwargs: Any) -> Callable[[World], Any]:
    def call(w: World, source: Any = None) -> Any:
        source = w.src if source is None else source
        args = {"asset": "MES", "length": 5, **kwargs}
        return source.get_historical_prices(**args)

    return call


CASES: dict[str, Case] = {
    # -- frames ------------------------------------------------------------------------
    "missing OHLC columns": Case(
        lambda w: w.store.write("MES", w.minute.drop("low", "close")),
        lb.SchemaError,
        ("'low'", "'close'"),
    ),
    "missing close, upper-case pandas": Case(
        lambda w: w.store.write("MES", _upper_case_without_close(w)), lb.SchemaError, ("close",)
    ),
    "non-numeric prices (strings)": Case(
        lambda w: w.store.write("MES", _string_prices(w)), lb.SchemaError, ("'close'",)
    ),
    "naive DatetimeIndex without tz=": Case(
        lambda w: w.store.write("MES", _naive_pandas(w)), lb.SchemaError, ("naive", "tz=")
    ),
    "naive ts_event column without tz=": Case(
        lambda w: w.store.write("NEW", _naive_ts_event(w)), lb.SchemaError, ("'ts_event'", "tz=")
    ),
    "duplicate timestamps": Case(
        lambda w: w.store.write("MES", _duplicated(w)), lb.SchemaError, ("09:31",)
    ),
    "a row with all prices null": Case(
        lambda w: w.store.write("MES", _all_prices_null(w)), lb.SchemaError, ("'open'", "[2]")
    ),
    "infinite high": Case(
        lambda w: w.store.write("MES", _with_value(w, "high", 1, math.inf)),
        lb.SchemaError,
        ("'high'", "[1]"),
    ),
    "minus infinite low": Case(
        lambda w: w.store.write("NEW", _with_value(w, "low", 3, -math.inf)),
        lb.SchemaError,
        ("'low'", "[3]"),
    ),
    "times beyond the nanosecond range": Case(
        lambda w: w.store.write("MES", _out_of_ns_range(w)), lb.SchemaError, ("'datetime'",)
    ),
    "empty frame": Case(
        lambda w: w.store.write("MES", _empty_pandas(w)), lb.SchemaError, ("no rows",)
    ),
    "unknown timestep on write": Case(
        lambda w: w.store.write("MES", w.minute, timestep="1 fortnight"),
        lb.InvalidRequest,
        ("'1 fortnight'",),
    ),
    "zero timestep on write": Case(
        lambda w: w.store.write("MES", w.minute, timestep="0m"), lb.InvalidRequest, ("'0m'",)
    ),
    # -- requests ----------------------------------------------------------------------
    "unknown timestep spelling": Case(
        _hist(timestep="5 parsecs"), lb.InvalidRequest, ("'5 parsecs'",), request=True
    ),
    "zero length": Case(_hist(length=0), lb.InvalidRequest, ("length", "0"), request=True),
    "negative length": Case(_hist(length=-3), lb.InvalidRequest, ("length", "-3"), request=True),
    "float length": Case(_hist(length=5.0), lb.InvalidRequest, ("length", "5.0"), request=True),
    "bool length": Case(_hist(length=True), lb.InvalidRequest, ("length", "True"), request=True),
    "numpy zero length": Case(
        _hist(length=np.int64(0)), lb.InvalidRequest, ("length",), request=True
    ),
    "naive clock": Case(
        lambda w, source=None: (source or w.src).set_datetime(dt.datetime(2024, 1, 3, 12)),
        lb.InvalidRequest,
        ("naive", "tz"),
        request=True,
    ),
    "NaT clock": Case(
        lambda w, source=None: (source or w.src).set_datetime(pd.NaT),
        lb.InvalidRequest,
        ("NaT",),
        request=True,
    ),
    "unknown asset": Case(
        _hist(asset="ZZZ"), lb.UnknownAsset, ("'ZZZ'", "MES", "MNQ"), request=True
    ),
    "unknown asset object": Case(
        _hist(asset=Tagged("ZZZ")), lb.UnknownAsset, ("'ZZZ'",), request=True
    ),
    "unknown asset, last price": Case(
        lambda w, source=None: (source or w.src).get_last_price("ZZZ"),
        lb.UnknownAsset,
        ("'ZZZ'",),
        request=True,
    ),
    "string timeshift": Case(
        _hist(timeshift="1d"), lb.InvalidRequest, ("timeshift", "'1d'"), request=True
    ),
    "float timeshift": Case(
        _hist(timeshift=2.5), lb.InvalidRequest, ("timeshift", "2.5"), request=True
    ),
    "datetime timeshift": Case(
        _hist(timeshift=ts("2024-01-03 10:00")),
        lb.InvalidRequest,
        ("timeshift", "Timestamp"),
        request=True,
    ),
    "numpy timedelta64 timeshift": Case(
        _hist(timeshift=np.timedelta64(5, "m")), lb.InvalidRequest, ("timeshift",), request=True
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_battery(world: World, name: str) -> None:
    case = CASES[name]
    w = world
    before = w.catalog.tree()
    symbols = w.store.symbols()
    probe = w.src.get_historical_prices("MES", 30)
    hourly_probe = w.src.get_historical_prices("MNQ", 3, timestep="1h")

    with pytest.raises(lb.LazyBarsError) as info:
        case.call(w)
    err = info.value
    assert type(err) is case.error, f"{name}: {type(err).__name__}: {err}"
    assert_fix_message(err, *case.names)

    # Nothing written or changed: the bytes, the listing, the clock and every answer.
    assert w.catalog.tree() == before
    assert w.store.symbols() == symbols
    assert w.catalog.open().symbols() == symbols
    assert w.src.get_datetime() == CLOCK
    assert_same_bars(w.src.get_historical_prices("MES", 30), probe)
    assert_same_bars(w.src.get_historical_prices("MNQ", 3, timestep="1h"), hourly_probe)
    polars.testing.assert_frame_equal(w.store.scan("MES").collect(), w.minute, check_exact=True)

    if case.request:  # the oracle agrees on the kind of mistake
        with pytest.raises(case.error):
            case.call(w, w.ref)
        assert w.ref.get_datetime() == CLOCK


@pytest.mark.parametrize("timestep", [None, "5m", "1h", "day"])
@pytest.mark.parametrize("after_hours", [True, False])
@pytest.mark.parametrize("clock", ["2024-01-02 09:30", "2023-06-01 12:00", "1970-01-01 00:00"])
def test_clock_before_all_data_is_an_empty_answer(
    world: World, timestep: str | None, after_hours: bool, clock: str
) -> None:
    """Not an error (DESIGN): an empty Bars, at any timestep, for both implementations."""
    fast = lb.DataSource(world.store, lookback="2d")
    ref = PandasDataSource(world.store)
    for source in (fast, ref):
        source.set_datetime(ts(clock))
    for shift in (None, 3, dt.timedelta(hours=1)):
        got = fast.get_historical_prices(
            "MNQ", 10, timestep=timestep, timeshift=shift, after_hours=after_hours
        )
        want = ref.get_historical_prices(
            "MNQ", 10, timestep=timestep, timeshift=shift, after_hours=after_hours
        )
        assert got.empty
        assert got.get_last_price() is None
        assert list(got.df.columns) == OHLCV
        assert str(got.df.index.tz) == NY
        assert_same_bars(got, want)
    assert fast.get_last_price("MNQ") is None
    assert ref.get_last_price("MNQ") is None
    # The very next bar becomes visible on time, from the same (warm) source.
    fast.set_datetime(ts("2024-01-02 09:31"))
    assert len(fast.get_historical_prices("MNQ", 10)) == 1


# ------------------------------------------------------------------ damaged catalogs
def _catalog(where: Path | Catalog) -> lb.BarStore:
    store = lb.BarStore(where) if isinstance(where, Path) else where.open()
    for symbol in ("MES", "MNQ", "MYM"):
        store.write(symbol, lb.synth.minute_bars(symbol, "2024-01-02", "2024-01-06", gaps=0))
    return store


def _answers(source: lb.DataSource, symbol: str) -> list[lb.Bars]:
    return [
        source.get_historical_prices(symbol, 50),
        source.get_historical_prices(symbol, 5, timestep="15m"),
        source.get_historical_prices(symbol, 2, timestep="day", after_hours=False),
    ]


def _aware(n: int = 3) -> list[pd.Timestamp]:
    return list(pd.date_range("2024-01-02 09:30", periods=n, freq="min", tz=NY))


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _wrong_schemas() -> dict[str, pl.DataFrame]:
    prices = {c: [1.0, 2.0, 3.0] for c in ("open", "high", "low", "close")}
    when = pl.Series("datetime", _aware(), dtype=pl.Datetime("ns", NY))
    return {
        "no OHLC columns": pl.DataFrame({"datetime": when, "price": [1.0, 2.0, 3.0]}),
        "string prices": pl.DataFrame({"datetime": when, **{c: ["1", "2", "3"] for c in prices}}),
        "naive times": pl.DataFrame({"datetime": when.dt.replace_time_zone(None), **prices}),
        "string times": pl.DataFrame({"datetime": when.dt.to_string(), **prices}),
        "integer times": pl.DataFrame({"datetime": when.dt.epoch("ns"), **prices}),
    }


@pytest.mark.parametrize("variant", list(_wrong_schemas()))
def test_wrong_schema_file_is_named_and_the_rest_keeps_working(
    catalog: Catalog, variant: str
) -> None:
    """A valid parquet file that does not hold bars, dropped into the catalog by hand."""
    store = _catalog(catalog)
    src = lb.DataSource(store)
    src.set_datetime(ts("2024-01-04 12:00"))
    want = _answers(src, "MES")
    catalog.put("1m/X.parquet", _parquet(_wrong_schemas()[variant]))
    before = catalog.tree()
    attempts: dict[str, Callable[[], Any]] = {
        "scan": lambda: store.scan("X").collect(),
        "scan 5m": lambda: store.scan("X", "5m").collect(),
        "scan tail to_pandas": lambda: store.scan("X").tail(1).to_pandas(),
        "history": lambda: src.get_historical_prices("X", 5),
        "history 1h": lambda: src.get_historical_prices("X", 5, timestep="1h"),
        "last price": lambda: src.get_last_price("X"),
    }
    for what, attempt in attempts.items():
        assert_fix_message(raised(lb.SchemaError, what, attempt), "X.parquet")
    # The rest of the catalog keeps working, from the same store and the same source.
    for got, expected in zip(_answers(src, "MES"), want, strict=True):
        assert_same_bars(got, expected)
    assert len(src.get_historical_prices("MNQ", 7)) == 7
    assert store.scan("MYM").collect().height > 0
    assert catalog.tree() == before


@pytest.mark.parametrize("variant", ["garbage", "truncated"])
def test_corrupt_file_through_a_data_source(catalog: Catalog, variant: str) -> None:
    store = _catalog(catalog)
    good = catalog.get("1m/MNQ.parquet")
    damaged = b"not parquet, not at all" if variant == "garbage" else good[: len(good) // 2]
    catalog.put("1m/BAD.parquet", damaged)
    src = lb.DataSource(store)
    src.set_datetime(ts("2024-01-04 12:00"))
    fresh = lb.DataSource(catalog.open())
    fresh.set_datetime(ts("2024-01-04 12:00"))
    for _ in range(2):  # a failed load leaves nothing half-made behind: it fails again
        with pytest.raises(lb.SchemaError) as info:
            src.get_historical_prices("BAD", 5)
        assert_fix_message(info.value, "BAD.parquet")
        with pytest.raises(lb.SchemaError, match=r"BAD\.parquet"):
            src.get_historical_prices("BAD", 5, timestep="5m")
        with pytest.raises(lb.SchemaError, match=r"BAD\.parquet"):
            src.get_last_price("BAD")
        with pytest.raises(lb.SchemaError, match=r"BAD\.parquet"):
            src.get_bars(["MES", "BAD"], 5)
    for got, expected in zip(_answers(src, "MES"), _answers(fresh, "MES"), strict=True):
        assert_same_bars(got, expected)
    # Repairing the file (the fix the message suggests) heals the same source.
    frame = lb.synth.minute_bars("BAD", "2024-01-02", "2024-01-06", gaps=0)
    store.write("BAD", frame)
    got = src.get_historical_prices("BAD", 10_000)
    want = frame.filter(pl.col("datetime") < ts("2024-01-04 12:00"))
    polars.testing.assert_frame_equal(got.pl, want, check_exact=True)


def test_file_deleted_while_a_data_source_holds_its_cache(catalog: Catalog) -> None:
    store = _catalog(catalog)
    src = lb.DataSource(store)
    src.set_datetime(ts("2024-01-04 12:00"))
    loaded = _answers(src, "MES")
    last = src.get_last_price("MES")
    bounded = lb.DataSource(store, start="2024-01-04", end="2024-01-04", lookback="0s")
    bounded.set_datetime(ts("2024-01-04 12:00"))
    near = bounded.get_historical_prices("MES", 10)

    catalog.delete("1m/MES.parquet")
    catalog.delete("1m/MNQ.parquet")

    # Already-loaded data keeps answering, at any clock inside what was loaded.
    for got, expected in zip(_answers(src, "MES"), loaded, strict=True):
        assert_same_bars(got, expected)
    assert src.get_last_price("MES") == last
    src.set_datetime(ts("2024-01-03 15:00"))
    assert len(src.get_historical_prices("MES", 10)) == 10
    assert_same_bars(bounded.get_historical_prices("MES", 10), near)
    # A not-yet-loaded symbol (or one that must load more) fails clearly, naming it.
    for attempt in (
        lambda: src.get_historical_prices("MNQ", 5),
        lambda: src.get_last_price("MNQ"),
        lambda: bounded.get_historical_prices("MES", 10, timeshift=dt.timedelta(days=2)),
    ):
        with pytest.raises(lb.LazyBarsError) as info:
            attempt()
        assert re.search(r"MNQ|MES\.parquet", str(info.value)), info.value
        assert FIX_WORDS.search(str(info.value)), info.value
    # Other symbols keep working.
    assert len(src.get_historical_prices("MYM", 10)) == 10
    assert store.symbols() == ["MYM"]


def test_query_built_before_its_file_vanished_names_the_file(catalog: Catalog) -> None:
    store = _catalog(catalog)
    query = store.scan("MNQ").tail(5)
    catalog.delete("1m/MNQ.parquet")
    with pytest.raises(lb.SchemaError) as info:
        query.collect()
    assert_fix_message(info.value, "MNQ.parquet")
    assert store.scan("MES").tail(5).collect().height == 5


def test_catalog_directory_deleted_under_a_live_store(tmp_path: Path) -> None:
    root = tmp_path / "catalog"
    store = _catalog(root)
    src = lb.DataSource(store)
    src.set_datetime(ts("2024-01-04 12:00"))
    loaded = src.get_historical_prices("MES", 20)

    shutil.rmtree(root)
    for attempt in (
        store.symbols,
        lambda: store.symbols(timestep="1m"),
        lambda: store.timesteps("MES"),
        lambda: store.scan("MES"),
        lambda: store.scan(["MES", "MNQ"]),
        lambda: src.get_historical_prices("MNQ", 5),
    ):
        with pytest.raises(lb.LazyBarsError) as info:
            attempt()
        assert_fix_message(info.value, str(root))
    assert not root.exists()  # reading never re-creates a catalog silently
    # What was loaded keeps answering.
    assert_same_bars(src.get_historical_prices("MES", 20), loaded)

    # Re-creating works: a write re-creates the layout, a new BarStore re-creates the root.
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)
    store.write("MES", frame)
    assert store.symbols() == ["MES"]
    polars.testing.assert_frame_equal(store.scan("MES").collect(), frame, check_exact=True)
    shutil.rmtree(root)
    assert lb.BarStore(root).symbols() == []
    assert store.symbols() == []


def test_catalog_root_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    path.write_bytes(b"PAR1 some file")
    with pytest.raises(lb.LazyBarsError) as info:
        lb.BarStore(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"PAR1 some file"


# ------------------------------------------------------------------------------ symbols
@pytest.fixture
def baited(tmp_path: Path) -> tuple[lb.BarStore, Path, dict[str, Path]]:
    """A catalog with valid bar files planted where unsafe symbols would lead."""
    root = tmp_path / "catalog"
    store = lb.BarStore(root)
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)
    store.write("MES", frame)
    bait = frame.with_columns(pl.col("close") * 1000)  # wrong prices, if ever served
    places = {
        "../outside": root / "outside.parquet",
        "../../escaped": tmp_path / "escaped.parquet",
        str(tmp_path / "absolute"): tmp_path / "absolute.parquet",
        "..\\1m\\MES": root / "1m" / "..\\1m\\MES.parquet",
        ".hidden": root / "1m" / ".hidden.parquet",
    }
    for path in places.values():
        bait.write_parquet(path)
    return store, tmp_path, places


UNSAFE = ["../outside", "../../escaped", "..\\1m\\MES", ".hidden", "", "..", "MES\x00", "a/../MES"]


def test_unsafe_symbols_never_reach_outside_through_a_data_source(baited) -> None:
    store, top, places = baited
    unsafe = [*UNSAFE, *(s for s in places if s.startswith("/"))]
    src = lb.DataSource(store)
    src.set_datetime(ts("2024-01-03 12:00"))
    attempts: list[Callable[[str], Any]] = [
        lambda s: src.get_historical_prices(s, 5),
        lambda s: src.get_historical_prices(s, 5, timestep="5m"),
        lambda s: src.get_historical_prices(Tagged(s), 5),
        src.get_last_price,
        lambda s: src.get_bars(["MES", s], 5),
        lambda s: store.scan(["MES", s]),
        lambda s: store.scan(s, "1h").collect(),
    ]
    before = tree(top)
    for symbol in unsafe:
        for attempt in attempts:
            with pytest.raises(lb.InvalidRequest) as info:
                attempt(symbol)
            assert_fix_message(info.value, repr(symbol))
    assert tree(top) == before
    assert store.symbols() == ["MES"]
    # The source still serves the real MES, not a planted file.
    assert src.get_last_price("MES") < 10_000


def test_a_pair_with_a_slash_is_rejected_with_the_documented_spelling(tmp_path: Path) -> None:
    store = lb.BarStore(tmp_path)
    frame = lb.synth.minute_bars("EURUSD", "2024-01-02", "2024-01-03", gaps=0)
    with pytest.raises(lb.InvalidRequest) as info:
        store.write("EUR/USD", frame)
    assert_fix_message(info.value, "'EUR/USD'", "EURUSD")
    assert tree(tmp_path) == {}
    store.write("EURUSD", frame)
    store.write("EUR-USD", frame)
    src = lb.DataSource(store)
    src.set_datetime(ts("2024-01-03"))
    assert_same_bars(
        src.get_historical_prices("EURUSD", 9), src.get_historical_prices("EUR-USD", 9)
    )
    with pytest.raises(lb.InvalidRequest, match="EURUSD"):
        src.get_historical_prices("EUR/USD", 9)


EXOTIC = ["BRK.B", "ES=F", "EUR-USD", "6E", "Ä€", "日経225", "^GSPC", "a b", "x" * 128]


def test_exotic_symbols_work_everywhere(catalog: Catalog) -> None:
    store = catalog.open()
    frames = {}
    for i, symbol in enumerate(EXOTIC):
        frames[symbol] = lb.synth.minute_bars(symbol, "2024-01-02", "2024-01-04", seed=i, gaps=0)
        store.write(symbol, frames[symbol])
    reopened = catalog.open()
    assert reopened.symbols() == sorted(EXOTIC)
    src = lb.DataSource(reopened)
    ref = PandasDataSource(reopened)
    for source in (src, ref):
        source.set_datetime(ts("2024-01-03 11:00"))
    for symbol in EXOTIC:
        got = src.get_historical_prices(Tagged(symbol), 40, timestep="15m")
        assert got.symbol == symbol
        assert_same_bars(got, ref.get_historical_prices(symbol, 40, timestep="15m"))
        assert src.get_last_price(symbol) == ref.get_last_price(symbol)
    both = reopened.scan(EXOTIC[:4]).collect()
    assert both["symbol"].unique(maintain_order=True).to_list() == EXOTIC[:4]
    assert set(src.get_bars(EXOTIC, 3)) == set(EXOTIC)


@pytest.mark.parametrize(
    "symbol",
    ["é" * 128, "日" * 100, "€" * 85, "\U0001d538" * 64],
    ids=["2-byte x128", "3-byte x100", "3-byte x85", "4-byte x64"],
)
def test_long_multibyte_symbols_are_stored_or_rejected_cleanly(
    catalog: Catalog, symbol: str
) -> None:
    """At most 128 characters, but several bytes each: the file name can outgrow the file
    system's limit. Either it works end to end, or it is an InvalidRequest; never an OSError."""
    store = catalog.open()
    frame = lb.synth.minute_bars("X", "2024-01-02", "2024-01-03", gaps=0)
    try:
        store.write(symbol, frame)
    except lb.InvalidRequest as exc:
        assert_fix_message(exc)
        assert catalog.tree() == {}
        with pytest.raises(lb.LazyBarsError):
            store.scan(symbol)
        src = lb.DataSource(store)
        src.set_datetime(ts("2024-01-03"))
        with pytest.raises(lb.LazyBarsError):
            src.get_historical_prices(symbol, 3)
        return
    assert store.symbols() == [symbol]
    polars.testing.assert_frame_equal(store.scan(symbol).collect(), frame, check_exact=True)


def test_unicode_spellings_are_distinct_symbols(catalog: Catalog) -> None:
    """NFC and NFD spell "é" differently: each reads back its own bars, never the other's."""
    composed = unicodedata.normalize("NFC", "CAFÉ")
    decomposed = unicodedata.normalize("NFD", "CAFÉ")
    assert composed != decomposed
    store = catalog.open()
    first = lb.synth.minute_bars("A", "2024-01-02", "2024-01-03", seed=1, gaps=0)
    store.write(composed, first)
    with pytest.raises(lb.UnknownAsset):
        store.scan(decomposed)
    second = lb.synth.minute_bars("B", "2024-01-02", "2024-01-03", seed=2, gaps=0)
    store.write(decomposed, second)
    assert sorted(store.symbols()) == sorted([composed, decomposed])
    polars.testing.assert_frame_equal(store.scan(composed).collect(), first, check_exact=True)
    polars.testing.assert_frame_equal(store.scan(decomposed).collect(), second, check_exact=True)
