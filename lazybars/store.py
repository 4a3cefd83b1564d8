"""BarStore: where bars live, as a directory catalog of parquet files or in memory.

A directory catalog holds one parquet file per symbol and timestep::

    root/
      1m/MES.parquet
      1m/MNQ.parquet
      1d/MES.parquet

Files are replaced atomically (hidden temporary file, then rename), so a reader sees the
old bars or the new ones, never a mix; hidden files are never listed as symbols.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lazybars._merge import Part, merge
from lazybars.errors import InvalidRequest, SchemaError, UnknownAsset
from lazybars.ingest import PRICE_COLUMNS, normalize, validate_zone, write_parquet_atomic
from lazybars.query import Query, QuerySource
from lazybars.timestep import Timestep

__all__ = ["BarStore", "check_symbol"]

_SUFFIX = ".parquet"
_MANIFEST_KEY = "lazybars"
_FORMAT = 1
_FORBIDDEN = ("/", "\\", "\x00")
_MAX_SYMBOL = 128
_MAX_SYMBOL_BYTES = 200
_MODES = ("replace", "append")


def check_symbol(symbol: Any) -> str:
    """Return ``symbol`` if it is a safe symbol name, else raise ``InvalidRequest``.

    A symbol is any non-empty string of at most 128 characters (200 bytes in UTF-8) without
    ``/``, ``\\``,
    control characters or a leading ``.``; so ``BRK.B``, ``ES=F`` or ``6E`` work, and a
    pair such as EUR/USD is stored as ``EURUSD`` or ``EUR-USD``.
    """
    if not isinstance(symbol, str):
        msg = f"symbol must be a string, got {type(symbol).__name__} {symbol!r}"
        raise InvalidRequest(msg)
    bad = (
        not symbol
        or len(symbol) > _MAX_SYMBOL
        # File names are limited to 255 bytes; leave room for the suffix and temp names.
        or len(symbol.encode("utf-8", "surrogatepass")) > _MAX_SYMBOL_BYTES
        or symbol.startswith(".")
        or symbol != symbol.strip()
        or any(ch in symbol for ch in _FORBIDDEN)
        or not symbol.isprintable()
    )
    if bad:
        msg = (
            f"invalid symbol {symbol!r}: use 1-{_MAX_SYMBOL} printable characters "
            f"({_MAX_SYMBOL_BYTES} bytes in UTF-8) without "
            "'/', '\\', surrounding spaces or a leading '.', e.g. 'EURUSD' for EUR/USD"
        )
        raise InvalidRequest(msg)
    return symbol


class BarStore:
    """A catalog of OHLCV bars per symbol and timestep.

    Parameters
    ----------
    root
        The catalog directory; created if missing.

    Examples
    --------
    >>> import tempfile, lazybars as lb
    >>> store = lb.BarStore(tempfile.mkdtemp())
    >>> store.write("MES", lb.synth.minute_bars("MES"), timestep="minute")
    >>> store.symbols(), store.timesteps("MES")
    (['MES'], ['1m'])
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root: Path | None = Path(root)
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            msg = f"catalog root {root} exists and is not a directory; pass a directory path"
            raise InvalidRequest(msg) from None
        self._frames: dict[tuple[str, Timestep], pl.DataFrame] = {}

    @classmethod
    def from_frames(
        cls, frames: Mapping[str, Any], timestep: str = "minute", tz: str | None = None
    ) -> BarStore:
        """An in-memory store (no disk) holding ``{symbol: frame}`` at ``timestep``."""
        store = cls.__new__(cls)
        store._root = None
        store._frames = {}
        for symbol, frame in frames.items():
            store._write(symbol, frame, timestep, tz, stacklevel=4)
        return store

    def write(
        self,
        symbol: str,
        frame: Any,
        timestep: str = "minute",
        tz: str | None = None,
        *,
        mode: Literal["replace", "append"] = "replace",
    ) -> None:
        """Validate ``frame`` and store it as the bars of ``symbol`` at ``timestep``.

        ``frame`` is a pandas DataFrame (DatetimeIndex or a time column) or a polars
        DataFrame; naive times need ``tz=``, the zone they are written in. ``mode="replace"``
        replaces what is stored; ``mode="append"`` adds the bars to the stored ones, where
        bars with the same start as a stored bar must equal it exactly (the stored zone and
        columns are kept). The write is atomic: on any error the store's previous bars are
        unchanged.

        Raises
        ------
        SchemaError
            Bars that cannot be stored (the message names the column or rows), or appended
            bars that differ from stored ones (the message names the first).
        InvalidRequest
            A bad symbol, timestep, zone name or mode.

        Examples
        --------
        >>> import lazybars as lb
        >>> bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-04")
        >>> store = lb.BarStore.from_frames({"MES": bars[:500]})
        >>> store.write("MES", bars[400:], mode="append")  # 100 bars overlap, identically
        >>> store.scan("MES").collect().equals(bars)
        True
        """
        if mode not in _MODES:
            msg = f"mode must be 'replace' or 'append', got {mode!r}"
            raise InvalidRequest(msg)
        self._write(symbol, frame, timestep, tz, stacklevel=4, append=mode == "append")

    def _write(
        self,
        symbol: str,
        frame: Any,
        timestep: str,
        tz: str | None,
        stacklevel: int,
        *,
        append: bool = False,
    ) -> None:
        # `stacklevel` points an UnsortedBarsWarning at the user's call, counted from here.
        key = (check_symbol(symbol), Timestep.parse(timestep))
        bars = normalize(frame, tz=tz, stacklevel=stacklevel)
        self._put(*key, self._plan(*key, [Part.of(bars, "the new bars")], append=append))

    # Hooks for bulk ingestion (lazybars.intake), which plans every symbol before it writes
    # any: parts may be lazy scans of spilled chunks, streamed into the catalog file.
    def _plan(self, symbol: str, timestep: Timestep, parts: list[Part], *, append: bool) -> Part:
        """The union of ``parts``, and of the stored bars when appending (checked, unwritten)."""
        if append and (symbol, timestep) in self._keys():
            parts = [self._stored(symbol, timestep), *parts]
        return merge(parts)

    def _put(self, symbol: str, timestep: Timestep, bars: Part) -> None:
        """Store ``bars`` as the bars of ``symbol`` at ``timestep``, atomically."""
        if self._root is None:
            self._frames[(symbol, timestep)] = bars.lazy.collect().rechunk()
            return
        manifest = _Manifest(format=_FORMAT, rows=bars.rows, first=bars.first, last=bars.last)
        meta = {_MANIFEST_KEY: manifest.model_dump_json()}
        write_parquet_atomic(bars.bars, self._path(symbol, timestep), meta)

    def _stored(self, symbol: str, timestep: Timestep) -> Part:
        label = f"the stored bars of {symbol} at {timestep}"
        if self._root is None:
            return Part.of(self._frames[(symbol, timestep)], label)
        rows, first, last = _parquet_manifest(self._path(symbol, timestep))
        return Part(self._read(symbol, timestep), rows, first, last, (label,))

    def info(self) -> pl.DataFrame:
        """What the store holds: a row per symbol and timestep, with ``rows``, the ``first``
        and ``last`` bar start (UTC) and ``bytes`` (the file's size, or the frame's).

        Examples
        --------
        >>> import lazybars as lb
        >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES")})
        >>> store.info().select("symbol", "timestep", "rows").rows()
        [('MES', '1m', 8543)]
        """
        rows = []
        for symbol, timestep in sorted(self._keys()):
            stored = self._stored(symbol, timestep)
            size = (
                stored.bars.estimated_size()
                if isinstance(stored.bars, pl.DataFrame)
                else self._path(symbol, timestep).stat().st_size
            )
            rows.append((symbol, str(timestep), stored.rows, stored.first, stored.last, size))
        utc = pl.Datetime("ns", "UTC")
        schema = dict.fromkeys(("symbol", "timestep"), pl.String) | dict.fromkeys(
            ("rows", "first", "last", "bytes"), pl.Int64
        )
        info = pl.DataFrame(rows, schema=schema, orient="row")
        return info.with_columns(pl.col("first", "last").cast(utc))

    def symbols(self, timestep: str | None = None) -> list[str]:
        """The stored symbols (at ``timestep`` only, when given), sorted."""
        wanted = None if timestep is None else Timestep.parse(timestep)
        return sorted({s for s, ts in self._keys() if wanted is None or ts == wanted})

    def timesteps(self, symbol: str) -> list[str]:
        """The timesteps stored for ``symbol``, finest first."""
        return [str(ts) for ts in self._timesteps(symbol)]

    def scan(
        self,
        symbols: str | Iterable[str],
        timestep: str | None = None,
        *,
        timezone: str = "America/New_York",
    ) -> Query:
        """A lazy :class:`Query` over one symbol, or several in long format.

        ``timestep`` None means the finest stored timestep; a coarser one that is not
        stored is aggregated from the finest. ``timezone`` is the local zone of the
        semantics (day bar ends, sessions, bucket boundaries).
        """
        names = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        if not names:
            msg = "scan() needs at least one symbol"
            raise InvalidRequest(msg)
        validate_zone(timezone, argument="timezone")
        wanted = None if timestep is None else Timestep.parse(timestep)
        stored = {self.resolve(name, wanted) for name in names}
        if len(stored) > 1:
            msg = (
                f"{list(names)} would be read at different stored timesteps "
                f"{sorted(map(str, stored))}; scan them one by one, or store them at a "
                "common timestep"
            )
            raise InvalidRequest(msg)
        base = stored.pop()
        source = QuerySource(self._key, names, base, timezone, self._read)
        query = Query(source)
        if wanted is not None and wanted != base:
            query = query.resample(str(wanted))
        return query

    def resolve(self, symbol: str, timestep: Timestep | None) -> Timestep:
        """The stored timestep that serves ``timestep`` for ``symbol`` (None: the finest).

        That is ``timestep`` itself when stored, else the finest stored one, which must be
        finer so that it can be aggregated.
        """
        stored = self._timesteps(symbol)
        if timestep is None or timestep in stored:
            return stored[0] if timestep is None else timestep
        if timestep < stored[0]:
            msg = (
                f"{symbol} is stored at {[str(t) for t in stored]}; {timestep} bars are finer "
                f"and cannot be made from them: ask for {stored[0]} or coarser"
            )
            raise InvalidRequest(msg)
        return stored[0]

    def bounds(self, symbol: str, timestep: Timestep) -> tuple[int, int]:
        """The first and last bar start (int64 ns) stored for ``symbol`` at ``timestep``."""
        if self._root is None:
            when = self._frames[(symbol, timestep)]["datetime"].dt.epoch("ns")
            return int(when[0]), int(when[-1])
        return _parquet_bounds(self._path(symbol, timestep))

    def __repr__(self) -> str:
        where = "in memory" if self._root is None else str(self._root)
        return f"<lazybars.BarStore {where}: {len(self.symbols())} symbols>"

    # -- internals --------------------------------------------------------------------------
    @property
    def _key(self) -> object:
        return id(self) if self._root is None else str(self._root.resolve())

    def _path(self, symbol: str, timestep: Timestep) -> Path:
        assert self._root is not None
        return self._root / str(timestep) / f"{symbol}{_SUFFIX}"

    def _keys(self) -> set[tuple[str, Timestep]]:
        if self._root is None:
            return set(self._frames)
        keys = set()
        for timestep, folder in self._folders():
            for file in folder.iterdir():
                name = file.name
                if name.endswith(_SUFFIX) and not name.startswith("."):
                    keys.add((name[: -len(_SUFFIX)], timestep))
        return keys

    def _folders(self) -> list[tuple[Timestep, Path]]:
        """The catalog's timestep folders (a missing catalog is an error, not emptiness)."""
        assert self._root is not None
        try:
            entries = list(self._root.iterdir())
        except FileNotFoundError:
            msg = f"catalog directory {self._root} is missing; create it with BarStore(root)"
            raise SchemaError(msg) from None
        found = ((_timestep_folder(f), f) for f in entries)
        return [(ts, f) for ts, f in found if ts is not None]

    def _timesteps(self, symbol: str) -> list[Timestep]:
        check_symbol(symbol)
        if self._root is None:
            found = sorted(ts for s, ts in self._frames if s == symbol)
        else:
            # One stat per timestep folder, not a listing of the whole catalog.
            found = sorted(ts for ts, _ in self._folders() if self._path(symbol, ts).is_file())
        if not found:
            known = self.symbols()
            msg = (
                f"unknown asset {symbol!r}: the store holds {known[:10]}"
                f"{' ...' if len(known) > 10 else ''}; write it first with store.write()"
            )
            raise UnknownAsset(msg)
        return found

    def _read(self, symbol: str, timestep: Timestep) -> pl.LazyFrame:
        """The stored bars of ``symbol`` at exactly ``timestep``, as a polars scan."""
        if self._root is None:
            return self._frames[(symbol, timestep)].lazy()
        path = self._path(symbol, timestep)
        schema = _check_file(path)
        # A file:// URI takes polars' byte-range reader: only the row groups that the window
        # needs are read. A plain path memory-maps the whole file, which memray (and RSS)
        # then show as if the backtest held years of history.
        # The schema just read is passed on, so planning does no further file I/O.
        return pl.scan_parquet(path.as_uri(), glob=False, schema=schema)


