"""Readers of bar tables: CSV and parquet files (plain, vendor and DataBento exports), and
lumibot ``Data`` objects; each yields batches of rows for ``lazybars.intake``.

CSV files are read a block of lines at a time with polars' CSV reader (the schema fixed
by the first block), parquet files a row group batch at a time, so a file is never held
whole. Column names are matched case-insensitively through aliases (yahoo, alpaca,
polygon, DataBento); integer or float time columns are epoch times whose unit (s, ms, us
or ns) is told from their magnitude.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lazybars._time import BAR_RANGE, END_BAR_NS, FIRST_BAR_NS, first_instants
from lazybars.errors import SchemaError
from lazybars.ingest import PRICE_COLUMNS, RowNames, check_text_range
from lazybars.timestep import Timestep

__all__ = [
    "ALIASES",
    "OHLCV_RTYPES",
    "Batch",
    "is_data",
    "is_table",
    "read_data",
    "read_table",
    "symbol_of_file",
]

# DataBento OHLCV record types -> (schema, timestep as stored); 1s bars become minutes.
OHLCV_RTYPES = {
    0x20: ("ohlcv-1s", "1m"),
    0x21: ("ohlcv-1m", "1m"),
    0x22: ("ohlcv-1h", "1h"),
    0x23: ("ohlcv-1d", "1d"),
    0x24: ("ohlcv-eod", "1d"),
}
# Lower-cased source column -> lazybars column. Names not listed keep their own.
ALIASES = {
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "vol": "volume",
    "t": "timestamp",
    "ts": "timestamp",
    "window_start": "timestamp",
    "adj close": "adj_close",
    "adj. close": "adj_close",
    "vw": "vwap",
    "n": "trade_count",
    "ticker": "symbol",
    "symbol": "symbol",
}
# Record metadata in DataBento exports: not bar data.
_DATABENTO_META = ("rtype", "publisher_id", "instrument_id")
_DATABENTO_HEADER = ("ts_event", "rtype", "instrument_id")
_SUFFIXES = (".csv", ".csv.gz", ".csv.zst", ".parquet")
# Every suffix lazybars reads (DBN's too), longest first: a file's name minus its suffix is
# its symbol, dots and all (BRK.A.csv is BRK.A).
_KNOWN_SUFFIXES = (".csv.gz", ".csv.zst", ".dbn.zst", ".parquet", ".csv", ".dbn")
_COMPRESSION = {b"\x28\xb5\x2f\xfd": "zstd", b"\x1f\x8b": "gzip"}
_PRICE_SCALE = 1e9
# Epoch magnitude limits (exclusive) for s, ms, us; above: ns. Each holds dates up to 5138.
_EPOCH_UNITS = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))


@dataclass(frozen=True)
class Batch:
    """Rows of one source: a time column, OHLC(V) and extras, an optional ``symbol``
    column, and ``__row``, each row's number in the source (``word``: lines, records...).
    A lumibot ``Data`` batch is its pandas frame as it is (no ``__row``).

    ``symbol`` names the bars of a frame without a symbol column; ``sole`` names them
    instead of the symbol column when the whole source holds a single symbol (a DataBento
    export named by instrument ids: one instrument is named after its file)."""

    frame: pl.DataFrame | pd.DataFrame
    word: str
    nbytes: int
    timestep: Timestep | None = None
    symbol: str | None = None
    sole: str | None = None


def is_table(path: Path) -> bool:
    """True for the file names this module reads."""
    return path.name.lower().endswith(_SUFFIXES)


def symbol_of_file(path: Path) -> str:
    """The symbol a file's name gives: its name without the suffix lazybars reads it by.

    >>> symbol_of_file(Path("BRK.A.csv.zst")), symbol_of_file(Path("MES.c.0.DBN"))
    ('BRK.A', 'MES.c.0')
    """
    name = path.name
    suffix = next((s for s in _KNOWN_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)]


def is_data(obj: Any) -> bool:
    """True for lumibot ``Data``-like objects: ``.asset.symbol``, ``.df`` and ``.timestep``."""
    return all(hasattr(obj, a) for a in ("asset", "df", "timestep")) and hasattr(
        obj.asset, "symbol"
    )


def read_data(obj: Any) -> Iterator[Batch]:
    """The bars of a lumibot ``Data`` object (duck-typed: lumibot is not imported)."""
    frame = obj.df
    if frame is None or len(frame) == 0:
        msg = f"lumibot Data for {obj.asset.symbol!r} holds no bars; drop it from the sources"
        raise SchemaError(msg)
    timestep = Timestep.parse(str(obj.timestep))
    # A plain pandas frame: normalize() reads it (DatetimeIndex or time column).
    yield Batch(frame, "rows", 0, timestep=timestep, symbol=str(obj.asset.symbol))


def read_table(path: Path, *, tz: str | None, batch_rows: int) -> Iterator[Batch]:
    """The rows of a CSV (``.csv``, ``.csv.gz``, ``.csv.zst``) or parquet file, in batches."""
    name = path.name.lower()
    blocks = _parquet_blocks(path, batch_rows) if name.endswith(".parquet") else None
    blocks = blocks or _csv_blocks(path, batch_rows)
    shape: _Shape | None = None
    for frame, word, nbytes in blocks:
        if shape is None:
            shape = _Shape.of(frame, path, tz)
        try:
            batch = shape.apply(frame, word, nbytes, symbol_of_file(path))
        except SchemaError as exc:
            msg = f"{path}: {exc}"
            raise SchemaError(msg) from None
        yield batch


def _csv_blocks(path: Path, batch_rows: int) -> Iterator[tuple[pl.DataFrame, str, int]]:
    raw = pa.OSFile(str(path), "rb")
    try:
        magic = raw.read(4)
        raw.seek(0)
        codec = next((c for m, c in _COMPRESSION.items() if magic.startswith(m)), None)
        stream = raw if codec is None else pa.CompressedInputStream(raw, codec)
        yield from _csv_lines(path, stream, raw, batch_rows)
    except OSError as exc:
        msg = f"{path}: cannot read the file ({exc}); it is damaged or truncated"
        raise SchemaError(msg) from None
    finally:
        raw.close()


def _csv_lines(
    path: Path, stream: Any, raw: Any, batch_rows: int
) -> Iterator[tuple[pl.DataFrame, str, int]]:
    """Blocks of whole lines; the first is parsed with the header and fixes the schema."""
    # ~50 bytes a line: a block holds about batch_rows lines, and is at most 16 MiB.
    block_bytes = min(max(1 << 16, batch_rows * 50), 1 << 24)
    header, _, carry = stream.read(block_bytes).partition(b"\n")
    # Spreadsheet exports: a byte-order mark and Windows line ends.
    header = header.removeprefix(b"\xef\xbb\xbf").rstrip(b"\r")
    if not header.strip():
        msg = f"{path}: the file is empty or has no header line; CSV files need a header"
        raise SchemaError(msg)
    separator = max(",;\t|", key=header.decode("utf-8", "replace").count)
    names = pl.read_csv(header + b"\n", separator=separator).columns
    # Prices and volume are numbers, even when the first block's values are all missing;
    # but a DataBento export's integer prices are fixed-point, which _Shape tells by type.
    databento = set(_DATABENTO_HEADER) <= {n.lower().strip() for n in names}
    numbers = {
        n: pl.Float64 for n in names if _alias(n) in (*PRICE_COLUMNS, "volume") and not databento
    }
    schema: dict[str, pl.DataType] | None = None
    line, done = 2, 0
    while True:
        data = stream.read(block_bytes)
        cut = len(data) if not data else data.rfind(b"\n") + 1
        body, carry = carry + data[:cut], data[cut:] if data else b""
        if body and not body.isspace():
            frame = _parse_csv(
                header, body, separator, schema or numbers, path, line, schema is None
            )
            schema = schema or _widened(frame.schema)
            numbers = pl.int_range(line, line + frame.height, eager=True, dtype=pl.Int64)
            now = raw.tell()
            yield frame.with_columns(numbers.alias("__row")), "lines", now - done
            done = now
            line += body.count(b"\n")
        if not data:
            return


def _parse_csv(
    header: bytes,
    body: bytes,
    separator: str,
    schema: dict[str, pl.DataType],
    path: Path,
    line: int,
    first: bool,
) -> pl.DataFrame:
    """One block; the first is read with its header, inferring all but ``schema``'s types."""
    try:
        if first:
            return pl.read_csv(
                header + b"\n" + body,
                separator=separator,
                infer_schema_length=10_000,
                schema_overrides=schema,
            )
        return pl.read_csv(body, separator=separator, has_header=False, schema=schema)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = (
            f"{path}: cannot parse the lines from line {line} on ({first_line}); every row "
            "needs the header's columns, with numbers in the price and volume columns"
        )
        raise SchemaError(msg) from None


