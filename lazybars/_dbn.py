"""DataBento DBN files (``.dbn``, ``.dbn.zst``) of OHLCV records, decoded in batches.

A DBN stream is a metadata header (``b"DBN"``, a version byte, a little-endian u32 length,
then the metadata) followed by fixed-size records. ``databento_dbn.Metadata.decode`` reads
the header (every DBN version: schema, symbology mappings, ``ts_out``); the OHLCV records
themselves are decoded a batch at a time as a numpy structured array over the raw bytes,
then handed to polars, so no Python object is ever made per record. Prices are fixed-point
integers in units of 1e-9, converted with one correctly rounded division, so a price with
at most nine decimals (and below 9,007,199) comes out as the closest double to it, exactly
what parsing its decimal text gives.

Compressed files are read through pyarrow's streaming zstd decoder, so memory holds one
batch, never the file. databento-dbn is imported on first use: install it with
``pip install 'lazybars[databento]'``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from lazybars._readers import OHLCV_RTYPES, Batch
from lazybars._time import first_instants
from lazybars.errors import SchemaError
from lazybars.timestep import Timestep

__all__ = ["RECORD", "is_dbn", "read_dbn"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PREFIX = struct.Struct("<3sBI")  # b"DBN", version, metadata length
_OHLCV = OHLCV_RTYPES
_SCHEMA_RTYPE = {name: rtype for rtype, (name, _) in _OHLCV.items()}
_FIELDS = [
    ("length", "u1"),
    ("rtype", "u1"),
    ("publisher_id", "<u2"),
    ("instrument_id", "<u4"),
    ("ts_event", "<u8"),
    ("open", "<i8"),
    ("high", "<i8"),
    ("low", "<i8"),
    ("close", "<i8"),
    ("volume", "<u8"),
]
RECORD = np.dtype(_FIELDS)
"""An OHLCV record (56 bytes; with ``ts_out``, 8 more for the send time)."""
_UNDEF_PRICE = 2**63 - 1
_PRICE_SCALE = 1e9
_PRICES = ("open", "high", "low", "close")
_INSTALL = "pip install 'lazybars[databento]'"


def is_dbn(path: Path) -> bool:
    """True for ``.dbn`` and ``.dbn.zst`` names."""
    name = path.name.lower()
    return name.endswith((".dbn", ".dbn.zst"))


def read_dbn(path: Path, *, tz: str | None, batch_records: int = 1 << 20) -> Iterator[Batch]:
    """Decode the OHLCV records of ``path`` in batches of ``batch_records``.

    Day bars (ohlcv-1d, ohlcv-eod) are labelled with local midnight of their date in ``tz``,
    which they then need; 1-second bars are aggregated to minute bars.
    """
    dbn = _databento_dbn()
    raw = pa.OSFile(str(path), "rb")
    try:
        compressed = raw.read(4) == _ZSTD_MAGIC
        raw.seek(0)
        stream = pa.CompressedInputStream(raw, "zstd") if compressed else raw
        reader = _Reader(path, stream, raw, dbn, tz)
        yield from reader.batches(batch_records)
    finally:
        raw.close()


def _databento_dbn() -> Any:
    try:
        import databento_dbn  # noqa: PLC0415 - optional extra, imported on first use
    except ImportError:
        msg = f"reading DBN files needs the databento extra: {_INSTALL}"
        raise SchemaError(msg) from None
    return databento_dbn


class _Reader:
    def __init__(self, path: Path, stream: Any, raw: Any, dbn: Any, tz: str | None) -> None:
        self._path, self._stream, self._raw = path, stream, raw
        self._read = 0  # raw (compressed) bytes reported so far
        metadata = self._metadata(dbn)
        self._rtype = self._schema_rtype(metadata)
        fields = [*_FIELDS, ("ts_out", "<u8")] if metadata.ts_out else _FIELDS
        self._dtype = np.dtype(fields)
        self._mapping = _mapping(metadata)
        name, timestep = _OHLCV[self._rtype]
        self._timestep = Timestep.parse(timestep)
        self._seconds = name == "ohlcv-1s"
        if self._timestep.is_day and tz is None:
            msg = (
                f"{path}: {name} bars are labelled by their date: pass tz= naming the "
                "zone of that calendar, e.g. tz='America/Chicago' for CME futures, so that each "
                "bar starts at local midnight"
            )
            raise SchemaError(msg)
        self._tz = tz

    def _fail(self, what: str) -> SchemaError:
        return SchemaError(f"{self._path}: {what}")

    def _exactly(self, n: int, what: str) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            msg = f"the file ends inside {what}: it is truncated; download it again"
            raise self._fail(msg)
        return data

    def _metadata(self, dbn: Any) -> Any:
        try:
            head = self._exactly(_PREFIX.size, "the DBN header")
            magic, version, length = _PREFIX.unpack(head)
            if magic != b"DBN":
                msg = (
                    f"not a DBN file (it starts with {head[:4]!r}); give .dbn or .dbn.zst "
                    "files as DataBento writes them"
                )
                raise self._fail(msg)
            body = self._exactly(length, "the DBN metadata")
        except OSError as exc:
            msg = f"cannot read the file ({exc}); it is damaged or truncated: download it again"
            raise self._fail(msg) from None
        try:
            return dbn.Metadata.decode(head + body)
        except Exception as exc:  # databento_dbn raises its own DBNError and ValueError
            msg = f"damaged DBN metadata (version {version}: {exc}); download the file again"
            raise self._fail(msg) from None

    def _schema_rtype(self, metadata: Any) -> int:
        schema = metadata.schema
        name = None if schema is None else str(getattr(schema, "value", schema))
        if name in _SCHEMA_RTYPE:
            return _SCHEMA_RTYPE[name]
        msg = (
            f"holds {name or 'mixed-schema'} records, not OHLCV bars; lazybars ingests the "
            "ohlcv-1s, ohlcv-1m, ohlcv-1h, ohlcv-1d and ohlcv-eod schemas: request one of "
            "those from DataBento"
        )
        raise self._fail(msg)

    def batches(self, batch_records: int) -> Iterator[Batch]:
        size = self._dtype.itemsize
        first = 0  # the record number of the batch's first record
        held: pl.DataFrame | None = None  # 1s bars of a minute that may go on
        while True:
            try:
                data = self._stream.read(batch_records * size)
            except OSError as exc:
                msg = (
                    f"cannot decompress the file after record {first} ({exc}); it is damaged "
                    "or truncated: download it again"
                )
                raise self._fail(msg) from None
            whole = len(data) - len(data) % size
            if whole:
                records = np.frombuffer(data, dtype=self._dtype, count=whole // size)
                frame = self._decode(records, first)
                first += len(records)
                if self._seconds:
                    frame, held = _minutes(frame, held, last=len(data) < batch_records * size)
                yield Batch(frame, "records", self._advance(), timestep=self._timestep)
            if len(data) % size:
                msg = (
                    f"the file ends inside record {first} (byte {len(data) % size} of "
                    f"{size}): it is truncated; download it again"
                )
                raise self._fail(msg)
            if len(data) < batch_records * size:
                break
        if held is not None and held.height:
            yield Batch(_aggregate(held), "records", self._advance(), timestep=self._timestep)

    def _advance(self) -> int:
        now = self._raw.tell()
        done, self._read = now - self._read, now
        return done

    def _decode(self, records: np.ndarray, first: int) -> pl.DataFrame:
        bad = (records["length"] * 4 != records.dtype.itemsize) | (records["rtype"] != self._rtype)
        if bad.any():
            i = int(np.argmax(bad))
            msg = (
                f"record {first + i} is not an {_OHLCV[self._rtype][0]} record (rtype "
                f"{records['rtype'][i]:#04x}, {records['length'][i] * 4} bytes); lazybars "
                "reads DBN files holding one OHLCV schema, as DataBento writes them"
            )
            raise self._fail(msg)
        frame = pl.DataFrame(
            {
                "instrument_id": records["instrument_id"],
                "datetime": records["ts_event"].view("<i8"),
                **{p: _price(records[p]) for p in _PRICES},
                "volume": records["volume"].astype(np.float64),
            }
        ).with_row_index("__row", offset=first)
        frame = frame.with_columns(
            pl.col("datetime").cast(pl.Datetime("ns", "UTC")), pl.col("__row").cast(pl.Int64)
        )
        frame = self._symbols(frame)
        if self._timestep.is_day:
            midnights = frame["datetime"].dt.date().cast(pl.Datetime("ns"))
            frame = frame.with_columns(first_instants(midnights, self._tz).alias("datetime"))
        return frame

    def _symbols(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Name each record's symbol from the file's mappings: by instrument id and UTC date.

        One instrument can map to several requested symbols (``MES.c.0`` and ``MESH4``);
        its records then go to each. Records no mapping covers are named by instrument id.
        """
        columns = ["symbol", "datetime", *_PRICES, "volume", "__row"]
        day = frame["datetime"].dt.date()
        lo, hi = day.min(), day.max()
        live = self._mapping.filter((pl.col("start") <= hi) & (pl.col("end") > lo))
        if live["instrument_id"].is_unique().all() and (
            ((live["start"] <= lo) & (live["end"] > hi)).all()
        ):
            # Each instrument has one symbol for the whole batch: a lookup, not a join.
            ids = frame["instrument_id"]
            names = ids.replace_strict(
                live["instrument_id"], live["symbol"], default=None, return_dtype=pl.String
            )
            return frame.with_columns(symbol=names.fill_null(ids.cast(pl.String))).select(columns)
        when = pl.col("datetime").dt.date()
        named = frame.join(live, on="instrument_id", how="inner").filter(
            (when >= pl.col("start")) & (when < pl.col("end"))
        )
        unnamed = frame.join(named.select("__row"), on="__row", how="anti").with_columns(
            symbol=pl.col("instrument_id").cast(pl.String)
        )
        both = pl.concat([named.select(columns), unnamed.select(columns)])
        return both.sort("__row", "symbol") if unnamed.height and named.height else both


