"""Ingesting lumibot's DataBento cache folders (``databento/``, ``databento_polars/``): each
contract's overlapping window files unioned, identical bars kept once, differing ones
refused; the same through ``read_cache``. Oracles: ``tests/lumibot_caches.py`` (pandas)."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from pathlib import Path

import databento_sdk
import pandas as pd
import polars as pl
import pytest
from lumibot_caches import contract_bars, oracle, write

import lazybars as lb

NY = "America/New_York"
LAYOUTS = ("databento", "databento_polars")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lumibot cache folder: overlapping windows of two contracts in both layouts,
    minute and day bars, beside another provider's cache."""
    root = tmp_path_factory.mktemp("lumibot") / "cache"
    h4 = contract_bars("MESH4", "1m", "2024-01-02", "2024-01-09", seed=1)
    write(root, "databento", h4, "minute", "2024-01-02", "2024-01-05")
    write(root, "databento", h4, "minute", "2024-01-04 13:30", "2024-01-08")
    write(root, "databento_polars", h4, "minute", "2024-01-03 12:00", "2024-01-09")
    m4 = contract_bars("MESM4", "1m", "2024-03-10", "2024-03-13", seed=2)
    write(root, "databento_polars", m4, "minute", "2024-03-10", "2024-03-12")
    write(root, "databento_polars", m4, "minute", "2024-03-11", "2024-03-13")
    days = contract_bars("MESH4", "1d", "2023-12-01", "2024-02-01", seed=3)
    write(root, "databento", days, "day", "2023-12-01", "2024-01-10")
    write(root, "databento", days, "day", "2024-01-05", "2024-02-01")
    write(root, "databento_polars", days, "day", "2023-12-15", "2024-01-20")
    # Not DataBento bars: lazybars must not read them.
    (root / "thetadata").mkdir()
    pd.DataFrame({"x": [1.0]}).to_parquet(root / "thetadata" / "SPY_minute.parquet")
    return root


def stored(catalog: Path, symbol: str, timestep: str) -> pd.DataFrame:
    """The stored bars, in UTC (a scan hands them back in the local zone)."""
    frame = lb.BarStore(catalog).scan(symbol, timestep).collect().to_pandas()
    return frame.set_index("datetime").tz_convert("UTC")


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_both_layouts_give_exactly_the_union_of_their_windows(tmp_path: Path, cache: Path) -> None:
    expected = oracle(*(cache / layout for layout in LAYOUTS))
    assert sorted(expected) == [("MESH4", "1d"), ("MESH4", "1m"), ("MESM4", "1m")]
    summary = lb.ingest_into(tmp_path / "cat", cache)
    assert sorted(summary.select("symbol", "timestep", "rows").rows()) == [
        (symbol, timestep, len(expected[(symbol, timestep)]))
        for symbol, timestep in sorted(expected)
    ]
    store = lb.BarStore(tmp_path / "cat")
    for (symbol, timestep), bars in expected.items():
        pd.testing.assert_frame_equal(stored(tmp_path / "cat", symbol, timestep), bars)
        # DataBento's times are UTC, and stay so without tz=.
        assert store.zone(symbol, timestep) == "UTC"


def test_each_layout_folder_alone(tmp_path: Path, cache: Path) -> None:
    for layout in LAYOUTS:
        catalog = tmp_path / layout
        lb.ingest_into(catalog, cache / layout)
        expected = oracle(cache / layout)
        assert sorted(lb.BarStore(catalog).info().select("symbol", "timestep").rows()) == sorted(
            expected
        )
        for (symbol, timestep), bars in expected.items():
            pd.testing.assert_frame_equal(stored(catalog, symbol, timestep), bars)


def test_one_cache_file(tmp_path: Path, cache: Path) -> None:
    path = sorted((cache / "databento_polars").glob("MESM4_*"))[0]
    lb.ingest_into(tmp_path / "cat", path)
    bars = pd.read_parquet(path).set_index("datetime")[["open", "high", "low", "close", "volume"]]
    got = stored(tmp_path / "cat", "MESM4", "1m")
    bars.index = bars.index.as_unit("ns")
    pd.testing.assert_frame_equal(got, bars.astype({"volume": "float64"}))