def _alias(name: str) -> str:
    key = name.lower().strip()
    return ALIASES.get(key, key)


def _widened(schema: pl.Schema) -> dict[str, pl.DataType]:
    """The first block's schema, made safe for later blocks: prices and volume as floats,
    integers as Int64 (a later block may hold a fraction or a larger number)."""
    out: dict[str, pl.DataType] = {}
    for name, dtype in schema.items():
        if _alias(name) in (*PRICE_COLUMNS, "volume") and dtype.is_numeric():
            out[name] = pl.Float64
        elif dtype.is_integer():
            out[name] = pl.Int64
        elif dtype == pl.Null:
            out[name] = pl.String
        else:
            out[name] = dtype
    return out


def _parquet_blocks(path: Path, batch_rows: int) -> Iterator[tuple[pl.DataFrame, str, int]]:
    try:
        file = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        msg = f"{path}: cannot read the parquet file ({exc}); it is damaged or not parquet"
        raise SchemaError(msg) from None
    total = max(file.metadata.num_rows, 1)
    size, row, done = path.stat().st_size, 0, 0
    for batch in file.iter_batches(batch_size=batch_rows):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        numbers = pl.int_range(row, row + frame.height, eager=True, dtype=pl.Int64)
        row += frame.height
        now = size * row // total
        yield frame.with_columns(numbers.alias("__row")), "rows", now - done
        done = now


