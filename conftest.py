"""Repository-wide pytest settings: doctests of optional extras skip when they are absent.

pytest collects ``lazybars/`` with ``--doctest-modules``, importing every module. An edge
module that imports its extra at the top is left out when the extra is not installed, and
docstring examples that use the extra are skipped with the pip command that brings it.
"""

from __future__ import annotations

import importlib.util

import pytest


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # sys.modules[name] is None: its import is blocked
        return False


_PLOT = _importable("matplotlib")

collect_ignore = [] if _PLOT else ["lazybars/_plot.py"]
if not _importable("ray"):
    collect_ignore.append("lazybars/_ray.py")
# lazybars.lumibot imports lumibot at the top (its tests skip themselves with the reason).
collect_ignore_glob = [] if _importable("lumibot") else ["lazybars/lumibot/*"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _PLOT:
        return
    skip = pytest.mark.skip(reason="charts need the plot extra: pip install 'lazybars[plot]'")
    for item in items:
        examples = getattr(getattr(item, "dtest", None), "examples", ())
        if any(".plot(" in example.source for example in examples):
            item.add_marker(skip)
