"""lazybars.lumibot: LazyBarsDataBentoBacktesting against lumibot's own DataBentoDataBacktesting.

The oracle is lumibot 4.6 itself, run offline on the DataBento SDK stand-in
(``tests/databento_sdk.py``): a strategy trading five continuous futures (MES, ES, MNQ, NQ,
GC) on minute bars, with day bars asked now and then, over a roll of the equity index
futures. lazybars' class then runs the same strategy from the cache folder lumibot's run
wrote, with the stand-in replaced by one that refuses every request: every answer, fill,
multiplier, cash and portfolio value must be equal.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lumibot", reason="needs the lumibot extra: pip install -e '.[lumibot]'")

import databento_sdk as sdk
import pandas_market_calendars as mcal  # a lumibot dependency
from lumibot.backtesting import DataBentoDataBacktesting
from lumibot.constants import LUMIBOT_DEFAULT_PYTZ
from lumibot.entities import Asset
from lumibot.strategies import Strategy

import lazybars as lb
from lazybars.futures import CalendarRule
from lazybars.lumibot import OFFLINE, LazyBarsDataBentoBacktesting

ROOTS = ("MES", "ES", "MNQ", "NQ", "GC")
# The backtest crosses the equity index roll (MESH4 -> MESM4 on 2024-03-05 00:05 New York).
START = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 4, 18, 0))
END = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 5, 1, 0))
MINUTES = 420
# A daily backtest over three weeks around the same roll.
DAYS = (
    LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 2, 26)),
    LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 15)),
)
# Clocks at which every window asked is recorded in full (a seeded draw of iterations).
CHECKED = frozenset(np.random.default_rng(20).choice(MINUTES, 60, replace=False).tolist())


def gold_rule() -> CalendarRule:
    """lumibot's gold roll rule (README, "Continuous futures"): CME's trade-date holidays."""
    valid = mcal.get_calendar("CME_TradeDate").valid_days("2023-01-01", "2025-12-31")
    weekdays = pd.bdate_range("2023-01-01", "2025-12-31").date
    holidays = set(weekdays) - {d.date() for d in valid}
    return CalendarRule(
        anchor="month_start", months=(2, 4, 6, 8, 10, 12), utc_offset="roll_day", holidays=holidays
    )


def rows(frame: Any) -> list[tuple]:
    """A bars frame as comparable rows: start (UTC ns) and the OHLCV values as floats."""
    df = frame.df if hasattr(frame, "df") else frame
    index = pd.DatetimeIndex(df.index).tz_convert("UTC").as_unit("ns").asi8
    values = df[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
    return [(int(t), *map(float, v)) for t, v in zip(index, values, strict=True)]


class _Futures(Strategy):
    """Every minute, for each root: 20 minute bars and the last price; now and then five
    day bars. Long one contract when the close is above the window's mean, flat below."""

    parameters: ClassVar[dict[str, Any]] = {"checked": CHECKED}

    def initialize(self):
        self.sleeptime = "1M"
        self.set_market("us_futures")
        self.assets = [Asset(root, asset_type=Asset.AssetType.CONT_FUTURE) for root in ROOTS]
        self.seen: list[tuple] = []
        self.fills: list[tuple] = []
        self.values: list[tuple] = []
        self.count = 0

    def on_trading_iteration(self):
        now = self.get_datetime()
        full = self.count in self.parameters["checked"]
        self.count += 1
        for asset in self.assets:
            bars = self.get_historical_prices(asset, 20, "minute")
            price = self.get_last_price(asset)
            window = rows(bars) if bars is not None else None
            self.seen.append(
                (now, asset.symbol, price, window if full or window is None else window[-1:])
            )
            if full:
                # Strategy.get_quote passes exchange=, which this class does not take.
                quote = self.broker.data_source.get_quote(asset)
                self.seen.append((now, asset.symbol, "quote", quote.price, quote.volume))
            if full and self.count % 3 == 0:
                days = self.get_historical_prices(asset, 5, "day")
                self.seen.append(
                    (now, asset.symbol, "day", rows(days) if days is not None else None)
                )
                # lumibot's class keeps one frame per asset: the next minute request reloads.
            if window is None or len(window) < 20:
                continue
            mean = sum(r[4] for r in window) / len(window)
            position = self.get_position(asset)
            held = position is not None and position.quantity != 0
            if any(o.asset == asset and o.is_active() for o in self.get_orders()):
                continue
            if window[-1][4] > mean and not held:
                self.submit_order(self.create_order(asset, 1, "buy"))
            elif window[-1][4] < mean and held:
                self.submit_order(self.create_order(asset, 1, "sell"))
        self.values.append((now, float(self.get_cash()), float(self.get_portfolio_value())))

    def on_filled_order(self, position, order, price, quantity, multiplier):
        when = self.get_datetime()
        self.fills.append(
            (when, order.asset.symbol, order.side, float(price), float(quantity), multiplier)
        )


