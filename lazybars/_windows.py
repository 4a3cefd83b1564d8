"""Row windows of a cached pandas frame for callers to keep, put together from its parts.

A request's ``.df`` is rows ``[start, stop)`` of its asset's pandas mirror. Taken with
``frame.iloc[start:stop]`` that costs 8-9 us, most of it in pandas' indexing machinery
(slicing the DatetimeIndex alone takes 3-5 us), not in the hundred rows. :class:`Windows`
takes a frame apart once, when the mirror is built: its blocks, the datetime64 values under
its index, its columns. A window is then put together from those in about 4 us: a block
per frame block over the rows, a DatetimeIndex over the rows' values, a columns Index of
its own, a block manager and the frame.

Isolation (DESIGN.md): where writes to a view copy (always on pandas 3; on pandas 2 once
the caller turns copy-on-write on) a window's blocks are views sharing the frame's
reference tracking, as ``.iloc`` makes them. On pandas 2 without copy-on-write, where a
view's writes would reach the cache, they are copies of the rows. Either way the axes are
the window's own: naming them, or setting the index's ``freq`` (which pandas 2 keeps on the
index's array), shows in no other frame. The index's values are shared, as an ``.iloc``
window shares them.

This uses pandas internals (block managers, ``_simple_new``), as in pandas 2.3 and 3.1.
Whether they still behave is checked once per process, on a small frame against ``.iloc``;
if they do not, or for a frame that is not plain numpy blocks under a DatetimeIndex without
freq, a window is an ``.iloc`` slice (copied where views are not isolated).
"""

from __future__ import annotations

import functools
from datetime import UTC

import numpy as np
import pandas as pd

try:
    from pandas.core.internals.managers import BlockManager

    _INTERNALS = hasattr(pd.DataFrame, "_from_mgr")
except ImportError:  # another layout: the public way below
    _INTERNALS = False

try:
    # 50 ns a call, where pd.get_option takes 1 us: it is asked on every window.
    from pandas._config import using_copy_on_write
except ImportError:  # not a pandas 2.x layout

    def using_copy_on_write() -> bool:
        return pd.get_option("mode.copy_on_write") is True


__all__ = ["Windows"]

_ALWAYS_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3


class Windows:
    """Row windows of one pandas frame, for callers to keep and change.

    Parameters
    ----------
    frame
        The frame to hand out rows of. It must not change while windows are taken.
    """

    __slots__ = (
        "_blocks",
        "_columns",
        "_dates",
        "_frame",
        "_name",
        "_parts",
        "_references",
        "_values",
    )

    def __init__(self, frame: pd.DataFrame) -> None:
        index = frame.index
        plain = (
            _INTERNALS
            and type(index) is pd.DatetimeIndex
            and index.freq is None  # as a mirror's: a window's own index has none either
            and all(type(b.values) is np.ndarray and b.values.ndim == 2 for b in frame._mgr.blocks)
        )
        self._take_apart(frame, fast=plain and _internals_work())

    def _take_apart(self, frame: pd.DataFrame, *, fast: bool) -> None:
        self._frame = frame
        self._columns = frame.columns
        self._blocks = frame._mgr.blocks if fast else None
        if fast:
            self._parts = tuple((type(b), b.values, b.mgr_locs) for b in self._blocks)
            self._dates = frame.index._data
            self._values = frame.index._data._ndarray
            self._name = frame.index.name
            self._references = frame.index._references

    def rows(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``[start, stop)`` as a new frame: a view where writes to it copy (pandas 3,
        or pandas 2 with copy-on-write on), else a copy sharing no memory with the frame."""
        if _ALWAYS_COPY_ON_WRITE or using_copy_on_write():
            return self.view(start, stop)
        return self.copy(start, stop)

    def copy(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``[start, stop)``, copied: nothing done to them reaches the frame."""
        if self._blocks is None:
            return self._frame.iloc[start:stop].copy()
        # A list comprehension, not a generator: tuple() of a generator costs 0.3 us more.
        blocks = [
            kind(values[:, start:stop].copy(), placement=placement, ndim=2)
            for kind, values, placement in self._parts
        ]
        return self._assemble(tuple(blocks), start, stop)

    def view(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ``[start, stop)`` as a view (only isolated where writes copy), axes its own."""
        if self._blocks is None:
            rows = self._frame.iloc[start:stop]
            rows.columns = self._columns.view()  # pandas 2 shares the frame's otherwise
            return rows
        window = slice(start, stop)
        return self._assemble(
            tuple([b.slice_block_rows(window) for b in self._blocks]), start, stop
        )

    def _assemble(self, blocks: tuple, start: int, stop: int) -> pd.DataFrame:
        # A new DatetimeArray over the rows' values (no freq), so the index's freq and name
        # are this window's; it shares the frame index's reference tracking, as a slice
        # does. `_view` shares the columns' lookup table, not their name.
        dates = self._dates._from_backing_data(self._values[start:stop])
        index = pd.DatetimeIndex._simple_new(dates, self._name, self._references)
        manager = BlockManager(blocks, [self._columns._view(), index], verify_integrity=False)
        return pd.DataFrame._from_mgr(manager, manager.axes)


@functools.cache
def _internals_work() -> bool:
    """Whether windows put together from a frame's parts equal its ``.iloc`` windows here
    (asked once per process; False sends every window through ``.iloc``)."""
    if not _INTERNALS:
        return False
    n = 6
    # tz-aware and without freq, as a mirror's index (a tzinfo object: no zone lookup).
    index = pd.DatetimeIndex(np.arange(n, dtype=np.int64).view("M8[ns]"), name="datetime")
    frame = pd.DataFrame(
        {
            "open": np.linspace(1.0, 2.0, n),
            "even": np.arange(n) % 2 == 0,
            "count": np.arange(n, dtype=np.int64),
        },
        index=index.tz_localize(UTC),
    )
    probe = Windows.__new__(Windows)
    want = frame.iloc[1:4]
    try:
        probe._take_apart(frame, fast=True)
        copied, viewed = probe.copy(1, 4), probe.view(1, 4)
    except Exception:  # any failure means: do not use them
        return False
    original = frame["open"].to_numpy()
    return (
        all(
            type(got.index) is pd.DatetimeIndex
            and got.equals(want)  # values, dtypes and labels; then the rest of the axes
            and got.index.dtype == want.index.dtype
            and got.index.name == want.index.name
            and got.index.freq is None
            and got.columns.equals(want.columns)
            for got in (copied, viewed)
        )
        and not np.shares_memory(copied["open"].to_numpy(), original)
        and np.shares_memory(viewed["open"].to_numpy(), original)
    )
