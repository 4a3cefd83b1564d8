"""Contract definitions (DataBento's ``definition`` schema), kept in a catalog's metadata.

A definition says what one contract is: its multiplier (``unit_of_measure_qty``: 5 for
MES, 50 for ES), tick, expiration and the like. lazybars reads them from DBN files of the
``definition`` schema and from DataBento's CSV/parquet exports of it (portal downloads,
``DBNStore.to_df()``), keeps one row per contract (see :func:`latest`) and stores them in
the catalog's hidden ``.definitions.parquet`` (:data:`NAME`), which no listing takes for
a symbol.

Prices are fixed-point integers in units of 1e-9 in DBN files and in exports written
without ``pretty_px``; exports with ``pretty_px`` (and ``to_df()``'s default) hold
decimals. A CSV column of integers is taken as fixed-point, one with a decimal point as
decimals. Undefined values (``UNDEF_PRICE``, ``UNDEF_TIMESTAMP``, empty strings) are null.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from lazybars._dbn import _databento_dbn as databento_dbn
from lazybars.errors import SchemaError
from lazybars.futures import is_contract

__all__ = [
    "NAME",
    "SCHEMA",
    "apply_multiplier",
    "decode",
    "encode",
    "from_frame",
    "holds_definitions",
    "latest",
    "matching",
    "merged",
    "multiplier",
    "read_definitions",
]

NAME = ".definitions.parquet"
"""The catalog-relative name of a catalog's definitions (hidden: never a symbol)."""

_UTC = pl.Datetime("ns", "UTC")
# Column -> (the DataBento field it comes from, its kind): "price" (fixed-point 1e-9),
# "time" (ns since the epoch), "int" or "str".
_FIELDS = {
    "symbol": ("raw_symbol", "str"),
    "instrument_id": ("instrument_id", "int"),
    "multiplier": ("unit_of_measure_qty", "price"),
    "min_price_increment": ("min_price_increment", "price"),
    "display_factor": ("display_factor", "price"),
    "expiration": ("expiration", "time"),
    "activation": ("activation", "time"),
    "asset": ("asset", "str"),
    "security_type": ("security_type", "str"),
    "instrument_class": ("instrument_class", "str"),
    "currency": ("currency", "str"),
    "unit_of_measure": ("unit_of_measure", "str"),
    "exchange": ("exchange", "str"),
    "ts_recv": ("ts_recv", "time"),
}
_DTYPES = {"str": pl.String(), "int": pl.Int64(), "price": pl.Float64(), "time": _UTC}
SCHEMA = pl.Schema({c: _DTYPES[kind] for c, (_, kind) in _FIELDS.items()})
"""The columns of a catalog's definitions, in order."""
# What a stored definition is compared on: when it was received is not what it says.
_COMPARED = [c for c in SCHEMA if c not in ("symbol", "ts_recv")]
_UNDEF_PRICE = 2**63 - 1
_UNDEF_TIME = 2**64 - 1
_PRICE_SCALE = 1e9
_INTEGER = re.compile(r"^-?\d+$")
_ZSTD = b"\x28\xb5\x2f\xfd"
_GZIP = b"\x1f\x8b"
_DEFINITION_RTYPE = 0x13
_CHUNK = 1 << 20
_BATCH_RECORDS = 50_000
_PREFIX = struct.Struct("<3sBI")  # b"DBN", version, metadata length


def holds_definitions(path: Path) -> bool:
    """Whether ``path`` (a DBN file, or a CSV/parquet table) holds definition records: a
    DBN file of the ``definition`` schema, or a table with ``unit_of_measure_qty`` or
    ``min_price_increment`` columns and no ``open``."""
    name = path.name.lower()
    if name.endswith((".dbn", ".dbn.zst")):
        return _dbn_schema(path) == "definition"
    if name.endswith(".parquet"):
        try:
            columns = pq.read_schema(path).names
        except (OSError, pa.ArrowException):
            return False  # not parquet: the bar reader says so
    else:
        columns = _csv_header(path)
    lower = {c.lower() for c in columns}
    return bool(lower & {"unit_of_measure_qty", "min_price_increment"}) and "open" not in lower


def read_definitions(paths: Iterable[Path]) -> pl.DataFrame:
    """The definitions in files :func:`holds_definitions` accepts, one row per contract
    (the latest received, whichever file holds it)."""
    return latest(pl.concat([_read(path) for path in paths]))


def _read(path: Path) -> pl.DataFrame:
    name = path.name.lower()
    if name.endswith((".dbn", ".dbn.zst")):
        return _from_dbn(path)
    try:
        if name.endswith(".parquet"):
            frame = pl.read_parquet(path)
        else:  # every column as text: fixed-point or decimal is told from the text
            frame = pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"{path}: cannot read the definitions ({exc}); it is damaged: download it again"
        raise SchemaError(msg) from None
    return from_frame(frame, str(path))