def _price(fixed: np.ndarray) -> np.ndarray:
    """Fixed-point prices as floats; undefined ones as NaN (which validation names).

    numpy's true division is correctly rounded; polars' division by a scalar multiplies by
    its reciprocal, which is off by one unit in the last place for many prices.
    """
    prices = fixed.astype(np.float64) / _PRICE_SCALE
    prices[fixed == _UNDEF_PRICE] = np.nan
    return prices


def _mapping(metadata: Any) -> pl.DataFrame:
    rows = [
        (int(iv["symbol"]), iv["start_date"], iv["end_date"], raw)
        for raw, intervals in (metadata.mappings or {}).items()
        for iv in intervals
        if str(iv["symbol"]).isdigit()
    ]
    schema = {"instrument_id": pl.UInt32, "start": pl.Date, "end": pl.Date, "symbol": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _minutes(
    frame: pl.DataFrame, held: pl.DataFrame | None, *, last: bool
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Minute bars of the 1s bars in ``frame``, holding back the last minute unless ``last``.

    DBN records are in time order, so only the batch's last minute can go on in the next
    batch; its seconds wait there.
    """
    if held is not None:
        frame = pl.concat([held, frame])
    if last or frame.is_empty():
        return _aggregate(frame), None
    minute = frame["datetime"].dt.truncate("1m")
    tail = minute == minute[-1]
    return _aggregate(frame.filter(~tail)), frame.filter(tail)


def _aggregate(seconds: pl.DataFrame) -> pl.DataFrame:
    return (
        seconds.group_by("symbol", pl.col("datetime").dt.truncate("1m"), maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("__row").first(),
        )
        .select("symbol", "datetime", *_PRICES, "volume", "__row")
    )
