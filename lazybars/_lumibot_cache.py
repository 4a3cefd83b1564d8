"""Reading lumibot's DataBento cache: the parquet files lumibot's DataBento backtesting
classes write under ``$LUMIBOT_CACHE_FOLDER``, one per contract and requested window.

lumibot 4.6 writes the same files in two folders: ``databento/`` (its pandas classes,
``lumibot.tools.databento_helper``) and ``databento_polars/`` (its polars classes,
``databento_helper_polars``). A file is named ``{CONTRACT}_{timestep}_{start}_{end}.parquet``
(``MESH4_minute_202401020000_202401060000.parquet``; the window is ``%Y%m%d%H%M`` for
minute and hour bars, ``%Y%m%d`` otherwise) and holds DataBento's ``to_df()`` frame with
its index written as a UTC column: ``ts_event`` in ``databento/``, ``datetime`` in
``databento_polars/``, then ``rtype, publisher_id, instrument_id``, float prices, an
unsigned ``volume`` and ``symbol``, the contract. Windows of one contract overlap (each
backtest caches the range it asked for), so the bars of a contract are the union of its
files: a bar two files share must be identical in both, as any merge of lazybars requires.

:func:`read_file` reads one file as ingest batches (``lazybars.intake`` merges them like
any other sources); :func:`read_cache` reads a whole cache folder into canonical bars per
contract, for callers that want the bars without a catalog.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from lazybars._merge import Part, merge
from lazybars._readers import Batch, _parquet_blocks
from lazybars._time import first_instants
from lazybars.errors import SchemaError
from lazybars.ingest import RowNames, normalize, validate_zone
from lazybars.timestep import Timestep

__all__ = ["LAYOUTS", "CacheFile", "cache_file", "cache_folders", "read_cache", "read_file"]

# The cache subfolder of each lumibot helper module, and the time column it writes.
LAYOUTS = {"databento": "ts_event", "databento_polars": "datetime"}
# lumibot's own table (``_determine_databento_schema``): the timestep of a name -> the
# DataBento schema it fetched; any other spelling fetched ``ohlcv-1m``.
_SCHEMAS = {
    "minute": "1m",
    "1minute": "1m",
    "1m": "1m",
    "hour": "1h",
    "1hour": "1h",
    "1h": "1h",
    "day": "1d",
    "1day": "1d",
    "1d": "1d",
}
_RTYPES = {0x21: "1m", 0x22: "1h", 0x23: "1d"}
# Record metadata of DataBento's frames: not bar data (``symbol`` is the file's contract).
_META = ("rtype", "publisher_id", "instrument_id", "symbol")


@dataclass(frozen=True)
class CacheFile:
    """One cache file and what its name says."""

    path: Path
    contract: str
    timestep: Timestep
    spelled: str  # the timestep as lumibot wrote it in the name


def cache_file(path: Path) -> CacheFile | None:
    """``path`` as a lumibot DataBento cache file, or None when it is not one: a
    ``.parquet`` file in a ``databento`` or ``databento_polars`` folder, named
    ``{CONTRACT}_{timestep}_{start}_{end}.parquet`` with a window of 8 or 12 digits.

    >>> found = cache_file(Path("c/databento/MESH4_minute_202401020000_202401060000.parquet"))
    >>> found.contract, found.timestep, found.spelled
    ('MESH4', Timestep('1m'), 'minute')
    >>> cache_file(Path("c/exports/MESH4_minute_202401020000_202401060000.parquet")) is None
    True
    """
    if path.parent.name not in LAYOUTS or not path.name.endswith(".parquet"):
        return None
    # The contract is everything before the last three fields (lumibot never puts an
    # underscore in them).
    fields = path.name.removesuffix(".parquet").rsplit("_", 3)
    if len(fields) != 4 or not all(fields[:2]):
        return None
    contract, spelled, start, end = fields
    if not all(len(w) in (8, 12) and w.isascii() and w.isdigit() for w in (start, end)):
        return None
    timestep = Timestep.parse(_SCHEMAS.get(spelled.lower(), "1m"))
    return CacheFile(path, contract, timestep, spelled)


def cache_folders(folder: Path) -> list[Path]:
    """The layout folders of ``folder`` when it is a lumibot cache folder (one holding a
    ``databento`` or ``databento_polars`` folder with at least one cache file), else []."""
    found = [folder / name for name in LAYOUTS if (folder / name).is_dir()]
    if any(cache_file(f) for layout in found for f in layout.iterdir()):
        return found
    return []


def read_file(path: Path, *, tz: str | None, batch_rows: int) -> Iterator[Batch]:
    """The bars of one cache file, in batches named after its contract and timestep.

    Times are UTC (naive ones are read as UTC, as lumibot reads them). With ``tz``, day
    bars, which DataBento labels at midnight UTC of their trading date, are relabelled to
    the first instant of that date in ``tz``, as DataBento exports are.
    """
    found = cache_file(path)
    if found is None:
        msg = (
            f"{path} is not named as lumibot names its DataBento cache files "
            "({CONTRACT}_{timestep}_{start}_{end}.parquet in databento/ or databento_polars/)"
        )
        raise SchemaError(msg)
    for frame, word, nbytes in _parquet_blocks(path, batch_rows):
        try:
            bars = _bars(frame, found, tz)
        except SchemaError as exc:
            msg = f"{path}: {exc}"
            raise SchemaError(msg) from None
        yield Batch(bars, word, nbytes, timestep=found.timestep, symbol=found.contract)


def _bars(frame: pl.DataFrame, found: CacheFile, tz: str | None) -> pl.DataFrame:
    """A block of a cache file as bars: its time column as ``datetime`` (UTC), its metadata
    checked against the file's name and dropped."""
    time = _time_column(frame)
    if "symbol" in frame.columns:
        other = frame["symbol"].cast(pl.String).unique().drop_nulls()
        other = other.filter(other != found.contract)
        if other.len():
            msg = (
                f"the file is named after {found.contract} but holds bars of {other[0]!r}; "
                "lumibot writes one contract per file: rename or remove the file"
            )
            raise SchemaError(msg)
    if "rtype" in frame.columns:
        rtypes = frame["rtype"].unique().drop_nulls().to_list()
        stated = {_RTYPES.get(int(r), f"rtype {r}") for r in rtypes}
        if stated - {str(found.timestep)}:
            msg = (
                f"its name says {found.spelled!r} ({found.timestep} bars) but its records "
                f"are {sorted(stated)}; lumibot writes the schema it fetched for that name: "
                "rename or remove the file"
            )
            raise SchemaError(msg)
    when = frame[time]
    zone = getattr(when.dtype, "time_zone", None)
    when = when.cast(pl.Datetime("ns", zone))
    when = when.dt.convert_time_zone("UTC") if zone else when.dt.replace_time_zone("UTC")
    if tz is not None and found.timestep.is_day:
        when = first_instants(when.dt.date().cast(pl.Datetime("ns")), tz)
    dropped = [c for c in (*_META, time) if c in frame.columns]
    return frame.drop(dropped).with_columns(when.alias("datetime"))


