"""Ingest: turn caller frames into canonical bars, and write them atomically.

Canonical bars are a polars DataFrame with ``datetime`` (``Datetime("ns", zone)``, the bar
start, sorted and unique), then ``open``, ``high``, ``low``, ``close``, ``volume``
(``Float64``), then the caller's other numeric columns in their original order.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import time
from functools import cache
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import polars as pl

from lazybars._time import BAR_RANGE, DAY_NS, END_BAR_NS, FIRST_BAR_NS, first_instants
from lazybars.errors import InvalidRequest, SchemaError, UnsortedBarsWarning

__all__ = [
    "PRICE_COLUMNS",
    "TIME_COLUMNS",
    "RowNames",
    "check_text_range",
    "normalize",
    "validate_zone",
    "write_bars",
    "write_bytes_atomic",
    "write_listed",
    "write_parquet_atomic",
]

TIME_COLUMNS = ("datetime", "timestamp", "ts_event", "date", "time")
PRICE_COLUMNS = ("open", "high", "low", "close")
_BAR_COLUMNS = (*PRICE_COLUMNS, "volume")
# The catalog file layout, chosen by measurement (`python -m perf.bench_layout`, README
# "File layout"): lz4 decodes a month window or a whole year 2-3.5x faster than polars'
# default zstd, for 1.5x the bytes, and reads are what a backtest's start and a notebook's
# cell wait on. About a month of 24h minute bars per row group: a one-month window decodes
# two or three groups; smaller groups gained no more than noise and lengthen the footer.
ROW_GROUP_ROWS = 32_768
COMPRESSION = "lz4"
COMPRESSION_LEVEL: int | None = None
_SHOWN = 5
# The bar range's bounds as ISO text, which sorts like the instants it names.
_FIRST_TEXT, _END_TEXT = "1677-10-01", "2262-04-01"


@dataclass(frozen=True)
class RowNames:
    """How error messages name a frame's rows: a word, and each row's number in the
    caller's terms (a file's line numbers, say); by default the frame's own positions."""

    word: str = "rows"
    numbers: pl.Series | None = None

    def __call__(self, positions: list[int]) -> str:
        shown = positions if self.numbers is None else [self.numbers[i] for i in positions]
        return f"{self.word} {shown}"


_POSITIONS = RowNames()


def validate_zone(tz: str, *, argument: str = "tz") -> str:
    """Return ``tz`` if it names an IANA time zone, else raise ``InvalidRequest``."""
    if not isinstance(tz, str):
        msg = f"{argument} must be an IANA zone name such as 'America/New_York', got {tz!r}"
        raise InvalidRequest(msg)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        msg = (
            f"{argument}={tz!r} is not a known IANA time zone; use e.g. 'America/New_York' or 'UTC'"
        )
        raise InvalidRequest(msg) from None
    return tz


def normalize(
    frame: Any, *, tz: str | None = None, stacklevel: int = 2, rows: RowNames = _POSITIONS
) -> pl.DataFrame:
    """Validate ``frame`` and return canonical bars (see the module docstring).

    Raises ``SchemaError`` for anything that cannot be repaired, naming rows as ``rows``
    says; warns with ``UnsortedBarsWarning`` (at ``stacklevel``, counted from the caller)
    and sorts when the bars are out of order.
    """
    if tz is not None:
        validate_zone(tz)
    df = _to_polars(frame)
    if df.height == 0:
        msg = "the frame has no rows; write at least one bar"
        raise SchemaError(msg)
    renames, time_col = _canonical_names(df)
    if renames:  # a rename is a collect of its own
        df = df.rename(renames)
    when = _parse_times(df[time_col], time_col, tz, rows)
    bars = [when.alias("datetime")]
    bars += [_numeric(df, name) for name in PRICE_COLUMNS]
    if "volume" in df.columns:
        bars.append(_numeric(df, "volume"))
    else:
        bars.append(pl.Series("volume", [0.0] * df.height, dtype=pl.Float64))
    # Non-numeric extras (a symbol or exchange label, say) are not bar data: left out.
    extras = [
        df[name]
        for name in df.columns
        if name != time_col and name not in _BAR_COLUMNS and _is_number(df[name].dtype)
    ]
    out = pl.DataFrame(bars + extras)
    _check_values(out, rows)
    return _sorted_unique(out, stacklevel)