@dataclass(frozen=True)
class _Shape:
    """What a file's columns are, worked out once from its first block."""

    renames: dict[str, str]
    time: str
    epoch_unit: str | None
    time_format: str | None
    fixed_point: bool
    timestep: Timestep | None
    tz: str | None
    drop: tuple[str, ...]
    by_instrument: bool

    @classmethod
    def of(cls, frame: pl.DataFrame, path: Path, tz: str | None) -> _Shape:
        renames = _renames(frame.columns, path)
        named = frame.rename(renames)
        lower = {c.lower(): c for c in named.columns}
        time = next((lower[c] for c in _TIME if c in lower), None)
        databento = set(_DATABENTO_HEADER) <= set(lower)
        # An export without symbols may interleave instruments: they stay apart by id.
        by_instrument = databento and "symbol" not in named.columns
        if by_instrument:
            renames[lower["instrument_id"]] = "symbol"  # never aliased: the file's own name
        timestep = None
        if databento and named.height:
            rtype = named[lower["rtype"]][0]
            if rtype not in OHLCV_RTYPES:
                msg = (
                    f"{path}: a DataBento export of rtype {rtype}, not OHLCV bars; lazybars "
                    "ingests the ohlcv-1s/1m/1h/1d/eod schemas"
                )
                raise SchemaError(msg)
            timestep = Timestep.parse(OHLCV_RTYPES[rtype][1])
            if OHLCV_RTYPES[rtype][0] == "ohlcv-1s":
                msg = (
                    f"{path}: a DataBento ohlcv-1s export; lazybars stores minute bars and "
                    "coarser: ingest the .dbn file (its 1s bars are aggregated to minutes)"
                )
                raise SchemaError(msg)
        unit = fmt = None
        if time is not None and named[time].dtype.is_numeric():
            unit = _epoch_unit(named[time])
        elif time is not None and named[time].dtype == pl.String:
            fmt = _time_format(named[time])
        fixed = databento and all(
            named[lower[c]].dtype.is_integer() for c in PRICE_COLUMNS if c in lower
        )
        if timestep is not None and timestep.is_day and tz is None:
            msg = (
                f"{path}: DataBento day bars are labelled by their date: pass tz= naming "
                "the zone of that calendar, e.g. tz='America/Chicago' for CME futures"
            )
            raise SchemaError(msg)
        meta = [c for c in _DATABENTO_META if databento and c in lower]
        drop = tuple(lower[c] for c in meta if not (by_instrument and c == "instrument_id"))
        day_tz = tz if timestep is not None and timestep.is_day else None
        return cls(renames, time or "", unit, fmt, fixed, timestep, day_tz, drop, by_instrument)

    def apply(self, frame: pl.DataFrame, word: str, nbytes: int, stem: str) -> Batch:
        frame = frame.rename(self.renames).drop(self.drop)
        if self.time and self.epoch_unit is not None:
            frame = frame.with_columns(_from_epoch(frame, self.time, self.epoch_unit, word))
        elif self.time_format is not None and frame[self.time].dtype == pl.String:
            text = frame[self.time]
            check_text_range(text, self.time_format, self.time, _rows(frame, word))
            parsed = text.str.to_datetime(self.time_format, time_unit="ns", strict=False)
            # Anything the file's format does not parse stays text: normalize() names it.
            if parsed.null_count() == text.null_count():
                frame = frame.with_columns(parsed)
        if self.fixed_point:
            # numpy: correctly rounded (polars multiplies by the scale's reciprocal).
            prices = [c for c in frame.columns if c.lower() in PRICE_COLUMNS]
            frame = frame.with_columns(
                pl.Series(c, frame[c].cast(pl.Float64).to_numpy() / _PRICE_SCALE) for c in prices
            )
        if self.tz is not None:
            # DataBento day bars start at midnight UTC of their date: relabel to local.
            when = pl.col(self.time)
            if frame[self.time].dtype == pl.String:
                when = when.str.to_datetime(time_unit="ns", time_zone="UTC")
            midnights = frame.select(when.dt.date().cast(pl.Datetime("ns"))).to_series()
            frame = frame.with_columns(first_instants(midnights, self.tz).alias(self.time))
        symbol = None if "symbol" in frame.columns else stem
        sole = stem if self.by_instrument else None
        return Batch(frame, word, nbytes, timestep=self.timestep, symbol=symbol, sole=sole)


