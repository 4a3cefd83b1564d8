"""The spill of a bulk ingest (``lazybars.intake``): validated bars per source and symbol,
held in memory up to a budget, then written as sorted parquet chunks to a hidden folder.

Bars are added under the source's own symbol names; which catalog symbol and timestep
each name becomes is settled once the whole source has been read (the timestep of a
file without one is inferred from all of its bars), and only then are the parts grouped
per catalog file.

A killed ingest cannot remove its folder, so the next ingest into the same place does.
Each folder ``.ingest-XXXX`` has a lock file ``.ingest-XXXX.lock`` beside it on which its
ingest holds an exclusive OS lock (``flock``) while it runs; the kernel releases the lock
when the process ends, however it ends (SIGKILL included). A lock that can be taken
therefore belongs to a process that is gone, and its folder is removed; a live ingest's
lock cannot be taken, so its folder is never touched. Where the OS has no ``flock``
(Windows), or the file system refuses locks, nothing is removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import polars as pl

from lazybars._merge import Part
from lazybars.errors import SchemaError
from lazybars.timestep import Timestep

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["Key", "Spill", "remove_stale"]

Key = tuple[str, Timestep]
_PREFIX = ".ingest-"
_LOCK = ".lock"


class Spill:
    """Validated bars per (source, name): in memory up to ``buffer_rows``, then on disk in
    a hidden folder of ``where`` (None: the system's temporary directory)."""

    def __init__(self, where: Path | None, buffer_rows: int) -> None:
        self._where = Path(where or tempfile.gettempdir())
        self._budget = max(buffer_rows, 1)
        self._buffers: dict[tuple[int, str], list[pl.DataFrame]] = {}
        self._chunks: dict[tuple[int, str], list[Part]] = {}
        self._keys: dict[tuple[int, str], Key] = {}
        self._labels: dict[int, str] = {}
        self._rows = 0
        self._lock: int | None = None
        self._folder: Path | None = None

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            # The folder first: a lock file without its folder is harmless, a folder without
            # its lock file could never be told stale.
            self._folder.with_name(self._folder.name + _LOCK).unlink(missing_ok=True)
        if self._lock is not None:
            os.close(self._lock)

    def add(self, source: int, name: str, bars: pl.DataFrame, label: str) -> None:
        """Hold ``bars`` (canonical) of the symbol ``name`` of source number ``source``."""
        self._labels[source] = label
        self._buffers.setdefault((source, name), []).append(bars)
        self._rows += bars.height
        if self._rows >= self._budget:
            for (number, held), frames in self._buffers.items():
                label = self._labels[number]
                chunk = self._to_disk(_joined(frames, label), label)
                self._chunks.setdefault((number, held), []).append(chunk)
            self._buffers.clear()
            self._rows = 0

    def settle(self, source: int, keys: Mapping[str, Key]) -> None:
        """Name the catalog file, ``(symbol, timestep)``, of each symbol of ``source``."""
        for name, key in keys.items():
            self._keys[(source, name)] = key

    def parts(self) -> list[tuple[Key, list[Part]]]:
        """Every catalog file's parts, sorted by key (each source must be settled)."""
        for (source, name), frames in self._buffers.items():
            label = self._labels[source]
            self._chunks.setdefault((source, name), []).append(
                Part.of(_joined(frames, label), label)
            )
        self._buffers.clear()
        grouped: dict[Key, list[Part]] = {}
        for slot, chunks in self._chunks.items():
            grouped.setdefault(self._keys[slot], []).extend(chunks)
        return sorted(grouped.items())

    @property
    def sources(self) -> dict[Key, set[str]]:
        """The labels of the sources of each catalog file."""
        found: dict[Key, set[str]] = {}
        for (source, _), key in self._keys.items():
            found.setdefault(key, set()).add(self._labels[source])
        return found

    def _to_disk(self, bars: pl.DataFrame, source: str) -> Part:
        if self._folder is None:
            self._lock, lock = _claim(self._where)
            self._folder = lock.with_name(lock.name.removesuffix(_LOCK))
            self._folder.mkdir()
        fd, name = tempfile.mkstemp(suffix=".parquet", dir=self._folder)
        os.close(fd)
        bars.write_parquet(name, compression="lz4", statistics=False)
        part = Part.of(bars, source)
        return Part(
            pl.scan_parquet(Path(name).as_uri()), part.rows, part.first, part.last, (source,)
        )


def remove_stale(where: Path | None) -> None:
    """Remove the spill folders in ``where`` (None: the system's temporary directory) whose
    ingest is gone: those whose lock file can be locked."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    folder = Path(where or tempfile.gettempdir())
    try:
        locks = [p for p in folder.iterdir() if _is_lock(p.name)]
    except OSError:
        return
    for lock in locks:
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:  # removed meanwhile, or another user's
            continue
        try:
            # None (no locks here) is no proof that the ingest is gone.
            if _lock(fd) and _same_file(fd, lock):
                shutil.rmtree(lock.with_name(lock.name.removesuffix(_LOCK)), ignore_errors=True)
                lock.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _is_lock(name: str) -> bool:
    return name.startswith(_PREFIX) and name.endswith(_LOCK)


def _claim(where: Path) -> tuple[int, Path]:
    """A new lock file in ``where``, locked by this process: its fd and path."""
    while True:
        fd, name = tempfile.mkstemp(prefix=_PREFIX, suffix=_LOCK, dir=where)
        path = Path(name)
        # Another ingest may take the new file for stale between mkstemp and the lock, and
        # remove it: then this lock holds a file no longer there, and a new one is made.
        locked = _lock(fd)
        if locked is None or (locked and _same_file(fd, path)):
            return fd, path
        os.close(fd)


def _lock(fd: int) -> bool | None:
    """Take the exclusive lock on ``fd`` without waiting: True, False when another process
    holds it, None when there are no locks here (no flock, or a file system without)."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except OSError:
        return False


def _joined(frames: list[pl.DataFrame], source: str) -> pl.DataFrame:
    """One source's batches of one symbol as canonical bars: sorted, no duplicate starts."""
    if len(frames) == 1:
        return frames[0]
    bounds = [(f["datetime"][0], f["datetime"][-1]) for f in frames]
    bars = pl.concat(frames, how="vertical", rechunk=True)
    if all(prev[1] < nxt[0] for prev, nxt in pairwise(bounds)):
        return bars
    bars = bars.sort("datetime", maintain_order=True)
    dup = bars["datetime"].is_duplicated()
    if dup.any():
        msg = (
            f"{source} has {int(dup.sum())} rows sharing a start (e.g. "
            f"{bars['datetime'].filter(dup)[0]}); each bar needs a unique start time: drop "
            "or aggregate the duplicates"
        )
        raise SchemaError(msg)
    return bars
