"""Appended parts (``lazybars._parts``): an append after the stored bars costs the new bars.

A key is its base file plus the parts appended since the last compaction, listed in a
manifest that applies only to the base generation it names. These tests count what an
append reads and writes (not how long it takes), check reads across base and parts
against a plain concat-and-dedupe oracle, and check that stale parts are ignored.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import polars as pl
import polars.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazybars as lb
import lazybars._parts
from lazybars._backend import manifest_metadata
from lazybars._directory import DirectoryBackend
from lazybars.ingest import write_bars

MINUTE = lb.Timestep.parse("1m")
DAY_OF_MINUTES = 1_440


def history(years: int) -> pl.DataFrame:
    """``years`` of minute bars, an hour a day (cheap to build and store), ending 2024-01-01."""
    days = pl.datetime_range(
        pl.datetime(2024 - years, 1, 1, time_zone="UTC"),
        pl.datetime(2023, 12, 31, time_zone="UTC"),
        "1d",
        eager=True,
    )
    starts = (days.to_frame("day").join(pl.DataFrame({"minute": range(60)}), how="cross")).select(
        datetime=pl.col("day") + pl.duration(minutes=pl.col("minute"))
    )
    return _priced(starts["datetime"])


def _priced(when: pl.Series) -> pl.DataFrame:
    price = pl.Series(range(when.len()), dtype=pl.Float64) % 1000 + 100
    return pl.DataFrame(
        {
            "datetime": when.cast(pl.Datetime("ns", "UTC")),
            "open": price,
            "high": price + 1,
            "low": price - 1,
            "close": price + 0.5,
            "volume": price * 10,
        }
    )


def one_day() -> pl.DataFrame:
    """A whole day of minute bars after every history above."""
    start = pl.datetime(2024, 1, 2, time_zone="UTC")
    when = pl.datetime_range(
        start, start + pl.duration(minutes=DAY_OF_MINUTES - 1), "1m", eager=True
    )
    return _priced(when)


@pytest.mark.parametrize("years", [1, 10])
def test_appending_a_day_reads_no_stored_bar_and_writes_only_the_day(
    tmp_path: Path, years: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acceptance test of issue 19: one day appended to 1 or to 10 years writes the
    day's rows and nothing else, and collects none of the stored bars."""
    stored = history(years)
    store = lb.BarStore(tmp_path)
    store.write("MES", stored)
    written: list[int] = []

    def counting(frame: pl.DataFrame | pl.LazyFrame, file: object, metadata: object) -> None:
        written.append(frame.lazy().select(pl.len()).collect().item())
        write_bars(frame, file, metadata)  # type: ignore[arg-type]

    def unreadable(self: DirectoryBackend, names: list[str], schema: pl.Schema) -> pl.LazyFrame:
        # Planning needs only the schema; reading any stored bar fails the test.
        paths = [tmp_path / "nowhere" / name for name in names]
        return pl.scan_parquet(paths, schema=schema, glob=False)

    monkeypatch.setattr("lazybars.ingest.write_bars", counting)
    monkeypatch.setattr(DirectoryBackend, "scan", unreadable)
    day = one_day()
    store.write("MES", day, mode="append")
    assert written == [day.height]
    monkeypatch.undo()
    polars.testing.assert_frame_equal(
        store.scan("MES").collect(), pl.concat([stored, day]).pipe(_local)
    )
    assert store.info()["parts"].item() == 1


def _local(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("datetime").dt.convert_time_zone("America/New_York"))


