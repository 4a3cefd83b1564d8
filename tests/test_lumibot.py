"""lazybars.lumibot: LazyBarsBacktesting against lumibot's own PandasDataBacktesting.

The oracle is lumibot itself (4.6.x): the same Data, the same clocks, the same requests to
both data sources, and every answer must be equal, exactly; whole backtests must trade
identically. Strict semantics is checked against lazybars' plain pandas reference.
"""

import datetime as dt
import logging
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import polars as pl
import polars.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("lumibot", reason="needs the lumibot extra: pip install -e '.[lumibot]'")

from lumibot.backtesting import PandasDataBacktesting
from lumibot.constants import LUMIBOT_DEFAULT_PYTZ
from lumibot.entities import Asset, Data, Order
from lumibot.strategies import Strategy
from mutations import PANDAS_MUTATIONS

import lazybars as lb
from lazybars.lumibot import OFFLINE, LazyBarsBacktesting

MES = Asset("MES", asset_type="future")
SPY = Asset("SPY")
MINUTE_STEPS = ["minute", "5 minutes", "15min", "hour", "day", "2 hours", "30m", "7 minutes"]
SHIFTS = [0, 0, 0, 1, 3, -1, -2, None, dt.timedelta(minutes=7), dt.timedelta(hours=-2)]


@pytest.fixture(autouse=True)
def _quiet(tmp_path, monkeypatch):
    """lumibot logs every request and writes logs/ into the working directory."""
    monkeypatch.chdir(tmp_path)
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def pandas_bars(frame: pl.DataFrame) -> pd.DataFrame:
    return frame.to_pandas().set_index("datetime")


def clock(text: str) -> dt.datetime:
    return LUMIBOT_DEFAULT_PYTZ.localize(dt.datetime.fromisoformat(text))


def loaded(cls, datas, start, end, **options):
    """A data source over lumibot Data objects (fresh copies), loaded as a Strategy does."""
    pandas_data = [Data(asset, frame.copy(), timestep=step) for asset, frame, step in datas]
    source = cls(
        datetime_start=start,
        datetime_end=end,
        pandas_data=pandas_data,
        show_progress_bar=False,
        **options,
    )
    source.load_data()
    return source


def same_bars(want, got, polars_mode: bool) -> None:
    if want is None or got is None:
        assert want is None and got is None, (want, got)
    elif polars_mode:
        polars.testing.assert_frame_equal(got.df, want.df)
    else:
        # A resampled frame's index carries pandas' `freq`; lazybars does not set it.
        pd.testing.assert_frame_equal(got.df, want.df, check_exact=True, check_freq=False)


def same_values(a, b) -> bool:
    """Equal, NaN equal to NaN (quotes of rows before an asset's first close hold NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    nans = isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)
    return nans or a == b


def outcome(call):
    """A call's result, or the type of the exception it raised."""
    try:
        return call()
    except Exception as exc:
        return type(exc)


def same_answers(want, got, now, asset, length, step, shift, polars_mode, after_hours):
    """One request to both data sources at the clock ``now``: the same bars, last price
    and quote; returns lumibot's answer."""
    for source in (want, got):
        source._update_datetime(now)
    request = {"timeshift": shift, "return_polars": polars_mode}
    request["include_after_hours"] = after_hours
    a = want.get_historical_prices(asset, length, step, **request)
    b = got.get_historical_prices(asset, length, step, **request)
    context = (now, asset, step, length, shift, polars_mode)
    try:
        same_bars(a, b, polars_mode)
        price_a, price_b = want.get_last_price(asset), got.get_last_price(asset)
        assert same_values(price_a, price_b) or price_a is price_b is None
        assert type(price_a) is type(price_b)
        quote_a = outcome(lambda: want.get_quote(asset).raw_data)
        quote_b = outcome(lambda: got.get_quote(asset).raw_data)
        assert same_values(quote_a, quote_b), (quote_a, quote_b)
    except AssertionError as exc:
        raise AssertionError(f"{context}: {exc}") from None
    return a


def sweep(datas, start, end, steps, n=1200, seed=0, sub_minute=False, **options):
    """The same seeded random requests to PandasDataBacktesting and LazyBarsBacktesting."""
    want = loaded(PandasDataBacktesting, datas, start, end)
    got = loaded(LazyBarsBacktesting, datas, start, end, **options)
    assert got._date_index.equals(want._date_index)
    pd.testing.assert_frame_equal(got.get_trading_days_pandas(), want.get_trading_days_pandas())
    assert got._timestep == want._timestep
    rng = np.random.default_rng(seed)
    assets = [asset for asset, _, _ in datas]
    lo = want._date_index[0].value - 2 * 86_400_000_000_000
    hi = want._date_index[-1].value + 4 * 86_400_000_000_000
    seen = Counter()
    for _ in range(n):
        ns = int(rng.integers(lo, hi))
        ns = ns // 1000 * 1000 if sub_minute else ns // 60_000_000_000 * 60_000_000_000
        now = pd.Timestamp(ns, tz="UTC").tz_convert(LUMIBOT_DEFAULT_PYTZ).to_pydatetime()
        if rng.random() < 0.3:  # a clock the backtest really steps on
            now = want._date_index[int(rng.integers(len(want._date_index)))].to_pydatetime()
        asset = assets[int(rng.integers(len(assets)))]
        step = str(rng.choice(steps))
        length = int(rng.choice([1, 2, 3, 5, 20, 200]))
        shift = SHIFTS[int(rng.integers(len(SHIFTS)))]
        polars_mode = bool(rng.random() < 0.2)
        after_hours = bool(rng.random() < 0.8)
        a = same_answers(want, got, now, asset, length, step, shift, polars_mode, after_hours)
        seen[step if a is not None else "none"] += 1
    return seen


