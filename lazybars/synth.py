"""Deterministic synthetic OHLCV bars: the only data source of tests, benchmarks and the demo.

Prices follow a mildly mean-reverting log random walk laid on a calendar built from local
wall-clock time, so DST days, holidays, half days and outages fall where real data has them.
Every draw comes from generators keyed by ``(seed, symbol)`` through a stable hash: the same
arguments give the same frame in any process, whatever other symbols are generated along.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

from lazybars.errors import InvalidRequest
from lazybars.timestep import Timestep

__all__ = ["catalog", "daily_bars", "hourly_bars", "minute_bars"]

_DateLike = str | dt.date | dt.datetime
_NS_MIN = 60_000_000_000
_NS_DAY = 1440 * _NS_MIN
_EPOCH = dt.date(1970, 1, 1)
_TICK = 0.25
_SESSIONS = ("24h", "regular")
_BASE_PRICES = {"MES": 5000.0, "MNQ": 17000.0, "MYM": 38000.0}
_MINUTE_VOL = 5e-4  # ~0.05% a minute, about 1% over a regular session
_DAILY_VOL = 0.01
_DRIFT_STD = 0.15  # stationary spread of log price around its base: a year stays plausible
_MINUTE_VOLUME, _DAILY_VOLUME = 200.0, 100_000.0
_OUTAGES_PER_MONTH = 2.0
# Session times in minutes after local midnight.
_OPEN, _CLOSE, _HALF_CLOSE, _BREAK, _REOPEN = 570, 960, 780, 1020, 1080
_CATALOG_GAPS = 0.002


def minute_bars(
    symbol: str = "MES",
    start: _DateLike = "2024-01-02",
    end: _DateLike = "2024-02-01",
    *,
    tz: str = "America/New_York",
    session: str = "regular",
    seed: int = 0,
    price: float = 5000.0,
    gaps: float = 0.002,
    extras: bool = False,
) -> pl.DataFrame:
    """One-minute bars of one symbol, labelled by their start instant.

    Parameters
    ----------
    symbol
        Name keying the random streams, with ``seed`` (any integer).
    start, end
        Local dates as ISO strings, dates or datetimes (only the date part counts): bars
        cover local dates in ``[start, end)``.
    tz
        IANA time zone of the session clock and of the ``datetime`` column.
    session
        ``"regular"`` (09:30-16:00 Mon-Fri) or ``"24h"`` (Sunday 18:00 to Friday 17:00 with
        a 17:00-18:00 break Mon-Thu), in local wall-clock time. Holidays have no bars; the
        day after Thanksgiving and Dec 24 stop at 13:00.
    price
        Starting price, around which prices mildly mean-revert.
    gaps
        Fraction in ``[0, 1)`` of bars dropped at random; when positive, a few 5-30 minute
        outages a month are dropped too.
    extras
        Add ``vwap`` (Float64) and ``trades`` (Int64) columns.

    Returns
    -------
    polars.DataFrame
        ``datetime`` (``Datetime("ns", tz)``) then Float64 ``open``, ``high``, ``low``,
        ``close``, ``volume``; sorted, unique times; prices on a 0.25 tick.

    Raises
    ------
    InvalidRequest
        For an unknown session or time zone, ``end <= start`` or out-of-range numbers.

    Examples
    --------
    >>> bars = minute_bars(end="2024-01-03", gaps=0)
    >>> bars.shape
    (390, 6)
    >>> bars["datetime"].dt.strftime("%H:%M")[[0, -1]].to_list()
    ['09:30', '15:59']
    """
    options = {"tz": tz, "session": session, "seed": seed, "gaps": gaps, "extras": extras}
    return _intraday((symbol,), (price,), 1, start, end, rho=0.0, **options)[symbol]


def hourly_bars(
    symbol: str = "MES",
    start: _DateLike = "2024-01-02",
    end: _DateLike = "2024-02-01",
    *,
    tz: str = "America/New_York",
    session: str = "regular",
    seed: int = 0,
    price: float = 5000.0,
    gaps: float = 0.002,
    extras: bool = False,
) -> pl.DataFrame:
    """One-hour bars at the whole local hours whose start is in session.

    Parameters and result are those of :func:`minute_bars`: a regular session gives the
    10:00 to 15:00 bars, a 24h session every whole hour in it.

    Examples
    --------
    >>> hourly_bars(end="2024-01-03", gaps=0)["datetime"].dt.hour().to_list()
    [10, 11, 12, 13, 14, 15]
    """
    options = {"tz": tz, "session": session, "seed": seed, "gaps": gaps, "extras": extras}
    return _intraday((symbol,), (price,), 60, start, end, rho=0.0, **options)[symbol]


def daily_bars(
    symbol: str = "MES",
    start: _DateLike = "2023-01-03",
    end: _DateLike = "2024-01-02",
    *,
    tz: str = "America/New_York",
    seed: int = 0,
    price: float = 5000.0,
    extras: bool = False,
) -> pl.DataFrame:
    """One bar per trading day (Mon-Fri minus holidays), labelled by its local midnight.

    Parameters and result are those of :func:`minute_bars`, with ~1% daily volatility.

    Examples
    --------
    >>> daily_bars(start="2024-07-01", end="2024-07-08")["datetime"].dt.day().to_list()
    [1, 2, 3, 5]
    """
    return _daily((symbol,), (price,), start, end, tz=tz, seed=seed, extras=extras, rho=0.0)[symbol]


def catalog(
    symbols: Sequence[str] = ("MES", "MNQ", "MYM"),
    start: _DateLike = "2024-01-02",
    end: _DateLike = "2025-01-02",
    *,
    timestep: str = "minute",
    tz: str = "America/New_York",
    session: str = "24h",
    seed: int = 0,
    correlation: float = 0.6,
    extras: bool = False,
) -> dict[str, pl.DataFrame]:
    """Bars of several symbols whose returns share a common factor.

    Parameters
    ----------
    symbols
        Distinct names. MES, MNQ and MYM start near 5000, 17000 and 38000; other names at a
        price derived from the name.
    timestep
        ``"minute"``/``"1m"``, ``"hour"``/``"1h"`` or ``"day"``/``"1d"``.
    correlation
        Correlation in ``[0, 1]`` of any two symbols' bar returns.

    Other parameters are those of :func:`minute_bars`; intraday bars get default gaps,
    drawn independently per symbol.

    Returns
    -------
    dict of str to polars.DataFrame
        ``{symbol: bars}`` in the order given.

    Examples
    --------
    >>> bars = catalog(end="2024-01-03", timestep="1h")
    >>> {symbol: frame.height for symbol, frame in bars.items()}
    {'MES': 23, 'MNQ': 23, 'MYM': 23}
    """
    symbols = (symbols,) if isinstance(symbols, str) else tuple(symbols)
    prices = tuple(_BASE_PRICES.get(s) or _derived_price(s) for s in symbols)
    minutes = Timestep.parse(timestep).minutes
    if minutes == 1440:
        return _daily(symbols, prices, start, end, tz=tz, seed=seed, extras=extras, rho=correlation)
    if minutes not in (1, 60):
        msg = f"catalog cannot generate timestep {timestep!r}; use 'minute', 'hour' or 'day'"
        raise InvalidRequest(msg)
    options = {"tz": tz, "session": session, "seed": seed, "gaps": _CATALOG_GAPS, "extras": extras}
    return _intraday(symbols, prices, minutes, start, end, rho=correlation, **options)


def _intraday(symbols, prices, step, start, end, *, tz, session, seed, gaps, extras, rho):
    if session not in _SESSIONS:
        msg = f"unknown session {session!r}; use one of {', '.join(map(repr, _SESSIONS))}"
        raise InvalidRequest(msg)
    if not 0 <= gaps < 1:
        raise InvalidRequest(f"gaps must be a fraction in [0, 1), got {gaps!r}")
    d0, d1 = _date_range(start, end, tz)
    # Scan every UTC minute (a day of margin covers any offset) and keep those in session by
    # their local wall time, so DST days need no special case.
    utc = np.arange((d0 - 1) * _NS_DAY, (d1 + 1) * _NS_DAY, _NS_MIN, dtype=np.int64)
    quarters = utc[::15]  # UTC offsets change on quarter hours: converting these is enough
    local = utc + np.repeat(_local_ns(quarters, tz) - quarters, 15)
    day, minute = np.divmod(local, _NS_DAY)
    minute //= _NS_MIN
    keep = (day >= d0) & (day < d1) & _in_session(day, minute, session)
    if step == 60:
        keep &= minute % 60 == 0
    utc, minute = utc[keep], minute[keep]
    # Bars after a session break open with a gap that grows with the time closed.
    elapsed = np.diff(utc, prepend=utc[:1] - step * _NS_MIN) // _NS_MIN
    gap_var = 0.01 + 0.25 * np.minimum(elapsed - step, 2880) / step
    # U-shaped volume through the regular hours (opening and closing rush), thin overnight.
    rush = 1 + 1.5 * np.exp((_OPEN - minute) / 30) + np.exp((minute + step - _CLOSE) / 30)
    volume = _MINUTE_VOLUME * step * np.where((minute >= _OPEN) & (minute < _CLOSE), rush, 0.15)
    drop = (utc.size, gaps, step, (d1 - d0) / 30.44)
    bars = (utc, tz, _MINUTE_VOL * np.sqrt(step), gap_var, volume)
    return _assemble(symbols, prices, bars, drop, seed=seed, rho=rho, extras=extras)


def _daily(symbols, prices, start, end, *, tz, seed, extras, rho):
    d0, d1 = _date_range(start, end, tz)
    days = np.arange(d0, d1, dtype=np.int64)
    days = days[((days + 3) % 7 < 5) & ~np.isin(days, _holidays(d0, d1)[0])]
    naive = pl.Series(days * _NS_DAY).cast(pl.Datetime("ns"))
    how = {"ambiguous": "earliest", "non_existent": "null"}
    # Where DST starts at midnight, the local day begins an hour later.
    later = (naive + dt.timedelta(hours=1)).dt.replace_time_zone(tz, **how)
    utc = naive.dt.replace_time_zone(tz, **how).fill_null(later).dt.epoch("ns").to_numpy()
    gap_var = 0.1 + 0.25 * (np.diff(days, prepend=days[:1] - 1) - 1)
    volume = np.full(days.size, _DAILY_VOLUME)
    bars = (utc, tz, _DAILY_VOL, gap_var, volume)
    drop = (days.size, 0.0, 1440, 0.0)  # daily bars have no gaps
    return _assemble(symbols, prices, bars, drop, seed=seed, rho=rho, extras=extras)


def _assemble(symbols, prices, bars, drop, *, seed, rho, extras):
    utc, tz, sigma, gap_var, volume = bars
    if len(set(symbols)) != len(symbols) or not all(isinstance(s, str) and s for s in symbols):
        raise InvalidRequest(f"symbols must be distinct non-empty strings, got {symbols!r}")
    if not 0 <= rho <= 1:
        raise InvalidRequest(f"correlation must be in [0, 1], got {rho!r}")
    if not all(isinstance(p, int | float) and 0 < p < np.inf for p in prices):
        raise InvalidRequest(f"price must be a positive number, got {prices!r}")
    if not isinstance(seed, int | np.integer):
        raise InvalidRequest(f"seed must be an integer, got {seed!r}")
    n = utc.size
    common = _rng(seed, "\0common").standard_normal((2, n)) if rho > 0 else 0.0
    time = pl.Series("datetime", utc).cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(tz)
    # Mean reversion just strong enough to hold the stationary spread at _DRIFT_STD.
    phi = 1 - sigma**2 / (2 * _DRIFT_STD**2)
    frames = {}
    for symbol, price in zip(symbols, prices, strict=True):
        # Separate streams, so extras or gaps never change the prices of the bars kept.
        moves, sizes, extra, holes = _rng(seed, symbol).spawn(4)
        shocks = np.sqrt(rho) * common + np.sqrt(1 - rho) * moves.standard_normal((2, n))
        gap = sigma * np.sqrt(gap_var) * shocks[0]
        log_close = _ar1(gap + sigma * shocks[1], phi)
        log_open = np.concatenate(([0.0], log_close[:-1])) + gap
        reach = 0.4 * sigma * moves.exponential(size=(2, n))
        log_high = np.maximum(log_open, log_close) + reach[0]
        log_low = np.minimum(log_open, log_close) - reach[1]
        # Rounding to ticks is monotonic, so low <= open, close <= high survives it.
        o, h, lo, c = (
            _to_tick(price * np.exp(x)) for x in (log_open, log_high, log_low, log_close)
        )
        busy = 1 + 0.5 * np.abs(log_close - log_open) / sigma
        v = np.maximum(1.0, np.rint(volume * busy * sizes.lognormal(-0.125, 0.5, n)))
        columns = {"open": o, "high": h, "low": lo, "close": c, "volume": v}
        if extras:
            vwap = (h + lo + c) / 3 + 0.1 * (h - lo) * extra.standard_normal(n)
            columns["vwap"] = np.round(np.clip(vwap, lo, h), 4)
            trades = np.clip(np.rint(v / extra.uniform(1.2, 4.0, n)), 1, v)
            columns["trades"] = trades.astype(np.int64)
        frame = pl.DataFrame([time, *map(pl.Series, columns, columns.values())])
        frames[symbol] = frame.filter(pl.Series(~_dropped(holes, *drop)))
    return frames


def _date_range(start: _DateLike, end: _DateLike, tz: str) -> tuple[int, int]:
    """``[start, end)`` as day numbers since 1970-01-01, validated."""
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError, TypeError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise InvalidRequest(f"unknown time zone {tz!r}; use an IANA name") from None
    days = []
    for name, given in (("start", start), ("end", end)):
        value = given
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.strip())
            except ValueError:
                raise InvalidRequest(f"{name} {given!r} is not an ISO date") from None
        if isinstance(value, dt.datetime):
            value = (value.astimezone(zone) if value.tzinfo else value).date()
        if not isinstance(value, dt.date):
            raise InvalidRequest(f"{name} must be a date, datetime or ISO string, got {value!r}")
        days.append((value - _EPOCH).days)
    if days[1] <= days[0]:
        raise InvalidRequest(f"end ({end!r}) must be a later date than start ({start!r})")
    return days[0], days[1]


def _local_ns(utc: np.ndarray, tz: str) -> np.ndarray:
    aware = pl.Series(utc).cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(tz)
    return aware.dt.replace_time_zone(None).cast(pl.Int64).to_numpy()


def _in_session(day: np.ndarray, minute: np.ndarray, session: str) -> np.ndarray:
    closed, half = _holidays(int(day.min()), int(day.max()) + 1)
    weekday = (day + 3) % 7  # Monday is 0; 1970-01-01 was a Thursday
    open_day, short = ~np.isin(day, closed), np.isin(day, half)
    if session == "regular":
        close = np.where(short, _HALF_CLOSE, _CLOSE)
        return open_day & (weekday < 5) & (minute >= _OPEN) & (minute < close)
    evening, before_break = minute >= _REOPEN, minute < _BREAK
    weekdays = np.where(weekday == 4, before_break, weekday < 4) & (before_break | evening)
    opened = np.where(weekday == 6, evening, weekdays)
    return open_day & opened & ~(short & (minute >= _HALF_CLOSE) & ~evening)


def _holidays(d0: int, d1: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed days and half days (day numbers) of the years around ``[d0, d1)``."""
    closed, half = [], []
    for year in range((_EPOCH + dt.timedelta(d0)).year - 1, (_EPOCH + dt.timedelta(d1)).year + 2):
        nov1 = dt.date(year, 11, 1)
        thanksgiving = nov1 + dt.timedelta((3 - nov1.weekday()) % 7 + 21)
        for day in (dt.date(year, 1, 1), dt.date(year, 7, 4), thanksgiving, dt.date(year, 12, 25)):
            # Keep the weekend date closed too: a 24h session would otherwise open on the
            # evening of a Sunday holiday.
            observed = day + dt.timedelta({5: -1, 6: 1}.get(day.weekday(), 0))
            closed += [(day - _EPOCH).days, (observed - _EPOCH).days]
        half += [(thanksgiving - _EPOCH).days + 1, (dt.date(year, 12, 24) - _EPOCH).days]
    return np.array(closed), np.array(half)


