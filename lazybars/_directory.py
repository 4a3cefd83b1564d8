"""Catalogs in a local directory: the directory backend of BarStore.

A key's base file is replaced by writing a hidden temporary file and renaming it over the
old one; its parts are files in a hidden folder beside it, listed by a manifest replaced
the same way (``lazybars._parts``). Every writer of a key (an append, a replace, a
compaction) holds an OS file lock (``flock``) on a hidden ``.<symbol>.parquet.lock``
beside the base, so writes of one key never interleave, across threads and processes;
readers take no lock.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Collection, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote, urlsplit

import polars as pl

from lazybars._backend import (
    SUFFIX,
    Backend,
    Change,
    FileBackend,
    Key,
    Plan,
    Snapshot,
    State,
    file_name,
    manifest_metadata,
    part_folder,
    symbol_file,
    timestep_folder,
    uri_scheme,
)
from lazybars._merge import Part, merge
from lazybars._parts import (
    MANIFEST,
    PartEntry,
    Parts,
    crowded,
    extended,
    new_generation,
    new_part_name,
)
from lazybars.errors import InvalidRequest, SchemaError
from lazybars.ingest import write_bytes_atomic, write_listed, write_parquet_atomic
from lazybars.timestep import Timestep

__all__ = ["DirectoryBackend", "open_local"]


def open_local(root: Any, storage_options: Mapping[str, Any] | None) -> Backend:
    """The backend for a local catalog location: a directory path or a ``file://`` URI."""
    scheme = uri_scheme(root)
    if scheme is not None:
        if scheme != "file":
            msg = (
                f"catalog location {root!r}: lazybars catalogs live in a directory or under "
                "s3:// (S3 and S3-compatible stores such as MinIO or R2); use one of those"
            )
            raise InvalidRequest(msg)
        parts = urlsplit(root)
        if parts.netloc not in ("", "localhost"):
            msg = f"catalog location {root!r} names a remote host; use a local file:// path"
            raise InvalidRequest(msg)
        root = unquote(parts.path)
    elif not isinstance(root, str | os.PathLike):
        msg = f"catalog root must be a path or a URI, got {type(root).__name__} {root!r}"
        raise InvalidRequest(msg)
    if storage_options:
        msg = (
            f"storage_options apply to s3:// catalogs, not to the directory {root}; "
            "drop them, or give an s3:// URI"
        )
        raise InvalidRequest(msg)
    return DirectoryBackend(Path(root))


