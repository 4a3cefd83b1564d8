"""lumibot ``Data`` that lumibot repairs and lazybars' store refuses, kept as lumibot keeps it.

lumibot's ``PandasDataBacktesting`` runs on bars with NaN prices or volume, negative volume
and repeated timestamps (lumibot/entities/data.py ``Data.repair_times_and_fill``): it keeps
the first row of each repeated timestamp and, once the bars are on the backtest's grid, fills
a missing volume with 0, a missing close with the last close before it on the grid, and a
missing open, high or low with the bar's close; a negative volume stays. With
``semantics="lumibot"`` such bars are held as they are (:func:`admitted`) and filled the same
way (:func:`lazybars.lumibot._rules.repair`), after a :class:`~lazybars.RepairedBarsWarning`
naming the rows.

NaN closes before an asset's first close stay NaN, as in lumibot, which leaves those rows
out of its answers and skips their NaN prices when it resamples (``Series.priced`` counts
them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from lazybars.errors import RepairedBarsWarning, SchemaError, warn_caller
from lazybars.ingest import normalize
from lazybars.lumibot._rules import PRICES

_SHOWN = 5  # rows named in a message


@dataclass(frozen=True, slots=True)
class Admitted:
    """An asset's bars as lumibot keeps them: canonical columns (as the store would hold
    them) with their NaN prices and volumes and negative volumes; ``unique`` is False when
    timestamps repeated, which turns lumibot's per-request fast paths off (it then
    resamples every request, even at the data's own timestep)."""

    frame: pl.DataFrame
    unique: bool


def admitted(data: Any) -> Admitted | None:
    """``data``'s bars if lumibot would repair them (warning once, naming the rows), or
    None when they need no repair and can be stored as they are.

    Raises
    ------
    SchemaError
        When every close is NaN, and for anything else the store refuses (infinite values,
        missing columns, unreadable times).
    """
    df = data.df
    repeated = np.asarray(df.index.duplicated(keep="first"))
    kept = df[~repeated] if repeated.any() else df
    prices = [c for c in PRICES if c in kept.columns]
    no_price = kept[prices].isna().to_numpy().any(axis=1)
    volume = _floats(kept, "volume")
    no_volume = np.zeros(len(kept), bool) if volume is None else np.isnan(volume)
    negative = np.zeros(len(kept), bool) if volume is None else volume < 0
    if not (repeated.any() or no_price.any() or no_volume.any() or negative.any()):
        return None
    close = _floats(kept, "close")
    if close is not None and np.isnan(close).all():
        msg = f"{data.asset}: every close is NaN; give the bars their closes"
        raise SchemaError(msg)
    # The store's checks, on a stand-in whose repaired values are valid ones.
    stand_in = kept.copy()
    if close is not None:
        last_close = stand_in["close"].ffill().bfill()
        for name in prices:
            stand_in[name] = stand_in[name].fillna(last_close)
    if volume is not None:
        stand_in["volume"] = np.where(no_volume | negative, 0.0, volume)
    canonical = normalize(stand_in)
    held = [*prices, *([] if volume is None else ["volume"])]
    frame = canonical.with_columns(pl.Series(c, kept[c].to_numpy(float)) for c in held)
    _warn(data.asset, df.index[repeated], kept.index, no_price, no_volume, negative)
    return Admitted(frame, unique=not repeated.any())


def _floats(df: pd.DataFrame, name: str) -> np.ndarray | None:
    """A numeric column as float64 (None if absent or not numbers: the store says why)."""
    if name not in df.columns or not pd.api.types.is_numeric_dtype(df[name]):
        return None
    return df[name].to_numpy(float)


def _warn(
    asset: Any,
    repeated: pd.DatetimeIndex,
    index: pd.DatetimeIndex,
    no_price: np.ndarray,
    no_volume: np.ndarray,
    negative: np.ndarray,
) -> None:
    found = []
    if len(repeated):
        found.append(
            f"{len(repeated)} repeated rows at {_rows(repeated.unique())} "
            "(the first row of each timestamp is kept)"
        )
    if no_price.any():
        found.append(
            f"NaN prices at {_rows(index[no_price])} (a close takes the last close before "
            "it, an open, high or low the bar's close)"
        )
    if no_volume.any():
        found.append(f"NaN volume at {_rows(index[no_volume])} (0)")
    if negative.any():
        found.append(f"negative volume at {_rows(index[negative])} (kept)")
    msg = (
        f"{asset}: bars that lumibot repairs, served as lumibot serves them "
        f"(semantics='strict' refuses them): {'; '.join(found)}"
    )
    warn_caller(msg, RepairedBarsWarning)  # pointed at whoever built the data source


def _rows(index: pd.DatetimeIndex) -> str:
    shown = ", ".join(str(t) for t in index[:_SHOWN])
    more = len(index) - _SHOWN
    return f"[{shown}{f', and {more} more' if more > 0 else ''}]"