def _dropped(gen: np.random.Generator, n: int, gaps: float, step: int, months: float):
    """Random missing bars plus a few 5-30 minute outages a month."""
    if gaps == 0 or n == 0:
        return np.zeros(n, bool)
    count = gen.poisson(_OUTAGES_PER_MONTH * months)
    starts = gen.integers(0, n, count)
    stops = np.minimum(starts - (-gen.integers(5, 31, count) // step), n)
    edges = np.zeros(n + 1, np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, stops, -1)
    return (gen.random(n) < gaps) | (np.cumsum(edges[:-1]) > 0)


def _rng(seed: int, symbol: str) -> np.random.Generator:
    # A digest rather than hash(), whose value for strings changes from process to process.
    digest = hashlib.sha256(f"lazybars.synth|{int(seed)}|{symbol}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _ar1(eps: np.ndarray, phi: float, block: int = 4096) -> np.ndarray:
    """``x[t] = phi * x[t-1] + eps[t]`` from ``x[-1] = 0``, with no per-element loop."""
    # Closed form within fixed blocks (phi**-block stays tame), then the state is carried
    # across blocks: a loop over a few hundred blocks, not a million rows.
    padded = np.zeros(-(-eps.size // block) * block)
    padded[: eps.size] = eps
    powers = phi ** np.arange(1, block + 1)
    rows = np.cumsum(padded.reshape(-1, block) / powers, axis=1) * powers
    for i in range(1, len(rows)):
        rows[i] += rows[i - 1, -1] * powers
    return rows.ravel()[: eps.size]


def _to_tick(prices: np.ndarray) -> np.ndarray:
    return np.maximum(np.rint(prices / _TICK) * _TICK, _TICK)


def _derived_price(symbol: str) -> float:
    unit = int.from_bytes(hashlib.sha256(str(symbol).encode()).digest()[:8], "little") / 2**64
    return float(_to_tick(np.float64(10 ** (2 + 2.5 * unit))))