# -- parity: every request shape at random clocks ---------------------------------------------
def test_minute_data_across_the_spring_dst_week_two_sessions():
    # 24h futures and a regular-hours stock: the grid is the union of both sessions.
    mes = lb.synth.minute_bars("MES", start="2024-03-04", end="2024-03-16", session="24h")
    spy = lb.synth.minute_bars("SPY", start="2024-03-04", end="2024-03-16", price=500.0)
    datas = [(MES, pandas_bars(mes), "minute"), (SPY, pandas_bars(spy), "minute")]
    seen = sweep(datas, dt.datetime(2024, 3, 5), dt.datetime(2024, 3, 15), MINUTE_STEPS)
    # The sweep compared real frames of every timestep, not only Nones.
    assert all(seen[step] > 50 for step in MINUTE_STEPS), seen


def test_minute_data_across_the_autumn_dst_week():
    mes = lb.synth.minute_bars("MES", start="2024-10-28", end="2024-11-09", session="24h")
    seen = sweep(
        [(MES, pandas_bars(mes), "minute")],
        dt.datetime(2024, 10, 29),
        dt.datetime(2024, 11, 8),
        MINUTE_STEPS,
        seed=1,
    )
    assert seen["day"] > 50


@pytest.fixture(scope="module")
def dst_sources(tmp_path_factory):
    """Both data sources over a 24h future and a regular-hours stock with gaps, across the
    spring DST week (built once: hypothesis draws many requests against them)."""
    mes = lb.synth.minute_bars("MES", start="2024-03-06", end="2024-03-13", session="24h")
    spy = lb.synth.minute_bars("SPY", start="2024-03-06", end="2024-03-13", gaps=0.1)
    datas = [(MES, pandas_bars(mes), "minute"), (SPY, pandas_bars(spy), "minute")]
    start, end = dt.datetime(2024, 3, 7), dt.datetime(2024, 3, 12)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("lumibot"))  # lumibot writes logs/ there
        return loaded(PandasDataBacktesting, datas, start, end), loaded(
            LazyBarsBacktesting, datas, start, end
        )


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    minute=st.integers(0, 9 * 24 * 60),
    second=st.sampled_from([0, 0, 0, 1, 59]),
    asset=st.sampled_from([MES, SPY]),
    step=st.sampled_from(MINUTE_STEPS),
    length=st.integers(1, 300),
    shift=st.sampled_from(SHIFTS) | st.integers(-3, 5),
    polars_mode=st.booleans(),
    after_hours=st.booleans(),
)
def test_any_request_answers_as_lumibot(
    dst_sources, minute, second, asset, step, length, shift, polars_mode, after_hours
):
    want, got = dst_sources
    start = pd.Timestamp("2024-03-05", tz=LUMIBOT_DEFAULT_PYTZ)
    now = (start + pd.Timedelta(minutes=minute, seconds=second)).to_pydatetime()
    same_answers(want, got, now, asset, length, step, shift, polars_mode, after_hours)


def test_minute_data_with_gaps_and_clocks_between_minutes():
    spy = lb.synth.minute_bars("SPY", start="2024-01-02", end="2024-01-12", gaps=0.05)
    sweep(
        [(SPY, pandas_bars(spy), "minute")],
        dt.datetime(2024, 1, 3),
        dt.datetime(2024, 1, 11),
        ["minute", "5 minutes", "hour", "day"],
        n=600,
        seed=2,
        sub_minute=True,
    )


@pytest.mark.parametrize(
    "now", ["2024-01-04 16:00", "2024-01-04 16:01", "2024-01-04 09:30", "2024-01-05 00:00"]
)
@pytest.mark.parametrize("step", ["minute", "5 minutes", "hour", "day"])
def test_clocks_at_the_edges_of_a_session(now, step):
    # Regular hours only: at 16:00 the 15:59 bar has just closed and no bar starts.
    spy = lb.synth.minute_bars("SPY", start="2024-01-02", end="2024-01-06")
    datas = [(SPY, pandas_bars(spy), "minute")]
    start, end = dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 5)
    want, got = (
        loaded(cls, datas, start, end) for cls in (PandasDataBacktesting, LazyBarsBacktesting)
    )
    for shift in (0, -1, 1):
        same_answers(want, got, clock(now), SPY, 2, step, shift, False, True)


