"""An offline stand-in for the DataBento SDK (``databento.Historical``), for tests.

lumibot's DataBento helpers build ``databento.Historical(key=...)`` and call
``client.metadata.get_dataset_range`` and ``client.timeseries.get_range(...).to_df()``;
:func:`install` puts :class:`Historical` in their place (and lumibot's cache folder in a
test's directory), so that lumibot's own ``DataBentoDataBacktesting`` runs a backtest with
no API key and no network.

The bars are deterministic functions of (contract, schema, bar start): two requests of
overlapping windows agree on every bar, as DataBento's answers do. Minute bars follow
CME Globex's 24-hour week: Sunday 18:00 to Friday 17:00 New York time, with the daily
17:00-18:00 maintenance hour. Day bars start at midnight UTC on weekdays.
"""

from __future__ import annotations

import importlib
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

NY = "America/New_York"
DATASET = "GLBX.MDP3"
DATASET_RANGE = {"start": "2017-05-21T00:00:00.000000000Z", "end": "2025-06-30T00:00:00.000000000Z"}
# unit_of_measure_qty of DataBento's definition records (the contract multipliers).
MULTIPLIERS = {"MES": 5, "ES": 50, "MNQ": 2, "NQ": 20, "GC": 100, "MGC": 10}
# Each root's price level and tick.
LEVELS = {"MES": 4800.0, "ES": 4800.0, "MNQ": 17000.0, "NQ": 17000.0, "GC": 2050.0, "MGC": 2050.0}
TICKS = {"GC": 0.1, "MGC": 0.1}
RTYPE = {"ohlcv-1m": 0x21, "ohlcv-1h": 0x22, "ohlcv-1d": 0x23}
_FREQ = {"ohlcv-1m": "1min", "ohlcv-1h": "1h", "ohlcv-1d": "1D"}
_DAY_NS = 86_400_000_000_000
_MONTHS = "FGHJKMNQUVXZ"


def root_of(contract: str) -> str:
    """``MESH4`` -> ``MES``: the contract code without its month letter and year digits."""
    body = contract.rstrip("0123456789")
    return body[:-1] if len(body) > 1 and body[-1] in _MONTHS else body


def instrument_id(contract: str) -> int:
    return zlib.crc32(contract.encode()) & 0x7FFFFFFF


def bars(contract: str, schema: str, start: Any, end: Any) -> pd.DataFrame:
    """The bars of ``contract`` starting in ``[start, end)``, as ``DBNStore.to_df()`` gives
    them: indexed by ``ts_event`` (UTC); ``rtype, publisher_id, instrument_id``, float
    prices, ``volume`` (uint64), ``symbol``."""
    a, b = (_utc(t) for t in (start, end))
    when = pd.date_range(a.floor("1D"), b, freq=_FREQ[schema], inclusive="left", unit="ns")
    when = when[(when >= a) & (when < b)]
    if schema == "ohlcv-1d":
        when = when[when.day_of_week < 5]
    else:
        local = when.tz_convert(NY)
        hour, weekday = local.hour, local.day_of_week
        closed = (hour == 17) | (weekday == 5) | ((weekday == 4) & (hour >= 17))
        closed |= (weekday == 6) & (hour < 18)
        when = when[~closed]
    root = root_of(contract)
    tick = TICKS.get(root, 0.25)
    ns = when.asi8
    day = ns // _DAY_NS
    # A level per UTC day (a slow wave, plus a contango step per contract), then a random
    # walk in ticks within the day, each day's draws seeded by (contract, day).
    code = instrument_id(contract)
    level = LEVELS.get(root, 100.0) + (code % 7) * 4 * tick
    n = len(ns)
    steps = np.empty(n)
    before = np.empty(n)
    spread = np.empty(n)
    volume = np.empty(n, dtype=np.uint64)
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]]) if n else np.empty(0, int)
    stops = np.r_[starts[1:], n]
    for lo, hi in zip(starts, stops, strict=True):
        d = int(day[lo])
        rng = np.random.default_rng([code, d, RTYPE[schema]])
        first = np.round(level * (1 + 0.02 * np.sin(d * 0.7)) / tick)
        # Each bar's position in its day decides its draw: a window cut anywhere agrees.
        minute = (ns[lo:hi] - d * _DAY_NS) // 60_000_000_000
        draws = rng.integers(-4, 5, 1440)
        walk = np.cumsum(draws)
        steps[lo:hi] = first + walk[minute]
        before[lo:hi] = first + np.r_[0, walk[:-1]][minute]
        spread[lo:hi] = rng.integers(0, 3, 1440)[minute]
        volume[lo:hi] = rng.integers(1, 500, 1440)[minute].astype(np.uint64)
    # A bar opens at the previous minute's close (in the walk, traded or not).
    close, opens = steps * tick, before * tick
    frame = pd.DataFrame(
        {
            "rtype": np.full(n, RTYPE[schema], dtype=np.uint8),
            "publisher_id": np.ones(n, dtype=np.uint16),
            "instrument_id": np.full(n, code, dtype=np.uint32),
            "open": np.round(opens / tick) * tick,
            "high": np.round((np.maximum(opens, close) + spread * tick) / tick) * tick,
            "low": np.round((np.minimum(opens, close) - spread * tick) / tick) * tick,
            "close": close,
            "volume": volume,
            "symbol": contract,
        },
        index=pd.DatetimeIndex(when, name="ts_event"),
    )
    return frame