def test_read_cache_gives_the_bars_per_contract(cache: Path) -> None:
    from lazybars._lumibot_cache import read_cache

    both = [cache / layout for layout in LAYOUTS]
    for folder, layouts in [(cache, both), *((f, [f]) for f in both)]:
        expected = oracle(*layouts)
        got = read_cache(folder)
        assert sorted(got) == sorted(expected)
        for key, bars in expected.items():
            pd.testing.assert_frame_equal(got[key].to_pandas().set_index("datetime"), bars)


def test_a_bar_that_differs_between_files_is_refused(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    # A later fetch of MESM4 whose bar at 2024-03-11 14:00 UTC was corrected.
    path = sorted((root / "databento_polars").glob("MESM4_*"))[1]
    frame = pd.read_parquet(path)
    at = frame.index[frame["datetime"] == pd.Timestamp("2024-03-11 14:00", tz="UTC")][0]
    frame.loc[at, "close"] += 0.25
    frame.to_parquet(path)
    catalog = tmp_path / "cat"
    lb.ingest_into(catalog, cache)
    before = snapshot(catalog)
    with pytest.raises(lb.SchemaError) as caught:
        lb.ingest_into(catalog, root)
    message = str(caught.value)
    assert message.startswith("MESM4 (1m): ")
    assert "2024-03-11 14:00:00" in message
    other = sorted((root / "databento_polars").glob("MESM4_*"))[0]
    assert path.name in message and other.name in message
    assert snapshot(catalog) == before

    from lazybars._lumibot_cache import read_cache

    with pytest.raises(lb.SchemaError, match=r"^MESM4 \(1m\): .*2024-03-11 14:00:00"):
        read_cache(root)


def test_timestep_and_contract_come_from_the_file_name(tmp_path: Path) -> None:
    # Hour bars two hours apart would look like 2h bars, and one day bar tells no size.
    hours = contract_bars("MNQH4", "1h", "2024-01-02", "2024-01-04", seed=4).iloc[::2]
    write(tmp_path / "cache", "databento", hours, "hour", "2024-01-02", "2024-01-04")
    day = contract_bars("MNQH4", "1d", "2024-01-02", "2024-01-03", seed=5)
    write(tmp_path / "cache", "databento_polars", day, "day", "2024-01-02", "2024-01-03")
    summary = lb.ingest_into(tmp_path / "cat", tmp_path / "cache")
    assert sorted(summary.select("symbol", "timestep", "rows").rows()) == [
        ("MNQH4", "1d", 1),
        ("MNQH4", "1h", len(hours)),
    ]
    # --symbol renames a contract as it renames any source symbol.
    lb.ingest_into(tmp_path / "cat2", tmp_path / "cache", symbol={"MNQH4": "MNQ-H24"})
    assert lb.BarStore(tmp_path / "cat2").symbols() == ["MNQ-H24"]


def test_a_zone_stores_the_bars_there(tmp_path: Path, cache: Path) -> None:
    expected = oracle(*(cache / layout for layout in LAYOUTS))
    lb.ingest_into(tmp_path / "cat", cache, tz=NY)
    store = lb.BarStore(tmp_path / "cat")
    assert store.zone("MESH4", "1m") == NY
    minutes = stored(tmp_path / "cat", "MESH4", "1m")
    pd.testing.assert_frame_equal(minutes, expected[("MESH4", "1m")])
    # Day bars carry midnight UTC of their date: relabelled to that date's midnight in NY.
    days = stored(tmp_path / "cat", "MESH4", "1d")
    want = expected[("MESH4", "1d")]
    dates = want.index.tz_localize(None).normalize().tz_localize(NY)
    assert days.index.equals(pd.DatetimeIndex(dates, name="datetime").tz_convert("UTC"))
    assert days.to_numpy().tolist() == want.to_numpy().tolist()


def test_files_that_contradict_their_name_are_refused(tmp_path: Path) -> None:
    days = contract_bars("MESH4", "1d", "2024-01-02", "2024-01-10", seed=6)
    write(tmp_path / "a", "databento", days, "minute", "2024-01-02", "2024-01-10")
    with pytest.raises(lb.SchemaError, match=r"'minute'.*\['1d'\]"):
        lb.ingest_into(tmp_path / "cat", tmp_path / "a")
    other = contract_bars("MESH4", "1m", "2024-01-02", "2024-01-03", seed=7)
    path = write(tmp_path / "b", "databento_polars", other, "minute", "2024-01-02", "2024-01-03")
    path.rename(path.with_name(path.name.replace("MESH4", "MESM4")))
    with pytest.raises(lb.SchemaError, match="named after MESM4 but holds bars of 'MESH4'"):
        lb.ingest_into(tmp_path / "cat", tmp_path / "b")
    assert not (tmp_path / "cat").exists() or not lb.BarStore(tmp_path / "cat").symbols()


def test_naive_times_are_utc_and_a_file_without_times_is_refused(tmp_path: Path) -> None:
    # lumibot's reader localises naive times to UTC: so does lazybars.
    bars = contract_bars("MESH4", "1m", "2024-01-02", "2024-01-03", seed=9)
    path = write(tmp_path / "a", "databento_polars", bars, "minute", "2024-01-02", "2024-01-03")
    naive = pd.read_parquet(path)
    naive["datetime"] = naive["datetime"].dt.tz_localize(None)
    naive.to_parquet(path)
    lb.ingest_into(tmp_path / "cat", tmp_path / "a")
    (want,) = oracle(tmp_path / "a" / "databento_polars").values()
    pd.testing.assert_frame_equal(stored(tmp_path / "cat", "MESH4", "1m"), want)
    assert want.index[0] == pd.Timestamp("2024-01-02", tz="UTC")

    naive.drop(columns="datetime").to_parquet(path)
    with pytest.raises(lb.SchemaError, match=f"{path.name}: it has no time column"):
        lb.ingest_into(tmp_path / "cat", tmp_path / "a")


def test_other_files_named_like_cache_files_stay_ordinary(tmp_path: Path) -> None:
    # Outside databento/ and databento_polars/ such a name is a plain file's name.
    bars = contract_bars("MESH4", "1m", "2024-01-02", "2024-01-03", seed=8)
    path = write(tmp_path, "exports", bars, "minute", "2024-01-02", "2024-01-03")
    lb.ingest_into(tmp_path / "cat", path)
    assert lb.BarStore(tmp_path / "cat").symbols() == ["MESH4"]  # its symbol column


@pytest.mark.skipif(importlib.util.find_spec("lumibot") is None, reason="needs lumibot (its extra)")
def test_a_cache_written_by_lumibot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lumibot's own fetch-and-cache function (of its pandas and of its polars classes),
    on the offline DataBento SDK stand-in (tests/databento_sdk.py), caches a
    continuous future over windows that overlap and cross a roll, in both layouts."""
    from lumibot.entities import Asset

    cache = tmp_path / "cache"
    asset = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
    windows = {
        "databento_helper": {
            "minute": [("2024-03-04", "2024-03-08"), ("2024-03-06", "2024-03-13")],
            "day": [("2024-02-01", "2024-03-20")],
        },
        "databento_helper_polars": {
            "minute": [("2024-03-07 12:30", "2024-03-15")],
            "day": [("2024-02-15", "2024-03-20"), ("2024-03-01", "2024-03-30")],
        },
    }
    databento_sdk.install(monkeypatch, cache)
    for module, asked in windows.items():
        helper = importlib.import_module(f"lumibot.tools.{module}")
        for timestep, spans in asked.items():
            for a, b in spans:
                start, end = (pd.Timestamp(t, tz="UTC").to_pydatetime() for t in (a, b))
                helper.get_price_data_from_databento("key", asset, start, end, timestep=timestep)
    layouts = [cache / "databento", cache / "databento_polars"]
    files = sorted(p for layout in layouts for p in layout.iterdir())
    assert {p.name.split("_")[0] for p in files} == {"MESH4", "MESM4"}, files
    assert {p.parent.name: pl.read_parquet_schema(p).names()[0] for p in files} == {
        "databento": "ts_event",
        "databento_polars": "datetime",
    }
    expected = oracle(*layouts)
    lb.ingest_into(tmp_path / "cat", cache)
    catalog = lb.BarStore(tmp_path / "cat").info().select("symbol", "timestep").rows()
    assert sorted(catalog) == sorted(expected)
    for (symbol, timestep), bars in expected.items():
        pd.testing.assert_frame_equal(stored(tmp_path / "cat", symbol, timestep), bars)