def write_parquet_atomic(
    frame: pl.DataFrame | pl.LazyFrame, path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Write ``frame`` to ``path`` so that readers see the old file or the new one, never a mix.

    The bytes go to a hidden temporary file in the same directory (same file system, so the
    final ``os.replace`` is an atomic rename), are flushed to disk, and only then replace
    ``path``. On any failure the temporary file is removed and ``path`` is untouched. A
    LazyFrame is streamed into the file (polars' streaming sink), never held whole.
    """
    _write_atomic(path, lambda fh: write_bars(frame, fh, metadata))


def write_listed(
    frame: pl.DataFrame | pl.LazyFrame,
    path: Path,
    metadata: dict[str, str],
    listing: Callable[[int], bytes],
    listing_path: Path,
) -> None:
    """Write ``frame`` to the new file ``path``, then replace ``listing_path`` (a manifest
    naming it) with ``listing(the new file's size)``, atomically.

    No temporary file for the bars: until the listing names the file, no reader looks at
    it. Both files reach the disk before the rename publishes the listing, so it never
    names bars a power cut could lose, and the directory after it, so the bars are durable
    when this returns. Both are written whole, then flushed at once (see
    :func:`_flush_both`). On a failure before the rename both new files are removed; a
    crash leaves them unnamed.
    """
    tmp = None
    try:
        with path.open("xb") as fh:
            write_bars(frame, fh, metadata)
            fh.flush()
            data = listing(os.fstat(fh.fileno()).st_size)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{listing_path.stem}.", suffix=".tmp", dir=listing_path.parent
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                _flush_both(fh.fileno(), fd)
            finally:
                os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    try:
        os.replace(tmp, listing_path)
    except BaseException:
        # Not the bars: an interrupt may land after the rename, which then names them.
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(listing_path.parent)


def write_bytes_atomic(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` as :func:`write_parquet_atomic` writes bars."""
    _write_atomic(path, lambda fh: fh.write(data))


def _write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            _flush_data(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bars(
    frame: pl.DataFrame | pl.LazyFrame, file: IO[bytes], metadata: dict[str, str] | None = None
) -> None:
    """Write ``frame`` to ``file`` as a catalog file: row groups of ``ROW_GROUP_ROWS`` rows
    with min/max statistics, so that a time window reads only the row groups it overlaps.

    A LazyFrame is streamed into the file (polars' streaming sink), never held whole.
    """
    write = frame.sink_parquet if isinstance(frame, pl.LazyFrame) else frame.write_parquet
    write(
        file,
        compression=COMPRESSION,
        compression_level=COMPRESSION_LEVEL,
        row_group_size=ROW_GROUP_ROWS,
        statistics=True,
        metadata=metadata,
    )


def _flush_data(fd: int) -> None:
    # The bytes and what reading them needs (the size), not the times: a new file's name
    # is made durable by flushing its directory after the rename.
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


@cache
def _flusher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(thread_name_prefix="lazybars-flush")


# A forked child has the executor but not its threads: it starts its own.
os.register_at_fork(after_in_child=_flusher.cache_clear)


def _flush_both(first: int, second: int) -> None:
    """Flush two files at once, ``first`` on a helper thread: their waits for the disk
    overlap, and one journal commit can serve both. With the two flushed in turn, an
    append's flushes took 20% longer on an idle disk, and twice as long on a busy one."""
    try:
        pending = _flusher().submit(_flush_data, first)
    except RuntimeError:  # no new work for threads once the interpreter exits (atexit)
        _flush_data(first)
        _flush_data(second)
        return
    try:
        _flush_data(second)
    finally:
        pending.result()  # the helper is done with ``first`` before the caller closes it


def _fsync_dir(directory: Path) -> None:
    # The rename itself must reach the disk for the new file to survive a power cut.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _to_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pd.DataFrame):
        if isinstance(frame.index, pd.DatetimeIndex):
            clash = [c for c in frame.columns if str(c).lower() in TIME_COLUMNS]
            if clash:
                msg = f"the frame has both a DatetimeIndex and a time column {clash}; drop one"
                raise SchemaError(msg)
            frame = frame.reset_index(names="datetime")
        try:
            # A deep copy: polars would otherwise share the caller's numpy buffers, and an
            # in-memory store must not change when the caller edits their frame later.
            return pl.from_pandas(frame.copy(deep=True))
        except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
            msg = f"could not read the pandas frame ({exc}); give plain numeric OHLCV columns"
            raise SchemaError(msg) from exc
    msg = f"bars must be a pandas or polars DataFrame, got {type(frame).__name__}"
    raise SchemaError(msg)


def _canonical_names(df: pl.DataFrame) -> tuple[dict[str, str], str]:
    """Map the caller's column names to canonical lower-case ones; find the time column."""
    by_lower: dict[str, str] = {}
    for name in df.columns:
        key = name.lower()
        if key in (*_BAR_COLUMNS, *TIME_COLUMNS) and key in by_lower:
            msg = f"columns {by_lower[key]!r} and {name!r} differ only in case; drop one"
            raise SchemaError(msg)
        by_lower[key] = name
    missing = [col for col in PRICE_COLUMNS if col not in by_lower]
    if missing:
        msg = (
            f"missing price column(s) {missing}; bars need open, high, low and close "
            f"(any case), got columns {df.columns}"
        )
        raise SchemaError(msg)
    time_col = next((by_lower[c] for c in TIME_COLUMNS if c in by_lower), None)
    if time_col is None:
        msg = (
            f"no time column: name it one of {list(TIME_COLUMNS)} (any case) or give a pandas "
            f"DatetimeIndex; got columns {df.columns}"
        )
        raise SchemaError(msg)
    renames = {by_lower[c]: c for c in _BAR_COLUMNS if c in by_lower and by_lower[c] != c}
    return renames, time_col


def _parse_times(col: pl.Series, name: str, tz: str | None, rows: RowNames) -> pl.Series:
    if col.dtype == pl.String:
        check_text_range(col, None, name, rows)
        parsed = col.str.to_datetime(time_unit="ns", strict=False)
        bad = col.is_not_null() & parsed.is_null()
        if bad.any():
            at = bad.arg_true().head(_SHOWN).to_list()
            msg = (
                f"column {name!r} has times that cannot be parsed at {rows(at)} "
                f"(e.g. {col[at[0]]!r}); use ISO 8601 strings or real datetimes"
            )
            raise SchemaError(msg)
        col = parsed
    if not isinstance(col.dtype, pl.Datetime | pl.Date):
        msg = f"time column {name!r} has dtype {col.dtype}; give datetimes or ISO 8601 strings"
        raise SchemaError(msg)
    if col.null_count():
        at = col.is_null().arg_true().head(_SHOWN).to_list()
        msg = f"time column {name!r} has missing values at {rows(at)}; drop or fill those rows"
        raise SchemaError(msg)
    # Checked in the column's own unit first: a cast to nanoseconds could overflow.
    _check_range(col, name, rows)
    col = col.cast(pl.Datetime("ns", getattr(col.dtype, "time_zone", None)))
    if col.dtype.time_zone is not None:
        return col if tz is None else col.dt.convert_time_zone(tz)
    if tz is None:
        msg = (
            f"time column {name!r} has naive timestamps; pass tz= naming the zone they are "
            "written in, e.g. tz='America/New_York' or tz='UTC'"
        )
        raise SchemaError(msg)
    try:
        local = col.dt.replace_time_zone(tz, ambiguous="raise", non_existent="raise")
    except pl.exceptions.ComputeError:
        local = _across_dst(col, name, tz, rows)
    # Wall times in range may still name instants out of it, by the zone's offset.
    _check_range(local, name, rows)
    return local


def check_text_range(text: pl.Series, fmt: str | None, name: str, rows: RowNames) -> None:
    """Refuse time strings outside the range a store takes.

    polars parses a date past nanoseconds' reach (2300-01-01) into a wrong one, silently.
    The strings' own order finds the candidates in one pass (an ISO date sorts as text);
    only then are they parsed again, at microseconds, and checked (``fmt``: their format,
    None to infer it).
    """
    first, last = text.min(), text.max()
    if first is None or (first >= _FIRST_TEXT and last < _END_TEXT):  # type: ignore[operator]
        return
    _check_range(text.str.to_datetime(fmt, time_unit="us", strict=False), name, rows)


def _check_range(col: pl.Series, name: str, rows: RowNames) -> None:
    """Refuse times outside the bar starts a store takes (nulls are not checked here)."""
    if col.dtype == pl.Date:
        per = DAY_NS
    else:
        per = {"ns": 1, "us": 1_000, "ms": 1_000_000}[col.dtype.time_unit]  # type: ignore[attr-defined]
    lo, hi = FIRST_BAR_NS // per, END_BAR_NS // per
    # The usual case in numpy, on the column's int64 values: a polars query costs ~100 us
    # before it touches data, more than the whole check of a day of bars.
    if not col.null_count() and col.len():
        raw = col.to_numpy().view(np.int64)
        if raw.min() >= lo and raw.max() < hi:
            return
    raw = col.to_physical()
    outside = (raw < lo) | (raw >= hi)
    if outside.any():
        at = outside.arg_true().head(_SHOWN).to_list()
        msg = (
            f"time column {name!r} has times outside the range lazybars stores ({BAR_RANGE}) "
            f"at {rows(at)} (e.g. {col.cast(pl.String)[at[0]]}); drop those rows"
        )
        raise SchemaError(msg)


def _across_dst(col: pl.Series, name: str, tz: str, rows: RowNames) -> pl.Series:
    """Naive times in ``tz`` where some are repeated or skipped by a DST change.

    A column of naive midnights is one of dates (day bars), and a date starts at its first
    instant even where midnight is repeated or skipped (America/Santiago, 2024-09-08).
    Among intraday times a repeated or skipped wall time, midnight too, names no single
    instant.
    """
    if (col.dt.time() == time(0)).all():
        return first_instants(col, tz)
    early = col.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    late = col.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null")
    at = (early.is_null() | (early != late)).arg_true().head(_SHOWN).to_list()
    msg = (
        f"naive times in column {name!r} at {rows(at)} (e.g. {col[at[0]]}) are ambiguous "
        f"or non-existent in {tz} (a DST change repeats or skips them), so they name no "
        "single instant; give tz-aware timestamps for them"
    )
    raise SchemaError(msg)


def _is_number(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() and dtype != pl.Boolean


def _numeric(df: pl.DataFrame, name: str) -> pl.Series:
    col = df[name]
    if not _is_number(col.dtype):
        msg = f"column {name!r} has dtype {col.dtype}; prices and volume must be numbers"
        raise SchemaError(msg)
    return col.cast(pl.Float64)


def _fine(col: pl.Series, *, nonnegative: bool) -> bool:
    """Whether a Float64 column holds only finite numbers (and no negative ones)."""
    if col.null_count():
        return False
    values = col.to_numpy()
    return bool(np.isfinite(values).all() and (not nonnegative or (values >= 0).all()))


def _bad(name: str) -> pl.Expr:
    col = pl.col(name)
    bad = col.is_null() | ~col.is_finite()
    return bad | (col < 0) if name == "volume" else bad


def _check_values(bars: pl.DataFrame, rows: RowNames) -> None:
    # One numpy pass over each column to find that all is well (the usual case, as in
    # _check_range); the rows of a bad column are looked up in polars only then.
    for name in _BAR_COLUMNS:
        if not _fine(bars[name], nonnegative=name == "volume"):
            at = bars.select(_bad(name).arg_true().head(_SHOWN)).to_series().to_list()
            kind = (
                "missing, NaN, infinite or negative"
                if name == "volume"
                else "missing, NaN or infinite"
            )
            msg = f"column {name!r} has {kind} values at {rows(at)}; drop or repair those bars"
            raise SchemaError(msg)


def _sorted_unique(bars: pl.DataFrame, stacklevel: int) -> pl.DataFrame:
    # `stacklevel` counts from normalize(); this frame adds one.
    when = bars["datetime"]
    # The usual case, sorted and unique: every start after the one before (numpy, as in
    # _check_range; the times have no nulls here).
    if (np.diff(when.to_numpy().view(np.int64)) > 0).all():
        return bars.rechunk()
    if not when.is_sorted():
        msg = "bars were not in time order; lazybars sorted them (sort them first to silence this)"
        warnings.warn(msg, UnsortedBarsWarning, stacklevel=stacklevel + 1)
        bars = bars.sort("datetime", maintain_order=True)
        when = bars["datetime"]
    dup = when.is_duplicated()
    if dup.any():
        shown = when.filter(dup).unique(maintain_order=True).head(_SHOWN).to_list()
        msg = (
            f"{int(dup.sum())} rows share a timestamp (e.g. {[str(t) for t in shown]}); "
            "each bar needs a unique start time: drop or aggregate the duplicates"
        )
        raise SchemaError(msg)
    return bars.rechunk()
