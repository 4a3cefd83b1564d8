"""Where a BarStore keeps its bars: the private seam between the catalog and its storage.

The catalog (``lazybars.store``) knows symbols, timesteps, merges and scans; a backend only
lists the catalog's keys, reads one as a polars scan, describes one (rows, first and last
bar, bytes, parts, version) and stores bars atomically, replacing what is stored
(``put``), or as a read-plan-write that no other writer of the key interleaves with
(``update``): the plan either merges a new base or adds a part after the stored bars
(``lazybars._parts``); ``compact`` folds the parts into the base. The backends share one
layout, ``<root>/<timestep>/<symbol>.parquet`` plus its hidden parts folder:

- :class:`MemoryBackend`: frames in a dict (``BarStore.from_frames``); a lock per store;
- ``lazybars._directory.DirectoryBackend``: a local directory; a file is replaced by a
  rename, under an OS file lock (``flock``) that every writer of the key holds;
- ``lazybars._objectstore.ObjectBackend``: an ``s3://`` prefix; an object is replaced by
  one upload that becomes visible only when complete; an update is a conditional upload
  (``If-Match`` the version it merged onto), merged again when another writer got in first.

Files are checked once per version: the footer (schema and the lazybars manifest in the
parquet key-value metadata) is read from the file's last bytes, validated, and memoised
under the file's version (inode, mtime and size; an object's ETag). ``lazybars.store``
sends ``s3://`` URIs (:func:`is_object_uri`) to the object store, and other locations to
``lazybars._directory.open_local``.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lazybars._merge import Deferred, Part
from lazybars._parts import (
    MANIFEST,
    PartEntry,
    Parts,
    applying,
    folder_name,
    parse_parts,
    stacked,
)
from lazybars._time import BAR_RANGE, END_BAR_NS, FIRST_BAR_NS
from lazybars.errors import InvalidRequest, SchemaError
from lazybars.ingest import PRICE_COLUMNS
from lazybars.timestep import Timestep

__all__ = [
    "Backend",
    "Change",
    "Description",
    "FileBackend",
    "Frame",
    "Key",
    "MemoryBackend",
    "Plan",
    "Replaced",
    "Snapshot",
    "State",
    "is_object_uri",
    "is_uri",
    "manifest_metadata",
    "uri_scheme",
]

Key = tuple[str, Timestep]
Frame = pl.DataFrame | pl.LazyFrame
# What a metadata update writes, given the stored bytes (None: none stored); None: nothing.
Change = Callable[[bytes | None], bytes | None]
# What an update writes, given the stored bars (None: nothing stored): the bars, and
# whether they all come after the stored ones (True: a new part) or are the new whole.
Plan = Callable[[Part | None], tuple[Part, bool]]
SUFFIX = ".parquet"
_MANIFEST_KEY = "lazybars"
_FORMAT = 1
_MAGIC = b"PAR1"
# Read from a file's end at once: the whole footer of up to ~5 years of 24h minute bars
# (a row group's statistics take ~500 bytes), so describing a file is one read (one ranged
# GET); a larger footer takes a second.
TAIL_BYTES = 32 * 1024
_ATTEMPTS = 3
# Reads lost to writers renaming files over them, before giving up (each is a few ms).
_RACES = 20
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


class Description(NamedTuple):
    """What the catalog says about one key: bar count, first and last start (int64 ns),
    size in bytes, appended parts not yet compacted, and a version that changes whenever
    the stored bars change."""

    rows: int
    first: int
    last: int
    bytes: int
    parts: int
    version: Hashable


class Backend(ABC):
    """A catalog's storage: lists, reads, describes and atomically replaces its files."""

    #: Where the catalog lives, as shown in messages and reprs.
    where: str
    #: Equal for two handles on one catalog, so that their query plans compare equal.
    key: Hashable
    #: Whether listing the catalog is a network request.
    remote = False

    @abstractmethod
    def listing(self) -> set[Key]:
        """Every (symbol, timestep) stored."""

    @abstractmethod
    def timesteps(self, symbol: str) -> list[Timestep]:
        """The timesteps stored for ``symbol``, sorted (empty when it is not stored)."""

    @abstractmethod
    def read(self, symbol: str, timestep: Timestep) -> pl.LazyFrame:
        """The stored bars, as a scan (checked to be bars lazybars can read)."""

    def columns(self, symbol: str, timestep: Timestep) -> list[str]:
        """The names of the stored columns, ``datetime`` first."""
        return self.read(symbol, timestep).collect_schema().names()

    @abstractmethod
    def describe(self, symbol: str, timestep: Timestep) -> Description:
        """Rows, first and last start, bytes, parts and version of the stored bars,
        without reading them."""

    @abstractmethod
    def put(self, symbol: str, timestep: Timestep, bars: Part) -> None:
        """Replace the stored bars with ``bars``, atomically: readers see old or new."""

    @abstractmethod
    def update(self, symbol: str, timestep: Timestep, plan: Plan) -> None:
        """Store what ``plan`` makes of the stored bars (it reads them): no other write of
        the key lands between that read and this write, so none is lost."""

    def compact(self, symbol: str, timestep: Timestep) -> int:
        """Fold the appended parts into the base; returns how many were folded."""
        return 0

    def load(
        self,
        keys: Sequence[Key],
        plan: Callable[[list[pl.LazyFrame]], list[pl.LazyFrame]],
        read: Callable[[str, Timestep], pl.LazyFrame] | None = None,
    ) -> tuple[list[pl.DataFrame], list[Description]]:
        """Collect ``plan`` of the scans of ``keys`` (in parallel; ``read`` makes them,
        default :meth:`read`), and the descriptions of the stored bars they were read at.

        A reader can race a writer: polars opens a file by its name for each byte range it
        reads, so a file renamed over mid-read mixes two versions, which fails to decode
        (polars panics, or a decoder fails: offsets taken from one version's footer do not
        land on the other's pages, unless their bytes there are the same). A read that
        fails while a key's version changed is planned and read again.
        """
        for _ in range(_RACES):
            before = [self.describe(*key) for key in keys]
            try:
                return pl.collect_all(plan([(read or self.read)(*key) for key in keys])), before
            except (Exception, pl.exceptions.PanicException):
                if before == [self.describe(*key) for key in keys]:
                    raise  # not a race with a writer
        msg = (
            f"the bars of {sorted({s for s, _ in keys})} in {self.where} were rewritten "
            f"{_RACES} times while they were read; read them again when the writers are done"
        )
        raise SchemaError(msg)

    def spill_dir(self) -> Path | None:
        """Where bulk ingestion spills chunks (None: the system's temporary directory)."""
        return None

    # Catalog metadata: small hidden files at the root (``.definitions.parquet``), which
    # no listing takes for a symbol.
    @abstractmethod
    def read_meta(self, name: str) -> tuple[bytes, Hashable] | None:
        """The bytes and version of the metadata file ``name`` (None when there is none)."""

    @abstractmethod
    def update_meta(self, name: str, change: Change) -> None:
        """Replace the metadata file ``name`` with what ``change`` makes of its bytes
        (nothing when it returns None), atomically: no other update of ``name`` lands
        between the read and the write."""