class _Daily(Strategy):
    """Daily stepping on day bars: long one contract while the close is above the close
    four bars before, flat otherwise."""

    def initialize(self):
        self.sleeptime = "1D"
        self.set_market("us_futures")
        self.assets = [Asset(root, asset_type=Asset.AssetType.CONT_FUTURE) for root in ROOTS]
        self.seen: list[tuple] = []
        self.fills: list[tuple] = []
        self.values: list[tuple] = []

    def on_trading_iteration(self):
        now = self.get_datetime()
        for asset in self.assets:
            bars = self.get_historical_prices(asset, 5, "day")
            window = rows(bars) if bars is not None else None
            self.seen.append((now, asset.symbol, self.get_last_price(asset), window))
            if window is None or len(window) < 5:
                continue
            position = self.get_position(asset)
            held = position is not None and position.quantity != 0
            if window[-1][4] > window[0][4] and not held:
                self.submit_order(self.create_order(asset, 1, "buy"))
            elif window[-1][4] < window[0][4] and held:
                self.submit_order(self.create_order(asset, 1, "sell"))
        self.values.append((now, float(self.get_cash()), float(self.get_portfolio_value())))

    on_filled_order = _Futures.on_filled_order


def run(source_class, strategy_class=_Futures, start=START, end=END, **options) -> Strategy:
    _, strategy = strategy_class.run_backtest(
        source_class,
        start,
        end,
        budget=1_000_000,
        **OFFLINE,
        **options,
    )
    return strategy


@pytest.fixture(scope="module")
def backtests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """lumibot's run on the stand-in, then lazybars' run on the cache folder it wrote."""
    home = tmp_path_factory.mktemp("databento")
    cache = home / "cache"
    logging.disable(logging.WARNING)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(home)
            sdk.install(patch, cache)
            lumibot = run(DataBentoDataBacktesting)
            daily = run(DataBentoDataBacktesting, _Daily, *DAYS)
            requests = list(sdk.Historical.requests)

            class Refusing(sdk.Historical):
                def __init__(self, key: str | None = None, **_: Any) -> None:
                    msg = "lazybars' class must not reach DataBento"
                    raise AssertionError(msg)

            for module in ("databento_helper", "databento_helper_polars"):
                patch.setattr(f"lumibot.tools.{module}.Historical", Refusing)
            ours = run(
                LazyBarsDataBentoBacktesting,
                cache_folder=cache,
                multipliers=sdk.MULTIPLIERS,
                rolls={"GC": gold_rule()},
            )
            ours_daily = run(
                LazyBarsDataBentoBacktesting,
                _Daily,
                *DAYS,
                cache_folder=cache,
                multipliers=sdk.MULTIPLIERS,
                rolls={"GC": gold_rule()},
            )
    finally:
        logging.disable(logging.NOTSET)
    return {
        "lumibot": lumibot,
        "lazybars": ours,
        "lumibot daily": daily,
        "lazybars daily": ours_daily,
        "requests": requests,
        "cache": cache,
    }


def test_lumibot_runs_offline_on_the_stand_in(backtests: dict[str, Any]) -> None:
    requests = backtests["requests"]
    asked = {(name, schema) for name, schema, _, _ in requests}
    # Every root's front contracts, as minute and day bars, and their definitions.
    for contract in ("MESH4", "MESM4", "ESH4", "NQH4", "MNQM4", "GCJ4"):
        assert (contract, "ohlcv-1m") in asked, contract
    assert {schema for _, schema in asked} == {"ohlcv-1m", "ohlcv-1d", "definition"}
    layouts = {p.parent.name for p in backtests["cache"].rglob("*.parquet")}
    assert layouts == {"databento_polars"}
    lumibot = backtests["lumibot"]
    assert len(lumibot.fills) > 20
    # The multipliers came from the stand-in's definition records.
    assert {a.symbol: a.multiplier for a in lumibot.assets} == {
        root: sdk.MULTIPLIERS[root] for root in ROOTS
    }