def from_frame(frame: Any, where: str = "the definitions") -> pl.DataFrame:
    """Definitions from a polars or pandas frame in DataBento's shape (``raw_symbol``,
    ``unit_of_measure_qty``, ...; ``to_df()``'s ``ts_recv`` index included) or in the
    catalog's own (``symbol``, ``multiplier``, ...), one row per contract."""
    if isinstance(frame, pd.DataFrame):
        named = frame.index.name is not None and frame.index.name not in frame.columns
        frame = pl.from_pandas(frame.reset_index() if named else frame)
    if not isinstance(frame, pl.DataFrame):
        msg = f"definitions must be a polars or pandas DataFrame, got {type(frame).__name__}"
        raise SchemaError(msg)
    lower = {c.lower(): c for c in frame.columns}
    # DataBento's shape holds fixed-point integer prices (unless written with pretty_px);
    # the catalog's own holds values, so that {"multiplier": [5]} means 5.
    fixed = "raw_symbol" in lower or "unit_of_measure_qty" in lower
    columns = {}
    for column, (field, kind) in _FIELDS.items():
        source = lower.get(field) or lower.get(column)
        if column == "ts_recv" and source is None:
            source = lower.get("ts_event")
        if source is None:
            if column in ("symbol", "multiplier"):
                msg = (
                    f"{where}: no {field} column (columns: {frame.columns}); give a DataBento "
                    "definition export (schema 'definition') or a frame with symbol and "
                    "multiplier columns"
                )
                raise SchemaError(msg)
            columns[column] = pl.repeat(None, frame.height, dtype=SCHEMA[column], eager=True)
            continue
        try:
            columns[column] = _convert(frame[source], kind, fixed=fixed).alias(column)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            msg = f"{where}: cannot read column {source!r} as a {kind} ({exc})"
            raise SchemaError(msg) from None
    found = pl.DataFrame(columns).filter(pl.col("symbol").is_not_null())
    return latest(found)


def latest(definitions: pl.DataFrame) -> pl.DataFrame:
    """One row per contract: its most recently received definition (the largest
    ``ts_recv``; among rows without one, the last).

    DataBento re-sends every definition at each session's start and sends a new one when
    the venue changes a field, so the latest is what the venue said last; keeping one row
    makes a contract answer one multiplier and tick.
    """
    ordered = definitions.with_row_index("__order").sort(
        "ts_recv", "__order", nulls_last=False, maintain_order=True
    )
    kept = ordered.unique("symbol", keep="last", maintain_order=True).drop("__order")
    return kept.sort("symbol")


def merged(
    stored: pl.DataFrame | None, new: pl.DataFrame, *, replace: bool, source: str, catalog: str
) -> tuple[pl.DataFrame | None, int]:
    """``stored`` with ``new`` added: the new catalog definitions (None when nothing
    changes) and how many contracts were added or changed. A contract already stored
    keeps its row when the new one says the same (``ts_recv`` aside); when they differ,
    ``replace`` takes the new one, else a ``SchemaError`` names the contract, the field
    and both values."""
    if stored is None or stored.is_empty():
        return (None, 0) if new.is_empty() else (new.sort("symbol"), new.height)
    both = new.join(stored, on="symbol", how="inner", suffix="__stored")
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}__stored")) for c in _COMPARED)
    changed = both.filter(differs)
    if changed.height and not replace:
        row = changed.row(0, named=True)
        field = next(c for c in _COMPARED if row[c] != row[f"{c}__stored"])
        msg = (
            f"the definition of {row['symbol']} in {source} differs from the one stored in "
            f"{catalog} in {field}: stored {row[f'{field}__stored']!r}, new {row[field]!r}"
            f"{f' ({changed.height} contracts differ)' if changed.height > 1 else ''}; "
            "nothing was written. Leave the stale definition out, or store the new ones "
            "with store.write_definitions(..., replace=True)"
        )
        raise SchemaError(msg)
    added = new.join(stored, on="symbol", how="anti")
    if added.is_empty() and changed.is_empty():
        return None, 0
    renewed = new.join(changed.select("symbol"), on="symbol", how="semi")
    kept = stored.join(renewed.select("symbol"), on="symbol", how="anti")
    return pl.concat([kept, added, renewed]).sort("symbol"), added.height + renewed.height