def uri_scheme(root: Any) -> str | None:
    """The scheme of a catalog location that is a URI (``scheme://...``), lowercase; None
    for a path."""
    found = _SCHEME.match(root) if isinstance(root, str) else None
    return None if found is None else found.group(1).lower()


def is_uri(root: Any) -> bool:
    """Whether a catalog location is a URI (``scheme://...``) rather than a path."""
    return uri_scheme(root) is not None


def is_object_uri(root: Any) -> bool:
    """Whether a catalog location is an object-store URI (``s3://``), which
    ``lazybars._objectstore`` serves."""
    return uri_scheme(root) in ("s3", "s3a")


class MemoryBackend(Backend):
    """Frames in memory, keyed by symbol and timestep."""

    def __init__(self) -> None:
        self._frames: dict[Key, pl.DataFrame] = {}
        # Bumped by every write: a key's version is the write that stored its frame.
        self._writes = 0
        self._versions: dict[Key, int] = {}
        self._meta: dict[str, tuple[bytes, int]] = {}
        self._lock = threading.Lock()
        self.where = "in memory"
        self.key = id(self)

    def listing(self) -> set[Key]:
        return set(self._frames)

    def timesteps(self, symbol: str) -> list[Timestep]:
        return sorted(ts for s, ts in self._frames if s == symbol)

    def read(self, symbol: str, timestep: Timestep) -> pl.LazyFrame:
        return self._frames[(symbol, timestep)].lazy()

    def describe(self, symbol: str, timestep: Timestep) -> Description:
        key = (symbol, timestep)
        frame = self._frames[key]
        when = frame["datetime"].dt.epoch("ns")
        size = frame.estimated_size()
        return Description(frame.height, int(when[0]), int(when[-1]), size, 0, self._versions[key])

    def __getstate__(self) -> dict[str, Any]:
        # A lock does not pickle: a copy gets a lock of its own.
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # One lock for every frame: writes to memory are short. Appends keep one frame: a
    # copy in memory costs little next to the write path's validation.
    def put(self, symbol: str, timestep: Timestep, bars: Part) -> None:
        with self._lock:
            self._store((symbol, timestep), bars.lazy.collect())

    def update(self, symbol: str, timestep: Timestep, plan: Plan) -> None:
        key = (symbol, timestep)
        with self._lock:
            frame = self._frames.get(key)
            stored = None
            if frame is not None:
                rows, first, last, *_ = self.describe(symbol, timestep)
                label = f"the stored bars of {symbol} at {timestep}"
                stored = Part(frame, rows, first, last, (label,))
            bars, extends = plan(stored)
            new = bars.lazy.collect()
            self._store(key, pl.concat([frame, new]) if extends and frame is not None else new)

    def read_meta(self, name: str) -> tuple[bytes, Hashable] | None:
        return self._meta.get(name)

    def update_meta(self, name: str, change: Change) -> None:
        with self._lock:
            found = self._meta.get(name)
            new = change(None if found is None else found[0])
            if new is not None:
                self._writes += 1
                self._meta[name] = (new, self._writes)

    def _store(self, key: Key, frame: pl.DataFrame) -> None:
        self._writes += 1
        self._frames[key] = frame.rechunk()
        self._versions[key] = self._writes