def test_every_answer_is_lumibots(backtests: dict[str, Any]) -> None:
    ours, theirs = backtests["lazybars"].seen, backtests["lumibot"].seen
    assert len(ours) == len(theirs) >= MINUTES * len(ROOTS)
    full = [s for s in theirs if s[2] not in ("day", "quote") and s[3] and len(s[3]) == 20]
    assert len(full) >= 50 * len(ROOTS)
    assert any(s[2] == "day" and s[3] for s in theirs)
    assert any(s[2] == "quote" and s[3] is not None for s in theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a == b


def test_the_roll_is_served_as_lumibot_serves_it(backtests: dict[str, Any]) -> None:
    """Around 2024-03-05 00:05 New York, MES's minute bars switch from MESH4 to MESM4,
    and the bar starting at the roll instant is in neither."""
    roll = pd.Timestamp("2024-03-05 00:05", tz="America/New_York").value
    h4 = sdk.bars("MESH4", "ohlcv-1m", "2024-03-05 04:00", "2024-03-05 06:00")
    m4 = sdk.bars("MESM4", "ohlcv-1m", "2024-03-05 04:00", "2024-03-05 06:00")
    closes = {
        "MESH4": dict(zip(h4.index.asi8, h4["close"], strict=True)),
        "MESM4": dict(zip(m4.index.asi8, m4["close"], strict=True)),
    }
    windows = [
        s[3] for s in backtests["lazybars"].seen if s[1] == "MES" and s[2] not in ("day", "quote")
    ]
    served = {r[0]: r[4] for w in windows if w for r in w}
    assert roll not in served
    before = [t for t in served if roll - 30 * 60_000_000_000 <= t < roll]
    after = [t for t in served if roll < t <= roll + 30 * 60_000_000_000]
    assert before and after
    assert all(served[t] == closes["MESH4"][t] for t in before)
    assert all(served[t] == closes["MESM4"][t] for t in after)


def test_fills_cash_and_values_are_lumibots(backtests: dict[str, Any]) -> None:
    ours, theirs = backtests["lazybars"], backtests["lumibot"]
    assert ours.fills == theirs.fills
    assert {f[1] for f in theirs.fills} == set(ROOTS)
    assert ours.values == theirs.values
    assert ours.get_portfolio_value() == theirs.get_portfolio_value()
    assert ours.get_cash() == theirs.get_cash()
    assert {a.symbol: a.multiplier for a in ours.assets} == {
        a.symbol: a.multiplier for a in theirs.assets
    }


def test_a_daily_backtest_is_lumibots(backtests: dict[str, Any]) -> None:
    ours, theirs = backtests["lazybars daily"], backtests["lumibot daily"]
    assert len(theirs.values) >= 10
    assert sum(1 for s in theirs.seen if s[3] is not None and len(s[3]) == 5) >= 40
    assert len(theirs.fills) >= 10
    assert ours.seen == theirs.seen
    assert ours.fills == theirs.fills
    assert ours.values == theirs.values
    assert [a.multiplier for a in ours.assets] == [sdk.MULTIPLIERS[r] for r in ROOTS]


def test_the_source_is_lumibots_kind(backtests: dict[str, Any]) -> None:
    source = backtests["lazybars"].broker.data_source
    assert isinstance(source, DataBentoDataBacktesting)
    assert source.SOURCE == "DATABENTO_POLARS"
    # Not pure pandas to lumibot: the backtest ends a minute early, on the futures calendar.
    assert source.datetime_end == END - dt.timedelta(minutes=1)
    assert backtests["lazybars"].values[-1][0] == backtests["lumibot"].values[-1][0]


# -- direct requests ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MES's contracts around the March 2024 roll, minute and day bars, from the stand-in."""
    path = tmp_path_factory.mktemp("catalog") / "cat"
    store = lb.BarStore(path)
    for contract in ("MESH4", "MESM4", "MESU4"):
        for schema, timestep in (("ohlcv-1m", "minute"), ("ohlcv-1d", "day")):
            bars = sdk.bars(contract, schema, "2024-02-20", "2024-03-12")
            store.write(contract, bars[["open", "high", "low", "close", "volume"]], timestep)
    return path


def source(catalog: Path, **options: Any) -> LazyBarsDataBentoBacktesting:
    start = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 4))
    end = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 8))
    return LazyBarsDataBentoBacktesting(start, end, store=catalog, **options)


