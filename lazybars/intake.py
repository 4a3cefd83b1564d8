"""Bulk ingestion: vendor files and lumibot data into a catalog (``lazybars ingest``).

``ingest_into(store, *sources)`` reads DataBento DBN files, CSV and parquet files (plain,
vendor-shaped or DataBento exports), lumibot's DataBento cache (``lazybars._lumibot_cache``)
and lumibot ``Data`` objects, validates every batch
with the same rules as ``store.write`` (``lazybars.ingest.normalize``), and stores one
catalog file per symbol and timestep.

How big inputs stay in bounded memory: sources are read in batches; the validated bars
are buffered per source and symbol, and spilled as sorted parquet chunks to a hidden
temporary folder inside the catalog when the buffers pass ``buffer_rows``
(``lazybars._spill``). A source's timestep, when it does not state one, is inferred from
all of its bars once it has been read, and only then are its bars assigned to catalog
files. Each catalog
file is then streamed from its chunks by polars' streaming parquet sink (chunks that do
not overlap in time are concatenated; only overlapping ranges are read to compare them)
into a hidden temporary file that is atomically renamed into place.

Nothing is written before every source has been read and every merge checked, so bad
input leaves the catalog exactly as it was.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lazybars._dbn import is_dbn, read_dbn
from lazybars._definitions import holds_definitions, read_definitions
from lazybars._lumibot_cache import cache_file, cache_folders, read_file
from lazybars._merge import Part
from lazybars._readers import Batch, is_data, is_table, read_data, read_table
from lazybars._spill import Key, Spill, remove_stale
from lazybars._time import DAY_NS
from lazybars.errors import InvalidRequest, SchemaError, UnsortedBarsWarning
from lazybars.ingest import RowNames, normalize, validate_zone
from lazybars.store import BarStore, check_symbol
from lazybars.timestep import Timestep

__all__ = ["Progress", "ingest_into"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage "read" counts input bytes, "write" catalog files."""

_MINUTE_NS = 60_000_000_000
_HALF_HOUR_NS = 30 * _MINUTE_NS
_HOUR_NS = 60 * _MINUTE_NS
# Day bars are 24 h apart in the wall-clock time of their zone; 23 and 25 h when a skipped
# midnight makes a day start at 01:00. Below: intraday bars; above: weekly and coarser.
_DAY_SPACING = (20 * _HOUR_NS, 25 * _HOUR_NS)


