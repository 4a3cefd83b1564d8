"""``lb.ingest_into``: sources, symbols, appends, spilling, progress and failures."""

from __future__ import annotations

import builtins
import importlib.util
import types
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

import lazybars as lb
from lazybars.intake import safe_symbol

NY = "America/New_York"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return lb.synth.minute_bars("MES", "2024-01-02", "2024-01-12", extras=True)


def csv(folder: Path, name: str, frame: pl.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    frame.write_csv(path)
    return path


def stored(root: Path, symbol: str, timestep: str | None = None) -> pl.DataFrame:
    out = lb.BarStore(root).scan(symbol, timestep).collect()
    return out.with_columns(pl.col("datetime").dt.convert_time_zone(NY))


def test_files_folders_and_lists(tmp_path: Path, bars: pl.DataFrame) -> None:
    a = csv(tmp_path / "in", "AAA.csv", bars)
    csv(tmp_path / "in" / "sub", "BBB.csv", bars[:500])
    (tmp_path / "in" / "metadata.json").write_text("{}")  # ignored in folders
    summary = lb.ingest_into(tmp_path / "cat", [tmp_path / "in"], str(a))
    assert summary["symbol"].to_list() == ["AAA", "BBB"]
    # The same file twice is the same bars twice: identical, so kept once.
    assert summary["rows"].to_list() == [bars.height, 500]
    assert summary["sources"].to_list() == [1, 1]
    assert stored(tmp_path / "cat", "AAA").equals(bars)


def test_several_files_of_one_symbol_are_merged(tmp_path: Path, bars: pl.DataFrame) -> None:
    parts = [csv(tmp_path, f"p{i}.csv", bars[i : i + 750]) for i in range(0, bars.height, 700)]
    summary = lb.ingest_into(tmp_path / "cat", *reversed(parts), symbol="MES")
    assert summary.row(0, named=True)["sources"] == len(parts)
    assert stored(tmp_path / "cat", "MES").equals(bars)


def test_one_ingest_equals_ingest_then_appends(tmp_path: Path, bars: pl.DataFrame) -> None:
    parts = [csv(tmp_path, f"p{i}.csv", bars[i : i + 900]) for i in range(0, bars.height, 600)]
    lb.ingest_into(tmp_path / "one", *parts, symbol="MES")
    lb.ingest_into(tmp_path / "steps", parts[2], symbol="MES")
    for part in (parts[0], *parts[3:], parts[1]):
        summary = lb.ingest_into(tmp_path / "steps", part, symbol="MES", append=True)
    assert summary["rows"].item() == bars.height
    assert stored(tmp_path / "one", "MES").equals(stored(tmp_path / "steps", "MES"))


def test_added_counts_only_new_bars(tmp_path: Path, bars: pl.DataFrame) -> None:
    lb.ingest_into(tmp_path / "cat", csv(tmp_path, "a.csv", bars[:1000]), symbol="MES")
    summary = lb.ingest_into(
        tmp_path / "cat", csv(tmp_path, "b.csv", bars[800:1500]), symbol="MES", append=True
    )
    assert summary.select("rows", "added").row(0) == (1500, 500)


def test_replace_is_the_default(tmp_path: Path, bars: pl.DataFrame) -> None:
    lb.ingest_into(tmp_path / "cat", csv(tmp_path, "a.csv", bars[:1000]), symbol="MES")
    lb.ingest_into(tmp_path / "cat", csv(tmp_path, "b.csv", bars[1000:]), symbol="MES")
    assert stored(tmp_path / "cat", "MES").equals(bars[1000:])


def test_spilling_gives_the_same_catalog(tmp_path: Path, bars: pl.DataFrame) -> None:
    files = [csv(tmp_path, f"S{i}.csv", bars) for i in range(3)]
    lb.ingest_into(tmp_path / "mem", *files)
    lb.ingest_into(tmp_path / "disk", *files, buffer_rows=1000)
    for s in ("S0", "S1", "S2"):
        assert stored(tmp_path / "mem", s).equals(stored(tmp_path / "disk", s))
    assert [p.name for p in (tmp_path / "disk").iterdir()] == ["1m"]


def test_spilled_chunks_overlapping_another_source_are_merged(
    tmp_path: Path, bars: pl.DataFrame
) -> None:
    """Found in review: a source spilled in several chunks, overlapping another source
    identically, was taken for a source with duplicate bars."""
    full = csv(tmp_path, "full.csv", bars)
    tail = csv(tmp_path, "tail.csv", bars[bars.height // 3 :])
    lb.ingest_into(tmp_path / "cat", full, tail, symbol="MES", buffer_rows=1000)
    assert stored(tmp_path / "cat", "MES").equals(bars)
    # A duplicate bar inside one source still fails, when its copies land in two chunks.
    twice = csv(tmp_path, "twice.csv", pl.concat([bars[:1500], bars[1400:3000]]))
    with pytest.raises(lb.SchemaError, match=r"twice.csv.*(duplicate bars|share a timestamp)"):
        lb.ingest_into(tmp_path / "dup", twice, symbol="MES", buffer_rows=1000)


def test_symbol_for_a_many_symbol_source_is_refused(tmp_path: Path, bars: pl.DataFrame) -> None:
    two = pl.concat([bars.with_columns(symbol=pl.lit("A")), bars.with_columns(symbol=pl.lit("B"))])
    path = csv(tmp_path, "two.csv", two)
    with pytest.raises(lb.InvalidRequest, match=r"holds several symbols \(\['A', 'B'\]\)"):
        lb.ingest_into(tmp_path / "cat", path, symbol="X")
    lb.ingest_into(tmp_path / "cat", path, symbol={"A": "AAA"})
    assert lb.BarStore(tmp_path / "cat").symbols() == ["AAA", "B"]


def test_unsorted_sources_warn_once_each(tmp_path: Path, bars: pl.DataFrame) -> None:
    path = csv(tmp_path, "MES.csv", bars.reverse())
    with pytest.warns(lb.UnsortedBarsWarning, match="MES.csv were not in time order") as caught:
        lb.ingest_into(tmp_path / "cat", path, buffer_rows=2000)
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert stored(tmp_path / "cat", "MES").equals(bars)


def test_progress_reports_bytes_then_files(tmp_path: Path, bars: pl.DataFrame) -> None:
    files = [csv(tmp_path, f"S{i}.csv", bars) for i in range(2)]
    calls: list[tuple[str, int, int]] = []
    lb.ingest_into(tmp_path / "cat", *files, progress=lambda *a: calls.append(a), buffer_rows=2000)
    reads = [c for c in calls if c[0] == "read"]
    writes = [c for c in calls if c[0] == "write"]
    total = sum(f.stat().st_size for f in files)
    assert reads[-1] == ("read", total, total)
    assert [d for _, d, _ in reads] == sorted(d for _, d, _ in reads)
    assert writes == [("write", 1, 2), ("write", 2, 2)]


def test_lumibot_like_data_objects(tmp_path: Path, bars: pl.DataFrame) -> None:
    def data(symbol: str, frame: pl.DataFrame, timestep: str) -> types.SimpleNamespace:
        df = frame.to_pandas().set_index("datetime")
        return types.SimpleNamespace(
            asset=types.SimpleNamespace(symbol=symbol), df=df, timestep=timestep
        )

    daily = bars.group_by_dynamic("datetime", every="1d").agg(
        pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last()
    )
    pandas_data = {"k1": data("MES", bars, "minute"), "k2": data("MES", daily, "day")}
    summary = lb.ingest_into(tmp_path / "cat", pandas_data, [data("MNQ", bars[:10], "minute")])
    assert summary.select("symbol", "timestep").rows() == [
        ("MES", "1m"),
        ("MES", "1d"),
        ("MNQ", "1m"),
    ]
    assert stored(tmp_path / "cat", "MES", "1m").equals(bars)


@pytest.mark.skipif(importlib.util.find_spec("lumibot") is None, reason="needs lumibot (its extra)")
def test_real_lumibot_data(tmp_path: Path, bars: pl.DataFrame) -> None:
    from lumibot.entities import Asset, Data

    item = Data(
        Asset("MES", asset_type="stock"), bars.to_pandas().set_index("datetime"), timestep="minute"
    )
    lb.ingest_into(tmp_path / "cat", [item])
    got = lb.BarStore(tmp_path / "cat").scan("MES").collect()
    assert got.select("open", "high", "low", "close").equals(
        bars.select("open", "high", "low", "close")
    )


@pytest.mark.parametrize(
    ("source", "error", "pattern"),
    [
        ("missing.csv", lb.InvalidRequest, r"no such file or folder: .*missing.csv"),
        ("notes.txt", lb.InvalidRequest, r"unknown file type; lazybars ingests \.dbn"),
        (42, lb.InvalidRequest, r"cannot ingest a int"),
        ("empty", lb.InvalidRequest, r"holds no \.dbn, \.dbn\.zst, \.csv"),
    ],
)
def test_bad_sources(tmp_path: Path, source: object, error: type, pattern: str) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    arg = tmp_path / source if isinstance(source, str) else source
    with pytest.raises(error, match=pattern):
        lb.ingest_into(tmp_path / "cat", arg)


def test_no_sources(tmp_path: Path) -> None:
    with pytest.raises(lb.InvalidRequest, match="no sources given"):
        lb.ingest_into(tmp_path / "cat")


def test_a_late_bad_source_writes_nothing(tmp_path: Path, bars: pl.DataFrame) -> None:
    root = tmp_path / "cat"
    lb.ingest_into(root, csv(tmp_path, "OLD.csv", bars[:100]))
    before = snapshot(root)
    good = csv(tmp_path / "in", "GOOD.csv", bars)
    bad = tmp_path / "in" / "ZZZ.csv"
    bad.write_text("datetime,open,high,low\n2024-01-02T09:30:00Z,1,2,0.5\n")
    with pytest.raises(lb.SchemaError, match=r"ZZZ.csv \(ZZZ\): missing price column"):
        lb.ingest_into(root, good, bad, buffer_rows=500)
    assert snapshot(root) == before


def test_a_conflict_between_sources_writes_nothing(tmp_path: Path, bars: pl.DataFrame) -> None:
    root = tmp_path / "cat"
    lb.ingest_into(root, csv(tmp_path, "OLD.csv", bars[:100]))
    before = snapshot(root)
    a = csv(tmp_path / "a", "MES.csv", bars[:600])
    b = csv(tmp_path / "b", "MES.csv", bars[500:].with_columns(pl.col("volume") + 1))
    with pytest.raises(lb.SchemaError, match=r"overlapping bars differ.*volume"):
        lb.ingest_into(root, a, b)
    assert snapshot(root) == before


def test_the_same_store_object_or_a_path(tmp_path: Path, bars: pl.DataFrame) -> None:
    store = lb.BarStore.from_frames({})
    lb.ingest_into(store, csv(tmp_path, "MES.csv", bars))
    assert (
        store.scan("MES")
        .collect()
        .with_columns(pl.col("datetime").dt.convert_time_zone(NY))
        .equals(bars)
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("MES.c.0", "MES.c.0"), ("EUR/USD", "EUR-USD"), ("A\\B", "A-B"), (".hidden", "_hidden")],
)
def test_safe_symbols(name: str, expected: str) -> None:
    assert safe_symbol(name) == expected
    assert lb.store.check_symbol(expected) == expected


def test_dbn_without_its_extra_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs with or without databento-dbn: its import is blocked here."""
    path = tmp_path / "x.dbn"
    path.write_bytes(b"DBN\x03" + bytes(60))
    real = builtins.__import__

    def blocked(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("databento_dbn"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    with pytest.raises(lb.SchemaError, match=r"pip install 'lazybars\[databento\]'"):
        lb.ingest_into(tmp_path / "cat", path)


# -- timestep inference ---------------------------------------------------------------------
def test_an_illiquid_symbol_gets_the_timestep_of_its_file(tmp_path: Path) -> None:
    start = 1_704_205_800
    minutes = {"LIQ": range(60), "ILL": [m for m in range(60) if m % 5 in (0, 2)]}
    rows = sorted((m, s) for s, ms in minutes.items() for m in ms)
    text = "ticker,timestamp,open,high,low,close\n" + "".join(
        f"{s},{start + 60 * m},1,2,0.5,1.5\n" for m, s in rows
    )
    (tmp_path / "flat.csv").write_text(text)
    summary = lb.ingest_into(tmp_path / "cat", tmp_path / "flat.csv")
    assert summary["timestep"].to_list() == ["1m", "1m"]
    # Alone, its 2 and 3 minute spacings are still minute bars: never a coarser timestep.
    (tmp_path / "ILL.csv").write_text(
        "timestamp,open,high,low,close\n"
        + "".join(f"{start + 60 * m},1,2,0.5,1.5\n" for m in minutes["ILL"])
    )
    assert lb.ingest_into(tmp_path / "cat", tmp_path / "ILL.csv")["timestep"][0] == "1m"


def test_the_timestep_is_inferred_from_the_whole_source(tmp_path: Path) -> None:
    # A quiet start (a bar every 2 minutes) fills the first batches; minute bars follow.
    start = pd.Timestamp("2024-01-02 00:00", tz="UTC")
    when = [start + pd.Timedelta(minutes=2 * i) for i in range(3000)]
    when += [when[-1] + pd.Timedelta(minutes=1 + i) for i in range(1000)]
    n = len(when)
    frame = pl.DataFrame({"datetime": when, "open": [1.0] * n, "high": 2.0, "low": 0.5})
    frame = frame.with_columns(close=pl.lit(1.5), volume=pl.lit(1.0))
    frame.write_parquet(tmp_path / "X.parquet", row_group_size=1024)
    summary = lb.ingest_into(tmp_path / "cat", tmp_path / "X.parquet", buffer_rows=2048)
    assert summary["timestep"].to_list() == ["1m"]
    local = pl.col("datetime").dt.cast_time_unit("ns").dt.convert_time_zone(NY)
    assert stored(tmp_path / "cat", "X").equals(frame.with_columns(local))
    assert [p.name for p in (tmp_path / "cat").iterdir()] == ["1m"]  # no spill left


# -- folders --------------------------------------------------------------------------------
def test_folders_skip_hidden_entries_and_the_catalog(tmp_path: Path, bars: pl.DataFrame) -> None:
    data = tmp_path / "data"
    csv(data, "MES.csv", bars)
    csv(data / ".cache", "OLD.csv", bars[:10])
    csv(data, ".MNQ.csv", bars[:10])
    for _ in range(2):  # the second time, the catalog is inside the folder
        summary = lb.ingest_into(data / "catalog", data)
        assert summary["symbol"].to_list() == ["MES"] and summary["sources"].to_list() == [1]
    assert lb.BarStore(data / "catalog").symbols() == ["MES"]
    # A folder holding only the catalog (or hidden files) holds nothing to read.
    with pytest.raises(lb.InvalidRequest, match="hidden entries and the target catalog"):
        lb.ingest_into(data / "catalog", data / "catalog")
