"""Parity: the fast ``lb.DataSource`` against the pandas oracle, on random requests.

Hypothesis draws sequences of requests (clock, length, timeshift, after_hours) over several
synthetic data sets chosen for their awkward calendars: DST changes with gaps, the repeated
autumn hour, hour and day bars, day bars labelled in another zone, a DataSource zone that is
neither the data's nor New York's, extra columns, and an on-disk catalog. Every answer must be
exactly equal: the pandas frame, the polars frame and the last price. The fast source is built
with random start/end/lookback hints, which must never change an answer.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import polars as pl
import polars.testing
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import lazybars as lb
from lazybars._time import parse_duration
from lazybars.reference import PandasDataSource

NY = "America/New_York"
KIRITIMATI = "Pacific/Kiritimati"  # UTC+14: its Sunday-evening session covers NY's 01:xx
HAVANA, SANTIAGO = "America/Havana", "America/Santiago"
ASUNCION, BEIRUT = "America/Asuncion", "Asia/Beirut"
SECOND = 1_000_000_000
DAY = 86_400 * SECOND

# Requests made, per data set (read by whoever wants to know how much was compared).
STATS: Counter[str] = Counter()


@dataclass(frozen=True)
class DataSet:
    name: str
    store: lb.BarStore
    symbol: str
    timezone: str  # the DataSource zone ("local" in DESIGN)
    step: pd.Timedelta  # the stored timestep; a day is a calendar day where it was written
    starts: tuple[int, ...]  # bar starts, int64 ns
    anchors: tuple[int, ...]  # bar starts and ends: where visibility changes

    @property
    def first(self) -> int:
        return self.starts[0]

    @property
    def last(self) -> int:
        return self.anchors[-1]


def first_instants(dates: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """The first instant of each naive local date in ``tz``."""
    first = np.ones(len(dates), dtype=bool)
    return dates.tz_localize(tz, ambiguous=first, nonexistent="shift_forward").rename("datetime")


def every_minute_bars(start: str, end: str, tz: str, seed: int) -> pl.DataFrame:
    """Minute bars around the clock, every day, from local ``start`` to ``end``, stored in
    UTC, with a few random gaps."""
    lo, hi = first_instants(pd.DatetimeIndex([start, end]), tz)
    minutes = pd.date_range(lo, hi, freq="min", inclusive="left").tz_convert("UTC")
    rng = np.random.default_rng(seed)
    minutes = minutes[rng.random(len(minutes)) > 0.03]
    close = 100 + np.cumsum(rng.normal(0, 0.1, len(minutes))).round(2)
    return pl.DataFrame(
        {
            "datetime": pl.Series(minutes.rename("datetime")),
            "open": close + 0.05,
            "high": close + 0.25,
            "low": close - 0.25,
            "close": close,
            "volume": rng.integers(1, 100, len(minutes)).astype(float),
        }
    )


def _to_ny(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("datetime").dt.convert_time_zone(NY))


def every_day_bars(start: str, end: str, tz: str, seed: int) -> pl.DataFrame:
    """Day bars on every calendar day (weekends and DST Sundays too), labelled by the first
    instant of their date (a skipped midnight's day starts at 01:00; a repeated one's at
    its first occurrence)."""
    days = first_instants(pd.date_range(start, end, freq="D", inclusive="left"), tz)
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
    opens = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.5, len(days)))
    return pl.from_pandas(
        pd.DataFrame(
            {
                "open": opens,
                "high": np.maximum(opens, close) + spread,
                "low": np.minimum(opens, close) - spread,
                "close": close,
                "volume": rng.integers(1, 1000, len(days)).astype(float),
            },
            index=days,
        ).reset_index()
    )


def _frames() -> dict[str, tuple[pl.DataFrame, str, str]]:
    """symbol -> (bars, stored timestep, DataSource zone)."""
    synth = lb.synth
    regular = pl.concat(
        [
            synth.minute_bars("REG", "2024-03-06", "2024-03-14", gaps=0.05, extras=True),
            synth.minute_bars("REG", "2024-10-30", "2024-11-07", gaps=0.05, extras=True),
        ]
    )
    fall = _to_ny(
        synth.minute_bars(
            "FALL", "2024-11-02", "2024-11-05", tz=KIRITIMATI, session="24h", gaps=0.03
        )
    )
    hours = pl.concat(
        [
            synth.hourly_bars("HOUR", "2024-03-04", "2024-03-16", session="24h", gaps=0.03),
            _to_ny(
                synth.hourly_bars(
                    "HOUR", "2024-10-28", "2024-11-09", tz=KIRITIMATI, session="24h", gaps=0.03
                )
            ),
        ]
    )
    london = synth.minute_bars(
        "LDN", "2024-03-27", "2024-04-03", tz="Europe/London", session="24h", gaps=0.02, extras=True
    )
    return {
        "REG": (regular, "minute", NY),
        "FALL": (fall, "minute", NY),
        "HOUR": (hours, "hour", NY),
        "DAY": (every_day_bars("2024-01-01", "2025-01-01", NY, seed=7), "day", NY),
        "DAYUTC": (synth.daily_bars("DAYUTC", "2024-01-02", "2025-01-02", tz="UTC"), "day", NY),
        "LDN": (london, "minute", "Asia/Tokyo"),
        "LDNDAY": (
            synth.daily_bars("LDNDAY", "2024-02-01", "2024-12-01", tz="Europe/London", extras=True),
            "day",
            "Asia/Tokyo",
        ),
        # Zones whose DST changes happen at midnight: a repeated midnight (Havana 11-03) or a
        # skipped one (Havana 03-10, Santiago 09-08, Asuncion 10-06, Beirut 03-31).
        "HAVDAY": (every_day_bars("2024-02-20", "2024-11-20", HAVANA, seed=3), "day", HAVANA),
        "HAV": (every_minute_bars("2024-11-02", "2024-11-05", HAVANA, seed=4), "minute", HAVANA),
        "SCL": (
            every_minute_bars("2024-09-06", "2024-09-10", SANTIAGO, seed=5),
            "minute",
            SANTIAGO,
        ),
        "ASUDAY": (every_day_bars("2024-09-01", "2024-11-01", ASUNCION, seed=6), "day", NY),
        "BEYDAY": (every_day_bars("2024-03-01", "2024-11-01", BEIRUT, seed=8), "day", BEIRUT),
    }


NAMES = [
    "REG",
    "FALL",
    "HOUR",
    "DAY",
    "DAYUTC",
    "LDN",
    "LDNDAY",
    "HAVDAY",
    "HAV",
    "SCL",
    "ASUDAY",
    "BEYDAY",
]
ON_DISK = {"REG", "DAYUTC"}


def _anchors(frame: pl.DataFrame, timestep: str, tz: str) -> tuple[tuple[int, ...], pd.Timedelta]:
    starts = frame["datetime"].dt.epoch("ns").to_numpy()
    if timestep == "day":
        # Every midnight from the first bar's date to two days past the last, where the bars
        # were written (their ends) and in the DataSource's zone (its day buckets' ends).
        ends = np.concatenate([_midnights(frame, zone) for zone in (_written(frame), tz)])
        step = pd.Timedelta(days=1)
    else:
        step = pd.Timedelta(minutes=1 if timestep == "minute" else 60)
        ends = starts + step.value
    return tuple(sorted(set(starts.tolist()) | set(ends.tolist()))), step


def _written(frame: pl.DataFrame) -> str:
    return frame.schema["datetime"].time_zone


def _midnights(frame: pl.DataFrame, tz: str) -> np.ndarray:
    """The first instant of every date in ``tz`` from the first bar's to two past the last."""
    local = frame["datetime"].to_pandas().dt.tz_convert(tz)
    first = local.iloc[0].tz_localize(None).normalize()
    last = local.iloc[-1].tz_localize(None).normalize() + pd.Timedelta(days=2)
    return first_instants(pd.date_range(first, last, freq="D"), tz).asi8