@st.composite
def appends(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Slices (start, stop) of a 240-bar frame: the first is written, the others appended,
    overlapping, backfilling or after the stored bars."""
    count = draw(st.integers(1, 8))
    slices = []
    for _ in range(count):
        start = draw(st.integers(0, 230))
        slices.append((start, draw(st.integers(start + 1, min(start + 60, 240)))))
    return slices


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slices=appends(), compact_at=st.sampled_from([0.25, 100.0]), tail=st.booleans())
def test_reads_across_base_and_parts_equal_the_union(
    slices: list[tuple[int, int]], compact_at: float, tail: bool
) -> None:
    """Any sequence of appends reads back as the union of the slices (a plain oracle), with
    and without automatic compaction, before and after compacting on demand."""
    frame = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03", session="24h", gaps=0)[:240]
    if tail:  # appends in time order: every one after the first becomes a part
        slices = [(i * 30, i * 30 + 30) for i in range(len(slices))]
    with tempfile.TemporaryDirectory() as root, pytest.MonkeyPatch.context() as patch:
        patch.setattr(lazybars._parts, "COMPACT_FRACTION", compact_at)
        store = lb.BarStore(root)
        memory = lb.BarStore.from_frames({})
        held: set[int] = set()
        versions = []
        for i, (start, stop) in enumerate(slices):
            for target in (store, memory):
                target.write("MES", frame[start:stop], mode="append" if i else "replace")
            held |= set(range(start, stop))
            versions.append(store._backend.describe("MES", MINUTE).version)
            expected = frame[sorted(held)]
            for target in (store, memory):
                polars.testing.assert_frame_equal(target.scan("MES").collect(), expected)
            info = store.info().row(0, named=True)
            assert info["rows"] == len(held)
            assert info["first"] == expected["datetime"][0]
            assert info["last"] == expected["datetime"][-1]
        assert len(set(versions)) == len(versions)  # every write gave a new version
        store.compact()
        assert store.info()["parts"].item() == 0
        polars.testing.assert_frame_equal(store.scan("MES").collect(), frame[sorted(held)])


@pytest.fixture
def bars() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-10", session="24h", gaps=0)


def parts_folder(root: Path) -> Path:
    return root / "1m" / ".MES.parts"


def test_an_append_after_the_stored_bars_makes_no_scan_of_them(
    catalog: Any, bars: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its plan needs their bounds and schema, which the base's footer and the manifest
    give; a scan of each stored file would cost more than the rest of the plan. An append
    that overlaps them still merges with them."""
    store = catalog.open()
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")
    backend = type(store._backend)
    scans: list[list[str]] = []
    scan = backend.scan

    def counting(self: Any, names: list[str], schema: pl.Schema) -> pl.LazyFrame:
        scans.append(names)
        return scan(self, names, schema)

    monkeypatch.setattr(backend, "scan", counting)
    store.write("MES", bars[5_100:5_200], mode="append")
    assert scans == []
    store.write("MES", bars[5_150:5_300], mode="append")  # overlaps: a new base
    assert scans
    monkeypatch.undo()
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_300])


def test_a_part_and_its_manifest_are_on_disk_before_the_manifest_names_it(
    tmp_path: Path, bars: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durability: the new part and the new manifest are flushed (fdatasync) before the
    rename that publishes the manifest, and the folder after it, three flushes in all.
    Both files are written whole, then flushed at once: the two flushes wait for the disk
    together (each waits here until the other has started)."""
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")
    folder = parts_folder(tmp_path)
    events: list[tuple[str, int, dict[int, int]]] = []
    together = threading.Barrier(2, timeout=5)

    def files() -> dict[int, int]:
        return {p.stat().st_ino: p.stat().st_size for p in folder.iterdir()}

    def recording(kind: str, real: Any) -> Any:
        def call(*args: Any) -> Any:
            first = args[0]
            inode = os.fstat(first).st_ino if kind != "rename" else os.stat(first).st_ino
            events.append((kind, inode, files()))
            if real is data_flush:
                together.wait()
            return real(*args)

        return call

    before = set(os.listdir(folder))
    data_flush = getattr(os, "fdatasync", os.fsync)
    monkeypatch.setattr(os, data_flush.__name__, recording("flush", data_flush))
    if data_flush is not os.fsync:
        monkeypatch.setattr(os, "fsync", recording("flush", os.fsync))
    monkeypatch.setattr(os, "replace", recording("rename", os.replace))
    store.write("MES", bars[5_100:5_200], mode="append")
    monkeypatch.undo()
    (new,) = set(os.listdir(folder)) - before
    part = (folder / new).stat()
    manifest = (folder / "manifest.json").stat()
    assert [kind for kind, _, _ in events] == ["flush", "flush", "rename", "flush"]
    assert {inode for _, inode, _ in events[:2]} == {part.st_ino, manifest.st_ino}
    assert events[2][1] == manifest.st_ino and events[3][1] == folder.stat().st_ino
    whole = {part.st_ino: part.st_size, manifest.st_ino: manifest.st_size}
    assert whole.items() <= events[0][2].items()  # both written before either flush
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_200])


def test_a_part_keeps_every_column_type(tmp_path: Path, bars: pl.DataFrame) -> None:
    """A base and its part, read as one, give every column's type back exactly."""
    extras = {
        "trades": pl.UInt32,
        "flag": pl.Int8,
        "vwap": pl.Float32,
        "open_interest": pl.Int64,
        "tick": pl.Decimal(10, 2),
    }
    typed = bars.with_columns(
        (pl.int_range(pl.len()) % 100).cast(dtype).alias(name) for name, dtype in extras.items()
    )
    store = lb.BarStore(tmp_path)
    store.write("MES", typed[:5_000])
    store.write("MES", typed[5_000:5_100], mode="append")
    assert store.info()["parts"].item() == 1
    out = store.scan("MES").collect()
    assert out.schema == typed.schema
    polars.testing.assert_frame_equal(out, typed[:5_100], check_exact=True)


def test_parts_of_another_generation_are_ignored(tmp_path: Path, bars: pl.DataFrame) -> None:
    """A compaction killed after it replaced the base, before it cleared the manifest:
    the manifest names the old generation, so its parts are not read twice."""
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")
    store.write("MES", bars[5_100:5_200], mode="append")
    saved = tmp_path / "saved"
    shutil.copytree(parts_folder(tmp_path), saved)
    assert store.compact().rows() == [("MES", "1m", 2, 5_200)]
    (parts_folder(tmp_path) / "manifest.json").write_bytes((saved / "manifest.json").read_bytes())
    for part in saved.glob("*.parquet"):
        shutil.copy(part, parts_folder(tmp_path))
    fresh = lb.BarStore(tmp_path)
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), bars[:5_200])
    assert fresh.info()["parts"].item() == 0 and fresh.info()["rows"].item() == 5_200
    # The next append replaces the stale manifest; the next compaction removes the rest.
    fresh.write("MES", bars[5_200:5_300], mode="append")
    assert fresh.info()["parts"].item() == 1
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), bars[:5_300])
    fresh.compact()
    fresh.write("MES", bars[5_200:5_400], mode="append")  # overlaps: a new base
    assert not parts_folder(tmp_path).exists()
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), bars[:5_400])