class _Manifest(BaseModel):
    """What a catalog file says about itself, in its parquet key-value metadata.

    Read with the footer: the bounds answer without touching the data (and without
    pyarrow, whose first use reserves a large memory pool).
    """

    model_config = ConfigDict(frozen=True)

    format: int = Field(ge=1, le=_FORMAT)
    rows: int = Field(ge=1)
    first: int
    last: int
    # Which write of the base this is (an id, see lazybars._parts): parts apply to the
    # generation they name (files written before parts existed have none).
    generation: str = ""


def manifest_metadata(rows: int, first: int, last: int, generation: str = "") -> dict[str, str]:
    """The parquet key-value metadata that a catalog file carries about its bars."""
    manifest = _Manifest(format=_FORMAT, rows=rows, first=first, last=last, generation=generation)
    return {_MANIFEST_KEY: manifest.model_dump_json()}


class _Footer(NamedTuple):
    schema: pl.Schema
    manifest: _Manifest | None


class Snapshot(ABC):
    """One version of a catalog file, whose bytes are read as that version: a writer that
    replaces the file meanwhile never mixes its bytes in."""

    #: Changes whenever the file is replaced (inode and mtime; an object's ETag).
    version: Hashable
    size: int

    @abstractmethod
    def tail(self, start: int) -> bytes:
        """The bytes from ``start`` to the end (raises :class:`Replaced` when the version
        can no longer be read)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the snapshot holds open."""

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Replaced(Exception):  # a signal between backends, never raised to users
    """A file was replaced between reading its version and reading its bytes."""


class State(NamedTuple):
    """A key as read once: its base file (checked footer, bounds, generation, version) and
    its parts manifest as found (it applies only when it names the base's generation)."""

    schema: pl.Schema
    rows: int
    first: int
    last: int
    bytes: int
    generation: str
    version: Hashable
    manifest: Parts | None
    manifest_version: Hashable

    @property
    def parts(self) -> tuple[PartEntry, ...]:
        return applying(self.generation, self.manifest)

    def description(self) -> Description:
        parts = self.parts
        if not parts:
            return Description(self.rows, self.first, self.last, self.bytes, 0, self.version)
        return Description(
            self.rows + sum(p.rows for p in parts),
            self.first,
            parts[-1].last,
            self.bytes + sum(p.bytes for p in parts),
            len(parts),
            (self.version, self.manifest_version),
        )