def _timestep_folder(folder: Path) -> Timestep | None:
    if not folder.is_dir() or folder.name.startswith("."):
        return None
    try:
        timestep = Timestep.parse(folder.name)
    except InvalidRequest:
        return None
    return timestep if str(timestep) == folder.name else None


class _Manifest(BaseModel):
    """What a catalog file says about itself, in its parquet key-value metadata.

    Read once per load: the bounds answer without touching the data (and without pyarrow,
    whose first use reserves a large memory pool).
    """

    model_config = ConfigDict(frozen=True)

    format: int = Field(ge=1, le=_FORMAT)
    rows: int = Field(ge=1)
    first: int
    last: int


def _check_file(path: Path) -> pl.Schema:
    """The file's schema, after checking that it holds bars lazybars can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        msg = f"catalog file {path} is gone (deleted after it was listed?); write the symbol again"
        raise SchemaError(msg)
    # A write replaces the file (new inode and mtime), so the key tells versions apart.
    return _validated_schema(path, st.st_ino, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=4096)
def _validated_schema(path: Path, inode: int, mtime_ns: int, size: int) -> pl.Schema:
    try:
        schema = pl.read_parquet_schema(path.as_uri())
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read catalog file {path} ({exc}); rewrite it with store.write()"
        raise SchemaError(msg) from None
    names = schema.names()
    missing = [c for c in ("datetime", *PRICE_COLUMNS) if c not in names]
    when = schema.get("datetime")
    aware = isinstance(when, pl.Datetime) and when.time_zone is not None
    numeric = all(schema[c].is_numeric() for c in PRICE_COLUMNS if c in schema)
    if missing or names[0] != "datetime" or not aware or not numeric:
        msg = (
            f"catalog file {path} is not a lazybars bar file (schema {dict(schema)}; bars need "
            "a tz-aware 'datetime' first and numeric open, high, low, close); rewrite it "
            "with store.write()"
        )
        raise SchemaError(msg)
    return schema


def _parquet_bounds(path: Path) -> tuple[int, int]:
    _, first, last = _parquet_manifest(path)
    return first, last


def _parquet_manifest(path: Path) -> tuple[int, int, int]:
    """The rows, first and last bar start (int64 ns) of a catalog file."""
    _check_file(path)
    try:
        raw = pl.read_parquet_metadata(path).get(_MANIFEST_KEY)
    except FileNotFoundError:
        msg = f"catalog file {path} is gone (deleted after it was listed?); write the symbol again"
        raise SchemaError(msg) from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read catalog file {path} ({exc}); rewrite it with store.write()"
        raise SchemaError(msg) from None
    if raw is not None:
        try:
            manifest = _Manifest.model_validate_json(raw)
        except ValidationError as exc:
            msg = (
                f"catalog file {path} has a damaged manifest ({exc}); rewrite it with store.write()"
            )
            raise SchemaError(msg) from None
        return manifest.rows, manifest.first, manifest.last
    # A file written by other tools: read the time column once.
    when = pl.read_parquet(path, columns=["datetime"])["datetime"].dt.epoch("ns")
    if when.is_empty():
        msg = f"catalog file {path} holds no bars; rewrite it with store.write()"
        raise SchemaError(msg)
    return when.len(), int(when.min()), int(when.max())