def test_every_file_gets_the_window_predicate(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")
    store.write("MES", bars[5_100:5_200], mode="append")
    query = store.scan("MES").between("2024-01-05", "2024-01-06")
    plan = query.explain().split("polars plan:")[1]
    scans = plan.split("SCAN")[1:]
    assert len(scans) >= 2  # the base, then the parts
    assert all("SELECTION" in s and "2024-01-05 00:00:00" in s for s in scans), plan
    ny = "America/New_York"
    inside = pl.col("datetime").is_between(
        pl.datetime(2024, 1, 5, time_zone=ny), pl.datetime(2024, 1, 6, time_zone=ny), closed="left"
    )
    polars.testing.assert_frame_equal(query.collect(), bars[:5_200].filter(inside))


def test_appends_compact_once_the_parts_are_many(
    tmp_path: Path, bars: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lazybars._parts, "COMPACT_PARTS", 4)
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    counts = []
    for i in range(6):
        store.write("MES", bars[5_000 + 10 * i : 5_010 + 10 * i], mode="append")
        counts.append(store.info()["parts"].item())
    assert counts == [1, 2, 3, 0, 1, 2]
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_060])


def test_appends_compact_once_the_parts_hold_a_quarter_of_the_base(
    tmp_path: Path, bars: pl.DataFrame
) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:1_000])
    store.write("MES", bars[1_000:1_200], mode="append")
    assert store.info()["parts"].item() == 1
    store.write("MES", bars[1_200:1_250], mode="append")  # 250 rows: a quarter of 1,000
    assert store.info()["parts"].item() == 0
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:1_250])


def test_a_lazy_frame_reads_its_bars_across_one_compaction(
    tmp_path: Path, bars: pl.DataFrame
) -> None:
    """Compacted parts stay until the next rewrite, so a polars plan taken before reads
    the same bars; after a second rewrite it fails naming the part it lost."""
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")
    lazy = store.scan("MES").lazy
    store.compact()
    polars.testing.assert_frame_equal(lazy.collect(), bars[:5_100])
    store.write("MES", bars[5_100:5_200], mode="append")
    polars.testing.assert_frame_equal(lazy.collect(), bars[:5_100])
    store.compact()
    with pytest.raises(FileNotFoundError, match=r"\.MES\.parts"):
        lazy.collect()
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_200])


