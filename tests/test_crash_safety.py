"""Crash safety: writers killed with SIGKILL at random moments never expose a partial file.

DESIGN: "A write is atomic: a failure or a crash mid-write leaves the previous data readable
and unchanged." ``test_store`` simulates failures inside one process (exceptions, a missing
rename); here real writer processes are killed with SIGKILL (no cleanup, no ``finally``) at
random points of many writes, while this process reads the same symbols. Every read, during
and after the writes, must be exactly version A or exactly version B, and the hidden
temporary files a kill leaves behind must never show up as symbols.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

import lazybars as lb

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="Linux only: SIGKILL, select() on pipes"
)

# Writes its two frames in turn; with "append", the second is appended to the first.
WRITER = """
import sys
import polars as pl
import lazybars as lb

root, symbol, first, second, how = sys.argv[1:6]
versions = [pl.read_parquet(first), pl.read_parquet(second)]
store = lb.BarStore(root)
sys.stdout.write("ready\\n")
sys.stdout.flush()
i = 0
while True:
    mode = "append" if how == "append" and i % 2 else "replace"
    store.write(symbol, versions[i % 2], mode=mode)
    i += 1
"""

ROUNDS = 8  # each round starts two writer processes and kills both
SYMBOLS = ("SYM", "ALT")
MAX_KILL_DELAY = 0.35  # seconds after a writer is ready
NY = "America/New_York"


def versions() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Two distinguishable versions: different lengths, prices and a version marker."""
    a = lb.synth.minute_bars("V", "2024-01-01", "2024-01-15", session="24h", gaps=0, seed=1)
    b = lb.synth.minute_bars("V", "2024-01-08", "2024-01-18", session="24h", gaps=0.01, seed=2)
    return (
        a.with_columns(version=pl.lit(1.0)),
        b.with_columns(version=pl.lit(2.0)),
    )


def appended_versions() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(A, the bars appended to A, B = their union): the append overlaps A by 100 bars."""
    full = lb.synth.minute_bars("V", "2024-01-01", "2024-01-20", session="24h", gaps=0.01)
    cut = full.height // 2
    return full[:cut], full[cut - 100 :], full


def launch_writer(
    root: Path, symbol: str, a: Path, b: Path, how: str = "replace"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), symbol, str(a), str(b), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else b""
    if line != b"ready\n":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"writer did not start: {line!r} {err.decode()[-2000:]}")


def start_writer(root: Path, symbol: str, a: Path, b: Path) -> subprocess.Popen[bytes]:
    proc = launch_writer(root, symbol, a, b)
    wait_ready(proc)
    return proc


def which(frame: pl.DataFrame, a: pl.DataFrame, b: pl.DataFrame) -> str:
    """'A' or 'B' when ``frame`` is exactly that version; fails otherwise."""
    if frame.equals(a):
        return "A"
    if frame.equals(b):
        return "B"
    pytest.fail(f"a reader saw a frame that is neither version: {frame.shape}\n{frame}")


def check_listing(root: Path) -> int:
    """Symbols are exactly SYMBOLS, at 1m only; returns the number of hidden leftovers."""
    store = lb.BarStore(root)
    assert store.symbols() == sorted(SYMBOLS)
    assert store.symbols(timestep="1m") == sorted(SYMBOLS)
    for symbol in SYMBOLS:
        assert store.timesteps(symbol) == ["1m"]
    names = os.listdir(root / "1m")
    visible = sorted(n for n in names if not n.startswith("."))
    assert visible == sorted(f"{s}.parquet" for s in SYMBOLS), names
    assert sorted(os.listdir(root)) == ["1m"]
    return len(names) - len(visible)


def read_all(root: Path, a: pl.DataFrame, b: pl.DataFrame, seen: Counter[str]) -> None:
    store = lb.BarStore(root)
    assert store.symbols() == sorted(SYMBOLS)  # never a temporary file
    for symbol in SYMBOLS:
        try:
            frame = store.scan(symbol).collect()
        except BaseException as exc:  # polars panics derive from BaseException
            if isinstance(exc, KeyboardInterrupt):
                raise
            pytest.fail(f"a read racing a writer failed: {type(exc).__name__}: {exc}"[:2000])
        seen[which(frame, a, b)] += 1


@pytest.mark.parametrize("how", ["replace", "append"])
def test_sigkilled_writers_never_expose_a_partial_file(tmp_path: Path, how: str) -> None:
    """Replacing: readers see A or B. Appending B's newer bars to A: readers see A or A+new."""
    files = tmp_path / "versions"
    files.mkdir()
    if how == "append":
        a, appended, b = appended_versions()
        appended.write_parquet(files / "b.parquet")
    else:
        a, b = versions()
        b.write_parquet(files / "b.parquet")
    a.write_parquet(files / "a.parquet")
    root = tmp_path / "catalog"
    store = lb.BarStore(root)
    for symbol in SYMBOLS:
        store.write(symbol, a)
    # What the store hands back is the canonical form: here, the versions themselves.
    assert which(store.scan("SYM").collect(), a, b) == "A"

    rng = random.Random(20240611)
    seen: Counter[str] = Counter()
    after_kill: Counter[str] = Counter()
    leftovers = 0
    for _ in range(ROUNDS):
        writers = [
            launch_writer(root, symbol, files / "a.parquet", files / "b.parquet", how)
            for symbol in SYMBOLS
        ]
        try:
            for w in writers:
                wait_ready(w)
            kill_at = {id(w): time.monotonic() + rng.uniform(0, MAX_KILL_DELAY) for w in writers}
            alive = list(writers)
            # Read while the writers write; kill each at its moment.
            while alive:
                read_all(root, a, b, seen)
                for w in list(alive):
                    if time.monotonic() >= kill_at[id(w)]:
                        w.send_signal(signal.SIGKILL)
                        alive.remove(w)
        finally:
            for w in writers:
                if w.poll() is None:
                    w.kill()
                w.communicate()
        assert all(w.returncode == -signal.SIGKILL for w in writers), [
            w.returncode for w in writers
        ]
        # After the crash: complete old or complete new, in a fresh store and a fresh source.
        fresh = lb.BarStore(root)
        src = lb.DataSource(fresh)
        src.set_datetime(a["datetime"][-1] + (b["datetime"][-1] - a["datetime"][0]))
        for symbol in SYMBOLS:
            version = which(fresh.scan(symbol).collect(), a, b)
            after_kill[version] += 1
            served = src.get_historical_prices(symbol, 10**6).pl
            assert which(served, a, b) == version
        leftovers = check_listing(root)

    assert seen["A"] and seen["B"], seen  # the readers really raced the writers
    assert sum(after_kill.values()) == ROUNDS * len(SYMBOLS)
    # Whatever temporary files the kills left are hidden, ignored, and harmless to writes;
    # so are the writers' lock files (a killed writer's lock is released with its process).
    hidden = [n for n in os.listdir(root / "1m") if n.startswith(".")]
    assert len(hidden) == leftovers
    assert all(n.endswith((".tmp", ".parquet.lock")) for n in hidden), hidden
    store.write("SYM", b)
    assert which(lb.BarStore(root).scan("SYM").collect(), a, b) == "B"
    check_listing(root)


