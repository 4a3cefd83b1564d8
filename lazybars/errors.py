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
    ├── UnsortedBarsWarning             bars written out of time order (they are sorted)
    └── RepairedBarsWarning             lumibot data that lumibot repairs (NaN prices or
                                        volume, negative volume, repeated timestamps),
                                        served as lumibot serves it

Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "InvalidRequest",
    "LazyBarsError",
    "LazyBarsWarning",
    "MissingExtra",
    "RepairedBarsWarning",
    "SchemaError",
    "StorageError",
    "UnknownAsset",
    "UnsortedBarsWarning",
]


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