class Catalog(dict):
    """The data sets by name, each with its reference source.

    A short repr keeps Hypothesis' report of a failing example readable (a fixture argument
    is printed with the example, and the full data sets run to hundreds of kilobytes).
    """

    def __repr__(self) -> str:
        return f"<parity data sets {sorted(self)}>"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


def _datasets(store_of: Callable[[str], lb.BarStore], oracle: lb.BarStore | None = None) -> Catalog:
    """The data sets, each written to ``store_of(symbol)``; the reference reads the same
    store, or ``oracle`` when given (a second copy of the bars)."""
    out = Catalog()
    for symbol, (frame, timestep, tz) in _frames().items():
        store = store_of(symbol)
        store.write(symbol, frame, timestep=timestep)
        if oracle is not None:
            oracle.write(symbol, frame, timestep=timestep)
        anchors, step = _anchors(frame, timestep, tz)
        starts = tuple(frame["datetime"].dt.epoch("ns").to_list())
        ds = DataSet(symbol, store, symbol, tz, step, starts, anchors)
        out[symbol] = (ds, PandasDataSource(oracle or store, timezone=tz))
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Catalog:
    memory = lb.BarStore.from_frames({})
    disk = lb.BarStore(tmp_path_factory.mktemp("parity-catalog"))
    return _datasets(lambda symbol: disk if symbol in ON_DISK else memory)


