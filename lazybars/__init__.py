"""lazybars: OHLCV bar history for backtesters and notebooks, on polars LazyFrames.

>>> import lazybars as lb
>>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES")})
>>> store.scan("MES").tail(2).collect().height
2
"""

from lazybars import futures, reference, sim, strategies, synth
from lazybars._sweep import sweep
from lazybars.bars import Bars
from lazybars.cache import CacheInfo
from lazybars.errors import (
    InvalidRequest,
    LazyBarsError,
    LazyBarsWarning,
    MissingExtra,
    RepairedBarsWarning,
    SchemaError,
    StaleDataWarning,
    StorageError,
    UnknownAsset,
    UnsortedBarsWarning,
)
from lazybars.intake import ingest_into
from lazybars.query import Query
from lazybars.source import DataSource
from lazybars.store import BarStore
from lazybars.timestep import Timestep

__version__ = "0.1.0"

__all__ = [
    "BarStore",
    "Bars",
    "CacheInfo",
    "DataSource",
    "InvalidRequest",
    "LazyBarsError",
    "LazyBarsWarning",
    "MissingExtra",
    "Query",
    "RepairedBarsWarning",
    "SchemaError",
    "StaleDataWarning",
    "StorageError",
    "Timestep",
    "UnknownAsset",
    "UnsortedBarsWarning",
    "futures",
    "ingest_into",
    "reference",
    "sim",
    "strategies",
    "sweep",
    "synth",
]