def test_daily_data():
    spy = lb.synth.daily_bars("SPY", start="2023-01-03", end="2024-03-01", price=400.0)
    seen = sweep(
        [(SPY, pandas_bars(spy), "day")],
        dt.datetime(2023, 6, 1),
        dt.datetime(2024, 2, 1),
        ["day", "2 days", "minute"],
        seed=3,
    )
    assert seen["day"] > 100 and seen["2 days"] > 100


def test_hourly_data():
    mes = lb.synth.hourly_bars("MES", start="2024-03-01", end="2024-03-20", session="24h")
    sweep(
        [(MES, pandas_bars(mes), "hour")],
        dt.datetime(2024, 3, 4),
        dt.datetime(2024, 3, 19),
        ["hour", "2 hours", "4h", "day", "minute"],
        n=600,
        seed=4,
    )


def test_fractional_volumes_sum_as_pandas_does():
    # pandas sums resampled volumes with Kahan compensation; so does lazybars.
    frame = lb.synth.minute_bars("BTC", start="2024-01-02", end="2024-01-06", session="24h")
    frame = frame.with_columns(pl.col("volume") / 7.3)
    btc, usd = Asset("BTC", asset_type="crypto"), Asset("USD", asset_type="forex")
    datas = [Data(btc, pandas_bars(frame), timestep="minute", quote=usd)]
    sources = [
        cls(
            datetime_start=dt.datetime(2024, 1, 2),
            datetime_end=dt.datetime(2024, 1, 5),
            pandas_data=datas,
            show_progress_bar=False,
        )
        for cls in (PandasDataBacktesting, LazyBarsBacktesting)
    ]
    for source in sources:
        source.load_data()
        source._update_datetime(clock("2024-01-04 13:37"))
    for step in ("5 minutes", "hour", "day"):
        a, b = (s.get_historical_prices(btc, 30, step, quote=usd) for s in sources)
        pd.testing.assert_frame_equal(b.df, a.df, check_exact=True, check_freq=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(10**12), 10**12) | st.floats(-1e6, 1e6), max_size=60))
def test_whole_number_sums_take_numpys_sum_only_where_it_is_exact(values):
    from lazybars.lumibot import _rules

    column = np.array(values, dtype=float)
    whole = _rules.whole_numbers(column)
    assert whole == all(float(v).is_integer() for v in values)
    names = ("volume",)
    fast = _rules.aggregate_rows({"volume": column}, names, 0, len(values), frozenset(names))
    if whole and values:
        assert fast == [_rules.kahan_sum(column.tolist())]
    assert not _rules.whole_numbers(np.array([2.0**52, 2.0**52]))  # the total reaches 2**53
    assert not _rules.whole_numbers(np.array([1.0, np.nan]))


def test_a_store_answers_as_the_same_pandas_data(tmp_path):
    mes = lb.synth.minute_bars("MES", start="2024-01-02", end="2024-01-10", session="24h")
    spy = lb.synth.minute_bars("SPY", start="2024-01-02", end="2024-01-10", price=500.0)
    catalog = lb.BarStore(tmp_path / "catalog")
    catalog.write("MES", mes)
    catalog.write("SPY", spy)
    start, end = dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 9)
    # A catalog is every symbol it holds, finest first (then by name).
    datas = [(MES, pandas_bars(mes), "minute"), (SPY, pandas_bars(spy), "minute")]
    want = loaded(PandasDataBacktesting, datas, start, end)
    for store in (catalog, str(tmp_path / "catalog")):
        got = LazyBarsBacktesting(
            datetime_start=start, datetime_end=end, store=store, show_progress_bar=False
        )
        got.load_data()
        assert got._date_index.equals(want._date_index)
        for now in ("2024-01-04 10:31", "2024-01-05 03:07", "2024-01-08 16:00"):
            for source in (want, got):
                source._update_datetime(clock(now))
            for asset in (MES, SPY):
                for step in ("minute", "15min", "day"):
                    a = want.get_historical_prices(asset, 50, step)
                    b = got.get_historical_prices(asset, 50, step)
                    same_bars(a, b, polars_mode=False)
                assert got.get_last_price(asset) == want.get_last_price(asset)
    # Assets map by symbol: a continuous future finds the stored MES.
    front = got.get_historical_prices(Asset("MES", asset_type="cont_future"), 5)
    assert front.df.equals(got.get_historical_prices(MES, 5).df)
    assert got.get_historical_prices(Asset("NQ"), 5) is None


