"""`lazybars demo`: writes a catalog, replays both backends, reports identical answers."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import lazybars as lb
from lazybars.cli import SYMBOLS, app


def test_demo_replays_both_backends_identically(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data", str(tmp_path), "--days", "1"])
    assert result.exit_code == 0, result.output
    assert "identical: yes" in result.output
    assert "pandas reference" in result.output
    store = lb.BarStore(tmp_path)
    assert store.symbols() == sorted(SYMBOLS)
    # A second run reuses the catalog instead of rewriting it.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    again = CliRunner().invoke(app, ["demo", "--data", str(tmp_path), "--days", "1"])
    assert again.exit_code == 0, again.output
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}


def test_demo_rejects_bad_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data", str(tmp_path), "--days", "0"])
    assert result.exit_code != 0