def _time_column(frame: pl.DataFrame) -> str:
    # lumibot's _load_cache: ``ts_event`` if there is one, else the first datetime column.
    datetimes = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    found = "ts_event" if "ts_event" in frame.columns else next(iter(datetimes), None)
    if found not in datetimes:
        msg = (
            "it has no time column of datetimes (ts_event, or datetime as lumibot's polars "
            "classes write it); it is not a lumibot DataBento cache file: remove it"
        )
        raise SchemaError(msg)
    return found


def read_cache(
    folder: str | os.PathLike[str], *, tz: str | None = None
) -> dict[tuple[str, str], pl.DataFrame]:
    """Every contract's bars in a lumibot DataBento cache folder.

    Parameters
    ----------
    folder
        The lumibot cache folder (``$LUMIBOT_CACHE_FOLDER``, holding ``databento/`` and/or
        ``databento_polars/``), or one of those two folders.
    tz
        The zone to store the bars in (day bars relabelled to their date there); None: UTC.

    Returns
    -------
    dict
        ``{(contract, timestep): bars}``: canonical bars (``datetime``, ``open``, ``high``,
        ``low``, ``close``, ``volume``, and any other numeric column), the union of all
        files of the contract and timestep in both layouts, each bar once.

    Raises
    ------
    SchemaError
        When two files hold different bars at one start (naming the contract, the bar
        and both files), or a file is not what lumibot writes.
    """
    if tz is not None:
        validate_zone(tz)
    root = Path(folder)
    layouts = [root] if root.name in LAYOUTS else cache_folders(root)
    files = sorted(f for layout in layouts for f in layout.iterdir() if cache_file(f))
    if not files:
        msg = (
            f"{root} holds no lumibot DataBento cache files: name $LUMIBOT_CACHE_FOLDER, or "
            "its databento/ or databento_polars/ folder"
        )
        raise SchemaError(msg)
    parts: dict[tuple[str, str], list[Part]] = {}
    for path in files:
        for batch in read_file(path, tz=tz, batch_rows=1 << 30):
            frame = batch.frame
            assert isinstance(frame, pl.DataFrame)
            rows = RowNames(batch.word, frame["__row"])
            bars = normalize(frame.drop("__row"), tz=tz, rows=rows)
            key = (batch.symbol or "", str(batch.timestep))
            parts.setdefault(key, []).append(Part.of(bars, str(path)))
    out = {}
    for (contract, timestep), found in sorted(parts.items()):
        try:
            union = merge(found)
        except SchemaError as exc:
            msg = f"{contract} ({timestep}): {exc}"
            raise SchemaError(msg) from None
        out[(contract, timestep)] = union.lazy.collect()
    return out
