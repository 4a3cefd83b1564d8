"""Bulk ingestion: vendor files and lumibot data into a catalog (``lazybars ingest``).

``ingest_into(store, *sources)`` reads DataBento DBN files, CSV and parquet files (plain,
vendor-shaped or DataBento exports) and lumibot ``Data`` objects, validates every batch
with the same rules as ``store.write`` (``lazybars.ingest.normalize``), and stores one
catalog file per symbol and timestep.

How big inputs stay in bounded memory: sources are read in batches; the validated bars
are buffered per symbol and timestep, and spilled as sorted parquet chunks to a hidden
temporary folder inside the catalog when the buffers pass ``buffer_rows``. Each catalog
file is then streamed from its chunks by polars' streaming parquet sink (chunks that do
not overlap in time are concatenated; only overlapping ranges are read to compare them)
into a hidden temporary file that is atomically renamed into place.

Nothing is written before every source has been read and every merge checked, so bad
input leaves the catalog exactly as it was.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import polars as pl

from lazybars._dbn import is_dbn, read_dbn
from lazybars._merge import Part
from lazybars._readers import Batch, is_data, is_table, read_data, read_table
from lazybars.errors import InvalidRequest, SchemaError, UnsortedBarsWarning
from lazybars.ingest import RowNames, normalize, validate_zone
from lazybars.store import BarStore, check_symbol
from lazybars.timestep import Timestep

__all__ = ["Progress", "ingest_into"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage "read" counts input bytes, "write" catalog files."""