def test_store_symbols_of_pairs():
    from lazybars.lumibot import store_symbol

    usd = Asset("USD", asset_type="forex")
    assert store_symbol(Asset("BTC", asset_type="crypto"), usd) == "BTC-USD"
    assert store_symbol(Asset("EUR", asset_type="forex"), usd) == "EUR-USD"
    assert store_symbol(Asset("MES", asset_type="future"), usd) == "MES"
    assert store_symbol(SPY, None) == "SPY"


def test_a_crypto_pair_from_a_store_as_from_pandas_data():
    frame = lb.synth.minute_bars("BTC", start="2024-01-02", end="2024-01-05", session="24h")
    btc, usd = Asset("BTC", asset_type="crypto"), Asset("USD", asset_type="forex")
    start, end = dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 4)
    want = PandasDataBacktesting(
        datetime_start=start,
        datetime_end=end,
        pandas_data=[Data(btc, pandas_bars(frame), timestep="minute", quote=usd)],
        show_progress_bar=False,
    )
    got = LazyBarsBacktesting(
        datetime_start=start,
        datetime_end=end,
        store=lb.BarStore.from_frames({"BTC-USD": frame}),
        show_progress_bar=False,
    )
    for source in (want, got):
        source.load_data()
        source._update_datetime(clock("2024-01-03 14:07"))
    for step in ("minute", "hour"):
        a, b = (s.get_historical_prices(btc, 10, step, quote=usd) for s in (want, got))
        same_bars(a, b, polars_mode=False)
    assert got.get_last_price(btc, quote=usd) == want.get_last_price(btc, quote=usd)


# -- the answers are lazy -----------------------------------------------------------------------
@pytest.fixture
def mes_source():
    mes = lb.synth.minute_bars("MES", start="2024-01-02", end="2024-01-06", session="24h")
    datas = [(MES, pandas_bars(mes), "minute")]
    source = loaded(LazyBarsBacktesting, datas, dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 5))
    source._update_datetime(clock("2024-01-04 10:31"))
    return source


def test_no_frame_is_built_until_one_is_read(mes_source, monkeypatch):
    from lazybars.lumibot import _bars, _series

    built = Counter()
    for owner in (_series.Series, _bars._Rows):
        real = owner.rows if owner is _series.Series else owner.pandas
        name = "rows" if owner is _series.Series else "pandas"

        def counted(*args, _real=real, _name=name):
            built[_name] += 1
            return _real(*args)

        monkeypatch.setattr(owner, name, counted)
    bars = mes_source.get_historical_prices(MES, 200, "minute")
    five = mes_source.get_historical_prices(MES, 20, "5 minutes")
    assert len(bars) == 200 and not bars.empty and len(five) == 20
    assert bars.get_last_price() == mes_source.get_historical_prices(MES, 1).get_last_price()
    assert np.isfinite(bars.get_momentum(5)) and np.isfinite(five.get_momentum(3))
    assert bars._pandas_cache is None and five._pandas_cache is None and not built
    # The first .df builds the frame, once; .pandas_df is the same frame.
    frame = bars.df
    assert frame is bars.df is bars.pandas_df and built == {"rows": 1}
    assert five.df is five.df and built == {"rows": 1, "pandas": 1}
    assert len(frame) == 200 and len(five.df) == 20


def test_return_polars_never_builds_pandas(mes_source, monkeypatch):
    from lazybars.lumibot import _bars, _series

    def refuse(*args):
        raise AssertionError("a pandas frame was built")

    for owner in (_bars.SliceAnswer, _bars.TableAnswer, _series.Series):
        monkeypatch.setattr(owner, "pandas", refuse)
    for step in ("minute", "5 minutes", "day"):
        bars = mes_source.get_historical_prices(MES, 30, step, return_polars=True)
        assert isinstance(bars.df, pl.DataFrame) and bars.df is bars.polars_df
        assert bars.df.columns[0] == "datetime" and bars.get_last_price() > 0


def test_a_frame_assigned_to_bars_replaces_the_answer(mes_source):
    # lumibot's Strategy resamples some answers and assigns the result to `bars.df`.
    bars = mes_source.get_historical_prices(MES, 10)
    bars.df = bars.df.iloc[:3]
    assert len(bars) == 3 and len(bars.polars_df) == 3


@pytest.mark.isolation
@pytest.mark.parametrize("semantics", ["lumibot", "strict"])
@pytest.mark.parametrize("step", ["minute", "5 minutes", "day"])
def test_changing_a_returned_frame_changes_no_later_answer(semantics, step, copy_on_write):
    """Values, columns and the axes' names and freq, changed in a first answer and in a
    repeat of it (coarse answers keep their last rows for repeats): no later answer moves."""
    mes = lb.synth.minute_bars("MES", start="2024-01-02", end="2024-01-06", session="24h")
    datas = [(MES, pandas_bars(mes), "minute")]
    start, end = dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 5)
    mine, untouched = (
        loaded(LazyBarsBacktesting, datas, start, end, semantics=semantics) for _ in range(2)
    )
    # A new answer for each mutation, the untouched ones all asked before any change.
    first = clock("2024-01-04 10:31")
    clocks = [first + dt.timedelta(minutes=7 * i) for i in range(len(PANDAS_MUTATIONS))]
    wants = []
    for now in clocks:
        untouched._update_datetime(now)
        wants.append(untouched.get_historical_prices(MES, 30, step).df.copy(deep=True))
    for now, mutate, want in zip(clocks, PANDAS_MUTATIONS, wants, strict=True):
        mine._update_datetime(now)
        mutate(mine.get_historical_prices(MES, 30, step).df)
        mutate(mine.get_historical_prices(MES, 30, step).df)
        got = mine.get_historical_prices(MES, 30, step).df
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=mutate.__name__)


