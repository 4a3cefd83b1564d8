"""The spill of a bulk ingest: a killed ingest's folder is removed by the next ingest into
the same catalog, a live ingest's folder never."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lazybars as lb
from lazybars._spill import remove_stale

# An ingest that spills the bars of its first source, says so, then waits on its second.
LIVE_INGEST = """
import sys
from types import SimpleNamespace
import lazybars as lb

frame = lb.synth.minute_bars("A", "2024-01-02", "2024-01-03").to_pandas().set_index("datetime")

class Waiting:
    asset = SimpleNamespace(symbol="B")
    timestep = "minute"
    reads = 0

    @property
    def df(self):
        self.reads += 1
        if self.reads > 1:  # the first read is the check that it is a Data object
            print("spilled", flush=True)
            sys.stdin.readline()
        return frame

first = SimpleNamespace(asset=SimpleNamespace(symbol="A"), timestep="minute", df=frame)
lb.ingest_into(sys.argv[1], first, Waiting(), buffer_rows=1)
"""


def spills(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(".ingest-"))


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_killed_ingests_spill_is_removed_by_the_next_not_a_live_ones(tmp_path: Path) -> None:
    root = tmp_path / "cat"
    source = tmp_path / "MES.csv"
    lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03").write_csv(source)
    here = Path(lb.__file__).parents[1]
    with subprocess.Popen(
        [sys.executable, "-c", LIVE_INGEST, str(root)],
        cwd=here,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "spilled"
            live = [p for p in spills(root) if p.is_dir()]
            assert len(live) == 1 and any(live[0].iterdir())
            lb.ingest_into(root, source)  # another ingest, while the first one runs
            assert live[0].is_dir() and any(live[0].iterdir())
        finally:
            child.kill()
    assert live[0].is_dir()  # SIGKILL: the ingest could not clean up
    lb.ingest_into(root, source)
    assert spills(root) == []
    assert lb.BarStore(root).symbols() == ["MES"]


def test_remove_stale_leaves_other_hidden_entries(tmp_path: Path) -> None:
    (tmp_path / ".ingest-notes").mkdir()  # no lock file: not a spill of this design
    (tmp_path / ".hidden.lock").write_text("")
    remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden.lock", ".ingest-notes"]