@pytest.fixture(scope="module")
def s3_datasets(s3_server) -> Catalog:
    """Every data set in one catalog on the test S3 server; the reference reads a copy in
    memory (it lists the store on every request, which is its plain way, not ours)."""
    store = lb.BarStore(f"s3://{s3_server.bucket()}/parity", storage_options=s3_server.options())
    return _datasets(lambda symbol: store, oracle=lb.BarStore.from_frames({}))


# ------------------------------------------------------------------------- strategies
ZONES = ["UTC", NY, "Asia/Tokyo", "Europe/London", HAVANA, SANTIAGO]


def clocks(ds: DataSet) -> st.SearchStrategy:
    """A clock near where visibility changes (± 0, 1 ns, seconds, days), or outside the data."""
    jitter = st.one_of(
        st.just(0),
        st.sampled_from([-1, 1]),
        st.integers(-120, 120).map(lambda s: s * SECOND),
        st.integers(-3 * DAY, 3 * DAY),
    )
    near = st.builds(lambda a, j: a + j, st.sampled_from(ds.anchors), jitter)
    before = st.integers(1, 60 * DAY).map(lambda d: ds.first - d)
    after = st.integers(0, 60 * DAY).map(lambda d: ds.last + d)
    instant = st.one_of(near, near, near, near, before, after)
    return st.builds(_as_clock, instant, st.sampled_from(ZONES), st.booleans())


def _as_clock(ns: int, zone: str, python: bool) -> dt.datetime:
    stamp = pd.Timestamp(ns, tz="UTC").tz_convert(zone)
    if python and ns % 1000 == 0:
        return stamp.to_pydatetime()
    return stamp


def lengths(ds: DataSet) -> st.SearchStrategy[int]:
    n = len(ds.starts)
    return st.one_of(st.integers(1, 5), st.integers(1, 400), st.integers(max(1, n - 5), n + 50))


def timeshifts(ds: DataSet) -> st.SearchStrategy:
    step = ds.step.to_pytimedelta()
    return st.one_of(
        st.none(),
        st.integers(-5, 5),
        st.integers(-12, 12).map(lambda k: k * step),
        st.timedeltas(dt.timedelta(days=-5), dt.timedelta(days=5)),
        st.integers(-5 * DAY, 5 * DAY).map(lambda ns: pd.Timedelta(ns, "ns")),
    )


@st.composite
def requests(draw, ds: DataSet):
    return (
        draw(clocks(ds)),
        draw(lengths(ds)),
        draw(timeshifts(ds)),
        draw(st.booleans()),
    )


def _one_midnight(date: str, tz: str) -> bool:
    """Whether the midnight starting ``date`` happens exactly once in ``tz``."""
    wall = dt.datetime.fromisoformat(date)
    # Repeated and skipped wall times are the ones whose two folds differ in offset.
    earlier, later = (wall.replace(tzinfo=ZoneInfo(tz), fold=f) for f in (0, 1))
    return earlier.utcoffset() == later.utcoffset()


