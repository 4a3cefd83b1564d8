"""`lazybars demo`: writes a catalog, backtests on both backends, reports identical trades."""

from __future__ import annotations

import builtins
import importlib.util
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import lazybars as lb
from lazybars.cli import SYMBOLS, ZONE, app


def _demo(tmp_path: Path, *extra: str) -> str:
    result = CliRunner().invoke(app, ["demo", "--data", str(tmp_path), "--days", "1", *extra])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo catalog, written once for the tests that only need one to exist."""
    root = tmp_path_factory.mktemp("demo")
    _demo(root)
    return root


def test_demo_backtests_both_backends_identically(tmp_path: Path) -> None:
    output = _demo(tmp_path)
    assert "identical trades: yes" in output
    assert "pandas reference" in output
    assert "MomentumStrategy" in output
    store = lb.BarStore(tmp_path)
    assert store.symbols() == sorted(SYMBOLS)
    # A second run reuses the catalog instead of rewriting it.
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    _demo(tmp_path)
    assert before == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}


def test_demo_rejects_bad_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--data", str(tmp_path), "--days", "0"])
    assert result.exit_code != 0


def test_plot_without_matplotlib_says_how_to_get_it(
    catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    output = _demo(catalog, "--plot", str(tmp_path / "eq.png"))
    assert "pip install 'lazybars[plot]'" in output
    assert not (tmp_path / "eq.png").exists()


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_plot_writes_a_png_with_labelled_axes_and_the_zone(
    catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lazybars import _plot

    figures = []

    def kept(*args: object, **kwargs: object) -> object:
        figures.append(equity_figure(*args, **kwargs))
        return figures[-1]

    equity_figure = _plot.equity_figure
    monkeypatch.setattr(_plot, "equity_figure", kept)
    _demo(catalog, "--plot", str(tmp_path / "eq.png"))
    assert (tmp_path / "eq.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax,) = figures[0].axes
    assert ax.get_ylabel() == "equity"
    assert ax.get_xlabel() == f"time ({ZONE})"
    assert [line.get_label() for line in ax.get_lines()] == ["lazybars", "pandas reference"]


def test_default_demo_replays_a_week_and_says_so_in_help() -> None:
    # The pandas reference takes about a second per replayed day on an idle machine: the
    # default keeps the Quickstart's demo well under a minute.
    days = next(p for p in typer.main.get_command(app).commands["demo"].params if p.name == "days")
    assert days.default == 5
    help_text = _unwrapped(CliRunner().invoke(app, ["demo", "--help"]).output)
    assert "Trading days to replay" in help_text


COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
# Sphinx/RST markup that means nothing in a terminal: ``literal``, :role:`target`, directives.
RST = re.compile(r"``|:[a-z]+:`|^\s*\.\. [a-z-]+::", re.MULTILINE)


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=["lazybars", *COMMANDS])
def test_help_is_plain_terminal_text(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert not RST.search(result.output), result.output
    assert "Usage: " in result.output


def _unwrapped(panel: str) -> str:
    """Help text with rich's panel borders and line wrapping taken out."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", panel).split())


def test_help_keeps_brackets_and_summarises_each_command() -> None:
    top = _unwrapped(CliRunner().invoke(app, ["--help"]).output)
    assert "OHLCV bar history for backtesters and notebooks, on polars." in top
    assert "Backtest a momentum strategy on lazybars and on the pandas reference." in top
    demo = _unwrapped(CliRunner().invoke(app, ["demo", "--help"]).output)
    assert "pip install 'lazybars[plot]'" in demo  # not swallowed as a markup tag
