"""Errors and warnings raised by lazybars.

Every error derives from :class:`LazyBarsError`, and also from the builtin a caller
would naturally catch for that kind of mistake::

    LazyBarsError (Exception)
    ├── SchemaError (ValueError)        bars that cannot be stored: missing OHLC columns,
    │                                   naive times without ``tz=``, duplicates, bad values,
    │                                   unreadable catalog files
    ├── InvalidRequest (ValueError)     a request that cannot be answered as asked: bad
    │                                   length, timestep, timeshift, clock or symbol name
    ├── UnknownAsset (KeyError)         a symbol (or timestep) the store does not hold
    ├── StorageError (OSError)          object storage that cannot be used as configured:
    │                                   no credentials, no such bucket, access denied,
    │                                   an endpoint that does not answer
    └── MissingExtra (ImportError)      an optional feature whose extra is not installed,
                                        e.g. charts without ``lazybars[plot]``

    LazyBarsWarning (UserWarning)
    ├── RepairedBarsWarning             lumibot data that lumibot repairs (NaN prices or
    │                                   volume, negative volume, repeated timestamps),
    │                                   served as lumibot serves it
    ├── StaleDataWarning                a DataSource clock past an asset's last stored bar
    │                                   by more than the lookback (once per asset)
    └── UnsortedBarsWarning             bars written out of time order (they are sorted)

Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "InvalidRequest",
    "LazyBarsError",
    "LazyBarsWarning",
    "MissingExtra",
    "RepairedBarsWarning",
    "SchemaError",
    "StaleDataWarning",
    "StorageError",
    "UnknownAsset",
    "UnsortedBarsWarning",
]

_PACKAGE = os.path.join(os.path.dirname(__file__), "")


class LazyBarsError(Exception):
    """Base class of every error lazybars raises."""


class SchemaError(LazyBarsError, ValueError):
    """Bars that cannot be stored or read back as OHLCV bars."""


class InvalidRequest(LazyBarsError, ValueError):
    """A request whose arguments cannot be answered as given."""


class UnknownAsset(LazyBarsError, KeyError):
    """A symbol, or a symbol at a timestep, that the store does not hold."""

    def __str__(self) -> str:
        # KeyError.__str__ shows the repr of its argument (quotes, escaped newlines);
        # our argument is a sentence meant to be read as is.
        return str(self.args[0]) if self.args else ""


class StorageError(LazyBarsError, OSError):
    """Object storage that cannot be used as configured; the message names the fix."""


class MissingExtra(LazyBarsError, ImportError):
    """An optional feature was used without its extra; the message names the pip command."""


class LazyBarsWarning(UserWarning):
    """Base class of the warnings lazybars emits."""


class UnsortedBarsWarning(LazyBarsWarning):
    """Bars were given out of time order; lazybars sorted them before storing."""


class RepairedBarsWarning(LazyBarsWarning):
    """lumibot ``Data`` that lazybars would refuse and lumibot repairs (NaN prices or volume,
    negative volume, repeated timestamps), served as lumibot serves it (the message names
    the rows)."""


class StaleDataWarning(LazyBarsWarning):
    """A DataSource clock is past an asset's last stored bar by more than the lookback:
    its answers repeat that old history (warned once per asset and DataSource)."""


def warn_caller(message: str, category: type[Warning]) -> None:
    """Warn, pointing at the first caller outside lazybars (however deep the call)."""
    frame, level = sys._getframe(1), 2  # stacklevel 2 is the caller of this function
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