class FileBackend(Backend):
    """A backend of parquet files named ``<timestep>/<symbol>.parquet`` under a root, each
    with its hidden parts folder ``<timestep>/.<symbol>.parts/``.

    Subclasses say how to open one version of a file, scan it, read a parts manifest and
    write; checking footers, memoised per version, and reading base + parts are shared.
    """

    @abstractmethod
    def location(self, name: str) -> str:
        """The file's full name, for messages (a path, or an ``s3://`` URI)."""

    @abstractmethod
    def snapshot(self, name: str) -> Snapshot:
        """The file's current version (raises SchemaError when the file is gone)."""

    @abstractmethod
    def scan(self, names: Sequence[str], schema: pl.Schema) -> pl.LazyFrame:
        """One polars scan of the files, in order, that reads only the byte ranges a query
        needs (one scan for many parts: each scan costs tens of microseconds to plan)."""

    @abstractmethod
    def get_manifest(self, name: str) -> tuple[bytes, Hashable] | None:
        """The bytes and version of a parts manifest (None when there is none)."""

    def read(self, symbol: str, timestep: Timestep) -> pl.LazyFrame:
        return self._scan_state(symbol, timestep, self.state(symbol, timestep))

    def read_meta(self, name: str) -> tuple[bytes, Hashable] | None:
        return self.get_manifest(name)

    def describe(self, symbol: str, timestep: Timestep) -> Description:
        return self.state(symbol, timestep).description()

    def columns(self, symbol: str, timestep: Timestep) -> list[str]:
        return self.state(symbol, timestep).schema.names()

    def state(self, symbol: str, timestep: Timestep) -> State:
        """The key's base and parts manifest, read in that order (see ``lazybars._parts``)."""
        manifest, manifest_version = self._manifest(symbol, timestep)
        name = file_name(symbol, timestep)
        footer, size, version = self._footer(name)
        m = footer.manifest
        if m is not None:
            return State(
                footer.schema,
                m.rows,
                m.first,
                m.last,
                size,
                m.generation,
                version,
                manifest,
                manifest_version,
            )
        # A file written by other tools: read its time column once.
        when = self.scan([name], footer.schema).select("datetime").collect()["datetime"]
        if when.is_empty():
            msg = f"catalog file {self.location(name)} holds no bars; rewrite it with store.write()"
            raise SchemaError(msg)
        ns = when.dt.epoch("ns")
        first, last = int(ns.min()), int(ns.max())
        _check_bounds(first, last, self.location(name))
        rows = ns.len()
        return State(
            footer.schema, rows, first, last, size, "", version, manifest, manifest_version
        )

    def stored(self, symbol: str, timestep: Timestep, state: State) -> Part:
        """The bars ``state`` describes, as a merge part (a scan, made when first used:
        nothing read yet)."""
        rows, first, last, *_ = state.description()
        label = f"the stored bars of {symbol} at {timestep}"
        scan = partial(self._scan_state, symbol, timestep, state)
        return Deferred(scan, state.schema, rows, first, last, (label,))

    def _scan_state(self, symbol: str, timestep: Timestep, state: State) -> pl.LazyFrame:
        # The schema just checked is passed on, so planning does no further I/O.
        base = self.scan([file_name(symbol, timestep)], state.schema)
        if not state.parts:
            return base
        folder = part_folder(symbol, timestep)
        parts = self.scan([f"{folder}/{p.name}" for p in state.parts], state.schema)
        return stacked(base, state.last, parts)

    def _manifest(self, symbol: str, timestep: Timestep) -> tuple[Parts | None, Hashable]:
        name = f"{part_folder(symbol, timestep)}/{MANIFEST}"
        found = self.get_manifest(name)
        if found is None:
            return None, None
        raw, version = found
        memo_key = (self.key, name, version)
        manifest = _MANIFESTS.get(memo_key)
        if manifest is None:
            manifest = parse_parts(raw, self.location(name))
            _MANIFESTS.put(memo_key, manifest)
        return manifest, version

    def _footer(self, name: str) -> tuple[_Footer, int, Hashable]:
        """The file's checked footer (memoised per version), its size and version."""
        for _ in range(_ATTEMPTS):
            with self.snapshot(name) as snapshot:
                memo_key = (self.key, name, snapshot.version)
                found = _FOOTERS.get(memo_key)
                if found is None:
                    try:
                        found = _read_footer(snapshot, self.location(name))
                    except Replaced:
                        continue  # a writer replaced it since its version was read
                    _FOOTERS.put(memo_key, found)
                return found, snapshot.size, snapshot.version
        msg = (
            f"catalog file {self.location(name)} was replaced {_ATTEMPTS} times while it was "
            "read; read it again when the writers are done"
        )
        raise SchemaError(msg)