def matching(definitions: pl.DataFrame, names: Iterable[str]) -> pl.DataFrame:
    """The rows of ``names``: a contract's own row, or for a name that is no stored
    contract, the rows of its contracts as a continuous root (``MES``: ``MESH4``...)."""
    stored = set(definitions["symbol"])
    wanted: set[str] = set()
    for name in names:
        if name in stored:
            wanted.add(name)
        else:
            wanted.update(s for s in stored if is_contract(s, name))
    return definitions.filter(pl.col("symbol").is_in(sorted(wanted)))


def multiplier(definitions: pl.DataFrame, symbol: str) -> float | None:
    """The multiplier of ``symbol`` (a contract, or a root whose contracts share one)."""
    values = matching(definitions, [symbol])["multiplier"].drop_nulls().unique().sort()
    if values.len() > 1:
        msg = (
            f"the contracts of {symbol} have different multipliers {values.to_list()}; "
            "ask for one contract's multiplier (store.multiplier('<contract>'))"
        )
        raise SchemaError(msg)
    return None if values.is_empty() else float(values[0])


def apply_multiplier(store: Any, asset: Any) -> None:
    """Set a lumibot futures ``asset``'s multiplier from ``store``'s definitions, as
    lumibot's DataBento sources set it from DataBento's (``Asset.multiplier`` still 1;
    an int when whole), so that P&L, margin and mark-to-market use it.

    Other assets, an asset whose multiplier is already set, and a symbol without a
    defined multiplier are left alone. Duck-typed: lumibot is not imported.
    """
    kind = str(getattr(getattr(asset, "asset_type", None), "value", ""))
    if kind not in ("future", "cont_future") or getattr(asset, "multiplier", 1) != 1:
        return
    found = store.multiplier(asset.symbol)
    if found is not None:
        asset.multiplier = int(found) if found.is_integer() else found


class Definitions:
    """The contract definitions of one catalog (its ``NAME`` file through the backend's
    metadata calls), decoded once per version of the file."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._decoded: tuple[object, pl.DataFrame] | None = None

    def frame(self) -> pl.DataFrame:
        """The stored definitions (an empty frame of ``SCHEMA`` when there are none)."""
        found = self._backend.read_meta(NAME)
        if found is None:
            return pl.DataFrame(schema=SCHEMA)
        raw, version = found
        if self._decoded is None or self._decoded[0] != version:
            self._decoded = (version, decode(raw, self._where()))
        return self._decoded[1]

    def write(self, new: pl.DataFrame, *, replace: bool, source: str) -> int:
        """Store ``new`` (see :func:`merged`) atomically; how many contracts changed."""
        counted: list[int] = []

        def change(raw: bytes | None) -> bytes | None:
            stored = None if raw is None else decode(raw, self._where())
            found, count = merged(
                stored, new, replace=replace, source=source, catalog=self._backend.where
            )
            counted.append(count)
            return None if found is None else encode(found)

        self._backend.update_meta(NAME, change)
        return counted[-1]

    def check(self, new: pl.DataFrame, source: str) -> None:
        """Raise the ``SchemaError`` that storing ``new`` would raise (nothing written)."""
        merged(self.frame(), new, replace=False, source=source, catalog=self._backend.where)

    def _where(self) -> str:
        return f"{self._backend.where}/{NAME}"


def encode(definitions: pl.DataFrame) -> bytes:
    """The bytes of a catalog's definitions file."""
    out = io.BytesIO()
    definitions.select(SCHEMA.names()).write_parquet(out, compression="zstd")
    return out.getvalue()


def decode(raw: bytes, where: str) -> pl.DataFrame:
    """A catalog's definitions from the bytes of its file (checked)."""
    try:
        frame = pl.read_parquet(io.BytesIO(raw))
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read the catalog's definitions {where} ({exc}); ingest them again"
        raise SchemaError(msg) from None
    if frame.schema != SCHEMA:
        msg = (
            f"the catalog's definitions {where} have columns {dict(frame.schema)}, not "
            f"{dict(SCHEMA)}; delete the file and ingest the definitions again"
        )
        raise SchemaError(msg)
    return frame


# -- readers ------------------------------------------------------------------------------
def _convert(col: pl.Series, kind: str, *, fixed: bool) -> pl.Series:
    if kind == "str":
        text = col.cast(pl.String)
        return text.str.strip_chars().replace("", None)
    if kind == "int":
        return col.cast(pl.Int64)
    if kind == "price":
        return _price(col, fixed=fixed)
    return _time(col)


def _price(col: pl.Series, *, fixed: bool) -> pl.Series:
    if col.dtype == pl.String:
        text = col.str.strip_chars().replace("", None)
        integers = text.drop_nulls().str.contains(_INTEGER.pattern).all()
        col = text.cast(pl.Int64 if integers else pl.Float64)
    if fixed and col.dtype.is_integer():
        raw = col.cast(pl.Int64).to_numpy(allow_copy=True)
        # numpy: correctly rounded (polars multiplies by the scale's reciprocal).
        scaled = pl.Series(col.name, np.asarray(raw, dtype=np.float64) / _PRICE_SCALE)
        return scaled.set(col.cast(pl.Int64).fill_null(_UNDEF_PRICE) == _UNDEF_PRICE, None)
    return col.cast(pl.Float64).fill_nan(None)


