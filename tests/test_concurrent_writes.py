"""Writers racing on one catalog file: appends from several processes lose no bars.

On disk a writer holds an OS file lock on ``<timestep>/.<symbol>.parquet.lock`` around its
read-merge-write (and around a plain replace); on S3 an append uploads on the condition that
the object is still the version it merged onto, and merges again when it is not.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import polars.testing
import pytest
from catalogs import DirectoryCatalog, S3Catalog

import lazybars as lb

TIMEOUT = 120  # seconds a writer process may take before the test fails

# Waits for a go file so that the writers start their appends together.
APPENDER = """
import json, sys, time
from pathlib import Path
import lazybars as lb
root, source, how, go, options = sys.argv[1:6]
store = lb.BarStore(root, storage_options=json.loads(options))
bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03") if how == "replace" else None
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.002)
if how == "ingest":
    lb.ingest_into(store, source, append=True)
elif how == "append":
    import polars as pl
    store.write("MES", pl.read_parquet(source), mode="append")
else:
    store.write("MES", bars)
"""


@pytest.fixture(scope="module")
def year() -> pl.DataFrame:
    """A base (the first days), then two disjoint halves of the rest."""
    return lb.synth.minute_bars("MES", "2023-01-02", "2024-01-02", session="24h", gaps=0)


def halves(year: pl.DataFrame, tmp_path: Path) -> tuple[pl.DataFrame, list[Path]]:
    """The base bars, and the two halves of the rest as ``MES.parquet`` files."""
    base, rest = year.head(5_000), year.slice(5_000)
    files = []
    for i, half in enumerate((rest.head(rest.height // 2), rest.slice(rest.height // 2))):
        folder = tmp_path / f"half{i}"
        folder.mkdir()
        half.write_parquet(folder / "MES.parquet")
        files.append(folder / "MES.parquet")
    return base, files


def launch(root: str, source: Path | None, how: str, go: Path, options: Any = None) -> Any:
    proc = subprocess.Popen(
        [sys.executable, "-c", APPENDER, root, str(source), how, str(go), json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != b"ready\n":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the writer did not start: {err.decode()[-2000:]}")
    return proc


def finish(proc: Any) -> None:
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"a writer took more than {TIMEOUT} s")
    assert proc.returncode == 0, err.decode()[-2000:]


def race(root: str, files: list[Path], how: str, tmp_path: Path, options: Any = None) -> None:
    """Two processes append one half each, starting together."""
    go = tmp_path / "go"
    writers = [launch(root, f, how, go, options) for f in files]
    try:
        go.touch()
    finally:
        for w in writers:
            finish(w)


@pytest.mark.parametrize("how", ["append", "ingest"])
def test_two_appending_processes_lose_no_bars_on_disk(
    tmp_path: Path, year: pl.DataFrame, how: str
) -> None:
    base, files = halves(year, tmp_path)
    root = tmp_path / "catalog"
    lb.BarStore(root).write("MES", base)
    race(str(root), files, how, tmp_path)
    polars.testing.assert_frame_equal(lb.BarStore(root).scan("MES").collect(), year)


@pytest.mark.parametrize("how", ["append", "ingest"])
def test_two_appending_processes_lose_no_bars_on_s3(
    s3_server: Any, tmp_path: Path, year: pl.DataFrame, how: str
) -> None:
    base, files = halves(year, tmp_path)
    catalog = S3Catalog(s3_server, s3_server.bucket())
    catalog.open().write("MES", base)
    # Uploads are held so that both writers have read the object before either replaces
    # it: the second upload must be refused (412) and merged again.
    uploads = lambda method, query: method == "PUT"  # noqa: E731
    with s3_server.log() as requests, s3_server.holding(uploads, 1.5):
        race(catalog.root, files, how, tmp_path, catalog.options)
    assert any(r.method == "PUT" and r.status == 412 for r in requests)
    polars.testing.assert_frame_equal(catalog.open().scan("MES").collect(), year)


@pytest.mark.parametrize("how", ["append", "replace"])
def test_a_writer_waits_for_the_file_lock(tmp_path: Path, year: pl.DataFrame, how: str) -> None:
    """While another process holds the lock, an append (or a replace) neither writes nor
    fails; it writes once the lock is released."""
    base, files = halves(year, tmp_path)
    root = tmp_path / "catalog"
    store = lb.BarStore(root)
    store.write("MES", base)
    lock = root / "1m" / ".MES.parquet.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        go = tmp_path / "go"
        writer = launch(str(root), files[0], how, go)
        go.touch()
        time.sleep(1.0)
        assert writer.poll() is None  # waiting
        polars.testing.assert_frame_equal(store.scan("MES").collect(), base)
    finish(writer)
    expected = (
        pl.concat([base, pl.read_parquet(files[0])])
        if how == "append"
        else lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03")
    )
    polars.testing.assert_frame_equal(store.scan("MES").collect(), expected)


def test_lock_files_are_never_listed(tmp_path: Path, year: pl.DataFrame) -> None:
    catalog = DirectoryCatalog(tmp_path / "catalog")
    store = catalog.open()
    store.write("MES", year.head(100))
    store.write("MES", year.slice(100, 100), mode="append")
    store.write("MES", year.head(50), timestep="5m")
    tree = sorted(catalog.tree())
    # The append (as large as the base) was compacted at once; its part file stays until
    # the next rewrite, for lazy scans planned before the compaction.
    parts = [n for n in tree if n.startswith("catalog/1m/.MES.parts/")]
    assert len(parts) == 1
    assert [n for n in tree if n not in parts] == [
        "catalog/1m/.MES.parquet.lock",
        "catalog/1m/MES.parquet",
        "catalog/5m/.MES.parquet.lock",
        "catalog/5m/MES.parquet",
    ]
    assert store.symbols() == ["MES"]
    assert store.timesteps("MES") == ["1m", "5m"]
    assert store.info()["symbol"].to_list() == ["MES", "MES"]


def test_an_s3_append_that_keeps_losing_the_race_writes_nothing(
    s3_server: Any, year: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer appends before each conditional upload of the parts manifest: after a
    bounded number of attempts the append fails naming the symbol, and the rival's bars
    stay."""
    import obstore

    catalog = S3Catalog(s3_server, s3_server.bucket())
    store = catalog.open()
    store.write("MES", year.head(1_000))
    rival = catalog.open()
    put = obstore.put
    conditional = []
    racing = []

    def rival_first(store: Any, path: str, file: Any, **options: Any) -> Any:
        if options.get("mode") is not None and path.endswith("manifest.json") and not racing:
            conditional.append(options["mode"])
            racing.append(True)  # the rival's own uploads go through
            try:
                rival.write("MES", year.slice(999 + len(conditional), 1), mode="append")
            finally:
                racing.clear()
        return put(store, path, file, **options)

    monkeypatch.setattr(obstore, "put", rival_first)
    with pytest.raises(lb.StorageError, match=r"cannot write MES at 1m .* write again"):
        store.write("MES", year.slice(1_000, 500), mode="append")
    assert 1 < len(conditional) < 10  # tried again, a bounded number of times
    polars.testing.assert_frame_equal(
        catalog.open().scan("MES").collect(), year.head(1_000 + len(conditional))
    )
