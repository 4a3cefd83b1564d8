"""What a caller may do to a frame lazybars handed out: the isolation tests apply each one
and check that no later answer changes (DESIGN.md, "Isolation")."""

from __future__ import annotations

import pandas as pd


# -- values and columns ---------------------------------------------------------------------------
def _double_close(df: pd.DataFrame) -> None:
    df["close"] *= 2


def _new_column(df: pd.DataFrame) -> None:
    df["signal"] = 1.0


def _set_first_cell(df: pd.DataFrame) -> None:
    df.iloc[0, 0] = -1.0


def _overwrite_column(df: pd.DataFrame) -> None:
    df["open"] = -5.0


def _loc_assign(df: pd.DataFrame) -> None:
    df.loc[df.index[-1], "high"] = 1e9


def _delete_column(df: pd.DataFrame) -> None:
    del df["volume"]


def _pop_column(df: pd.DataFrame) -> None:
    df.pop("close")


def _rename_columns(df: pd.DataFrame) -> None:
    df.columns = [f"x{i}" for i in range(df.shape[1])]


def _update_values(df: pd.DataFrame) -> None:
    df.update(df[["low"]] * 0)


def _replace_index(df: pd.DataFrame) -> None:
    df.index = df.index[::-1]


# -- the axes' own metadata: a frame's Index objects may be shared where its values are not --
def _name_columns(df: pd.DataFrame) -> None:
    df.columns.name = "field"


def _name_index(df: pd.DataFrame) -> None:
    df.index.name = "when"


def _set_axes_names(df: pd.DataFrame) -> None:
    df.index.names = ["t"]
    df.columns.names = ["c"]


def _set_index_freq(df: pd.DataFrame) -> None:
    # pandas 2 keeps `freq` on the index's array, which a shallow Index copy shares.
    steps = set(df.index[1:] - df.index[:-1])
    df.index.freq = steps.pop() if len(steps) == 1 else "D" if len(df) == 1 else None


AXES_MUTATIONS = [_name_columns, _name_index, _set_axes_names, _set_index_freq]

PANDAS_MUTATIONS = [
    _double_close,
    _new_column,
    _set_first_cell,
    _overwrite_column,
    _loc_assign,
    _delete_column,
    _pop_column,
    _rename_columns,
    _update_values,
    _replace_index,
    *AXES_MUTATIONS,
]


def mutation_id(mutate: object) -> str:
    """A mutation's name as a test id."""
    return mutate.__name__.strip("_")