# -- lumibot sees the data source it knows --------------------------------------------------------
def test_it_is_a_pandas_data_backtesting_to_lumibot(mes_source):
    assert isinstance(mes_source, PandasDataBacktesting)
    assert mes_source.SOURCE == "PANDAS"
    # lumibot keys pure-pandas behaviour on this name (calendar, daily stepping, end date).
    assert type(mes_source).__name__ == "PandasDataBacktesting"
    assert "LazyBarsBacktesting" in repr(type(mes_source))
    assert list(mes_source._data_store) == mes_source.get_assets()


def test_refusals():
    frame = pandas_bars(lb.synth.minute_bars("MES", end="2024-01-04"))
    start, end = dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3)
    with pytest.raises(lb.InvalidRequest, match="either pandas_data"):
        LazyBarsBacktesting(datetime_start=start, datetime_end=end)
    with pytest.raises(lb.InvalidRequest, match="semantics"):
        LazyBarsBacktesting(start, end, pandas_data=[Data(MES, frame)], semantics="fast")
    quoted = frame.assign(bid=frame["close"], ask=frame["close"])
    with pytest.raises(lb.InvalidRequest, match="quote columns"):
        LazyBarsBacktesting(start, end, pandas_data=[Data(MES, quoted)])
    with pytest.raises(lb.InvalidRequest, match="holds no symbols"):
        LazyBarsBacktesting(start, end, store=lb.BarStore.from_frames({}))
    with pytest.raises(lb.SchemaError):
        LazyBarsBacktesting(start, end, pandas_data=[Data(MES, frame.assign(close=np.nan))])


