"""Every example script and notebook runs to completion, so the examples never rot."""

from __future__ import annotations

import runpy
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).parent.parent / "examples"
SCRIPTS = [p for p in sorted(EXAMPLES.glob("*.py")) if p.name != "build_notebook.py"]
# Scripts built on an optional extra: skipped, with the reason, where it is not installed.
NEEDS = {"lumibot_backtest.py": ("lumibot", "pip install -e '.[lumibot]'")}
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_example_script_runs(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if path.name in NEEDS:
        module, install = NEEDS[path.name]
        pytest.importorskip(module, reason=f"needs the {module} extra: {install}")
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_has_saved_outputs(path: Path) -> None:
    saved = nbformat.read(path, as_version=4)
    code = [c for c in saved.cells if c.cell_type == "code"]
    assert all(c.outputs for c in code), "save the notebook with its outputs"
    fresh = nbformat.read(path, as_version=4)
    NotebookClient(fresh, timeout=180, kernel_name="python3").execute()  # raises on any error
    for cell in fresh.cells:
        if cell.cell_type == "code":
            assert cell.outputs
            assert not [o for o in cell.outputs if o.output_type == "error"]


def test_there_are_examples() -> None:
    assert SCRIPTS
    assert NOTEBOOKS