_Key = tuple[str, Timestep]
_DAY_NS = 86_400_000_000_000
_MINUTE_NS = 60_000_000_000


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
        Paths of files (``.dbn``, ``.dbn.zst``, ``.csv``, ``.csv.zst``, ``.parquet``) or
        of folders holding them, lumibot ``Data`` objects, or lists and dicts of those
        (a lumibot ``pandas_data``).
    symbol
        The catalog symbol for a source holding one symbol, or ``{source name: catalog
        name}`` renames. By default a file's symbols come from its ``symbol``/``ticker``
        column or DBN mappings, else from its name (``SPY.csv`` -> ``SPY``).
    timestep
        The bars' timestep; by default the one a DBN file or lumibot ``Data`` states, else
        the most common spacing of the bars.
    tz
        The zone of naive times (and of DataBento day bars' dates); aware times keep theirs.
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
    # A file named twice (or inside a folder also named) is read once.
    inputs = list({_same(s): s for s in _expand(sources)}.values())
    if not inputs:
        msg = "no sources given: pass files, folders or lumibot Data objects"
        raise InvalidRequest(msg)
    batch_rows = max(min(buffer_rows // 2, 1 << 20), 1024)
    with _Spill(store, buffer_rows) as spill:
        _read_all(inputs, spill, _Options(symbol, wanted, tz, batch_rows), progress)
        planned = spill.parts()
        # Every symbol is checked before any is written; an append merges again as it
        # writes, onto whatever other writers have stored since.
        plans = {key: store._plan(*key, parts, append=append) for key, parts in planned}
        stored = store.info() if append else None
        before = {key: _stored_rows(stored, key) for key in plans}
        for done, (key, parts) in enumerate(planned, start=1):
            plans[key] = store._commit(*key, parts, append=append, planned=plans[key])
            if progress is not None:
                progress("write", done, len(plans))
    return _summary(plans, before, spill.sources)


@dataclass(frozen=True)
class _Options:
    symbol: str | Mapping[str, str] | None
    timestep: Timestep | None
    tz: str | None
    batch_rows: int


def _expand(sources: Iterable[Any]) -> Iterator[Any]:
    for source in sources:
        if isinstance(source, str | os.PathLike):
            yield from _files(Path(source))
        elif is_data(source):
            yield source
        elif isinstance(source, Mapping):
            yield from _expand(source.values())
        elif isinstance(source, list | tuple):
            yield from _expand(source)
        else:
            msg = (
                f"cannot ingest a {type(source).__name__}: give file or folder paths, or "
                "lumibot Data objects (with .asset.symbol, .df and .timestep)"
            )
            raise InvalidRequest(msg)


def _same(source: Any) -> object:
    return source.resolve() if isinstance(source, Path) else id(source)


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and _known(p))
        if not found:
            msg = f"folder {path} holds no .dbn, .dbn.zst, .csv, .csv.zst or .parquet files"
            raise InvalidRequest(msg)
        yield from found
    elif not path.is_file():
        msg = f"no such file or folder: {path}"
        raise InvalidRequest(msg)
    elif not _known(path):
        msg = (
            f"{path}: unknown file type; lazybars ingests .dbn, .dbn.zst, .csv, .csv.zst and "
            ".parquet files"
        )
        raise InvalidRequest(msg)
    else:
        yield path


def _known(path: Path) -> bool:
    return is_dbn(path) or is_table(path)


def _read_all(
    inputs: list[Any], spill: _Spill, options: _Options, progress: Progress | None
) -> None:
    total = sum(p.stat().st_size for p in inputs if isinstance(p, Path))
    done = 0
    for source in inputs:
        label = str(source) if isinstance(source, Path) else f"lumibot Data {source.asset.symbol}"
        reader = _Source(label, options, spill)
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
    return read_table(source, tz=options.tz, batch_rows=options.batch_rows)


class _Source:
    """Validates the batches of one source and hands its bars to the spill."""

    def __init__(self, label: str, options: _Options, spill: _Spill) -> None:
        self._label, self._options, self._spill = label, options, spill
        self._timesteps: dict[str, Timestep] = {}
        self._names: set[str] = set()  # the source's own symbol names
        self._unsorted = False

    def add(self, batch: Batch) -> None:
        frame = batch.frame
        if isinstance(frame, pl.DataFrame) and "symbol" in frame.columns:
            # Categorical: the split hashes a few symbols, not every row's string.
            by = frame.with_columns(pl.col("symbol").cast(pl.String).cast(pl.Categorical))
            split = by.partition_by("symbol", maintain_order=True, include_key=False, as_dict=True)
            names, groups = [str(k[0]) for k in split], list(split.values())
        else:
            groups, names = [frame], [batch.symbol or "bars"]
        self._check_override(names)
        for name, group in zip(names, groups, strict=True):
            self._add(self._catalog_name(name), group, batch)

    def _add(self, symbol: str, group: pl.DataFrame, batch: Batch) -> None:
        rows = RowNames(batch.word, group["__row"]) if "__row" in group.columns else RowNames()
        bars = group.drop("__row") if "__row" in group.columns else group
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnsortedBarsWarning)
            try:
                bars = normalize(bars, tz=self._options.tz, rows=rows)
            except SchemaError as exc:
                msg = f"{self._label} ({symbol}): {exc}"
                raise SchemaError(msg) from None
        self._unsorted |= any(issubclass(w.category, UnsortedBarsWarning) for w in caught)
        timestep = self._timestep(symbol, bars, batch)
        self._spill.add((symbol, timestep), bars, self._label)

    def _check_override(self, names: list[str]) -> None:
        if not isinstance(self._options.symbol, str):
            return
        self._names.update(names)
        if len(self._names) > 1:
            msg = (
                f"{self._label} holds several symbols ({sorted(self._names)[:5]}); "
                "--symbol (symbol=) names the one symbol of a source: drop it, or rename "
                "with SOURCE=NAME ({'SOURCE': 'NAME'})"
            )
            raise InvalidRequest(msg)

    def _catalog_name(self, name: str) -> str:
        wanted = self._options.symbol
        if isinstance(wanted, str):
            return check_symbol(wanted)
        if wanted is not None and name in wanted:
            return check_symbol(wanted[name])
        return safe_symbol(name)

    def _timestep(self, symbol: str, bars: pl.DataFrame, batch: Batch) -> Timestep:
        if symbol not in self._timesteps:
            found = self._options.timestep or batch.timestep or _spacing(bars, self._label)
            stated = batch.timestep
            if self._options.timestep and stated and stated != self._options.timestep:
                msg = (
                    f"{self._label} holds {stated} bars but timestep={self._options.timestep} "
                    "was given; drop --timestep for this source"
                )
                raise InvalidRequest(msg)
            self._timesteps[symbol] = found
        return self._timesteps[symbol]

    def finish(self) -> None:
        if self._unsorted:
            msg = f"the bars of {self._label} were not in time order; lazybars sorted them"
            warnings.warn(msg, UnsortedBarsWarning, stacklevel=4)


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


def _spacing(bars: pl.DataFrame, label: str) -> Timestep:
    """The timestep of bars whose source does not state it: their most common spacing."""
    gaps = bars["datetime"].dt.epoch("ns").diff().drop_nulls()
    if gaps.is_empty():
        msg = f"{label}: a single bar does not tell its timestep; pass --timestep (timestep=)"
        raise InvalidRequest(msg)
    common = int(gaps.mode().min())
    if common >= 20 * 3_600_000_000_000:
        return Timestep.parse("1d")
    if common % _MINUTE_NS or common >= _DAY_NS:
        msg = (
            f"{label}: most bars are {common / 1e9:g} s apart, which is no lazybars timestep "
            "(whole minutes below a day, or a day); pass --timestep (timestep=)"
        )
        raise InvalidRequest(msg)
    return Timestep(common // _MINUTE_NS)


def _stored_rows(info: pl.DataFrame | None, key: _Key) -> int:
    if info is None:
        return 0
    found = info.filter(symbol=key[0], timestep=str(key[1]))["rows"]
    return int(found[0]) if found.len() else 0


class _Spill:
    """Validated bars per key and source: in memory up to ``buffer_rows``, then on disk."""

    def __init__(self, store: BarStore, buffer_rows: int) -> None:
        self._store = store
        self._budget = max(buffer_rows, 1)
        self._buffers: dict[tuple[_Key, str], list[pl.DataFrame]] = {}
        self._parts: dict[_Key, list[Part]] = {}
        self._rows = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.sources: dict[_Key, set[str]] = {}

    def __enter__(self) -> _Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._folder is not None:
            self._folder.cleanup()

    def add(self, key: _Key, bars: pl.DataFrame, source: str) -> None:
        self._buffers.setdefault((key, source), []).append(bars)
        self.sources.setdefault(key, set()).add(source)
        self._rows += bars.height
        if self._rows >= self._budget:
            for (k, s), frames in self._buffers.items():
                self._parts.setdefault(k, []).append(self._to_disk(_joined(frames, s), s))
            self._buffers.clear()
            self._rows = 0

    def parts(self) -> list[tuple[_Key, list[Part]]]:
        for (key, source), frames in self._buffers.items():
            self._parts.setdefault(key, []).append(Part.of(_joined(frames, source), source))
        self._buffers.clear()
        return sorted(self._parts.items())

    def _to_disk(self, bars: pl.DataFrame, source: str) -> Part:
        if self._folder is None:
            # Inside a directory catalog (same disk as the result, hidden from listings);
            # for other stores, in the system's temporary directory.
            where = self._store._spill_dir()
            self._folder = tempfile.TemporaryDirectory(prefix=".ingest-", dir=where)
        fd, name = tempfile.mkstemp(suffix=".parquet", dir=self._folder.name)
        os.close(fd)
        bars.write_parquet(name, compression="lz4", statistics=False)
        part = Part.of(bars, source)
        return Part(
            pl.scan_parquet(Path(name).as_uri()), part.rows, part.first, part.last, (source,)
        )


def _joined(frames: list[pl.DataFrame], source: str) -> pl.DataFrame:
    """One source's batches of one key as canonical bars: sorted, no duplicate starts."""
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


def _summary(
    plans: dict[_Key, Part], before: dict[_Key, int], sources: dict[_Key, set[str]]
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