@st.composite
def hints(draw, ds: DataSet) -> dict:
    """start/end/lookback for the fast source: anywhere around the data, or absent."""
    out: dict = {}
    span = st.integers(ds.first - 20 * DAY, ds.last + 20 * DAY)
    start = draw(st.none() | span)
    end = draw(st.none() | span)
    if start is not None and end is not None and end < start:
        start, end = end, start
    for key, ns in (("start", start), ("end", end)):
        if ns is None:
            continue
        stamp = pd.Timestamp(ns, tz="UTC").tz_convert(ds.timezone)
        # A plain date string (read in the DataSource zone) or a tz-aware instant; an end
        # date rounds up to the next midnight so that it never falls before the start.
        wall = stamp.tz_localize(None)
        day = wall.normalize() + pd.Timedelta(days=1) if key == "end" else wall
        text = day.strftime("%Y-%m-%d")
        # A date whose midnight is repeated or skipped (Havana, Santiago...) is ambiguous as
        # a naive hint, which DataSource rejects by design: such hints are given tz-aware.
        plain = draw(st.booleans()) and _one_midnight(text, ds.timezone)
        out[key] = text if plain else stamp
    lookback = draw(st.sampled_from([None, "0s", "1h", "1d", "3d", "30d", dt.timedelta(hours=5)]))
    if lookback is not None:
        out["lookback"] = lookback
    return out


# ------------------------------------------------------------------------------ test
def assert_same_answer(fast: lb.DataSource, ref: PandasDataSource, ds: DataSet, request) -> None:
    clock, length, timeshift, after_hours = request
    fast.set_datetime(clock)
    ref.set_datetime(clock)
    assert fast.get_datetime() == ref.get_datetime()
    got = fast.get_historical_prices(
        ds.symbol, length, timeshift=timeshift, after_hours=after_hours
    )
    want = ref.get_historical_prices(
        ds.symbol, length, timeshift=timeshift, after_hours=after_hours
    )
    assert len(got) == len(want)
    assert got.empty == want.empty
    assert (got.symbol, got.timestep) == (want.symbol, want.timestep)
    polars.testing.assert_frame_equal(got.pl, want.pl, check_exact=True)
    pd.testing.assert_frame_equal(got.df, want.df, check_exact=True, check_freq=False)
    assert got.get_last_price() == want.get_last_price()
    assert fast.get_last_price(ds.symbol) == ref.get_last_price(ds.symbol)
    STATS[ds.name] += 1


def run_sequence(datasets: Catalog, name: str, data, *, with_hints: bool) -> None:
    ds, ref = datasets[name]
    options = data.draw(hints(ds), label="hints") if with_hints else {}
    fast = lb.DataSource(ds.store, timezone=ds.timezone, **options)
    sequence = data.draw(st.lists(requests(ds), min_size=2, max_size=16), label="requests")
    if data.draw(st.booleans(), label="clock moves forward"):
        # A backtest's clock only moves forward: the fast path's cursor sees that pattern.
        sequence.sort(key=lambda r: pd.Timestamp(r[0]).value)
    with warnings.catch_warnings(record=True) as caught:
        # A clock past the data warns; recorded here, and checked against the rule below.
        warnings.simplefilter("always", lb.StaleDataWarning)
        for request in sequence:
            assert_same_answer(fast, ref, ds, request)
    check_stale_warnings(ds, options.get("lookback", "30d"), sequence, caught)


def check_stale_warnings(ds: DataSet, lookback: object, sequence: list, caught: list) -> None:
    """Each source warns at most once (the reference lives for the module), of this asset;
    no clock before the last bar's start is warned of, and the fast source (new for the
    sequence) warns of a clock past that start by the lookback and a few days (a day bar's
    end lies within them)."""
    assert all(issubclass(w.category, lb.StaleDataWarning) for w in caught), caught
    assert all(str(w.message).startswith(f"{ds.symbol}: ") for w in caught), caught
    assert len(caught) <= 2
    nows = []
    for clock, _, timeshift, _ in sequence:
        now = pd.Timestamp(clock).value
        shift = pd.Timedelta(timeshift).value if isinstance(timeshift, dt.timedelta) else 0
        nows += [now, now - shift]
    if max(nows) <= ds.starts[-1]:
        assert not caught
    if max(nows) > ds.starts[-1] + parse_duration(lookback, argument="lookback") + 3 * DAY:
        assert caught


