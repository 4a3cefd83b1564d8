"""Row windows of a pandas 2.x frame for a caller to keep: copied, built from its blocks.

On pandas 2.x without copy-on-write an ``.iloc`` window is a view whose writes reach the
frame it views, so a ``.df`` window of a cached frame has to be a copy (see
:attr:`lazybars.Bars.df`). ``frame.iloc[a:b].copy()`` spends most of its ~15 us in pandas'
indexing machinery, not in copying a hundred rows; copying each block's rows and wrapping
them in a new block manager takes about 6 us. That uses pandas 2 internals, which the
maintenance-only 2.x series no longer changes: :func:`copied_rows` checks once that they
are there and falls back to ``iloc[...].copy()`` if not, or for frames whose blocks are not
plain 2-D numpy arrays. pandas 3 copies on write and never comes here.

A pandas 2 ``.iloc`` window also shares the frame's ``columns`` Index object, so naming it
(``df.columns.name = ...``) would name the frame's, and every later window's. Each window
here gets an Index of its own that shares the labels (``Index.view``, ~0.5 us); the row
index is sliced, a new Index over a new array (a shared array would share ``freq``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

try:
    from pandas._libs.internals import BlockPlacement
    from pandas.core.internals.blocks import new_block_2d
    from pandas.core.internals.managers import create_block_manager_from_blocks

    _INTERNALS = hasattr(pd.DataFrame, "_from_mgr")
except ImportError:  # not a pandas 2.x layout: the public way below
    _INTERNALS = False

try:
    # 50 ns a call, where pd.get_option takes 1 us: it is asked on every .df.
    from pandas._config import using_copy_on_write
except ImportError:  # not a pandas 2.x layout

    def using_copy_on_write() -> bool:
        return pd.get_option("mode.copy_on_write") is True


__all__ = ["copied_rows", "using_copy_on_write", "viewed_rows"]


def copied_rows(frame: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    """Rows ``[start, stop)`` of ``frame`` as a new frame sharing no memory with it."""
    blocks = frame._mgr.blocks
    if not _INTERNALS or not all(isinstance(b.values, np.ndarray) for b in blocks):
        return frame.iloc[start:stop].copy()
    rows = [
        new_block_2d(b.values[:, start:stop].copy(), placement=BlockPlacement(b.mgr_locs.indexer))
        for b in blocks
    ]
    axes = [frame.columns.view(), frame.index[start:stop]]
    manager = create_block_manager_from_blocks(
        rows, axes, consolidate=False, verify_integrity=False
    )
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)


def viewed_rows(frame: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    """Rows ``[start, stop)`` of ``frame`` as an ``.iloc`` view with axes of its own.

    For pandas 2 with copy-on-write on, where a caller's writes to the view copy.
    """
    rows = frame.iloc[start:stop]
    rows.columns = frame.columns.view()
    return rows
