"""Row windows of a pandas frame put together from its parts: equal to pandas' own ``.iloc``
windows, copies or views as isolation needs, axes their own, and ``.iloc`` where the parts
cannot be used."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from mutations import PANDAS_MUTATIONS, mutation_id

import lazybars._windows as windows_module
from lazybars._windows import Windows

NY = "America/New_York"
N = 50
SPANS = [(0, N), (10, 20), (49, 50), (5, 5)]


def _frame(columns: dict[str, object]) -> pd.DataFrame:
    index = pd.DatetimeIndex(
        pd.date_range("2024-03-09 22:00", periods=N, freq="min", tz=NY).asi8.view("M8[ns]")
    )
    index = index.tz_localize("UTC").tz_convert(NY).rename("datetime")  # no freq, as a mirror
    return pd.DataFrame(columns, index=index, copy=True)


def _mixed() -> pd.DataFrame:
    frame = _frame(
        {
            "open": np.linspace(1, 2, N),
            "count": np.arange(N, dtype=np.int64),
            "label": [f"x{i}" for i in range(N)],
            "close": np.linspace(3, 4, N),
            "flag": np.arange(N) % 2 == 0,
        }
    )
    # Objects, not pandas 3's string dtype (an extension array, not a numpy block).
    frame["label"] = frame["label"].astype(object)
    return frame


def _ohlcv() -> pd.DataFrame:
    names = ("open", "high", "low", "close", "volume")
    return _frame({c: np.linspace(i, i + 1, N) for i, c in enumerate(names)})


def _shares_memory(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return any(
        np.shares_memory(a[c].to_numpy(), b[c].to_numpy())
        for c in a.columns
        if a[c].dtype != object
    )


def test_the_parts_are_used_on_this_pandas() -> None:
    """pandas 2.2-3.x: windows are put together from the parts, not sliced with ``.iloc``."""
    assert windows_module._internals_work()
    assert Windows(_mixed())._blocks is not None


def _refuse(*args: object, **kwargs: object) -> None:
    msg = "not this pandas' BlockManager"
    raise TypeError(msg)


def _first_rows(self: Windows, start: int, stop: int) -> pd.DataFrame:
    return self._frame.iloc[: stop - start].copy()  # the right shape, the wrong rows


@pytest.mark.parametrize(
    ("owner", "name", "broken"),
    [(windows_module, "BlockManager", _refuse), (Windows, "copy", _first_rows)],
    ids=["raises", "wrong-rows"],
)
def test_internals_that_fail_the_check_are_not_used(monkeypatch, owner, name, broken) -> None:
    monkeypatch.setattr(owner, name, broken)
    windows_module._internals_work.cache_clear()
    try:
        assert not windows_module._internals_work()
        assert Windows(_ohlcv())._blocks is None
    finally:
        windows_module._internals_work.cache_clear()


@pytest.mark.isolation
@pytest.mark.parametrize("make", [_ohlcv, _mixed])
def test_copies_equal_iloc_copies_and_share_no_memory(make: Callable[[], pd.DataFrame]) -> None:
    frame = make()
    # A column subset has its blocks in another order than its columns.
    for columns in (list(frame.columns), list(frame.columns)[::-2]):
        part = frame[columns].copy()
        windows = Windows(part)
        for start, stop in SPANS:
            got = windows.copy(start, stop)
            pd.testing.assert_frame_equal(got, part.iloc[start:stop].copy(), check_freq=True)
            assert not _shares_memory(got, part)
            if stop > start:  # a write into the copy's own values ...
                got.iloc[0, got.columns.get_loc("open")] = -1.0
        pd.testing.assert_frame_equal(part, frame[columns])  # ... never reaches the frame


@pytest.mark.isolation
@pytest.mark.parametrize("make", [_ohlcv, _mixed])
def test_views_equal_iloc_views(make: Callable[[], pd.DataFrame], copy_on_write) -> None:
    frame = make()
    windows = Windows(frame)
    for start, stop in SPANS:
        got = windows.view(start, stop)
        pd.testing.assert_frame_equal(got, frame.iloc[start:stop], check_freq=True)
        if stop > start:
            assert _shares_memory(got, frame)
    if copy_on_write is not False:  # where writes to a view copy, it is isolated
        first, second = windows.view(0, N), windows.view(10, 20)
        first["open"] *= 2
        second.iloc[0, 0] = -1.0
        pd.testing.assert_frame_equal(frame, make())


@pytest.mark.isolation
@pytest.mark.parametrize("mutate", PANDAS_MUTATIONS, ids=mutation_id)
def test_changing_a_window_changes_no_other_one(
    mutate: Callable[[pd.DataFrame], None], copy_on_write
) -> None:
    """Values, columns and the axes' names and freq: each window is the caller's alone."""
    frame = _ohlcv()
    windows = Windows(frame)
    mutate(windows.rows(0, 30))
    mutate(windows.rows(10, 40))
    pd.testing.assert_frame_equal(windows.rows(5, 35), _ohlcv().iloc[5:35], check_exact=True)
    pd.testing.assert_frame_equal(frame, _ohlcv(), check_exact=True)


def _with_freq() -> pd.DataFrame:
    frame = _ohlcv()
    frame.index = pd.date_range("2024-01-02", periods=N, freq="min", tz=NY, name="datetime")
    return frame


def _range_index() -> pd.DataFrame:
    return _ohlcv().reset_index(drop=True)


def _categorical() -> pd.DataFrame:
    return _ohlcv().assign(label=pd.Categorical(["a", "b"] * (N // 2)))


@pytest.mark.isolation
@pytest.mark.parametrize("make", [_with_freq, _range_index, _categorical])
def test_other_frames_get_iloc_windows(make: Callable[[], pd.DataFrame], copy_on_write) -> None:
    """A frame that is not plain numpy blocks under a DatetimeIndex without freq."""
    frame = make()
    windows = Windows(frame)
    assert windows._blocks is None
    for start, stop in SPANS:
        pd.testing.assert_frame_equal(windows.copy(start, stop), frame.iloc[start:stop].copy())
        pd.testing.assert_frame_equal(windows.view(start, stop), frame.iloc[start:stop])
    windows.rows(0, N).columns.name = "field"
    assert frame.columns.name is None


@pytest.mark.isolation
def test_without_the_parts_windows_are_iloc_windows(monkeypatch, copy_on_write) -> None:
    """If the check of pandas' internals fails, every window goes through ``.iloc``."""
    monkeypatch.setattr(windows_module, "_internals_work", lambda: False)
    frame = _mixed()
    windows = Windows(frame)
    assert windows._blocks is None
    for start, stop in SPANS:
        got = windows.rows(start, stop)
        pd.testing.assert_frame_equal(got, frame.iloc[start:stop])
        if stop > start:
            got.iloc[0, 0] = -1.0
        got.columns.name = "field"
    pd.testing.assert_frame_equal(frame, _mixed())