def parity_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # reproducible in CI
        database=None,
        # No explain phase: its line tracing makes a failing run several times slower.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.mark.parametrize("name", NAMES)
@parity_settings(examples=60)
@given(data=st.data())
def test_fast_matches_reference(datasets, name, data):
    """The semantics: a fast source without hints answers exactly like the oracle."""
    run_sequence(datasets, name, data, with_hints=False)


@pytest.mark.parametrize("name", NAMES)
@parity_settings(examples=50)
@given(data=st.data())
def test_hints_never_change_answers(datasets, name, data):
    """start/end/lookback only bound the first load: answers stay the oracle's."""
    run_sequence(datasets, name, data, with_hints=True)


@pytest.mark.parametrize("with_hints", [False, True], ids=["no hints", "hints"])
@pytest.mark.parametrize("name", NAMES)
@parity_settings(examples=12)
@given(data=st.data())
def test_a_catalog_on_s3_answers_like_the_reference(s3_datasets, name, with_hints, data):
    """Both properties above against a catalog on S3 (every data set; fewer examples, as
    each one loads its asset from the server)."""
    run_sequence(s3_datasets, name, data, with_hints=with_hints)


DAY_ZONES = ["UTC", NY, "Asia/Tokyo", "Europe/London", HAVANA, SANTIAGO, BEIRUT, KIRITIMATI]


@st.composite
def day_bars_elsewhere(draw) -> tuple[DataSet, PandasDataSource, str]:
    """Day bars written in one zone, read through a DataSource in another (both drawn),
    over a stretch of dates that often holds a DST change of either."""
    written = draw(st.sampled_from(DAY_ZONES), label="written in")
    local = draw(st.sampled_from([z for z in DAY_ZONES if z != written]), label="DataSource zone")
    first = draw(st.dates(dt.date(2024, 1, 1), dt.date(2024, 12, 1)), label="first date")
    days = draw(st.integers(1, 40), label="days")
    end = first + dt.timedelta(days=days)
    frame = every_day_bars(str(first), str(end), written, seed=days)
    store = lb.BarStore.from_frames({"D": frame}, timestep="day")
    anchors, step = _anchors(frame, "day", local)
    starts = tuple(frame["datetime"].dt.epoch("ns").to_list())
    ds = DataSet(f"D@{written}", store, "D", local, step, starts, anchors)
    return ds, PandasDataSource(store, timezone=local), written


def _written_end(start: pd.Timestamp, zone: str) -> int:
    """A day bar's end by zoneinfo arithmetic: the first instant of the next date in ``zone``."""
    date = start.tz_convert(zone).date() + dt.timedelta(days=1)
    return int(first_instants(pd.DatetimeIndex([date]), zone)[0].value)


@parity_settings(examples=80)
@given(data=st.data())
def test_day_bars_written_in_another_zone(data):
    """Stored day bars end at the next midnight of the zone they were written in, whatever
    the DataSource's zone: the fast source equals the oracle, and the last bar visible is
    the last whose day there has ended."""
    ds, ref, written = data.draw(day_bars_elsewhere(), label="data set")
    fast = lb.DataSource(ds.store, timezone=ds.timezone)
    sequence = data.draw(st.lists(requests(ds), min_size=1, max_size=8), label="requests")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lb.StaleDataWarning)
        for request in sequence:
            assert_same_answer(fast, ref, ds, request)
            now = pd.Timestamp(request[0]).value
            ends = [_written_end(pd.Timestamp(s, tz="UTC"), written) for s in ds.starts]
            visible = fast.get_historical_prices("D", len(ds.starts))
            assert len(visible) == sum(end <= now for end in ends)
    check_stale_warnings(ds, "30d", sequence, caught)
