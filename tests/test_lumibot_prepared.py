"""lazybars.lumibot._prepared: LazyBarsDataBentoBacktesting's history and last price,
answered from the frames prepared at load, against lumibot's own path on the same frames.

The oracle is lumibot's ``DataBentoDataBacktestingPolars`` code run on a twin instance
(``PolarsData.get_historical_prices`` through lumibot's ``_pull_source_symbol_bars``
and ``Bars``, lumibot's ``get_last_price``): the same catalog, the same requests, every
``Bars`` equal in full (frame, dtypes, index, time zone, raw polars slice). That the
prepared path is the one taken is counted, never timed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

pytest.importorskip("lumibot", reason="needs the lumibot extra: pip install -e '.[lumibot]'")

import databento_sdk as sdk
from hypothesis import given, settings
from hypothesis import strategies as st
from lumibot.backtesting.databento_backtesting_polars import DataBentoDataBacktestingPolars
from lumibot.constants import LUMIBOT_DEFAULT_PYTZ as NY
from lumibot.data_sources import PolarsData
from lumibot.entities import Asset, Bars
from lumibot.entities.data_polars import DataPolars

import lazybars as lb
from lazybars.lumibot import LazyBarsDataBentoBacktesting
from lazybars.lumibot._prepared import utc_ns

MES = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
USD = Asset("USD", "forex")
# The backtest spans the MESH4 -> MESM4 roll (2024-03-05) and the switch to daylight
# saving time (2024-03-10 02:00 New York).
START, END = NY.localize(dt.datetime(2024, 3, 4)), NY.localize(dt.datetime(2024, 3, 11, 20))
SHIFTS = [
    None,
    0,
    1,
    -1,
    -2,
    3,
    True,
    dt.timedelta(0),
    dt.timedelta(minutes=-2),
    dt.timedelta(seconds=30),
    dt.timedelta(seconds=-90),
    dt.timedelta(hours=1),
    dt.timedelta(days=-1),
    dt.timedelta(days=1),
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MES's contracts around the March 2024 roll, minute, hour and day bars, from the
    stand-in."""
    path = tmp_path_factory.mktemp("catalog") / "cat"
    store = lb.BarStore(path)
    for contract in ("MESH4", "MESM4", "MESU4"):
        for schema, timestep in (("ohlcv-1m", "minute"), ("ohlcv-1h", "hour"), ("ohlcv-1d", "day")):
            bars = sdk.bars(contract, schema, "2024-02-20", "2024-03-14")
            store.write(contract, bars[["open", "high", "low", "close", "volume"]], timestep)
    return path


def twins(catalog: Path) -> tuple[LazyBarsDataBentoBacktesting, LazyBarsDataBentoBacktesting]:
    return tuple(LazyBarsDataBentoBacktesting(START, END, store=catalog) for _ in range(2))


def lumibots(data: LazyBarsDataBentoBacktesting, *args: Any, **kwargs: Any) -> Any:
    """lumibot's history answer: its PolarsData.get_historical_prices, its DataBento
    _pull_source_symbol_bars (this class's databento semantics defer to it) and Bars."""
    return PolarsData.get_historical_prices(data, *args, **kwargs)


def assert_same_bars(ours: Any, theirs: Any) -> None:
    if theirs is None:
        assert ours is None
        return
    assert type(ours) is type(theirs) is Bars
    a, b = ours.df, theirs.df
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_freq=True, check_flags=True)
    assert list(a.columns) == list(b.columns) and a.columns.dtype == b.columns.dtype
    assert str(a.index.tz) == str(b.index.tz) and a.index.name == b.index.name
    assert [blk.dtype for blk in a._mgr.blocks] == [blk.dtype for blk in b._mgr.blocks]
    assert all(blk.values.flags.writeable for blk in a._mgr.blocks)
    assert ours._raw.equals(theirs._raw)
    for name in ("source", "symbol", "asset", "quote", "_return_polars", "_tzinfo"):
        assert getattr(ours, name) == getattr(theirs, name), name


