"""Test-wide settings, and the S3-compatible server the object-storage tests run against."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

# pandas 3 keeps string labels in pyarrow arrays, and pyarrow's default allocator reserves
# about 1 GiB of address space on first use; memray counts that reservation as allocated
# memory, which would swamp every limit_memory marker. The system allocator reports the
# real allocations. (The README's memray section gives users the same advice.)
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# Any Ray cluster a test starts (tests/test_sweep.py) stays on this machine: Ray binds every
# server to 127.0.0.1 only when it believes it runs a single-machine cluster, a choice made
# when ray is first imported, hence here (before the doctest of lazybars/_ray.py imports
# it). No usage statistics are sent, and the cluster's token comes from the environment
# instead of being written to ~/.ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))


# Modules whose tests share a scratch directory or a costly session fixture (a Ray cluster,
# a three-year catalog): one pytest-xdist worker runs each whole, in order; every other
# test goes to whichever worker is free. (xdist's own xdist_group marks are not honoured
# with pytest 9, which ignores the node ids xdist rewrites for them.)
WHOLE_MODULES = frozenset({"tests/test_readme.py", "tests/test_sweep.py", "tests/test_memory.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # memray's limits count every thread of the process, and a worker that ran other tests
    # may still hold busy polars threads: memory-limited tests (and the whole modules they
    # are in) run first, in a fresh process.
    items.sort(key=lambda item: item.get_closest_marker("limit_memory") is None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load":
        return None  # an explicit --dist mode is xdist's own
    from xdist.scheduler import LoadScopeScheduling

    class WholeModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in WHOLE_MODULES else nodeid

    return WholeModules(config, log)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """moto's S3 on 127.0.0.1, started once for the session and stopped after it."""
    pytest.importorskip(
        "obstore", reason="s3:// catalogs need the s3 extra: pip install 'lazybars[s3]'"
    )
    pytest.importorskip(
        "moto.server", reason="the S3 tests need moto's server: pip install 'lazybars[s3-test]'"
    )
    import s3_server

    server = s3_server.S3Server()
    yield server
    server.stop()


@pytest.fixture(params=["disk", "s3"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An empty catalog in a directory, or under a new bucket on the test S3 server."""
    import catalogs

    return catalogs.make(request.param, request, tmp_path / "catalog")


# pandas is not imported here: it imports pyarrow, which must first see the pool set above.
@pytest.fixture(
    params=[False, True] if version("pandas") < "3" else [None], ids=lambda on: f"cow={on}"
)
def copy_on_write(request: pytest.FixtureRequest) -> Iterator[bool | None]:
    """pandas 2 with copy-on-write off (its default, iloc views share memory) and on; on
    pandas 3, which always copies on write, the one setting (None)."""
    if request.param is None:
        yield None
        return
    import pandas as pd

    with pd.option_context("mode.copy_on_write", request.param):
        yield request.param