def ingest_into(
    store: BarStore | str | os.PathLike[str],
    *sources: Any,
    symbol: str | Mapping[str, str] | None = None,
    timestep: str | None = None,
    tz: str | None = None,
    append: bool = False,
    progress: Progress | None = None,
    buffer_rows: int = 2_000_000,
) -> pl.DataFrame:
    """Read ``sources`` into ``store``; returns a summary, one row per symbol and timestep.

    Parameters
    ----------
    store
        A :class:`BarStore` or a catalog directory.
    sources
        Paths of files (``.dbn``, ``.dbn.zst``, ``.csv``, ``.csv.gz``, ``.csv.zst``,
        ``.parquet``) or of folders holding them (hidden entries and the catalog itself
        are skipped), lumibot ``Data`` objects, or lists and dicts of those (a lumibot
        ``pandas_data``). In lumibot's DataBento cache (``databento/`` and
        ``databento_polars/``, or a folder holding them, of which only they are read) a
        file's name gives its contract and timestep, and the overlapping windows of a
        contract are merged. DataBento ``definition`` files (DBN, or CSV/parquet
        exports) add contract definitions instead (:meth:`BarStore.write_definitions`).
    symbol
        The catalog symbol for a source holding one symbol, or ``{source name: catalog
        name}`` renames. By default a file's symbols come from its ``symbol``/``ticker``
        column or DBN mappings, else from its name without its suffix (``BRK.B.csv`` ->
        ``BRK.B``); a DataBento export without symbols names each instrument by its id.
    timestep
        The bars' timestep; by default the one a DBN file, a DataBento export or lumibot
        ``Data`` states, else inferred from all bars of the source: the largest step that
        every spacing between bars of one symbol is a whole multiple of (day bars: 24 h
        apart on the clock). A spacing that is no lazybars timestep (weekly bars, 90 s)
        is a ``SchemaError``: pass ``timestep`` when the bars have another size.
    tz
        The zone of naive times and of DataBento day bars' dates; aware times are stored in
        it too (a stored day bar covers a calendar day of its zone). None: aware times keep
        their zone.
    append
        Add to the stored bars (bars with the same start must be identical) instead of
        replacing them.
    progress
        Called as ``progress(stage, done, total)`` while reading and writing.
    buffer_rows
        Validated rows held in memory before they are spilled to disk.

    Returns
    -------
    polars.DataFrame
        ``symbol``, ``timestep``, ``rows`` (now stored), ``added``, ``first``, ``last``
        (UTC) and ``sources`` (how many sources contributed).

    Examples
    --------
    >>> import tempfile, lazybars as lb
    >>> folder = tempfile.mkdtemp()
    >>> lb.synth.minute_bars("MES").write_csv(f"{folder}/MES.csv")
    >>> summary = lb.ingest_into(f"{folder}/catalog", f"{folder}/MES.csv")
    >>> summary.select("symbol", "timestep", "rows").rows()
    [('MES', '1m', 8543)]
    """
    if not isinstance(store, BarStore):
        store = BarStore(store)
    wanted = None if timestep is None else Timestep.parse(timestep)
    if tz is not None:
        validate_zone(tz)
    # Spills live in the catalog of a directory store: walking folders skips it.
    where = store._spill_dir()
    catalog = None if where is None else where.resolve()
    # A file named twice (or inside a folder also named) is read once.
    inputs = list({_same(s): s for s in _expand(sources, catalog)}.values())
    if not inputs:
        msg = "no sources given: pass files, folders or lumibot Data objects"
        raise InvalidRequest(msg)
    defining = [s for s in inputs if isinstance(s, Path) and _defines(s)]
    inputs = [s for s in inputs if not any(s is d for d in defining)]
    definitions = None
    if defining:
        # Checked before any bars are written: a conflict leaves the catalog as it was.
        definitions = read_definitions(defining)
        named = ", ".join(map(str, defining[:3])) + (" ..." if len(defining) > 3 else "")
        store._contracts.check(definitions, named)
    batch_rows = max(min(buffer_rows // 2, 1 << 20), 1024)
    remove_stale(where)
    with Spill(where, buffer_rows) as spill:
        _read_all(inputs, spill, _Options(symbol, wanted, tz, batch_rows), progress)
        planned = spill.parts()
        # Every symbol is checked before any is written; an append merges again as it
        # writes, onto whatever other writers have stored since.
        plans = {key: _plan(store, key, parts, append) for key, parts in planned}
        stored = store.info() if append else None
        before = {key: _stored_rows(stored, key) for key in plans}
        for done, (key, parts) in enumerate(planned, start=1):
            plans[key] = store._commit(*key, parts, append=append, planned=plans[key])
            if progress is not None:
                progress("write", done, len(plans))
    if definitions is not None:
        store.write_definitions(definitions, source=named)
    return _summary(plans, before, spill.sources)


def _defines(path: Path) -> bool:
    """Whether a file holds contract definitions rather than bars."""
    return cache_file(path) is None and holds_definitions(path)


def _plan(store: BarStore, key: Key, parts: list[Part], append: bool) -> Part:
    try:
        return store._plan(*key, parts, append=append)
    except SchemaError as exc:
        # The sources' labels alone may not name the symbol (files named after dates).
        msg = f"{key[0]} ({key[1]}): {exc}"
        raise SchemaError(msg) from None


@dataclass(frozen=True)
class _Options:
    symbol: str | Mapping[str, str] | None
    timestep: Timestep | None
    tz: str | None
    batch_rows: int


def _expand(sources: Iterable[Any], catalog: Path | None) -> Iterator[Any]:
    for source in sources:
        if isinstance(source, str | os.PathLike):
            yield from _files(Path(source), catalog)
        elif is_data(source):
            yield source
        elif isinstance(source, Mapping):
            yield from _expand(source.values(), catalog)
        elif isinstance(source, list | tuple):
            yield from _expand(source, catalog)
        else:
            msg = (
                f"cannot ingest a {type(source).__name__}: give file or folder paths, or "
                "lumibot Data objects (with .asset.symbol, .df and .timestep)"
            )
            raise InvalidRequest(msg)


def _same(source: Any) -> object:
    return source.resolve() if isinstance(source, Path) else id(source)


def _files(path: Path, catalog: Path | None) -> Iterator[Path]:
    if path.is_dir():
        # A lumibot cache folder also holds other providers' caches: only DataBento's.
        folders = cache_folders(path) or [path]
        found = sorted(f for folder in folders for f in _walk(folder, catalog))
        if not found:
            msg = (
                f"folder {path} holds no .dbn, .dbn.zst, .csv, .csv.gz, .csv.zst or .parquet "
                "files (hidden entries and the target catalog are skipped)"
            )
            raise InvalidRequest(msg)
        yield from found
    elif not path.is_file():
        msg = f"no such file or folder: {path}"
        raise InvalidRequest(msg)
    elif not _known(path):
        msg = (
            f"{path}: unknown file type; lazybars ingests .dbn, .dbn.zst, .csv, .csv.gz, "
            ".csv.zst and .parquet files"
        )
        raise InvalidRequest(msg)
    else:
        yield path


def _walk(folder: Path, catalog: Path | None) -> Iterator[Path]:
    """The files of ``folder`` and its subfolders that lazybars reads, leaving out hidden
    entries (spills, ``.git``...) and the catalog being written, if it is inside."""
    if folder.resolve() == catalog:
        return
    for top, folders, files in os.walk(folder):
        folders[:] = [
            f for f in folders if not f.startswith(".") and Path(top, f).resolve() != catalog
        ]
        found = (Path(top, f) for f in files if not f.startswith("."))
        yield from (f for f in found if _known(f) and f.is_file())


def _known(path: Path) -> bool:
    return is_dbn(path) or is_table(path)


def _read_all(
    inputs: list[Any], spill: Spill, options: _Options, progress: Progress | None
) -> None:
    total = sum(p.stat().st_size for p in inputs if isinstance(p, Path))
    done = 0
    for number, source in enumerate(inputs):
        label = str(source) if isinstance(source, Path) else f"lumibot Data {source.asset.symbol}"
        reader = _Source(number, label, options, spill)
        for batch in _batches(source, options):
            reader.add(batch)
            done += batch.nbytes
            if progress is not None:
                progress("read", done, total)
        reader.finish()


def _batches(source: Any, options: _Options) -> Iterator[Batch]:
    if not isinstance(source, Path):
        return read_data(source)
    if is_dbn(source):
        return read_dbn(source, tz=options.tz, batch_records=options.batch_rows)
    if cache_file(source) is not None:
        return read_file(source, tz=options.tz, batch_rows=options.batch_rows)
    return read_table(source, tz=options.tz, batch_rows=options.batch_rows)


class _Source:
    """Validates the batches of one source and hands its bars to the spill; once the
    source has been read, settles the catalog symbol and timestep of each of its symbols."""

    def __init__(self, number: int, label: str, options: _Options, spill: Spill) -> None:
        self._number, self._label, self._options, self._spill = number, label, options, spill
        self._names: dict[str, None] = {}  # the source's own symbol names, in order
        self._stated: Timestep | None = None
        self._sole: str | None = None
        self._spacing = _Spacing()
        self._unsorted = False

    def add(self, batch: Batch) -> None:
        self._check_timestep(batch.timestep)
        self._sole = batch.sole
        frame = batch.frame
        if isinstance(frame, pl.DataFrame) and "symbol" in frame.columns:
            # Categorical: the split hashes a few symbols, not every row's string.
            by = frame.with_columns(pl.col("symbol").cast(pl.String).cast(pl.Categorical))
            split = by.partition_by("symbol", maintain_order=True, include_key=False, as_dict=True)
            if any(k[0] is None or not str(k[0]).strip() for k in split):
                self._no_symbol(frame, batch.word)
            names, groups = [str(k[0]) for k in split], list(split.values())
        else:
            groups, names = [frame], [batch.symbol or "bars"]
        self._names.update(dict.fromkeys(names))
        self._check_override()
        for name, group in zip(names, groups, strict=True):
            self._add(name, group, batch)

    def _add(self, name: str, group: pl.DataFrame, batch: Batch) -> None:
        rows = RowNames(batch.word, group["__row"]) if "__row" in group.columns else RowNames()
        bars = group.drop("__row") if "__row" in group.columns else group
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnsortedBarsWarning)
            try:
                bars = normalize(bars, tz=self._options.tz, rows=rows)
            except SchemaError as exc:
                msg = f"{self._label} ({name}): {exc}"
                raise SchemaError(msg) from None
        self._unsorted |= any(issubclass(w.category, UnsortedBarsWarning) for w in caught)
        if self._options.timestep is None and self._stated is None:
            self._spacing.add(name, bars)
        self._spill.add(self._number, name, bars, self._label)

    def _check_timestep(self, stated: Timestep | None) -> None:
        given = self._options.timestep
        if given and stated and stated != given:
            msg = (
                f"{self._label} holds {stated} bars but timestep='{given}' was given; drop "
                "timestep= for this source"
            )
            raise InvalidRequest(msg)
        self._stated = stated

    def _no_symbol(self, frame: pl.DataFrame, word: str) -> None:
        symbol = frame["symbol"].cast(pl.String)
        missing = symbol.is_null() | (symbol.str.strip_chars() == "")
        at = missing.arg_true().head(5)
        shown = at.to_list() if "__row" not in frame.columns else frame["__row"][at].to_list()
        msg = (
            f"{self._label}: {int(missing.sum())} rows have no symbol ({word} {shown}); "
            "fill in their symbol, or drop those rows"
        )
        raise SchemaError(msg)

    def _check_override(self) -> None:
        if isinstance(self._options.symbol, str) and len(self._names) > 1:
            msg = (
                f"{self._label} holds several symbols ({sorted(self._names)[:5]}); "
                "symbol='NAME' names the one symbol of a source: drop it, or rename with "
                "symbol={'SOURCE': 'NAME'}"
            )
            raise InvalidRequest(msg)

    def _catalog_name(self, name: str) -> str:
        wanted = self._options.symbol
        if isinstance(wanted, str):
            return check_symbol(wanted)
        if wanted is not None and name in wanted:
            return check_symbol(wanted[name])
        return safe_symbol(name)

    def finish(self) -> None:
        if self._unsorted:
            msg = f"the bars of {self._label} were not in time order; lazybars sorted them"
            warnings.warn(msg, UnsortedBarsWarning, stacklevel=4)
        if not self._names:
            return
        timestep = self._options.timestep or self._stated or self._spacing.timestep(self._label)
        names = list(self._names)
        # The source's only instrument takes the file's name, as a plain file's bars do.
        shown = {names[0]: self._sole} if self._sole and len(names) == 1 else {}
        keys = {n: (self._catalog_name(shown.get(n, n)), timestep) for n in names}
        self._spill.settle(self._number, keys)


def safe_symbol(name: str) -> str:
    """A catalog symbol for a vendor's symbol: the name itself when it is a valid symbol
    (``MES.c.0``, ``BRK.B``, ``ESZ4-ESH5``), else with ``/`` and ``\\`` as ``-`` and other
    unsafe characters as ``_`` (``EUR/USD`` -> ``EUR-USD``).

    >>> safe_symbol("MES.c.0"), safe_symbol("EUR/USD"), safe_symbol(" .X\\tY ")
    ('MES.c.0', 'EUR-USD', '_X_Y')
    """
    cleaned = name.strip().replace("/", "-").replace("\\", "-")
    cleaned = "".join(ch if ch.isprintable() else "_" for ch in cleaned)
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return check_symbol(cleaned)


class _Spacing:
    """The spacing of a source's bars, over all its symbols and batches, for a source that
    does not state its timestep.

    Spacings are measured between consecutive bars of one symbol on the wall clock of the
    bars' own zone, so 4h bars are 4 hours apart across DST changes. Bars on a grid of one
    timestep are whole multiples of it apart, so the timestep is the largest step all
    spacings are multiples of (their gcd): an illiquid symbol's 2 and 3 minute gaps give
    1m, never 2m. Day bars are told by their smallest spacing instead (23 to 25 hours
    around DST changes and skipped midnights).
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}  # each symbol's last bar start, on the wall clock
        self._smallest: int | None = None
        self._step = 0

    def add(self, name: str, bars: pl.DataFrame) -> None:
        when = bars["datetime"]
        gaps = when.dt.epoch("ns").diff().drop_nulls()
        step = int(np.gcd.reduce(gaps.to_numpy())) if gaps.len() else 0
        # Zone offsets change by whole half hours: elapsed spacings that are multiples of a
        # step dividing 30 minutes are so on the wall clock too (and the steps agree, but
        # for hourly bars where DST moves clocks by 30 minutes: Lord Howe Island). Only
        # other ones (hours, days) are measured on the wall clock, whose conversion costs
        # more than all the rest.
        if step == 0 or _HALF_HOUR_NS % step:
            gaps = when.dt.replace_time_zone(None).dt.epoch("ns").diff().drop_nulls()
        ends = pl.concat([when.head(1), when.tail(1)]).dt.replace_time_zone(None).dt.epoch("ns")
        if name in self._last:
            gaps = gaps.append(pl.Series([ends[0] - self._last[name]]))
        self._last[name] = int(ends[1])
        # A wall clock going back (the repeated hour in autumn) is no spacing.
        positive = gaps.filter(gaps > 0).to_numpy()
        if positive.size:
            smallest = int(positive.min())
            self._smallest = min(self._smallest or smallest, smallest)
            self._step = math.gcd(self._step, int(np.gcd.reduce(positive)))

    def timestep(self, label: str) -> Timestep:
        if self._smallest is None:
            msg = (
                f"{label}: one bar per symbol does not tell the timestep; pass timestep= "
                "naming the bars' size, e.g. timestep='1d'"
            )
            raise InvalidRequest(msg)
        low, high = _DAY_SPACING
        if low <= self._smallest <= high:
            return Timestep.parse("1d")
        if self._smallest < low and self._step % _MINUTE_NS == 0:
            return Timestep(self._step // _MINUTE_NS)
        if self._smallest < low and self._step != self._smallest:
            found = f"the spacings of its bars are multiples of {_duration(self._step)}"
        else:
            found = f"its bars are {_duration(self._smallest)} apart"
        msg = (
            f"{label}: {found}, which is no lazybars timestep (whole minutes below a day, or "
            "a day; there are no weekly or monthly bars); ingest finer bars, or pass "
            "timestep= if the bars' size is another one"
        )
        raise SchemaError(msg)


def _duration(ns: int) -> str:
    for unit, size in (("day", DAY_NS), ("hour", _HOUR_NS), ("minute", _MINUTE_NS)):
        if ns % size == 0:
            return f"{ns // size} {unit}{'' if ns == size else 's'}"
    return f"{ns / 1e9:g} s"


def _stored_rows(info: pl.DataFrame | None, key: Key) -> int:
    if info is None:
        return 0
    found = info.filter(symbol=key[0], timestep=str(key[1]))["rows"]
    return int(found[0]) if found.len() else 0


def _summary(
    plans: dict[Key, Part], before: dict[Key, int], sources: dict[Key, set[str]]
) -> pl.DataFrame:
    rows = [
        (sym, str(ts), p.rows, p.rows - before[(sym, ts)], p.first, p.last, len(sources[(sym, ts)]))
        for (sym, ts), p in sorted(plans.items())
    ]
    schema = {
        "symbol": pl.String,
        "timestep": pl.String,
        "rows": pl.Int64,
        "added": pl.Int64,
        "first": pl.Int64,
        "last": pl.Int64,
        "sources": pl.Int64,
    }
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    return frame.with_columns(pl.col("first", "last").cast(pl.Datetime("ns", "UTC")))