def requests(seed: int, count: int) -> list[tuple]:
    """Random requests at random clocks (sorted), some clocks asked several times over."""
    rng = np.random.default_rng(seed)
    minutes = np.sort(rng.choice(int((END - START).total_seconds() // 60), count))
    out = []
    for m in minutes:
        # Half the clocks as lumibot's backtest makes them (the start plus a timedelta,
        # its UTC offset not normalized across the switch), half localized.
        naive = START.replace(tzinfo=None) + dt.timedelta(minutes=int(m))
        clock = START + dt.timedelta(minutes=int(m)) if m % 2 else NY.localize(naive)
        kind = rng.random()
        if kind < 0.6:
            timestep = "minute"
        elif kind < 0.75:
            timestep = "hour"
        elif kind < 0.93:
            timestep = "day"
        else:
            timestep = [None, "5 minutes"][int(rng.integers(2))]
        length = int(rng.choice([1, 2, int(rng.integers(1, 400)), 3000]))
        asset = [MES, (MES, USD)][int(rng.random() < 0.1)]
        quote = USD if rng.random() < 0.2 else None
        shift = SHIFTS[int(rng.integers(len(SHIFTS)))]
        polars = bool(rng.random() < 0.05)
        out.append((clock, asset, length, timestep, shift, quote, polars))
        if rng.random() < 0.2:  # the same request again at the same clock: lumibot's cache
            out.append(out[-1])
    return out


def test_windows_and_last_prices_are_lumibots(catalog: Path) -> None:
    """Minute, hour and day windows of random lengths and timeshifts (every kind lumibot reads:
    minutes, timedeltas, sub-minute ones sharing a minute's cache entry), assets with and
    without a quote, at random clocks over a week crossing the roll and the daylight saving
    switch: every Bars and every last price equals lumibot's path's."""
    ours, theirs = twins(catalog)
    answered: Counter[str | None] = Counter()
    for clock, asset, length, timestep, shift, quote, polars in requests(11, 400):
        for data in (ours, theirs):
            data._datetime = clock
        mine = ours.get_historical_prices(
            asset, length, timestep, timeshift=shift, quote=quote, return_polars=polars
        )
        expected = lumibots(
            theirs, asset, length, timestep, timeshift=shift, quote=quote, return_polars=polars
        )
        if polars:
            assert mine.polars_df.equals(expected.polars_df)
        else:
            assert_same_bars(mine, expected)
        answered[timestep] += expected is not None and len(expected) > 1
        base = asset[0] if isinstance(asset, tuple) else asset
        assert ours.get_last_price(base) == DataBentoDataBacktestingPolars.get_last_price(
            theirs, base
        )
    assert answered["minute"] > 150 and answered["hour"] > 30 and answered["day"] > 30


def count(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[int]:
    calls = [0]
    original = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_hot_requests_take_the_prepared_path(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MES profile's requests a minute (200 minute bars, the broker's fill bar two
    minutes ahead, the last price) and day bars now and then: lumibot's window search and
    its Bars conversion of a polars frame run once per frame read (its preparation), not
    per request, and each frame is read once (a day request's start, in a weekend, leaves
    the frame uncovered: lumibot reads the same bounds again on every request)."""
    loads = count(monkeypatch, LazyBarsDataBentoBacktesting, "_frame")
    windows = count(monkeypatch, DataBentoDataBacktestingPolars, "_pull_source_symbol_bars")
    converted = [0]
    original = Bars.__init__

    def init(self: Bars, df: Any, *args: Any, **kwargs: Any) -> None:
        converted[0] += isinstance(df, pl.DataFrame)
        original(self, df, *args, **kwargs)

    monkeypatch.setattr(Bars, "__init__", init)
    data = LazyBarsDataBentoBacktesting(START, END, store=catalog)
    asked = 0
    for minute in range(0, 600, 1):
        data._datetime = START + dt.timedelta(hours=9, minutes=30 + minute)
        bars = data.get_historical_prices(MES, 200, "minute")
        fill = data.get_historical_prices(MES, 1, quote=USD, timeshift=dt.timedelta(minutes=-2))
        assert len(bars) == 200 and len(fill) == 1 and data.get_last_price(MES) is not None
        asked += 2
        if minute % 120 == 0:
            assert len(data.get_historical_prices(MES, 5, "day")) == 5
            asked += 1
    assert asked > 1000
    # A minute frame (read for 200 bars: the first request's) and a day frame, then the
    # minute frame again after the first day request replaced it, and the day frame again.
    assert loads[0] <= 4
    assert converted[0] == loads[0]
    assert windows[0] == 0


def test_a_window_is_the_callers_to_change(catalog: Path) -> None:
    """A window's arrays are its own, as lumibot's fresh conversions are: writing into one
    changes no later answer."""
    ours, theirs = twins(catalog)
    clock = NY.localize(dt.datetime(2024, 3, 6, 11, 0))
    for data in (ours, theirs):
        data._datetime = clock
    bars = ours.get_historical_prices(MES, 50, "minute")
    bars.df.loc[:, ["close", "return"]] = -1.0
    bars.df.loc[bars.df.index[0], "volume"] = 0
    ours._datetime = theirs._datetime = clock + dt.timedelta(minutes=1)
    again = ours.get_historical_prices(MES, 50, "minute")
    assert_same_bars(again, lumibots(theirs, MES, 50, "minute"))
    assert (again.df["close"] > 0).all()


_ZONES = st.sampled_from(
    [NY, zoneinfo.ZoneInfo("America/New_York"), dt.UTC, dt.timezone(dt.timedelta(hours=-5))]
)


@settings(max_examples=300, deadline=None)
@given(
    when=st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=_ZONES
    ),
    shift=st.timedeltas(min_value=-dt.timedelta(days=3), max_value=dt.timedelta(days=3)),
    localized=st.booleans(),
)
def test_utc_nanoseconds_are_lumibots(
    when: dt.datetime, shift: dt.timedelta, localized: bool
) -> None:
    """``utc_ns`` of an aware datetime, as lumibot's backtest clocks are (pytz-localized or
    shifted by a timedelta with their offset kept, zoneinfo, fixed offsets), equals
    lumibot's ``_datetime_to_utc_ns``."""
    if localized and when.tzinfo is NY:
        when = NY.localize(when.replace(tzinfo=None))
    for moment in (when, when - shift):
        assert utc_ns(moment) == DataBentoDataBacktestingPolars._datetime_to_utc_ns(moment)


def test_a_frame_whose_windows_are_not_its_slices_is_converted_per_window(
    catalog: Path,
) -> None:
    """A held frame with a missing close (polars fills it forward from before a window) is
    converted per window by lumibot's Bars: its windows still equal lumibot's."""
    when = pd.date_range("2024-03-04 14:30", periods=30, freq="1min", tz="UTC")
    close = [float(i) if i % 7 else None for i in range(1, 31)]
    frame = pl.DataFrame(
        {"datetime": when, "open": 1.0, "high": 2.0, "low": 0.5, "close": close, "volume": 1}
    )
    key = (MES, USD)
    ours, theirs = twins(catalog)
    for data in (ours, theirs):
        # Held as lumibot holds a prefetched asset's frame: never read again.
        data.pandas_data[key] = DataPolars(MES, df=frame, timestep="minute", quote=USD)
        data._cache_datetime_series(key, data.pandas_data[key])
        data._prefetched_assets.add(key)
        data._datetime = NY.localize(dt.datetime(2024, 3, 4, 9, 55))
    for length, shift in itertools.product((1, 5, 12), (None, -2)):
        assert_same_bars(
            ours.get_historical_prices(MES, length, "minute", timeshift=shift),
            lumibots(theirs, MES, length, "minute", timeshift=shift),
        )
    assert not ours._prepared[key].fast