def test_strict_semantics_hides_the_forming_day_bar(catalog: Path) -> None:
    mes = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
    now = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 6, 11, 0))
    answers = {}
    for semantics in ("databento", "strict"):
        data = source(catalog, semantics=semantics, multipliers={"MES": 5})
        data._datetime = now
        days = data.get_historical_prices(mes, 3, "day")
        minutes = data.get_historical_prices(mes, 3, "minute")
        answers[semantics] = (rows(days), rows(minutes), data.get_last_price(mes))
    today = pd.Timestamp("2024-03-06", tz="UTC").value
    # lumibot shows today's day bar (it started at midnight UTC); lazybars' rule waits for
    # its end. Minute bars and the last price agree: each bar has ended by the clock.
    assert answers["databento"][0][-1][0] == today
    assert answers["strict"][0][-1][0] == today - 86_400_000_000_000
    assert answers["databento"][0][:-1] == answers["strict"][0][1:]
    assert answers["databento"][1] == answers["strict"][1]
    assert answers["databento"][2] == answers["strict"][2] == answers["strict"][1][-1][4]
    assert mes.multiplier == 5


def test_bad_arguments_are_refused(catalog: Path) -> None:
    with pytest.raises(lb.InvalidRequest, match="semantics"):
        source(catalog, semantics="lumibot")
    start = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 4))
    with pytest.raises(lb.InvalidRequest, match="store="):
        LazyBarsDataBentoBacktesting(start, start + dt.timedelta(days=1))
    with pytest.raises(lb.InvalidRequest, match="rolls="):
        source(catalog, semantics="strict", rolls={"GC": gold_rule()})
    with pytest.raises(lb.InvalidRequest, match="store must be"):
        LazyBarsDataBentoBacktesting(start, start + dt.timedelta(days=1), store=42)


def test_the_cache_folder_fills_what_the_store_lacks(
    tmp_path: Path, backtests: dict[str, Any]
) -> None:
    from lazybars._lumibot_cache import read_cache

    cache = backtests["cache"]
    cached = read_cache(cache)
    store = lb.BarStore(tmp_path / "cat")
    # The store's own MESH4 minute bars: an hour of them, which the cache must not replace.
    mine = cached[("MESH4", "1m")].head(60)
    store.write("MESH4", mine, "minute")
    start = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 4))
    LazyBarsDataBentoBacktesting(
        start, start + dt.timedelta(days=1), store=store, cache_folder=cache
    )
    held = {(s, t) for s in store.symbols() for t in store.timesteps(s)}
    assert held == set(cached)
    assert store.scan("MESH4", "1m", timezone="UTC").collect().height == 60


@pytest.mark.parametrize(
    ("names", "prefetch"),
    [(ROOTS, False), (("MESM4",), False), (("MES", "GC"), True)],
    ids=["continuous", "dated", "prefetched"],
)
def test_requests_at_random_clocks_are_lumibots(
    names: tuple[str, ...], prefetch: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both data sources asked directly, without a backtest: minute and day windows of
    random lengths and timeshifts (the broker's -2 minutes among them) and last prices, at
    random clocks over a week around the roll, of the five roots (or of a dated contract);
    lazybars' from a catalog ingested from the
    cache folder lumibot's requests wrote."""
    monkeypatch.chdir(tmp_path)
    cache = sdk.install(monkeypatch, tmp_path / "cache")
    start = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 1))
    end = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 8))
    rng = np.random.default_rng(5)
    minutes = rng.choice(7 * 1440, 120, replace=False)
    clocks = sorted(start + dt.timedelta(minutes=int(m)) for m in minutes)
    shifts = [0, 0, 1, -2, dt.timedelta(minutes=-2), dt.timedelta(minutes=3), None]
    asks = [
        (
            clock,
            names[int(rng.integers(len(names)))],
            int(rng.integers(1, 300)),
            "day" if rng.random() < 0.2 else "minute",
            shifts[int(rng.integers(len(shifts)))],
        )
        for clock in clocks
    ]

    def answers(data: Any) -> list[tuple]:
        assets = {r: Asset(r, asset_type=Asset.AssetType.CONT_FUTURE) for r in ROOTS}
        # A dated contract: lumibot reads it under a two-digit year (MESM24).
        june = dt.date(2024, 6, 21)
        assets["MESM4"] = Asset("MES", asset_type=Asset.AssetType.FUTURE, expiration=june)
        if prefetch:  # lumibot's initialize_data_for_backtest: the whole backtest at once
            data.initialize_data_for_backtest([assets[name] for name in names])
        out = []
        for clock, root, length, timestep, shift in asks:
            data._datetime = clock
            try:
                bars = data.get_historical_prices(assets[root], length, timestep, timeshift=shift)
            except UnboundLocalError as error:
                # lumibot 4.6.30 on prefetched (pandas) data: databento_backtesting_polars.py
                # reads shift_seconds, which only its polars branch sets.
                window = repr(error)
            else:
                window = rows(bars) if bars is not None else None
            out.append((clock, root, window, data.get_last_price(assets[root])))
        return out

    theirs = answers(DataBentoDataBacktesting(start, end))
    contracts = {p.name.split("_")[0] for p in cache.rglob("*.parquet")}
    assert contracts == {"MESM24"} if names == ("MESM4",) else "MESM24" not in contracts
    lb.ingest_into(tmp_path / "cat", cache)
    monkeypatch.setattr("lumibot.tools.databento_helper_polars.Historical", None)
    ours = answers(
        LazyBarsDataBentoBacktesting(start, end, store=tmp_path / "cat", rolls={"GC": gold_rule()})
    )
    if prefetch:
        assert all("shift_seconds" in a[2] for a in theirs)
    else:
        assert sum(1 for a in theirs if a[2] and len(a[2]) > 1) > 90
    assert ours == theirs


