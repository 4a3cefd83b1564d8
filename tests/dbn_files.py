"""Writing DataBento DBN files for tests: the metadata encoded by databento-dbn itself,
the OHLCV records as a numpy structured array (the layout is checked against
``databento_dbn.OHLCVMsg`` in test_dbn.py)."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

RECORD = np.dtype(
    [
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
)
RTYPE = {"ohlcv-1s": 0x20, "ohlcv-1m": 0x21, "ohlcv-1h": 0x22, "ohlcv-1d": 0x23, "ohlcv-eod": 0x24}


def records(
    instrument_id: Sequence[int],
    ts_event: Sequence[int],
    prices: Sequence[Sequence[int]],
    volume: Sequence[int],
    *,
    schema: str = "ohlcv-1m",
) -> np.ndarray:
    """OHLCV records; ``prices`` are (open, high, low, close) fixed-point integers (1e-9)."""
    out = np.zeros(len(ts_event), dtype=RECORD)
    out["length"] = RECORD.itemsize // 4
    out["rtype"] = RTYPE[schema]
    out["publisher_id"] = 1
    out["instrument_id"] = instrument_id
    out["ts_event"] = ts_event
    p = np.asarray(prices, dtype=np.int64).reshape(-1, 4)
    for i, name in enumerate(("open", "high", "low", "close")):
        out[name] = p[:, i]
    out["volume"] = volume
    return out


def metadata(
    *,
    schema: str = "ohlcv-1m",
    mappings: Mapping[str, Sequence[tuple[dt.date, dt.date, int]]] | None = None,
    stype_in: str = "raw_symbol",
) -> bytes:
    """Encoded DBN metadata; ``mappings``: {symbol: [(start_date, end_date, instrument_id)]}."""
    import databento_dbn as dbn

    maps = [
        types.SimpleNamespace(
            raw_symbol=symbol,
            intervals=[
                types.SimpleNamespace(start_date=a, end_date=b, symbol=str(iid))
                for a, b, iid in intervals
            ],
        )
        for symbol, intervals in (mappings or {}).items()
    ]
    return dbn.Metadata(
        dataset="GLBX.MDP3",
        start=0,
        stype_in=dbn.SType(stype_in),
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema(schema),
        symbols=list(mappings or []),
        mappings=maps,
    ).encode()


def write(path: Path, head: bytes, body: np.ndarray | bytes, *, zstd: bool = False) -> Path:
    data = head + (body if isinstance(body, bytes) else body.tobytes())
    if zstd:
        with pa.CompressedOutputStream(str(path), "zstd") as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path
