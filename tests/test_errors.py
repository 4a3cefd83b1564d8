"""The error hierarchy, and that every error a tour of the public API meets is a LazyBarsError."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import lazybars as lb

NY = "America/New_York"


def test_hierarchy() -> None:
    assert issubclass(lb.LazyBarsError, Exception)
    for cls in (lb.SchemaError, lb.InvalidRequest, lb.UnknownAsset, lb.MissingExtra):
        assert issubclass(cls, lb.LazyBarsError)
    assert issubclass(lb.SchemaError, ValueError)
    assert issubclass(lb.InvalidRequest, ValueError)
    assert issubclass(lb.UnknownAsset, KeyError)
    assert not issubclass(lb.UnknownAsset, ValueError)
    assert issubclass(lb.MissingExtra, ImportError)
    assert not issubclass(lb.SchemaError, lb.InvalidRequest)
    assert not issubclass(lb.InvalidRequest, lb.SchemaError)


def test_warning_hierarchy() -> None:
    assert issubclass(lb.LazyBarsWarning, UserWarning)
    assert issubclass(lb.UnsortedBarsWarning, lb.LazyBarsWarning)
    assert not issubclass(lb.LazyBarsWarning, lb.LazyBarsError)


def test_errors_are_exported_from_the_errors_module() -> None:
    from lazybars import errors

    for name in errors.__all__:
        assert getattr(lb, name) is getattr(errors, name)


def test_unknown_asset_str_is_the_plain_message() -> None:
    message = "unknown asset 'ZZZ': the store holds ['MES']\nwrite it first"
    err = lb.UnknownAsset(message)
    # KeyError would show repr(message): quotes and an escaped newline.
    assert str(err) == message
    assert str(lb.UnknownAsset()) == ""
    assert err.args == (message,)


def test_unknown_asset_str_from_a_store() -> None:
    store = lb.BarStore.from_frames({"MES": lb.synth.daily_bars("MES")}, timestep="day")
    with pytest.raises(lb.UnknownAsset) as info:
        store.scan("ZZZ")
    text = str(info.value)
    assert not text.startswith(("'", '"'))
    assert "ZZZ" in text
    assert "MES" in text  # says what the store does hold
    # Natural builtin catches work.
    with pytest.raises(KeyError):
        store.timesteps("ZZZ")


@pytest.fixture(scope="module")
def tour_store(tmp_path_factory: pytest.TempPathFactory) -> lb.BarStore:
    store = lb.BarStore(tmp_path_factory.mktemp("tour"))
    store.write("MES", lb.synth.minute_bars("MES", "2024-01-02", "2024-01-04", gaps=0))
    store.write("MNQ", lb.synth.minute_bars("MNQ", "2024-01-02", "2024-01-04", gaps=0))
    store.write("MES", lb.synth.daily_bars("MES", "2023-12-01", "2024-01-04"), timestep="day")
    return store


def _bars_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "datetime": [dt.datetime(2024, 1, 2, 9, 30), dt.datetime(2024, 1, 2, 9, 31)],
            "open": [1.0, 2.0],
            "high": [1.0, 2.0],
            "low": [1.0, 2.0],
            "close": [1.0, 2.0],
        }
    )


def _tour(store: lb.BarStore) -> dict[str, Callable[[], Any]]:
    frame = _bars_frame()
    bars = store.scan("MES").tail(10).bars()
    aware = dt.datetime(2024, 1, 3, 10, tzinfo=dt.UTC)
    return {
        "bad timestep": lambda: lb.Timestep.parse("fortnight"),
        "non-string timestep": lambda: lb.Timestep.parse(5),  # type: ignore[arg-type]
        "unknown symbol": lambda: store.scan("ZZZ"),
        "unknown symbol timesteps": lambda: store.timesteps("ZZZ"),
        "bad symbol": lambda: store.scan("../etc"),
        "bad symbol write": lambda: store.write("a/b", frame, tz="UTC"),
        "non-string symbol": lambda: store.scan([1]),  # type: ignore[list-item]
        "empty scan": lambda: store.scan([]),
        "bad scan zone": lambda: store.scan("MES", timezone="Mars/Base"),
        "finer timestep": lambda: store.scan("MES", "30s"),
        "naive without tz": lambda: store.write("X", frame),
        "bad tz": lambda: store.write("X", frame, tz="Nowhere/Land"),
        "missing column": lambda: store.write("X", frame.drop("low"), tz="UTC"),
        "empty frame": lambda: store.write("X", frame.head(0), tz="UTC"),
        "not a frame": lambda: store.write("X", [1, 2, 3], tz="UTC"),
        "duplicates": lambda: store.write(
            "X", pl.concat([frame, frame]).sort("datetime"), tz="UTC"
        ),
        "select unknown": lambda: store.scan("MES").select("nope"),
        "select nothing": lambda: store.scan("MES").select(),
        "tail negative": lambda: store.scan("MES").tail(-1),
        "head float": lambda: store.scan("MES").head(1.5),  # type: ignore[arg-type]
        "between reversed": lambda: store.scan("MES").between("2024-01-03", "2024-01-02"),
        "between garbage": lambda: store.scan("MES").between("soon", "later"),
        "as_of wrong type": lambda: store.scan("MES").as_of(12),
        "resample finer": lambda: store.scan("MES", "day").resample("1h"),
        "resample after_hours": lambda: store.scan("MES").resample("1h", after_hours="no"),
        "multi bars": lambda: store.scan(["MES", "MNQ"]).bars(),
        "mixed timesteps": lambda: store.scan(["MES", "MNQ"], "day"),
        "momentum n": lambda: bars.get_momentum(0),
        "aggregate finer": lambda: store.scan("MES", "day").bars().aggregate("1m"),
        "bars of a list": lambda: lb.Bars([1, 2], symbol="X", timestep="1m"),  # type: ignore[arg-type]
        "bars filter garbage": lambda: bars.filter("soon"),
        "source of a dict": lambda: lb.DataSource({}),  # type: ignore[arg-type]
        "source bad lookback": lambda: lb.DataSource(store, lookback="banana"),
        "source naive clock": lambda: _source(store).set_datetime(dt.datetime(2024, 1, 3)),
        "source length": lambda: _clocked(store, aware).get_historical_prices("MES", 0),
        "source unknown asset": lambda: _clocked(store, aware).get_historical_prices("ZZZ", 1),
    }


def _source(store: lb.BarStore) -> lb.DataSource:
    return lb.DataSource(store, lookback=dt.timedelta(days=30))


def _clocked(store: lb.BarStore, at: dt.datetime) -> lb.DataSource:
    src = _source(store)
    src.set_datetime(at)
    return src


def _tour_names() -> list[str]:
    # Build the tour once against a throwaway in-memory store, just to list its names.
    store = lb.BarStore.from_frames(
        {"MES": lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)}
    )
    store.write("MES", lb.synth.daily_bars("MES", "2023-12-01", "2024-01-03"), timestep="day")
    return list(_tour(store))


@pytest.mark.parametrize("name", _tour_names())
def test_every_error_in_a_tour_is_a_lazybars_error(tour_store: lb.BarStore, name: str) -> None:
    action = _tour(tour_store)[name]
    with pytest.raises(Exception) as info:
        action()
    err = info.value
    assert isinstance(err, lb.LazyBarsError), f"{name}: {type(err).__mro__} {err}"
    assert isinstance(err, ValueError | KeyError)
    assert str(err).strip(), f"{name}: empty message"
    # Nothing from the tour leaked into the catalog.
    assert tour_store.symbols() == ["MES", "MNQ"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-11-03 01:30", "2024-11-04"),  # ambiguous local time (autumn DST)
        ("2024-03-10 02:30", "2024-03-11"),  # non-existent local time (spring DST)
    ],
)
def test_naive_dst_edge_times_in_requests_raise_lazybars_errors(start: str, end: str) -> None:
    """A naive time that is ambiguous or skipped in the local zone is a bad request."""
    store = lb.BarStore.from_frames(
        {"MES": lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)}
    )
    with pytest.raises(lb.InvalidRequest, match=start.split()[1]):
        store.scan("MES").between(start, end)
    with pytest.raises(lb.InvalidRequest):
        store.scan("MES").as_of(start)
    with pytest.raises(lb.InvalidRequest):
        store.scan("MES").bars().filter(start, end)


@pytest.mark.parametrize("zone", ["Mars/Base", 5])
def test_data_source_bad_timezone_is_a_lazybars_error(zone: object) -> None:
    store = lb.BarStore.from_frames(
        {"MES": lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)}
    )
    with pytest.raises(lb.InvalidRequest, match="timezone"):
        lb.DataSource(store, timezone=zone)  # type: ignore[arg-type]


def test_corrupt_catalog_file_is_a_lazybars_error(tmp_path: Path) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0))
    (tmp_path / "1m" / "BAD.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(lb.LazyBarsError, match=r"BAD\.parquet"):
        store.scan("BAD").collect()


def test_data_source_default_lookback_emits_no_warning() -> None:
    """The documented default ``lookback="30d"`` must not trip a pandas deprecation."""
    store = lb.BarStore.from_frames(
        {"MES": lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", gaps=0)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lb.DataSource(store)
        lb.DataSource(store, lookback="30d")