def test_import_lazybars_never_imports_lumibot():
    # lazybars._lumibot_cache reads lumibot's cache files without lumibot: only lumibot's
    # own modules count.
    code = (
        "import sys, lazybars; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lumibot'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_doctests_are_collected_without_lumibot():
    # With lumibot's import blocked, collecting lazybars/ must skip lazybars.lumibot cleanly.
    code = (
        "import sys; sys.modules['lumibot'] = None; import pytest; sys.exit(pytest.main("
        "['--collect-only', '-q', '-o', 'addopts=--doctest-modules -p no:cacheprovider', "
        "'lazybars']))"
    )
    root = __file__.rsplit("/tests/", 1)[0]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "lazybars/lumibot" not in out.stdout and "lazybars/source.py" in out.stdout


# -- whole backtests: identical fills and final values ------------------------------------------
class _Breakout(Strategy):
    """Two assets on 5-minute bars: stop entries at the range's edge, limit exits."""

    def initialize(self):
        self.sleeptime = "5M"

    def on_trading_iteration(self):
        for asset in (MES, SPY):
            bars = self.get_historical_prices(asset, 12, "5 minutes")
            if bars is None or len(bars) < 12:
                continue
            if any(order.asset == asset and order.is_active() for order in self.get_orders()):
                continue
            df = bars.df
            position = self.get_position(asset)
            if position is None or position.quantity == 0:
                side = "buy" if df["return"].iloc[-6:].sum() > 0 else "sell"
                edge = df["high"].max() if side == "buy" else df["low"].min()
                self.submit_order(self.create_order(asset, 2, side, stop_price=edge))
            else:
                side = "sell" if position.quantity > 0 else "buy"
                target = df["close"].iloc[-1] * (1.002 if side == "sell" else 0.998)
                order = self.create_order(
                    asset, abs(float(position.quantity)), side, limit_price=round(target * 4) / 4
                )
                self.submit_order(order)


class _Rotation(Strategy):
    """Daily bars: hold whichever asset has the better 5-day momentum, market orders."""

    def initialize(self):
        self.sleeptime = "1D"

    def on_trading_iteration(self):
        momentum = {}
        for asset in (MES, SPY):
            bars = self.get_historical_prices(asset, 6, "day")
            if bars is None or len(bars) < 6:
                return
            momentum[asset] = bars.get_momentum(5)
        best = max(momentum, key=momentum.get)
        for asset in (MES, SPY):
            position = self.get_position(asset)
            if asset != best and position is not None and position.quantity != 0:
                self.submit_order(self.create_order(asset, abs(float(position.quantity)), "sell"))
        position = self.get_position(best)
        if position is None or position.quantity == 0:
            quantity = int(30_000 // self.get_last_price(best))
            self.submit_order(self.create_order(best, quantity, "buy"))


class _Bracket(Strategy):
    """Minute clock, 15-minute bars: long or short against the last bar, 2:1 brackets."""

    def initialize(self):
        self.sleeptime = "1M"
        self.set_market("us_futures")

    def on_trading_iteration(self):
        bars = self.get_historical_prices(MES, 8, "15 minutes")
        if bars is None or len(bars) < 8:
            return
        position = self.get_position(MES)
        busy = any(order.is_active() for order in self.get_orders())
        if busy or (position is not None and position.quantity != 0):
            return
        df = bars.df
        price = self.get_last_price(MES)
        spread = float((df["high"] - df["low"]).mean())
        sign = 1 if df["close"].iloc[-1] < df["close"].mean() else -1
        order = self.create_order(
            MES,
            1,
            "buy" if sign > 0 else "sell",
            order_class=Order.OrderClass.BRACKET,
            secondary_limit_price=round((price + sign * spread) * 4) / 4,
            secondary_stop_price=round((price - sign * spread / 2) * 4) / 4,
        )
        self.submit_order(order)


def backtest(source_class, strategy, datas, start, end, **options):
    pandas_data = [Data(asset, frame.copy(), timestep=step) for asset, frame, step in datas]
    _, done = strategy.run_backtest(
        source_class,
        start,
        end,
        pandas_data=pandas_data,
        **OFFLINE,
        **options,
    )
    log = done.broker._trade_event_log_df
    fills = log[log["status"] == "fill"]
    rows = fills[["time", "symbol", "side", "type", "price", "filled_quantity"]]
    return rows.reset_index(drop=True), done.portfolio_value, done.cash


def _minute_pair(end: str) -> list:
    mes = lb.synth.minute_bars("MES", start="2024-01-02", end=end, session="24h")
    spy = lb.synth.minute_bars("SPY", start="2024-01-02", end=end, price=470.0)
    return [(MES, pandas_bars(mes), "minute"), (SPY, pandas_bars(spy), "minute")]


def _daily_pair() -> list:
    mes = lb.synth.daily_bars("MES", start="2023-01-03", end="2024-01-02")
    spy = lb.synth.daily_bars("SPY", start="2023-01-03", end="2024-01-02", price=400.0)
    return [(MES, pandas_bars(mes), "day"), (SPY, pandas_bars(spy), "day")]


BACKTESTS = {
    "two assets, stop entries and limit exits, long and short": (
        _Breakout,
        lambda: _minute_pair("2024-01-06"),
        dt.datetime(2024, 1, 3),
        dt.datetime(2024, 1, 5),
        {"stop", "limit"},
    ),
    "daily data, market orders, daily stepping": (
        _Rotation,
        _daily_pair,
        dt.datetime(2023, 2, 1),
        dt.datetime(2023, 12, 1),
        {"market"},
    ),
    "brackets long and short on 15-minute bars": (
        _Bracket,
        lambda: _minute_pair("2024-01-04")[:1],
        dt.datetime(2024, 1, 2, 12),
        dt.datetime(2024, 1, 3, 6),
        {"market", "limit", "stop"},
    ),
}


@pytest.mark.parametrize("case", BACKTESTS)
def test_whole_backtests_trade_identically(case):
    strategy, datas, start, end, kinds = BACKTESTS[case]
    datas = datas()
    want = backtest(PandasDataBacktesting, strategy, datas, start, end)
    got = backtest(LazyBarsBacktesting, strategy, datas, start, end)
    pd.testing.assert_frame_equal(got[0], want[0])
    assert got[1:] == want[1:]
    fills = want[0]
    assert len(fills) >= 10 and {str(t.value) for t in fills["type"]} == kinds
    assert set(fills["side"].astype(str)) >= {"buy", "sell"}


# -- data lumibot repairs ------------------------------------------------------------------------
def repaired_by_lumibot(bars: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """Bars with what lumibot's PandasData repairs and lazybars' store refuses: NaN closes
    (the first ones before any close), opens and whole price rows, NaN and negative
    volumes, and repeated timestamps (a second row, with another close, right after the
    first)."""
    df = bars.copy()
    df.iloc[:3, df.columns.get_loc("close")] = np.nan  # nothing before them to fill them
    df.iloc[1, df.columns.get_loc("open")] = np.nan
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.arange(5, len(df)), size=len(df) // 40, replace=False)
    close, opens, prices, no_volume, negative = np.array_split(rows, 5)
    at = df.columns.get_loc
    df.iloc[close, at("close")] = np.nan
    df.iloc[opens, at("open")] = np.nan
    df.iloc[prices, [at("high"), at("low"), at("close")]] = np.nan
    df.iloc[no_volume, at("volume")] = np.nan
    df.iloc[negative, at("volume")] *= -1
    again = df.iloc[rng.choice(len(df), size=len(df) // 100, replace=False)]
    both = pd.concat([df, again.assign(close=again["close"] + 1.0)])
    return both.iloc[np.argsort(both.index.asi8, kind="stable")]


REPAIRED = {
    "minute": (
        lambda: lb.synth.minute_bars("MES", start="2024-01-02", end="2024-01-12", session="24h"),
        MES,
        ["minute", "5 minutes", "15min", "hour", "day"],
        (dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 11)),
    ),
    "day": (
        lambda: lb.synth.daily_bars("SPY", start="2023-01-03", end="2024-03-01", price=400.0),
        SPY,
        ["day", "2 days"],
        (dt.datetime(2023, 6, 1), dt.datetime(2024, 2, 1)),
    ),
}


@pytest.mark.parametrize("timestep", REPAIRED)
def test_data_lumibot_repairs_is_answered_as_lumibot_answers(timestep):
    """get_historical_prices (every timestep, shift, mode), get_last_price and quotes."""
    bars, asset, steps, (start, end) = REPAIRED[timestep]
    datas = [(asset, repaired_by_lumibot(pandas_bars(bars())), timestep)]
    with pytest.warns(lb.RepairedBarsWarning) as warned:
        seen = sweep(datas, start, end, steps, n=500, seed=5)
    assert all(seen[step] > 30 for step in steps), seen
    [message] = [str(w.message) for w in warned]
    for found in ("repeated rows at [", "NaN prices at [", "NaN volume at [", "negative volume"):
        assert found in message, message


def test_a_backtest_on_data_lumibot_repairs_trades_identically():
    datas = [(a, repaired_by_lumibot(f), step) for a, f, step in _minute_pair("2024-01-06")]
    start, end = dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 5)
    want = backtest(PandasDataBacktesting, _Breakout, datas, start, end)
    with pytest.warns(lb.RepairedBarsWarning):
        got = backtest(LazyBarsBacktesting, _Breakout, datas, start, end)
    pd.testing.assert_frame_equal(got[0], want[0])
    assert got[1:] == want[1:] and len(want[0]) >= 10


@pytest.mark.parametrize(
    "damage",
    [
        lambda df: df.assign(close=df["close"].where(df.index != df.index[9])),
        lambda df: df.assign(volume=-df["volume"]),
        lambda df: df.assign(volume=df["volume"].where(df.index != df.index[3])),
        lambda df: pd.concat([df.iloc[:5], df.iloc[4:]]),
    ],
    ids=["nan-close", "negative-volume", "nan-volume", "repeated-row"],
)
def test_strict_semantics_refuses_what_lumibot_repairs(damage):
    frame = damage(pandas_bars(lb.synth.minute_bars("MES", end="2024-01-04")))
    start, end = dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3)
    with pytest.raises(lb.SchemaError):
        LazyBarsBacktesting(start, end, pandas_data=[Data(MES, frame)], semantics="strict")


@pytest.mark.parametrize("timestep", REPAIRED)
def test_clocks_over_the_rows_before_the_first_close(timestep):
    # lumibot drops those rows from its answers and skips their NaN prices in buckets.
    bars, asset, steps, _ = REPAIRED[timestep]
    frame = repaired_by_lumibot(pandas_bars(bars()))
    first = frame.index[0].tz_convert(LUMIBOT_DEFAULT_PYTZ)
    start, end = first.to_pydatetime().replace(tzinfo=None), dt.datetime(2024, 1, 5)
    with pytest.warns(lb.RepairedBarsWarning):
        want, got = (
            loaded(cls, [(asset, frame, timestep)], start, end)
            for cls in (PandasDataBacktesting, LazyBarsBacktesting)
        )
    unit = pd.Timedelta(minutes=1) if timestep == "minute" else pd.Timedelta(days=1)
    answers = Counter()
    for k in range(9):
        now = (first + k * unit + pd.Timedelta(seconds=30 * (k % 2))).to_pydatetime()
        for step in steps:
            for length, shift in ((1, 0), (3, 0), (5, 1), (2, -1)):
                a = same_answers(want, got, now, asset, length, step, shift, False, True)
                answers["none" if a is None else len(a)] += 1
    assert answers[0] and answers["none"] and sum(answers.values()) > answers[0] + answers["none"]


# -- strict semantics ---------------------------------------------------------------------------
def test_strict_answers_are_lazybars_rule_against_the_plain_reference():
    mes = lb.synth.minute_bars("MES", start="2024-03-04", end="2024-03-16", session="24h")
    spy = lb.synth.daily_bars("SPY", start="2024-01-02", end="2024-03-16", price=400.0)
    datas = [(MES, pandas_bars(mes), "minute"), (SPY, pandas_bars(spy), "day")]
    start, end = dt.datetime(2024, 3, 5), dt.datetime(2024, 3, 15)
    got = loaded(LazyBarsBacktesting, datas, start, end, semantics="strict")
    store = lb.BarStore.from_frames({"MES": mes})
    store.write("SPY", spy, timestep="day")
    want = lb.reference.PandasDataSource(store)
    rng = np.random.default_rng(7)
    lo, hi = got._date_index[0].value, got._date_index[-1].value
    compared = 0
    for _ in range(400):
        ns = int(rng.integers(lo, hi)) // 60_000_000_000 * 60_000_000_000
        now = pd.Timestamp(ns, tz="UTC").tz_convert(LUMIBOT_DEFAULT_PYTZ).to_pydatetime()
        asset, step = [(MES, "minute"), (MES, "5 minutes"), (MES, "hour"), (SPY, "day")][
            int(rng.integers(4))
        ]
        length, shift = int(rng.choice([1, 5, 50])), int(rng.choice([0, 0, 2, -1]))
        after_hours = bool(rng.random() < 0.7) or asset is SPY
        got._update_datetime(now)
        want.set_datetime(now)
        bars = got.get_historical_prices(
            asset, length, step, timeshift=shift, include_after_hours=after_hours
        )
        ts = {"minute": "1m", "5 minutes": "5m", "hour": "1h", "day": "1d"}[step]
        ref = want.get_historical_prices(asset.symbol, length, ts, shift or None, after_hours)
        assert got.get_last_price(asset) == want.get_last_price(asset.symbol)
        if bars is None:
            assert ref.empty
            continue
        columns = ["open", "high", "low", "close", "volume"]
        assert bars.df[columns].to_numpy().tolist() == ref.df[columns].to_numpy().tolist()
        assert list(bars.df.index.asi8) == list(ref.df.index.asi8)
        compared += 1
    assert compared > 200


def test_the_documented_differences_between_the_semantics():
    mes = lb.synth.minute_bars("MES", start="2024-01-02", end="2024-01-06", session="24h", gaps=0.2)
    spy = lb.synth.daily_bars("SPY", start="2023-12-01", end="2024-01-06", price=400.0)
    datas = [(MES, pandas_bars(mes), "minute"), (SPY, pandas_bars(spy), "day")]
    start, end = dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 5)
    lumi = loaded(LazyBarsBacktesting, datas, start, end)
    strict = loaded(LazyBarsBacktesting, datas, start, end, semantics="strict")
    now = clock("2024-01-04 10:31")
    for source in (lumi, strict):
        source._update_datetime(now)
    minutes = lumi.get_historical_prices(MES, 3).df
    # Last price: the open of the bar starting at the clock vs the last ended bar's close.
    forming = mes.filter(pl.col("datetime") <= pd.Timestamp(now)).tail(1)
    assert lumi.get_last_price(MES) == forming["open"][0]
    assert strict.get_last_price(MES) == strict.get_historical_prices(MES, 1).df["close"].iloc[0]
    # Day bars: visible on their own date vs once the day has ended.
    assert lumi.get_historical_prices(SPY, 1, "day").df.index[-1].day == 4
    assert strict.get_historical_prices(SPY, 1, "day").df.index[-1].day == 3
    # Missing minutes: forward-filled onto lumibot's grid vs only the stored bars.
    assert list(minutes.index.minute) == [28, 29, 30]
    stored = strict.get_historical_prices(MES, 30).df.index
    assert len(stored) == 30 and stored.to_series().diff().max() > pd.Timedelta("1min")
    # include_after_hours: ignored vs honoured.
    morning = lumi.get_historical_prices(MES, 5, include_after_hours=False).df
    assert morning.index[0].hour == 10
    regular = strict.get_historical_prices(MES, 5, "hour", include_after_hours=False).df
    assert all(t.hour >= 9 for t in regular.index)
    # A timeshift counts rows of the data vs bars of the requested timestep.
    one_row = lumi.get_historical_prices(MES, 3, "15min", timeshift=1).df.index[-1]
    one_bar = strict.get_historical_prices(MES, 3, "15min", timeshift=1).df.index[-1]
    assert (one_row.hour, one_row.minute, one_bar.hour, one_bar.minute) == (10, 15, 10, 0)


def test_a_strict_backtest_runs_in_lumibots_engine():
    strategy, datas, start, end, _ = BACKTESTS["brackets long and short on 15-minute bars"]
    fills, value, _ = backtest(
        LazyBarsBacktesting, strategy, datas(), start, end, semantics="strict"
    )
    assert len(fills) >= 10 and np.isfinite(value)
    daily, *_ = BACKTESTS["daily data, market orders, daily stepping"][1:4]
    fills, value, _ = backtest(
        LazyBarsBacktesting,
        _Rotation,
        daily(),
        dt.datetime(2023, 2, 1),
        dt.datetime(2023, 4, 1),
        semantics="strict",
    )
    # Daily market orders fill at the open of the day they are placed on.
    assert len(fills) >= 4 and all(t.hour == 0 for t in fills["time"])
