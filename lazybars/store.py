"""BarStore: where bars live: a directory catalog of parquet files, the same catalog on
S3-compatible object storage, or frames in memory.

A catalog holds one parquet file per symbol and timestep, and the parts appended to it
since its last compaction in a hidden folder beside it (``lazybars._parts``)::

    root/                   (a directory, or s3://bucket/prefix)
      1m/MES.parquet
      1m/.MES.parts/manifest.json, 0-<id>.parquet, ...
      1m/MNQ.parquet
      1d/MES.parquet
      .definitions.parquet  (contract definitions: multipliers, ticks, expirations)

Files are replaced atomically (a hidden temporary file then a rename; on object storage one
upload that becomes visible only when complete), so a reader sees the old bars or the new
ones, never a mix; hidden files are never listed as symbols. Storage itself is behind a
small private seam (``lazybars._backend``); this module is the catalog's logic.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import polars as pl

from lazybars import _definitions
from lazybars._backend import Backend, MemoryBackend, is_object_uri
from lazybars._continuous import Adjust, Stitched, find_root, scan_roots
from lazybars._directory import open_local
from lazybars._held import DEFAULT_HELD_BYTES, Held, HeldInfo
from lazybars._merge import Deferred, Part, after, merge
from lazybars.errors import InvalidRequest, UnknownAsset
from lazybars.futures import Rule, default_rule
from lazybars.ingest import normalize, validate_zone
from lazybars.query import Query, QuerySource
from lazybars.timestep import Timestep, serving_timestep

__all__ = ["BarStore", "check_symbol"]

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


def _budget(cache_bytes: Any) -> int | None:
    if cache_bytes is not None and (type(cache_bytes) is not int or cache_bytes < 0):
        msg = (
            f"cache_bytes must be an int >= 0 (0 holds nothing) or None (unbounded), "
            f"got {cache_bytes!r}"
        )
        raise InvalidRequest(msg)
    return cache_bytes


def _open_backend(root: Any, storage_options: Mapping[str, Any] | None) -> Backend:
    if is_object_uri(root):
        # The object store is an edge module: its client is imported for s3:// catalogs only.
        from lazybars._objectstore import ObjectBackend  # noqa: PLC0415

        return ObjectBackend(root, storage_options)
    return open_local(root, storage_options)


class BarStore:
    """A catalog of OHLCV bars per symbol and timestep.

    Parameters
    ----------
    root
        The catalog: a directory (created if missing; a relative path is taken from the
        working directory when the store is opened; a ``file://`` URI works too), or an
        ``s3://bucket/prefix`` URI on S3 or an S3-compatible store (needs the ``s3`` extra:
        ``pip install 'lazybars[s3]'``).
    storage_options
        For ``s3://`` catalogs: credentials, endpoint and client options, as polars takes
        them (``aws_access_key_id``, ``aws_secret_access_key``, ``aws_region``,
        ``aws_endpoint_url``, ``aws_allow_http``, ...); what is not given comes from the
        usual ``AWS_*`` environment variables. See README "Catalogs on object storage".
    cache_bytes
        The memory budget of the bars the store holds for its queries (default 512 MiB;
        0: hold nothing; None: unbounded). A query's window is read from parquet once and
        held, so running it again (or any window inside it) reads no file; the least
        recently used windows go first. See :meth:`held_info`.

    Examples
    --------
    >>> import tempfile, lazybars as lb
    >>> store = lb.BarStore(tempfile.mkdtemp())
    >>> store.write("MES", lb.synth.minute_bars("MES"), timestep="minute")
    >>> store.symbols(), store.timesteps("MES")
    (['MES'], ['1m'])
    """

    _backend: Backend
    _held: Held
    _contracts: _definitions.Definitions

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        storage_options: Mapping[str, Any] | None = None,
        cache_bytes: int | None = DEFAULT_HELD_BYTES,
    ) -> None:
        budget = _budget(cache_bytes)
        self._backend = _open_backend(root, storage_options)
        self._held = Held(self._backend, budget)
        self._stitched: dict[str, Stitched] = {}
        self._contracts = _definitions.Definitions(self._backend)

    @classmethod
    def from_frames(
        cls,
        frames: Mapping[str, Any],
        timestep: str = "minute",
        tz: str | None = None,
        *,
        cache_bytes: int | None = DEFAULT_HELD_BYTES,
        definitions: Any = None,
    ) -> BarStore:
        """An in-memory store (no disk) holding ``{symbol: frame}`` at ``timestep``;
        ``cache_bytes`` as for :class:`BarStore`; ``definitions`` as
        :meth:`write_definitions` takes them."""
        store = cls.__new__(cls)
        store._backend = MemoryBackend()
        store._held = Held(store._backend, _budget(cache_bytes))
        store._stitched = {}
        store._contracts = _definitions.Definitions(store._backend)
        for symbol, frame in frames.items():
            store._write(symbol, frame, timestep, tz, stacklevel=4)
        if definitions is not None:
            store.write_definitions(definitions)
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
        DataFrame; naive times need ``tz=``, the zone they are written in (aware times are
        stored in ``tz`` when given: a stored day bar covers a calendar day of its zone and
        ends at the next midnight there). ``mode="replace"``
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
        self._commit(*key, [Part.of(bars, "the new bars")], append=append)

    # Hooks for bulk ingestion (lazybars.intake), which plans every symbol before it writes
    # any: parts may be lazy scans of spilled chunks, streamed into the catalog file.
    def _plan(self, symbol: str, timestep: Timestep, parts: list[Part], *, append: bool) -> Part:
        """The union of ``parts``, and of the stored bars when appending (checked, unwritten)."""
        if append and timestep in self._backend.timesteps(symbol):
            parts = [self._stored(symbol, timestep), *parts]
        return merge(parts)

    def _commit(
        self,
        symbol: str,
        timestep: Timestep,
        parts: list[Part],
        *,
        append: bool,
        planned: Part | None = None,
    ) -> Part:
        """Store the union of ``parts`` (and of the stored bars when appending), atomically;
        returns what was stored.

        ``planned`` is that union as :meth:`_plan` gave it earlier: a replace writes it as
        is, but an append merges again as it writes, onto the bars stored then. No other
        write of the file lands in between (a lock; on object storage a conditional upload
        that merges again when another writer got in first), so no writer's bars are lost.
        """
        try:
            if not append:
                bars = planned or self._plan(symbol, timestep, parts, append=False)
                self._backend.put(symbol, timestep, bars)
                return bars
            merged: list[Part] = []

            def plan(stored: Part | None) -> tuple[Part, bool]:
                # Bars that all come after the stored ones are stored as a part of their own:
                # the append reads and writes none of the stored bars.
                new = None if stored is None else after(stored, parts)
                if stored is not None and new is not None:
                    merged.append(
                        Deferred(
                            lambda: pl.concat([stored.lazy, new.lazy]),
                            stored.schema,
                            stored.rows + new.rows,
                            stored.first,
                            new.last,
                            (*stored.sources, *new.sources),
                        )
                    )
                    return new, True
                merged.append(merge(parts if stored is None else [stored, *parts]))
                return merged[-1], False

            self._backend.update(symbol, timestep, plan)
            return merged[-1]
        finally:
            # After the write (or its failure, which may have replaced the file anyway):
            # a query that read before it is not held on.
            self._held.drop(symbol, timestep)

    def _stored(self, symbol: str, timestep: Timestep) -> Part:
        label = f"the stored bars of {symbol} at {timestep}"
        rows, first, last, *_ = self._backend.describe(symbol, timestep)
        return Part(self._read(symbol, timestep), rows, first, last, (label,))

    def _spill_dir(self) -> Path | None:
        """Where bulk ingestion spills chunks (None: the system's temporary directory)."""
        return self._backend.spill_dir()

    def info(self) -> pl.DataFrame:
        """What the store holds: a row per symbol and timestep, with ``rows``, the ``first``
        and ``last`` bar start (UTC), ``bytes`` (the files' size, or the frame's) and
        ``parts`` (appended parts not yet compacted, see :meth:`compact`).

        Examples
        --------
        >>> import lazybars as lb
        >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES")})
        >>> store.info().select("symbol", "timestep", "rows").rows()
        [('MES', '1m', 8543)]
        """
        rows = [
            (symbol, str(timestep), *self._backend.describe(symbol, timestep)[:5])
            for symbol, timestep in sorted(self._backend.listing())
        ]
        utc = pl.Datetime("ns", "UTC")
        schema = dict.fromkeys(("symbol", "timestep"), pl.String) | dict.fromkeys(
            ("rows", "first", "last", "bytes", "parts"), pl.Int64
        )
        info = pl.DataFrame(rows, schema=schema, orient="row")
        return info.with_columns(pl.col("first", "last").cast(utc))

    def held_info(self) -> HeldInfo:
        """What the store holds in memory for its queries: ``windows``, their ``bytes``
        and the budget ``max_bytes`` (see ``cache_bytes``).

        Examples
        --------
        >>> import lazybars as lb
        >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES")})
        >>> week = store.scan("MES").between("2024-01-08", "2024-01-13")
        >>> bars = week.collect()  # read once, then held
        >>> store.held_info().windows
        1
        >>> week.select("close").resample("1h").collect().height  # from memory
        35
        """
        return self._held.info()

    def compact(
        self,
        symbols: str | Iterable[str] | None = None,
        timestep: str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> pl.DataFrame:
        """Fold the parts appended to each stored (symbol, timestep) into its base file.

        An append whose bars all come after the stored ones writes them as a part of their
        own (it reads and rewrites none of the stored bars); reads combine the base and its
        parts. Appends compact by themselves once the parts are many (32) or hold a quarter
        of the base's rows; this does it now, e.g. before copying a catalog. A compaction is
        atomic: killed at any point, it leaves the bars as they were. Lazy frames taken
        (``query.lazy``) before a compaction still read the same bars; before two, they fail.

        Parameters
        ----------
        symbols
            A symbol or symbols to compact (None: every stored symbol).
        timestep
            Only this timestep (None: every stored timestep).
        progress
            Called as ``progress(done, total)`` after each (symbol, timestep).

        Returns
        -------
        polars.DataFrame
            One row per (symbol, timestep): ``symbol``, ``timestep``, ``parts`` (how many
            parts were folded) and ``rows`` (the bars stored).

        Raises
        ------
        UnknownAsset
            A symbol that is not stored (at ``timestep``, when given).

        Examples
        --------
        >>> import tempfile, lazybars as lb
        >>> bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-05")
        >>> store = lb.BarStore(tempfile.mkdtemp())
        >>> store.write("MES", bars[:1000])
        >>> store.write("MES", bars[1000:1100], mode="append")
        >>> store.info()["parts"].item()
        1
        >>> store.compact().rows()
        [('MES', '1m', 1, 1100)]
        >>> store.info()["parts"].item(), store.scan("MES").collect().equals(bars[:1100])
        (0, True)
        """
        wanted = None if timestep is None else Timestep.parse(timestep)
        if symbols is None:
            keys = sorted(k for k in self._backend.listing() if wanted in (None, k[1]))
        else:
            names = (symbols,) if isinstance(symbols, str) else tuple(symbols)
            keys = []
            for name in names:
                stored = self._timesteps(name)
                if wanted is not None and wanted not in stored:
                    msg = (
                        f"{name} is not stored at {wanted}; it is stored at {self.timesteps(name)}"
                    )
                    raise UnknownAsset(msg)
                keys += [(name, ts) for ts in stored if wanted in (None, ts)]
        rows = []
        for done, (symbol, ts) in enumerate(keys, start=1):
            folded = self._backend.compact(symbol, ts)
            rows.append((symbol, str(ts), folded, self._backend.describe(symbol, ts).rows))
            if progress is not None:
                progress(done, len(keys))
        schema = {"symbol": pl.String, "timestep": pl.String, "parts": pl.Int64, "rows": pl.Int64}
        return pl.DataFrame(rows, schema=schema, orient="row")

    def symbols(self, timestep: str | None = None) -> list[str]:
        """The stored symbols (at ``timestep`` only, when given), sorted."""
        wanted = None if timestep is None else Timestep.parse(timestep)
        return sorted({s for s, ts in self._backend.listing() if wanted is None or ts == wanted})

    def timesteps(self, symbol: str) -> list[str]:
        """The timesteps stored for ``symbol``, finest first."""
        return [str(ts) for ts in self._timesteps(symbol)]

    def scan(
        self,
        symbols: str | Iterable[str],
        timestep: str | None = None,
        *,
        timezone: str = "America/New_York",
        roll: Rule | None = None,
        adjust: Adjust = None,
    ) -> Query:
        """A lazy :class:`Query` over one symbol, or over a list of symbols in long format
        (a ``symbol`` column after ``datetime``; also for a list of one).

        ``timestep`` None means the finest stored timestep; a coarser one that is not
        stored is aggregated from the finest. ``timezone`` is the local zone of the
        semantics (day bar ends, sessions, bucket boundaries).

        A futures root whose contracts are stored (``MESH4``, ``MESM4``, ...) scans as one
        continuous series, with a ``contract`` column: by ``roll`` (a rule of
        :mod:`lazybars.futures`; None: the root's default, lumibot's rule for equity index
        roots), back-adjusted by ``adjust`` (None, ``"difference"`` or ``"ratio"``). With
        ``roll`` or ``adjust`` every symbol is taken as a root. See README "Continuous
        futures".
        """
        names = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        if not names:
            msg = "scan() needs at least one symbol"
            raise InvalidRequest(msg)
        validate_zone(timezone, argument="timezone")
        if roll is not None or adjust is not None:
            return scan_roots(self, symbols, timestep, timezone, roll, adjust)
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
        long = not isinstance(symbols, str)
        # The held cache keeps the bars of stored files; a continuous root has none of its own.
        held = None if any(name in self._stitched for name in names) else self._held
        source = QuerySource(
            self._backend.key, names, base, timezone, long, self._read, held, self._columns
        )
        query = Query(source)
        if wanted is not None and wanted != base:
            query = query.resample(str(wanted))
        return query

    def rolls(
        self,
        root: str,
        roll: Rule | None = None,
        *,
        adjust: Adjust = None,
        timezone: str = "America/New_York",
    ) -> pl.DataFrame:
        """The rolls of the continuous future ``root`` over its stored contracts.

        One row per roll: ``roll`` (the instant the contract ``out`` stops serving bars, in
        ``timezone``), ``out``, ``in``, and ``in_from`` (``in`` serves the bars starting
        there on); with ``adjust``, also ``out_close`` and ``in_close`` (each contract's
        last bar ended by the roll instant) and ``adjustment`` (their difference or ratio).
        ``roll`` and ``adjust`` are as for :meth:`scan`.

        Examples
        --------
        >>> import lazybars as lb
        >>> days = lb.synth.daily_bars("MES", "2023-12-01", "2024-06-30")
        >>> store = lb.BarStore.from_frames({"MESH4": days, "MESM4": days}, timestep="day")
        >>> store.rolls("MES").select("out", "in", pl.col("roll").dt.strftime("%F %R %Z")).row(0)
        ('MESH4', 'MESM4', '2024-03-05 00:05 EST')
        """
        validate_zone(timezone, argument="timezone")
        stitched = Stitched(self, root, roll or default_rule(root), adjust)
        return stitched.frame(timezone)

    def definitions(self, symbols: str | Iterable[str] | None = None) -> pl.DataFrame:
        """The contract definitions the catalog holds (see :meth:`write_definitions`), one
        row per contract, sorted by ``symbol``.

        Columns: ``symbol`` (DataBento's ``raw_symbol``, e.g. ``MESH4``),
        ``instrument_id``, ``multiplier`` (``unit_of_measure_qty``: 5.0 for MES),
        ``min_price_increment``, ``display_factor``, ``expiration`` and ``activation``
        (UTC), ``asset`` (the product, e.g. ``MES``), ``security_type``,
        ``instrument_class``, ``currency``, ``unit_of_measure``, ``exchange`` and
        ``ts_recv`` (when the definition kept was received). Undefined values are null.

        ``symbols``: only these; a name that is no defined contract stands for the
        contracts of that continuous root (``"MES"``: ``MESH4``, ``MESM4``, ...).

        Examples
        --------
        >>> import lazybars as lb
        >>> defs = pl.DataFrame({"symbol": ["MESH4", "MESM4", "ESH4"], "multiplier": [5, 5, 50]})
        >>> store = lb.BarStore.from_frames({}, definitions=defs)
        >>> store.definitions("MES").select("symbol", "multiplier").rows()
        [('MESH4', 5.0), ('MESM4', 5.0)]
        """
        defined = self._contracts.frame()
        if symbols is None:
            return defined
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        return _definitions.matching(defined, names)

    def multiplier(self, symbol: str) -> float | None:
        """The contract multiplier of ``symbol`` from the catalog's definitions: a
        contract's own, or for a continuous root (``"MES"``) the one its defined contracts
        share; None when none is defined.

        Raises
        ------
        SchemaError
            The contracts of a root have different multipliers.

        Examples
        --------
        >>> import lazybars as lb
        >>> defs = pl.DataFrame({"symbol": ["MESH4", "MESM4"], "multiplier": [5, 5]})
        >>> store = lb.BarStore.from_frames({}, definitions=defs)
        >>> store.multiplier("MES"), store.multiplier("MESH4"), store.multiplier("GC")
        (5.0, 5.0, None)
        """
        return _definitions.multiplier(self._contracts.frame(), symbol)

    def write_definitions(
        self, definitions: Any, *, replace: bool = False, source: str = "the new definitions"
    ) -> int:
        """Add contract definitions to the catalog; returns how many contracts were added
        or changed.

        ``definitions`` is a polars or pandas frame in DataBento's shape (a
        ``definition`` export or ``DBNStore.to_df()``: ``raw_symbol``,
        ``unit_of_measure_qty``, ...; fixed-point integer prices are scaled) or in the
        shape :meth:`definitions` returns (``symbol``, ``multiplier``, ...). Of several
        definitions of one contract the most recently received (``ts_recv``) is kept.
        A contract already stored keeps its row when the new one says the same; one that
        differs is a ``SchemaError`` naming the contract, the field and both values, and
        nothing is written, unless ``replace`` takes the new one. The write is atomic.
        ``lazybars ingest`` stores the definitions of the DBN files and exports it reads.
        ``source`` names the definitions in messages.
        """
        new = _definitions.from_frame(definitions, source)
        return self._contracts.write(new, replace=replace, source=source)

    def resolve(self, symbol: str, timestep: Timestep | None) -> Timestep:
        """The stored timestep that serves ``timestep`` for ``symbol`` (None: the finest).

        That is ``timestep`` itself when stored, else the finest stored one, which must be
        finer so that it can be aggregated.
        """
        return serving_timestep(self._timesteps(symbol), timestep, symbol)

    def bounds(self, symbol: str, timestep: str | Timestep) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The first and last bar start stored for ``symbol`` at ``timestep`` (any spelling
        ``write`` takes), in UTC, read from the file's footer.

        Examples
        --------
        >>> import lazybars as lb
        >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES")})
        >>> store.bounds("MES", "minute")[0]
        Timestamp('2024-01-02 14:30:00+0000', tz='UTC')
        """
        wanted = Timestep.parse(timestep)
        if wanted not in self._timesteps(symbol):
            msg = f"{symbol} is not stored at {wanted}; it is stored at {self.timesteps(symbol)}"
            raise UnknownAsset(msg)
        first, last = self._bounds(symbol, wanted)
        return pd.Timestamp(first, tz="UTC"), pd.Timestamp(last, tz="UTC")

    def _bounds(self, symbol: str, timestep: Timestep) -> tuple[int, int]:
        """``bounds`` as int64 ns, for the cache (no listing, no conversion)."""
        stitched = self._stitched.get(symbol)
        if stitched is not None:
            return stitched.bounds(timestep)
        description = self._backend.describe(symbol, timestep)
        return description.first, description.last

    def zone(self, symbol: str, timestep: str | Timestep | None = None) -> str:
        """The zone the bars of ``symbol`` serving ``timestep`` (None: the finest stored)
        were written in: a stored day bar covers one calendar day there.

        It is the zone of the stored ``datetime`` column (kept in the parquet schema, or
        in the frame in memory); appended bars take the stored zone.

        Examples
        --------
        >>> import lazybars as lb
        >>> candles = lb.synth.daily_bars("BTC", "2024-01-02", "2024-02-01", tz="UTC")
        >>> lb.BarStore.from_frames({"BTC": candles}, timestep="day").zone("BTC")
        'UTC'
        """
        wanted = None if timestep is None else Timestep.parse(timestep)
        stored = self.resolve(symbol, wanted)
        # The schema comes from the file's checked footer: no read of the bars.
        zone = self._read(symbol, stored).collect_schema()["datetime"].time_zone
        # The backends only hold tz-aware columns: ingest and the footer check see to it.
        assert zone is not None
        return zone

    def __repr__(self) -> str:
        if self._backend.remote:  # a repr never waits on the network
            return f"<lazybars.BarStore {self._backend.where}>"
        return f"<lazybars.BarStore {self._backend.where}: {len(self.symbols())} symbols>"

    # -- internals --------------------------------------------------------------------------
    def _timesteps(self, symbol: str) -> list[Timestep]:
        found = self._backend.timesteps(check_symbol(symbol))
        if found:
            self._stitched.pop(symbol, None)  # a root written since as a symbol of its own
        elif (stitched := find_root(self, symbol)) is not None:
            # A continuous future with its default rule; remembered for the reads that
            # follow (a DataSource's loads), and rebuilt on every resolve.
            self._stitched[symbol] = stitched
            return stitched.timesteps
        else:
            known = self.symbols()
            msg = (
                f"unknown asset {symbol!r}: the store holds {known[:10]}"
                f"{' ...' if len(known) > 10 else ''}; write it first with store.write()"
            )
            raise UnknownAsset(msg)
        return found

    def _read(self, symbol: str, timestep: Timestep) -> pl.LazyFrame:
        """The stored bars of ``symbol`` at exactly ``timestep``, as a polars scan."""
        stitched = self._stitched.get(symbol)
        if stitched is not None:
            return stitched.read(timestep)
        return self._backend.read(symbol, timestep)

    def _columns(self, symbol: str, timestep: Timestep) -> list[str]:
        stitched = self._stitched.get(symbol)
        if stitched is not None:
            return stitched.read(timestep).collect_schema().names()
        return self._backend.columns(symbol, timestep)

    def _load(
        self,
        symbol: str,
        timestep: Timestep,
        plan: Callable[[list[pl.LazyFrame]], list[pl.LazyFrame]],
    ) -> tuple[list[pl.DataFrame], object]:
        """``plan`` of the stored bars of ``symbol`` at ``timestep``, collected; a read
        racing a writer is read again (see ``Backend.load``)."""
        if symbol in self._stitched:  # contracts of a root: their files are read as stored
            return pl.collect_all(plan([self._read(symbol, timestep)])), None
        return self._backend.load([(symbol, timestep)], plan, self._read)