def test_compact_selects_symbols_and_timesteps(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore(tmp_path)
    hourly = bars.group_by_dynamic("datetime", every="1h").agg(
        pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last()
    )
    for symbol in ("MES", "MNQ"):
        store.write(symbol, bars[:5_000])
        store.write(symbol, bars[5_000:5_010], mode="append")
        store.write(symbol, hourly[:100], timestep="1h")
        store.write(symbol, hourly[100:101], timestep="1h", mode="append")
    assert store.compact("MES", "1m").rows() == [("MES", "1m", 1, 5_010)]
    assert store.compact(["MES", "MNQ"], "1h").rows() == [
        ("MES", "1h", 1, 101),
        ("MNQ", "1h", 1, 101),
    ]
    assert store.compact().rows() == [  # finest timestep first, as info() lists them
        ("MES", "1m", 0, 5_010),
        ("MES", "1h", 0, 101),
        ("MNQ", "1m", 1, 5_010),
        ("MNQ", "1h", 0, 101),
    ]
    with pytest.raises(lb.UnknownAsset, match="'ZZZ'"):
        store.compact("ZZZ")
    with pytest.raises(lb.UnknownAsset, match="MES is not stored at 5m"):
        store.compact("MES", "5m")
    assert lb.BarStore.from_frames({"MES": bars}).compact().rows() == [
        ("MES", "1m", 0, bars.height)
    ]


def test_a_base_from_before_parts_is_rewritten_by_its_first_append(
    tmp_path: Path, bars: pl.DataFrame
) -> None:
    """A file without a generation (written by an earlier lazybars) takes none of the
    parts found beside it: its first append rewrites it with a generation."""
    path = tmp_path / "1m" / "MES.parquet"
    path.parent.mkdir(parents=True)
    when = bars["datetime"].dt.epoch("ns")
    old = json.loads(manifest_metadata(5_000, when[0], when[4_999])["lazybars"])
    del old["generation"]
    with path.open("wb") as fh:
        write_bars(bars[:5_000], fh, {"lazybars": json.dumps(old)})
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[5_000:5_010], mode="append")
    assert store.info()["parts"].item() == 0
    assert json.loads(pl.read_parquet_metadata(path)["lazybars"])["generation"]
    store.write("MES", bars[5_010:5_020], mode="append")
    assert store.info()["parts"].item() == 1
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_020])


def test_the_version_changes_with_the_stored_bars(tmp_path: Path, bars: pl.DataFrame) -> None:
    for store in (lb.BarStore(tmp_path), lb.BarStore.from_frames({})):
        seen = []
        store.write("MES", bars[:5_000])
        seen.append(store._backend.describe("MES", MINUTE))
        assert store._backend.describe("MES", MINUTE) == seen[-1]  # unchanged: equal
        store.write("MES", bars[5_000:5_010], mode="append")
        seen.append(store._backend.describe("MES", MINUTE))
        store.write("MES", bars[:5_000])
        seen.append(store._backend.describe("MES", MINUTE))
        assert len({d.version for d in seen}) == len(seen)
        assert seen[0][:4] == seen[2][:4]  # the same bars again, yet a new version


def test_hidden_parts_are_never_symbols(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_010], mode="append")
    assert parts_folder(tmp_path).is_dir()
    assert store.symbols() == ["MES"] and store.timesteps("MES") == ["1m"]
    assert lb.BarStore(tmp_path).info()["symbol"].to_list() == ["MES"]


def test_a_damaged_parts_manifest_is_named(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_010], mode="append")
    (parts_folder(tmp_path) / "manifest.json").write_text("{not json")
    with pytest.raises(lb.SchemaError, match=r"parts manifest .*manifest\.json is damaged"):
        lb.BarStore(tmp_path).scan("MES").collect()


def test_ingest_append_writes_a_part(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore(tmp_path / "catalog")
    store.write("MES", bars[:5_000])
    bars[5_000:5_500].write_csv(tmp_path / "MES.csv")
    summary = lb.ingest_into(store, tmp_path / "MES.csv", append=True)
    assert summary.select("rows", "added").row(0) == (5_500, 500)
    assert store.info()["parts"].item() == 1
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_500])


def test_a_part_takes_the_stored_zone_and_columns(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore(tmp_path)
    store.write("MES", bars[:5_000])
    utc = bars[5_000:5_010].with_columns(pl.col("datetime").dt.convert_time_zone("UTC"))
    store.write("MES", utc, mode="append")
    assert store.info()["parts"].item() == 1
    assert store.zone("MES") == "America/New_York"
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_010])
    with pytest.raises(lb.SchemaError, match="the columns differ"):
        store.write("MES", bars[5_010:5_020].drop("volume").with_columns(vwap=1.0), mode="append")
    assert store.info()["rows"].item() == 5_010