def _time(col: pl.Series) -> pl.Series:
    if col.dtype == pl.String:
        text = col.str.strip_chars().replace("", None)
        if text.drop_nulls().str.contains(_INTEGER.pattern).all():
            col = text.cast(pl.UInt64)
        else:
            return text.str.to_datetime(time_unit="ns", time_zone="UTC")
    if isinstance(col.dtype, pl.Datetime):
        aware = col.dtype.time_zone is not None
        col = col.dt.cast_time_unit("ns")
        return col.dt.convert_time_zone("UTC") if aware else col.dt.replace_time_zone("UTC")
    ns = col.cast(pl.UInt64)
    defined = ns.fill_null(_UNDEF_TIME) != _UNDEF_TIME
    return ns.set(~defined, None).cast(pl.Int64).cast(_UTC)


def _open(path: Path) -> tuple[Any, Any]:
    """(stream, raw file) of ``path``, decompressed when it is zstd or gzip."""
    raw = pa.OSFile(str(path), "rb")
    magic = raw.read(4)
    raw.seek(0)
    codec = "zstd" if magic == _ZSTD else "gzip" if magic[:2] == _GZIP else None
    return (raw if codec is None else pa.CompressedInputStream(raw, codec)), raw


def _csv_header(path: Path) -> list[str]:
    stream, raw = _open(path)
    try:
        head = stream.read(64 * 1024)
    except OSError:
        return []  # unreadable: the bar reader says so
    finally:
        raw.close()
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return [c.strip().strip('"') for c in first.split(",")]


def _dbn_schema(path: Path) -> str | None:
    """The schema a DBN file's metadata names (None: unreadable, which the bar reader
    then explains)."""
    try:
        dbn = databento_dbn()
        stream, raw = _open(path)
        try:
            head = stream.read(_PREFIX.size)
            magic, _, length = _PREFIX.unpack(head)
            metadata = dbn.Metadata.decode(head + stream.read(length)) if magic == b"DBN" else None
        finally:
            raw.close()
    except Exception:  # anything unreadable is the bar reader's to explain
        return None
    schema = getattr(metadata, "schema", None)
    return None if schema is None else str(getattr(schema, "value", schema))


def _dbn_items(path: Path) -> Iterator[Any]:
    """The metadata, then the records of a DBN file, decoded a chunk at a time."""
    dbn = databento_dbn()
    stream, raw = _open(path)
    decoder = dbn.DBNDecoder()
    try:
        while True:
            try:
                chunk = stream.read(_CHUNK)
                if chunk:
                    decoder.write(chunk)
                yield from decoder.decode()
            except Exception as exc:  # the decoder's DBNError derives from Exception only
                msg = f"{path}: cannot decode the DBN file ({exc}); download it again"
                raise SchemaError(msg) from None
            if not chunk:
                break
        if decoder.buffer():
            msg = (
                f"{path}: the file ends inside a record ({len(decoder.buffer())} bytes left): "
                "it is truncated; download it again"
            )
            raise SchemaError(msg)
    finally:
        raw.close()


def _from_dbn(path: Path) -> pl.DataFrame:
    # A venue's whole definition file holds many records per contract (one per session):
    # they are reduced to the latest per contract as they come, so memory holds a batch
    # and one row per contract, never the file.
    kept = [pl.DataFrame(schema=SCHEMA)]
    rows: list[Any] = []
    for item in _dbn_items(path):
        if getattr(item, "rtype", None) is None or int(item.rtype) != _DEFINITION_RTYPE:
            continue  # the metadata
        rows.append(item)
        if len(rows) == _BATCH_RECORDS:
            kept = [latest(pl.concat([*kept, _records(rows, path)]))]
            rows = []
    return latest(pl.concat([*kept, _records(rows, path)]))


def _records(records: list[Any], path: Path) -> pl.DataFrame:
    dtypes = {"str": pl.String, "time": pl.UInt64, "int": pl.Int64, "price": pl.Int64}
    # Named by DataBento's fields: prices are read as the fixed-point integers they are.
    frame = pl.DataFrame(
        [
            pl.Series(
                field,
                [getattr(v, "value", v) for v in (getattr(r, field) for r in records)],
                dtype=dtypes[kind],
            )
            for field, kind in _FIELDS.values()
        ]
    )
    return from_frame(frame, str(path))
