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


# Compacts SYM, killing itself with SIGKILL at the given point of the compaction.
COMPACTOR = """
import os, signal, sys
from pathlib import Path
import lazybars as lb
import lazybars.ingest

root, point = sys.argv[1:3]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "writing":  # the new base's temporary file is written, not yet renamed
    write_bars = lazybars.ingest.write_bars
    def writing(frame, fh, metadata=None):
        write_bars(frame, fh, metadata)
        fh.flush()
        die()
    lazybars.ingest.write_bars = writing
elif point == "renamed":  # the new base is in place, the manifest still names the old
    replace = os.replace
    def renamed(src, dst):
        replace(src, dst)
        if str(dst).endswith("SYM.parquet"):
            die()
    os.replace = renamed
elif point == "unlinked":  # the manifest is gone, the parts are not cleared
    unlink = Path.unlink
    def unlinked(self, missing_ok=False):
        unlink(self, missing_ok=missing_ok)
        die()
    Path.unlink = unlinked
lb.BarStore(root).compact("SYM")
"""


@pytest.mark.parametrize("point", ["writing", "renamed", "unlinked"])
def test_a_compaction_killed_at_any_point_loses_and_doubles_nothing(
    tmp_path: Path, point: str
) -> None:
    """SIGKILL inside a compaction (a real process): the store reads exactly the bars
    appended, and the next append and compaction clear what the kill left."""
    full = lb.synth.minute_bars("V", "2024-01-01", "2024-01-20", session="24h", gaps=0.01)
    root = tmp_path / "catalog"
    store = lb.BarStore(root)
    store.write("SYM", full[:10_000])
    for start in range(10_000, 10_300, 100):
        store.write("SYM", full[start : start + 100], mode="append")
    assert store.info()["parts"].item() == 3
    proc = subprocess.run(
        [sys.executable, "-c", COMPACTOR, str(root), point],
        check=False,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    fresh = lb.BarStore(root)
    assert fresh.scan("SYM").collect().equals(full[:10_300])
    assert fresh.info()["rows"].item() == 10_300
    assert fresh.info()["parts"].item() == (3 if point == "writing" else 0)
    check_hidden(root)
    fresh.write("SYM", full[10_300:10_400], mode="append")
    assert fresh.scan("SYM").collect().equals(full[:10_400])
    fresh.compact()
    fresh.compact()  # nothing left to fold: the leftovers go
    assert fresh.scan("SYM").collect().equals(full[:10_400])
    # Only the lock file and a killed write's temporary file (as after any killed write).
    names = [n for n in os.listdir(root / "1m") if not n.endswith(".tmp")]
    assert sorted(names) == [".SYM.parquet.lock", "SYM.parquet"]


def check_hidden(root: Path) -> None:
    """Whatever a kill leaves is hidden: SYM is the only symbol."""
    assert lb.BarStore(root).symbols() == ["SYM"]
    assert [n for n in os.listdir(root / "1m") if not n.startswith(".")] == ["SYM.parquet"]


# Appends one slice after another (each after the stored bars: parts, compacted every few
# appends), saying which it finished; killed at a random moment.
APPENDER = """
import sys
import polars as pl
import lazybars as lb
import lazybars._parts

lazybars._parts.COMPACT_PARTS = 3
root, source = sys.argv[1:3]
full = pl.read_parquet(source)
store = lb.BarStore(root)
sys.stdout.write("ready\\n")
sys.stdout.flush()
for start in range(store.info()["rows"].item(), full.height, 50):
    store.write("SYM", full[start : start + 50], mode="append")
    sys.stdout.write(f"{min(start + 50, full.height)}\\n")
    sys.stdout.flush()
"""


def test_sigkilled_appends_and_compactions_lose_nothing(tmp_path: Path) -> None:
    """Appends (parts, and compactions every three) killed at random moments: the store
    holds every append that returned, and at most the one in flight, never a bar twice."""
    # Long enough that the appender (about 3 ms an append) is always killed mid-way.
    full = lb.synth.minute_bars("V", "2024-01-01", "2024-03-20", session="24h", gaps=0.01)
    source = tmp_path / "full.parquet"
    full.write_parquet(source)
    root = tmp_path / "catalog"
    lb.BarStore(root).write("SYM", full[:1_000])
    rng = random.Random(20241203)
    for _ in range(6):
        stored = lb.BarStore(root).info()["rows"].item()
        proc = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(root), str(source)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_ready(proc)
            time.sleep(rng.uniform(0.1, 1.0))
            proc.send_signal(signal.SIGKILL)
        finally:
            out, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        done = [int(line) for line in out.decode().split()[1:]]
        returned = done[-1] if done else stored
        got = lb.BarStore(root).scan("SYM").collect()
        assert got.height in (returned, returned + 50), (returned, got.height)
        assert got.equals(full[: got.height])
        check_hidden(root)
