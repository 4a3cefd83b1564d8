"""Appending: ``store.write(..., mode="append")`` and the merge rules behind it.

The union of stored and new bars, where bars with the same start must be identical. The
expected catalogs are slices of one original frame, so a correct append reproduces it.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazybars as lb

NY = "America/New_York"


@pytest.fixture(params=["disk", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> lb.BarStore:
    if request.param == "disk":
        return lb.BarStore(tmp_path / "catalog")
    return lb.BarStore.from_frames({})


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-06", gaps=0.02, extras=True)


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_append_adds_newer_bars(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[:1000])
    store.write("MES", bars[1000:], mode="append")
    assert store.scan("MES").collect().equals(bars)


def test_identical_overlap_is_kept_once(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[:1000])
    store.write("MES", bars[600:], mode="append")
    assert store.scan("MES").collect().equals(bars)


def test_append_fills_older_bars_and_gaps(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[500:700])
    store.write("MES", bars[:300], mode="append")
    store.write("MES", bars[250:900].filter(pl.int_range(pl.len()) % 2 == 0), mode="append")
    store.write("MES", bars[100:], mode="append")
    assert store.scan("MES").collect().equals(bars)


def test_append_to_a_missing_symbol_writes_it(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("NEW", bars, mode="append")
    assert store.scan("NEW").collect().equals(bars)


def test_replace_is_the_default(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[:1000])
    store.write("MES", bars[1000:])
    assert store.scan("MES").collect().equals(bars[1000:])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.tuples(st.integers(0, 1400), st.integers(1, 600)), min_size=1, max_size=6))
def test_any_order_of_overlapping_appends_gives_the_union(
    bars: pl.DataFrame, cuts: list[tuple[int, int]]
) -> None:
    store = lb.BarStore.from_frames({})
    covered: set[int] = set()
    for start, length in cuts:
        piece = bars[start : start + length]
        store.write("MES", piece, mode="append")
        covered.update(range(start, min(start + length, bars.height)))
    expected = bars[sorted(covered)]
    assert store.scan("MES").collect().equals(expected)


def test_a_differing_overlap_names_the_first_differing_bar(
    tmp_path: Path, bars: pl.DataFrame
) -> None:
    store = lb.BarStore(tmp_path / "catalog")
    store.write("MES", bars[:1000])
    before = snapshot(tmp_path / "catalog")
    changed = bars[900:1100].with_columns(
        close=pl.when(pl.int_range(pl.len()).is_in([30, 31, 50]))
        .then(pl.col("close") + 0.25)
        .otherwise(pl.col("close"))
    )
    with pytest.raises(lb.SchemaError) as err:
        store.write("MES", changed, mode="append")
    first = bars["datetime"][930]
    message = str(err.value)
    assert f"starting at {first}" in message
    assert "3 of 100 overlapping bars differ" in message
    assert f"close {bars['close'][930]!r} vs {bars['close'][930] + 0.25!r}" in message
    assert snapshot(tmp_path / "catalog") == before


def test_a_differing_extra_column_is_a_difference(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[:100])
    changed = bars[50:150].with_columns(trades=pl.col("trades") + 1)
    with pytest.raises(lb.SchemaError, match="trades"):
        store.write("MES", changed, mode="append")
    assert store.scan("MES").collect().equals(bars[:100])


def test_nulls_in_extras_compare_equal(store: lb.BarStore) -> None:
    frame = lb.synth.minute_bars("X", "2024-01-02", "2024-01-03").with_columns(
        extra=pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.lit(1.5))
    )
    store.write("X", frame[:200])
    store.write("X", frame[100:], mode="append")
    assert store.scan("X").collect().equals(frame)


def test_different_columns_cannot_be_appended(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[:100])
    with pytest.raises(lb.SchemaError, match="columns differ"):
        store.write("MES", bars[100:].drop("vwap"), mode="append")
    retyped = bars[100:].with_columns(pl.col("trades").cast(pl.Float64))
    with pytest.raises(lb.SchemaError, match="column types differ"):
        store.write("MES", retyped, mode="append")
    assert store.scan("MES").collect().equals(bars[:100])


def test_appended_bars_take_the_stored_zone(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[:100])
    utc = bars[50:].with_columns(pl.col("datetime").dt.convert_time_zone("UTC"))
    store.write("MES", utc, mode="append")
    out = store.scan("MES").collect()
    assert out.schema["datetime"] == pl.Datetime("ns", NY)
    assert out.equals(bars)


def test_append_validates_like_write(store: lb.BarStore, bars: pl.DataFrame) -> None:
    store.write("MES", bars[:100])
    dup = pl.concat([bars[100:106], bars[105:110]])
    with pytest.raises(lb.SchemaError, match="share a timestamp"):
        store.write("MES", dup, mode="append")
    assert store.scan("MES").collect().equals(bars[:100])


@pytest.mark.parametrize("mode", ["add", "Append", None, 1])
def test_unknown_modes_are_invalid_requests(
    store: lb.BarStore, bars: pl.DataFrame, mode: object
) -> None:
    with pytest.raises(lb.InvalidRequest, match="mode must be"):
        store.write("MES", bars, mode=mode)  # type: ignore[arg-type]


def test_mode_is_keyword_only(store: lb.BarStore, bars: pl.DataFrame) -> None:
    with pytest.raises(TypeError):
        store.write("MES", bars, "minute", None, "append")  # type: ignore[misc]


def test_append_manifest_and_row_groups_match_a_fresh_write(tmp_path: Path) -> None:
    """An appended file is what store.write would have written for the union."""
    bars = lb.synth.minute_bars("M", "2024-01-01", "2024-03-01", session="24h", gaps=0)
    appended, fresh = lb.BarStore(tmp_path / "a"), lb.BarStore(tmp_path / "b")
    appended.write("M", bars[:40_000])
    appended.write("M", bars[30_000:], mode="append")
    fresh.write("M", bars)
    a, b = tmp_path / "a" / "1m" / "M.parquet", tmp_path / "b" / "1m" / "M.parquet"
    meta_a, meta_b = pl.read_parquet_metadata(a), pl.read_parquet_metadata(b)
    manifest_a, manifest_b = (json.loads(m.pop("lazybars")) for m in (meta_a, meta_b))
    assert meta_a == meta_b
    # The same manifest, but for the generation: an id of each write of the base.
    assert manifest_a.pop("generation") != manifest_b.pop("generation")
    assert manifest_a == manifest_b
    import pyarrow.parquet as pq

    ma, mb = pq.ParquetFile(a).metadata, pq.ParquetFile(b).metadata
    assert [ma.row_group(i).num_rows for i in range(ma.num_row_groups)] == [
        mb.row_group(i).num_rows for i in range(mb.num_row_groups)
    ]
    assert appended._bounds("M", lb.Timestep.parse("1m")) == fresh._bounds(
        "M", lb.Timestep.parse("1m")
    )
    assert appended.scan("M").collect().equals(bars)


def test_info_lists_rows_bounds_and_bytes(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore(tmp_path / "catalog")
    store.write("MES", bars)
    store.write(
        "MES",
        bars.group_by_dynamic("datetime", every="1h").agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
        ),
        timestep="1h",
    )
    info = store.info()
    assert info.columns == ["symbol", "timestep", "rows", "first", "last", "bytes", "parts"]
    assert info["timestep"].to_list() == ["1m", "1h"]  # finest first, as store.timesteps()
    row = info.row(0, named=True)
    assert row["rows"] == bars.height
    assert row["first"] == bars["datetime"][0]
    assert row["last"] == bars["datetime"][-1]
    assert row["bytes"] == (tmp_path / "catalog" / "1m" / "MES.parquet").stat().st_size
    assert row["parts"] == 0


def test_info_of_an_empty_store_is_empty(tmp_path: Path) -> None:
    assert lb.BarStore(tmp_path).info().height == 0
    assert lb.BarStore.from_frames({}).info().height == 0


def test_chunks_of_one_source_sharing_a_start_are_duplicates(bars: pl.DataFrame) -> None:
    """A big source spilled in chunks: two chunks with a common bar start hold a duplicate,
    while a chunk overlapping another source identically is merged."""
    from lazybars._merge import Part, merge

    other = Part.of(bars, "other.csv")
    chunks = [Part.of(bars[:600], "big.csv"), Part.of(bars[600:], "big.csv")]
    merged = merge([other, *chunks])
    assert merged.lazy.collect().equals(bars)
    overlapping = [Part.of(bars[:600], "big.csv"), Part.of(bars[599:], "big.csv")]
    with pytest.raises(lb.SchemaError, match=r"big.csv has 1 duplicate bars"):
        merge([other, *overlapping])
