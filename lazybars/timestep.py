"""Timesteps: the one value type for bar sizes ("minute", "5m", "1h", "day", ...)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lazybars.errors import InvalidRequest

__all__ = ["Timestep", "serving_timestep"]

_NS_PER_MINUTE = 60_000_000_000
_MINUTES_PER_DAY = 24 * 60
_UNITS = {
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
}
_SPELLING = re.compile(r"^\s*(\d*)\s*([a-z]+)\s*$")
_ACCEPTED = (
    "'<N><unit>' with an optional space, unit one of m, min, minute(s), h, hour(s), "
    "d, day(s), or 'minute', 'hour', 'day' alone; e.g. '1m', '5 minutes', '15min', "
    "'4h', 'day'"
)


@dataclass(frozen=True, slots=True, order=True)
class Timestep:
    """A bar size: a whole number of minutes below a day, or one calendar day.

    Parameters
    ----------
    minutes
        The bar length in minutes, from 1 to 1439; ``1440`` means one local calendar
        day (23 or 25 hours long on DST days).

    Examples
    --------
    >>> Timestep.parse("5 minutes")
    Timestep('5m')
    >>> Timestep.parse("hour").minutes
    60
    >>> str(Timestep.parse("1d"))
    '1d'
    >>> Timestep.parse("1m") < Timestep.parse("day")
    True
    """

    minutes: int

    @staticmethod
    def parse(value: str | Timestep) -> Timestep:
        """Parse a spelling such as ``"minute"``, ``"5m"``, ``"4 hours"`` or ``"day"``.

        Raises
        ------
        InvalidRequest
            For an unknown spelling, naming the value and the accepted forms.
        """
        if isinstance(value, Timestep):
            return value
        if not isinstance(value, str):
            msg = f"timestep must be a string such as '1m' or 'day', got {value!r}; use {_ACCEPTED}"
            raise InvalidRequest(msg)
        return _parse(value)

    @property
    def is_day(self) -> bool:
        """True for day bars, whose end is the next local midnight."""
        return self.minutes == _MINUTES_PER_DAY

    @property
    def nanos(self) -> int:
        """The bar length in nanoseconds (a nominal 24 h for day bars)."""
        return self.minutes * _NS_PER_MINUTE

    def __str__(self) -> str:
        if self.is_day:
            return "1d"
        if self.minutes % 60 == 0:
            return f"{self.minutes // 60}h"
        return f"{self.minutes}m"

    def __repr__(self) -> str:
        return f"Timestep('{self}')"


def serving_timestep(stored: list[Timestep], timestep: Timestep | None, symbol: str) -> Timestep:
    """The stored timestep that serves ``timestep`` (None: the finest) for ``symbol``
    stored at ``stored`` (finest first): ``timestep`` itself when stored, else the finest
    stored one, which must be finer so that it can be aggregated."""
    if timestep is None or timestep in stored:
        return stored[0] if timestep is None else timestep
    if timestep < stored[0]:
        msg = (
            f"{symbol} is stored at {[str(t) for t in stored]}; {timestep} bars are finer "
            f"and cannot be made from them: ask for {stored[0]} or coarser"
        )
        raise InvalidRequest(msg)
    return stored[0]


@lru_cache(maxsize=256)
def _parse(value: str) -> Timestep:
    match = _SPELLING.match(value.lower())
    unit = _UNITS.get(match.group(2)) if match else None
    if unit is None:
        msg = f"unknown timestep {value!r}; use {_ACCEPTED}"
        raise InvalidRequest(msg)
    digits = match.group(1)
    count = int(digits) if digits else 1
    if count < 1:
        msg = f"timestep {value!r} has a zero length; use a positive count such as '1m'"
        raise InvalidRequest(msg)
    if unit == "d":
        if count != 1:
            msg = f"timestep {value!r}: only single-day bars are supported; use 'day'"
            raise InvalidRequest(msg)
        return Timestep(_MINUTES_PER_DAY)
    minutes = count * (60 if unit == "h" else 1)
    if minutes >= _MINUTES_PER_DAY:
        msg = f"timestep {value!r} is a day or longer; use 'day' for daily bars"
        raise InvalidRequest(msg)
    return Timestep(minutes)