@pytest.mark.parametrize("delay", [0.0, 0.003, 0.02])
def test_a_killed_first_write_leaves_no_symbol_or_a_complete_one(
    tmp_path: Path, delay: float
) -> None:
    """A symbol's very first write, killed: the symbol is absent or whole, never broken."""
    a, b = versions()
    files = tmp_path / "versions"
    files.mkdir()
    a.write_parquet(files / "a.parquet")
    b.write_parquet(files / "b.parquet")
    root = tmp_path / "catalog"
    lb.BarStore(root).write("SYM", b)
    writer = start_writer(root, "NEW", files / "a.parquet", files / "b.parquet")
    try:
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.communicate()
    store = lb.BarStore(root)
    assert store.symbols() in (["SYM"], ["NEW", "SYM"])
    assert which(store.scan("SYM").collect(), a, b) == "B"
    if "NEW" in store.symbols():
        which(store.scan("NEW").collect(), a, b)
    else:
        with pytest.raises(lb.UnknownAsset):
            store.scan("NEW")
    assert sorted(n for n in os.listdir(root / "1m") if not n.startswith(".")) == sorted(
        f"{s}.parquet" for s in store.symbols()
    )
    # The next write of NEW succeeds whatever the kill left behind.
    store.write("NEW", a)
    assert which(store.scan("NEW").collect(), a, b) == "A"


INGEST = """
import sys
import lazybars as lb

root, source = sys.argv[1:3]
sys.stdout.write("ready\\n")
sys.stdout.flush()
lb.ingest_into(root, source, symbol="SYM", append=True, buffer_rows=20_000)
sys.stdout.write("done\\n")
"""


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8, 1.5, 3.0])
def test_a_killed_ingest_leaves_old_or_new_bars(tmp_path: Path, delay: float) -> None:
    """``lazybars ingest --append`` killed at any moment: the symbol is old or old+new,
    its spill folder and temporary files are hidden, and a new ingest succeeds."""
    old, _, full = appended_versions()
    new = full[old.height - 100 :]
    root = tmp_path / "catalog"
    lb.BarStore(root).write("SYM", old)
    source = tmp_path / "new.csv"
    new.write_csv(source)
    proc = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(root), str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_ready(proc)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGKILL), err.decode()[-2000:]
    store = lb.BarStore(root)
    assert store.symbols() == ["SYM"]
    got = store.scan("SYM").collect().with_columns(pl.col("datetime").dt.convert_time_zone(NY))
    assert which(got, old, full) in ("A", "B")
    assert all(n.startswith(".") for n in os.listdir(root) if n != "1m")
    lb.ingest_into(root, source, symbol="SYM", append=True)
    got = lb.BarStore(root).scan("SYM").collect()
    assert got.with_columns(pl.col("datetime").dt.convert_time_zone(NY)).equals(full)