def part_folder(symbol: str, timestep: Timestep) -> str:
    """The catalog-relative name of a symbol's parts folder at a timestep."""
    return f"{timestep}/{folder_name(symbol)}"


def _read_footer(snapshot: Snapshot, where: str) -> _Footer:
    size = snapshot.size
    tail = snapshot.tail(max(size - TAIL_BYTES, 0)) if size else b""
    length = _footer_length(tail, size, where)
    if length + 8 > len(tail):  # a footer larger than the first read
        tail = snapshot.tail(size - length - 8)
    return _parse_footer(tail[-length - 8 :], where)


def file_name(symbol: str, timestep: Timestep) -> str:
    """The catalog-relative name of a symbol's file at a timestep."""
    return f"{timestep}/{symbol}{SUFFIX}"


def timestep_folder(name: str) -> Timestep | None:
    """The timestep a folder name stands for, or None (hidden or not the canonical name)."""
    if name.startswith("."):
        return None
    try:
        timestep = Timestep.parse(name)
    except InvalidRequest:
        return None
    return timestep if str(timestep) == name else None


def symbol_file(name: str) -> str | None:
    """The symbol a file name stands for, or None (hidden, or not a parquet file)."""
    if name.endswith(SUFFIX) and not name.startswith(".") and len(name) > len(SUFFIX):
        return name[: -len(SUFFIX)]
    return None


class _Memo:
    """A bounded, thread-safe LRU of checked footers (or manifests), keyed by file version."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_FOOTERS = _Memo(4096)
_MANIFESTS = _Memo(4096)


def _footer_length(tail: bytes, size: int, where: str) -> int:
    if len(tail) < 12 or tail[-4:] != _MAGIC or size < 12:
        msg = f"cannot read catalog file {where} (not parquet); rewrite it with store.write()"
        raise SchemaError(msg)
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 12 > size:
        msg = (
            f"cannot read catalog file {where} (truncated: its footer claims {length} bytes "
            f"of {size}); rewrite it with store.write()"
        )
        raise SchemaError(msg)
    return length


def _parse_footer(footer: bytes, where: str) -> _Footer:
    """Check and read a parquet footer (metadata, its length, the magic bytes)."""
    # To a metadata reader, the leading magic and the footer are a whole parquet file: the
    # row groups it describes are never touched.
    whole = _MAGIC + footer
    try:
        schema = pl.Schema(pl.read_parquet_schema(whole))
        raw = pl.read_parquet_metadata(whole).get(_MANIFEST_KEY)
    except (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
        # A damaged footer can make the thrift decoder panic rather than fail.
        msg = f"cannot read catalog file {where} ({exc}); rewrite it with store.write()"
        raise SchemaError(msg) from None
    names = schema.names()
    missing = [c for c in ("datetime", *PRICE_COLUMNS) if c not in names]
    when = schema.get("datetime")
    aware = isinstance(when, pl.Datetime) and when.time_zone is not None
    numeric = all(schema[c].is_numeric() for c in PRICE_COLUMNS if c in schema)
    if missing or names[0] != "datetime" or not aware or not numeric:
        msg = (
            f"catalog file {where} is not a lazybars bar file (schema {dict(schema)}; bars need "
            "a tz-aware 'datetime' first and numeric open, high, low, close); rewrite it "
            "with store.write()"
        )
        raise SchemaError(msg)
    if raw is None:
        return _Footer(schema, None)
    try:
        manifest = _Manifest.model_validate_json(raw)
    except ValidationError as exc:
        msg = f"catalog file {where} has a damaged manifest ({exc}); rewrite it with store.write()"
        raise SchemaError(msg) from None
    _check_bounds(manifest.first, manifest.last, where)
    return _Footer(schema, manifest)


def _check_bounds(first: int, last: int, where: str) -> None:
    """Refuse a file holding bars outside the range a store takes (written by another tool
    or an older lazybars): their day ends and buckets would be no int64 nanoseconds."""
    if first < FIRST_BAR_NS or last >= END_BAR_NS:
        msg = (
            f"catalog file {where} holds bars outside the range lazybars stores ({BAR_RANGE}); "
            "rewrite it with store.write() without them"
        )
        raise SchemaError(msg)