def _renames(columns: list[str], path: Path) -> dict[str, str]:
    """Aliased columns to their lazybars names; two columns of one meaning are refused."""
    meaning: dict[str, list[str]] = {}
    for name in columns:
        if name != "__row":
            meaning.setdefault(_alias(name), []).append(name)
    for target, names in meaning.items():
        # Names that differ only in case and alias nothing are left to normalize().
        if len(names) > 1 and any(n.lower().strip() in ALIASES for n in names):
            shown = " and ".join(repr(n) for n in names)
            msg = (
                f"{path}: columns {shown} both mean {target!r}; drop one of them, or rename it "
                f"to a name lazybars does not read as {target!r}"
            )
            raise SchemaError(msg)
    return {n: ALIASES[n.lower().strip()] for n in columns if n.lower().strip() in ALIASES}


_TIME = ("datetime", "timestamp", "ts_event", "date", "time")


# Tried in turn on a file's first times; the first that reads them all as polars' own
# format inference does is used for the whole file (inference per value is ~10x slower).
_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


def _time_format(col: pl.Series) -> str | None:
    sample = col.drop_nulls().head(1000)
    inferred = sample.str.to_datetime(time_unit="ns", strict=False)
    if sample.is_empty() or inferred.null_count():
        return None
    for fmt in _TIME_FORMATS:
        parsed = sample.str.to_datetime(fmt, time_unit="ns", strict=False)
        if parsed.null_count() == 0 and parsed.equals(inferred):
            return fmt
    return None


def _epoch_unit(col: pl.Series) -> str:
    if col.dtype.is_float():  # NaN and infinities are refused by row, not taken as a unit
        col = col.filter(col.is_finite())
    biggest = col.abs().max()
    biggest = 0 if biggest is None else float(biggest)  # type: ignore[arg-type]
    return next((unit for limit, unit in _EPOCH_UNITS if biggest < limit), "ns")


def _rows(frame: pl.DataFrame, word: str) -> RowNames:
    return RowNames(word, frame["__row"]) if "__row" in frame.columns else RowNames()


def _from_epoch(frame: pl.DataFrame, name: str, unit: str, word: str) -> pl.Series:
    """Epoch numbers in ``unit`` as UTC datetimes. NaN, or a number outside the bar starts
    a store takes (which nanoseconds since 1970 would silently wrap), is a SchemaError
    naming its rows."""
    col, rows = frame[name], _rows(frame, word)
    per = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}[unit]
    nan = col.is_nan() if col.dtype.is_float() else pl.repeat(False, col.len(), eager=True)
    outside = ~nan & ((col < FIRST_BAR_NS // per) | (col >= END_BAR_NS // per))
    for bad, what in (
        (nan, "missing (NaN) times"),
        (outside, f"times outside the range lazybars stores ({BAR_RANGE})"),
    ):
        if bad.any():
            at = bad.arg_true().head(5).to_list()
            msg = (
                f"time column {name!r} has {what} at {rows(at)} (e.g. {col[at[0]]}, read as "
                f"epoch {unit}); drop or fix those rows"
            )
            raise SchemaError(msg)
    ns = col.cast(pl.Int64) * per if col.dtype.is_integer() else (col * per).round().cast(pl.Int64)
    return ns.cast(pl.Datetime("ns", "UTC")).alias(name)