def definition(contract: str, start: Any) -> pd.DataFrame:
    """A ``definition`` record of ``contract`` as ``to_df()`` gives it (one row)."""
    root = root_of(contract)
    return pd.DataFrame(
        {
            "rtype": np.array([19], dtype=np.uint8),
            "publisher_id": np.array([1], dtype=np.uint16),
            "instrument_id": np.array([instrument_id(contract)], dtype=np.uint32),
            "raw_symbol": [contract],
            "asset": [root],
            "unit_of_measure_qty": [float(MULTIPLIERS.get(root, 1))],
            "min_price_increment": [TICKS.get(root, 0.25)],
            "symbol": [contract],
        },
        index=pd.DatetimeIndex([_utc(start)], name="ts_recv"),
    )


class _Response:
    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def to_df(self) -> pd.DataFrame:
        return self._frame.copy()


class _Timeseries:
    def __init__(self, requests: list[tuple[str, str, Any, Any]]) -> None:
        self.requests = requests

    def get_range(
        self, dataset: str, symbols: Any, schema: str, start: Any, end: Any, **_: Any
    ) -> _Response:
        if dataset != DATASET:
            msg = f"the stand-in serves {DATASET}, not {dataset}"
            raise ValueError(msg)
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        self.requests.extend((name, schema, start, end) for name in names)
        if schema == "definition":
            return _Response(pd.concat([definition(name, start) for name in names]))
        return _Response(pd.concat([bars(name, schema, start, end) for name in names]))


class _Metadata:
    def get_dataset_range(self, dataset: str) -> dict[str, str]:
        return dict(DATASET_RANGE)


class Historical:
    """``databento.Historical``: the calls lumibot makes, answered offline. Every request
    is recorded in the class's ``requests`` list (contract, schema, start, end)."""

    requests: ClassVar[list[tuple[str, str, Any, Any]]] = []

    def __init__(self, key: str | None = None, **_: Any) -> None:
        self.metadata = _Metadata()
        self.timeseries = _Timeseries(Historical.requests)


def install(monkeypatch: Any, cache: Path) -> Path:
    """Point lumibot's DataBento helpers (pandas and polars) at :class:`Historical` and at
    ``cache`` (lumibot's ``$LUMIBOT_CACHE_FOLDER``), with empty definition caches; returns
    ``cache``."""
    monkeypatch.setenv("LUMIBOT_CACHE_FOLDER", str(cache))
    Historical.requests = []
    for module in ("databento_helper", "databento_helper_polars"):
        helper = importlib.import_module(f"lumibot.tools.{module}")
        monkeypatch.setattr(helper, "Historical", Historical)
        monkeypatch.setattr(helper, "DATABENTO_AVAILABLE", True)
        folder = cache / helper.CACHE_SUBFOLDER
        monkeypatch.setattr(helper, "LUMIBOT_DATABENTO_CACHE_FOLDER", str(folder))
        monkeypatch.setattr(helper, "_INSTRUMENT_DEFINITION_CACHE", {})
    return cache


def _utc(t: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(t.isoformat() if isinstance(t, datetime) else t)
    return stamp.tz_localize(UTC) if stamp.tz is None else stamp.tz_convert(UTC)