def test_no_bars_is_none_not_a_download(catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where lumibot's class would ask DataBento for a last price (no bar in its frame),
    lazybars' answers None."""
    for module in ("databento_helper", "databento_helper_polars"):
        monkeypatch.setattr(f"lumibot.tools.{module}.Historical", None)
    start = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 4, 1))
    data = LazyBarsDataBentoBacktesting(start, start + dt.timedelta(days=2), store=catalog)
    data._datetime = start + dt.timedelta(hours=5)
    mes = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
    assert data.get_historical_prices(mes, 5, "minute") is None
    assert data.get_last_price(mes) is None


class _Mes(Strategy):
    """MES alone, every minute: long above the mean of 20 minute bars, flat below."""

    def initialize(self):
        self.sleeptime = "1M"
        self.set_market("us_futures")
        self.mes = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
        self.fills: list[tuple] = []
        self.values: list[tuple] = []

    def on_trading_iteration(self):
        bars = self.get_historical_prices(self.mes, 20, "minute")
        busy = any(o.is_active() for o in self.get_orders())
        if bars is not None and len(bars) == 20 and not busy:
            close = bars.df["close"]
            position = self.get_position(self.mes)
            held = position is not None and position.quantity != 0
            if close.iloc[-1] > close.mean() and not held:
                self.submit_order(self.create_order(self.mes, 1, "buy"))
            elif close.iloc[-1] < close.mean() and held:
                self.submit_order(self.create_order(self.mes, 1, "sell"))
        self.values.append((self.get_datetime(), float(self.get_portfolio_value())))

    on_filled_order = _Futures.on_filled_order


def test_a_strict_backtest_trades_minute_bars_as_lumibots_rule(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On minute bars both rules show the bars ended by the clock: a strict backtest trades
    as a databento one."""
    monkeypatch.chdir(catalog.parent)
    runs = {}
    for semantics in ("databento", "strict"):
        _, runs[semantics] = _Mes.run_backtest(
            LazyBarsDataBentoBacktesting,
            START,
            START + dt.timedelta(hours=2),
            budget=100_000,
            store=catalog,
            semantics=semantics,
            multipliers={"MES": 5},
            **OFFLINE,
        )
    assert len(runs["strict"].fills) >= 4
    assert runs["strict"].fills == runs["databento"].fills
    assert runs["strict"].values == runs["databento"].values


def test_multipliers_come_from_the_catalogs_definitions(tmp_path: Path) -> None:
    # Without multipliers=, a future's multiplier is the one its contracts' definition
    # records give (as lumibot's class reads DataBento's); multipliers= still wins.
    store = lb.BarStore(tmp_path / "cat")
    store.write_definitions(
        pd.DataFrame(
            {"raw_symbol": ["MESH4", "MESM4"], "instrument_id": [1, 2], "unit_of_measure_qty": 5.0}
        )
    )
    start = LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime(2024, 3, 4))
    end = start + dt.timedelta(days=1)
    defined = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
    LazyBarsDataBentoBacktesting(start, end, store=store)._ensure_futures_multiplier(defined)
    assert defined.multiplier == 5
    given = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
    src = LazyBarsDataBentoBacktesting(start, end, store=store, multipliers={"MES": 50})
    src._ensure_futures_multiplier(given)
    assert given.multiplier == 50
