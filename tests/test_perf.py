"""The benchmarks' command lines (perf/): the flags the README names, and a clear exit when
an extra is missing. The benchmarks themselves never run in the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.stem for p in (ROOT / "perf").glob("bench_*.py"))
SCRIPTS = [*BENCHMARKS, "memory", "flamegraph"]


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False
    )


def _main(module: str, blocked: str = "") -> str:
    """Python code running ``perf.<module>`` as ``python -m`` does, ``blocked`` unimportable."""
    block = f"sys.modules[{blocked!r}] = None; " if blocked else ""
    return f"import runpy, sys; {block}runpy.run_module('perf.{module}', run_name='__main__')"


@pytest.mark.parametrize("module", SCRIPTS)
def test_every_benchmark_takes_quick_and_markdown(module: str) -> None:
    out = _run(_main(module), "--help")
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout
    assert "--markdown" in out.stdout


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("bench_ingest", "databento_dbn", "databento"),
        ("bench_s3", "obstore", "s3"),
        ("bench_sweep", "ray", "ray"),
        ("bench_databento", "lumibot", "lumibot"),
    ],
)
def test_a_missing_extra_is_named_with_its_pip_command(
    module: str, blocked: str, extra: str
) -> None:
    out = _run(_main(module, blocked), "--quick")
    assert out.returncode == 1
    assert f"pip install -e '.[{extra}]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_notebook_benchmark_runs_without_arcticdb() -> None:
    """ArcticDB is an optional peer: without it the benchmark still runs, prints the polars
    floor beside lazybars and one line naming the pip command, and exits 0."""
    out = _run(_main("bench_notebook", "arcticdb"), "--quick", "--markdown")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    assert sum("pip install -e '.[bench]'" in line for line in lines) >= 1
    header = next(line for line in lines if line.startswith("| workload"))
    assert "polars floor" in header
    assert "ArcticDB" not in header
    rows = [line for line in lines if line.startswith("| ") and line != header]
    assert any("as-of requests" in row for row in rows)
    assert any("the engine's floor" in row for row in rows)
    assert len(rows) == 7
