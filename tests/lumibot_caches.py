"""lumibot DataBento cache folders for tests, written by hand as lumibot 4.6 writes them
(``lumibot/tools/databento_helper.py`` and ``databento_helper_polars.py``), and the
pandas oracle of what ingesting one must give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

RTYPE = {"1m": 0x21, "1h": 0x22, "1d": 0x23}
STEP = {"1m": "1min", "1h": "1h", "1d": "1D"}
# The timestep words lumibot may put in a file name -> the bars the file holds.
WORDS = {"minute": "1m", "1m": "1m", "hour": "1h", "1h": "1h", "day": "1d", "1d": "1d"}


def contract_bars(contract: str, timestep: str, start: str, end: str, seed: int) -> pd.DataFrame:
    """DataBento's ``DBNStore.to_df()`` of an OHLCV schema: indexed by ``ts_event`` (UTC),
    ``rtype, publisher_id, instrument_id``, float prices, ``volume`` (uint64), ``symbol``.
    Minute and hour bars skip the daily 21:00 UTC maintenance hour and weekends."""
    when = pd.date_range(start, end, freq=STEP[timestep], tz="UTC", inclusive="left", unit="ns")
    when = when[(when.day_of_week < 5) & (when.hour != 21)]
    rng = np.random.default_rng(seed)
    close = 4700 + np.cumsum(rng.integers(-4, 5, len(when))) * 0.25
    opens = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame(
        {
            "rtype": np.full(len(when), RTYPE[timestep], dtype=np.uint8),
            "publisher_id": np.ones(len(when), dtype=np.uint16),
            "instrument_id": np.full(len(when), seed, dtype=np.uint32),
            "open": opens,
            "high": np.maximum(opens, close) + 0.25,
            "low": np.minimum(opens, close) - 0.25,
            "close": close,
            "volume": rng.integers(1, 500, len(when)).astype(np.uint64),
            "symbol": contract,
        },
        index=pd.DatetimeIndex(when, name="ts_event"),
    )
    return frame


def name(contract: str, word: str, start: str, end: str) -> str:
    """lumibot's ``_build_cache_filename``: minute and hour windows to the minute."""
    fmt = "%Y%m%d%H%M" if word.lower() in ("minute", "1m", "hour", "1h") else "%Y%m%d"
    a, b = pd.Timestamp(start).strftime(fmt), pd.Timestamp(end).strftime(fmt)
    return f"{contract}_{word}_{a}_{b}.parquet"


def write(root: Path, layout: str, bars: pd.DataFrame, word: str, start: str, end: str) -> Path:
    """The window [start, end) of ``bars`` as lumibot caches it in ``root/layout``: the
    pandas classes write the index as ``ts_event``, the polars classes as ``datetime``."""
    window = bars.loc[
        (bars.index >= pd.Timestamp(start, tz="UTC")) & (bars.index < pd.Timestamp(end, tz="UTC"))
    ].copy()
    if layout == "databento_polars":
        window.index.name = "datetime"
    folder = root / layout
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name(str(bars["symbol"].iloc[0]), word, start, end)
    window.reset_index().to_parquet(path, engine="pyarrow", compression="snappy")
    return path


def oracle(*layouts: Path) -> dict[tuple[str, str], pd.DataFrame]:
    """What ingesting the cache folders ``layouts`` (``databento/``, ``databento_polars/``)
    must store, built with pandas alone: per contract and timestep (from the file names)
    the union of all files' bars, each identical bar once, indexed by UTC start, volume as
    float."""
    frames: dict[tuple[str, str], list[pd.DataFrame]] = {}
    for path in sorted(p for layout in layouts for p in layout.glob("*.parquet")):
        contract, word, _, _ = path.stem.rsplit("_", 3)
        frame = pd.read_parquet(path)
        time = "ts_event" if "ts_event" in frame.columns else "datetime"
        frame = frame.rename(columns={time: "datetime"})[
            ["datetime", "open", "high", "low", "close", "volume"]
        ]
        frames.setdefault((contract, WORDS[word]), []).append(frame)
    out = {}
    for key, found in frames.items():
        union = pd.concat(found).drop_duplicates()
        assert not union["datetime"].duplicated().any(), f"{key}: the files conflict"
        when = union["datetime"]
        # lumibot's _load_cache reads naive times as UTC.
        when = when.dt.tz_localize("UTC") if when.dt.tz is None else when.dt.tz_convert("UTC")
        union["datetime"] = when.dt.as_unit("ns")
        union["volume"] = union["volume"].astype("float64")
        out[key] = union.sort_values("datetime").set_index("datetime")
    return out