class DirectoryBackend(FileBackend):
    """A catalog directory on a local file system."""

    def __init__(self, root: Path) -> None:
        # Absolute from the working directory at open: polars scans take file:// URIs,
        # which a relative path cannot be, and a later chdir must not move the catalog.
        root = Path(os.path.abspath(root))
        try:
            root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            msg = f"catalog root {root} exists and is not a directory; pass a directory path"
            raise InvalidRequest(msg) from None
        self._root = root
        # Path.as_uri takes ~80 us: the root is quoted once, and each name added to it.
        self._uri = root.as_uri().rstrip("/")
        self.where = str(root)
        self.key = str(root.resolve())

    def listing(self) -> set[Key]:
        keys = set()
        for timestep, folder in self._folders():
            for file in folder.iterdir():
                symbol = symbol_file(file.name)
                if symbol is not None:
                    keys.add((symbol, timestep))
        return keys

    def timesteps(self, symbol: str) -> list[Timestep]:
        # One stat per timestep folder, not a listing of the whole catalog.
        return sorted(
            ts for ts, folder in self._folders() if (folder / f"{symbol}{SUFFIX}").is_file()
        )

    def _folders(self) -> list[tuple[Timestep, Path]]:
        """The catalog's timestep folders (a missing catalog is an error, not emptiness)."""
        try:
            entries = list(self._root.iterdir())
        except FileNotFoundError:
            msg = f"catalog directory {self._root} is missing; create it with BarStore(root)"
            raise SchemaError(msg) from None
        found = ((timestep_folder(f.name), f) for f in entries if f.is_dir())
        return [(ts, f) for ts, f in found if ts is not None]

    def location(self, name: str) -> str:
        return str(self._root / name)

    def snapshot(self, name: str) -> Snapshot:
        return _OpenFile(self._root / name)

    def scan(self, names: Sequence[str], schema: pl.Schema) -> pl.LazyFrame:
        # A file:// URI takes polars' byte-range reader: only the row groups that the window
        # needs are read. A plain path memory-maps the whole file, which memray (and RSS)
        # then show as if the backtest held years of history.
        uris = [f"{self._uri}/{quote_from_bytes(os.fsencode(name))}" for name in names]
        return pl.scan_parquet(uris, glob=False, schema=schema)

    @contextmanager
    def lock(self, symbol: str, timestep: Timestep) -> Iterator[None]:
        # A lock file of its own, never replaced (a lock on the data file would be lost
        # with the inode a rename replaces), hidden so that it is never listed. flock()
        # excludes writers in this process and in others, and a writer that dies releases
        # its lock with its file descriptors.
        path = self._root / str(timestep) / f".{symbol}{SUFFIX}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the first write at this timestep
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get_manifest(self, name: str) -> tuple[bytes, Hashable] | None:
        try:
            fd = os.open(self._root / name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                msg = f"the parts manifest {self._root / name} is not a file; delete it"
                raise SchemaError(msg)
            # Plain reads: a file object would cost five more system calls.
            chunks = [os.read(fd, st.st_size + 1)]
            while chunks[-1]:
                chunks.append(os.read(fd, 1 << 16))
            raw = b"".join(chunks)
        finally:
            os.close(fd)
        # A manifest is replaced by a rename: a new inode, so a new version.
        return raw, (st.st_ino, st.st_mtime_ns, st.st_size)

    def put(self, symbol: str, timestep: Timestep, bars: Part) -> None:
        with self.lock(symbol, timestep):
            self._rebase(symbol, timestep, bars, keep=())

    def update_meta(self, name: str, change: Change) -> None:
        # Its own lock file beside it, as for bars (hidden: never listed).
        fd = os.open(self._root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            found = self.get_manifest(name)
            new = change(None if found is None else found[0])
            if new is not None:
                write_bytes_atomic(new, self._root / name)
        finally:
            os.close(fd)

    def update(self, symbol: str, timestep: Timestep, plan: Plan) -> None:
        with self.lock(symbol, timestep):
            name = file_name(symbol, timestep)
            state = self.state(symbol, timestep) if (self._root / name).is_file() else None
            stored = None if state is None else self.stored(symbol, timestep, state)
            bars, extends = plan(stored)
            if state is None or stored is None or not extends:
                self._rebase(symbol, timestep, bars, keep=())
                return
            if not state.generation:  # a base from before parts: give it a generation
                self._rebase(symbol, timestep, merge([stored, bars]), keep=())
                return
            manifest = self._add_part(symbol, timestep, state, bars)
            if crowded(state.rows, manifest.parts):
                self._compact(symbol, timestep)

    def compact(self, symbol: str, timestep: Timestep) -> int:
        with self.lock(symbol, timestep):
            return self._compact(symbol, timestep)

    def _compact(self, symbol: str, timestep: Timestep) -> int:
        state = self.state(symbol, timestep)
        parts = state.parts
        if not parts:  # nothing to fold: only leftovers of earlier rewrites to remove
            self._clear(symbol, timestep, keep=())
            return 0
        # The folded parts stay (until the next rewrite) for lazy scans planned before.
        self._rebase(
            symbol, timestep, self.stored(symbol, timestep, state), {p.name for p in parts}
        )
        return len(parts)

    def _add_part(self, symbol: str, timestep: Timestep, state: State, bars: Part) -> Parts:
        """Write ``bars`` as a new part after the stored ones, then list it: a writer killed
        in between leaves a file that no manifest names."""
        folder = self._root / part_folder(symbol, timestep)
        path = folder / new_part_name()
        metadata = manifest_metadata(bars.rows, bars.first, bars.last, state.generation)
        listed: list[Parts] = []

        def listing(size: int) -> bytes:
            entry = PartEntry(
                name=path.name, rows=bars.rows, first=bars.first, last=bars.last, bytes=size
            )
            listed.append(extended(state.manifest, state.generation, entry))
            return listed[-1].dump()

        if state.manifest is None:  # else the folder holds it (and the lock is held)
            folder.mkdir(exist_ok=True)
        write_listed(bars.bars, path, metadata, listing, folder / MANIFEST)
        return listed[-1]

    def _rebase(self, symbol: str, timestep: Timestep, bars: Part, keep: Collection[str]) -> None:
        """Write ``bars`` as the base of a new generation, then remove the parts folder's
        files but ``keep`` (a writer killed in between leaves parts that no longer apply)."""
        metadata = manifest_metadata(bars.rows, bars.first, bars.last, new_generation())
        write_parquet_atomic(bars.bars, self._root / file_name(symbol, timestep), metadata)
        self._clear(symbol, timestep, keep)

    def _clear(self, symbol: str, timestep: Timestep, keep: Collection[str]) -> None:
        folder = self._root / part_folder(symbol, timestep)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        # The manifest first: the other files are unnamed once it is gone.
        for name in sorted(names, key=lambda n: n != MANIFEST):
            if name not in keep:
                (folder / name).unlink(missing_ok=True)
        if not keep:
            with suppress(OSError):
                folder.rmdir()

    def spill_dir(self) -> Path:
        # Inside the catalog: the same disk as the result; hidden from listings.
        return self._root


class _OpenFile(Snapshot):
    """A catalog file held open: its version and its bytes come from the same file, even
    if a writer renames a new one over it meanwhile."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            # Non-blocking: a FIFO planted under a file's name must not hang the open.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (FileNotFoundError, NotADirectoryError):
            fd = None
        st = None if fd is None else os.fstat(fd)
        if st is None or not stat.S_ISREG(st.st_mode):
            if fd is not None:
                os.close(fd)
            msg = (
                f"catalog file {path} is gone (deleted after it was listed?); "
                "write the symbol again"
            )
            raise SchemaError(msg)
        self._fd = fd
        # A write replaces the file (new inode and mtime), so these tell versions apart.
        self.version = (st.st_ino, st.st_mtime_ns, st.st_size)
        self.size = st.st_size

    def tail(self, start: int) -> bytes:
        try:
            return os.pread(self._fd, self.size - start, start)
        except OSError as exc:
            msg = f"cannot read catalog file {self._path} ({exc}); rewrite it with store.write()"
            raise SchemaError(msg) from None

    def close(self) -> None:
        os.close(self._fd)
