"""The README's code blocks run as written.

Every ```python block, and every ``lazybars ...`` line of a ```bash block (through the CLI,
in process), runs in README order in one scratch directory: ``data/bars`` lands there, and
a later section finds the catalog an earlier one wrote. Python names carry over within a
``##`` section. A command naming a file that neither the README nor this module writes (a
DataBento download, say) skips, naming it. A block preceded by
``<!-- readme-test: requires EXTRA -->`` skips without that extra, and one preceded by
``<!-- readme-test: skip: REASON -->`` never runs; any other block must run. The module
runs whole on one pytest-xdist worker (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import lazybars as lb
from lazybars.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = re.compile(r"<!-- readme-test: (?:requires (?P<extra>[\w-]+)|skip: (?P<skip>.+?)) -->")
# The module each extra of pyproject.toml brings.
EXTRAS = {
    "plot": "matplotlib",
    "ray": "ray",
    "lumibot": "lumibot",
    "s3": "obstore",
    "databento": "databento_dbn",
}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    section: str
    extra: str | None
    skip: str | None


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, with their section and readme-test marker."""
    found, section, lines = [], "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("```") and line.strip() != "```":
            end = lines.index("```", i + 1)
            before = next((p for p in reversed(lines[:i]) if p.strip()), "")
            mark = MARK.fullmatch(before.strip())
            found.append(
                Block(
                    line=i + 1,
                    lang=line[3:].strip(),
                    code="\n".join(lines[i + 1 : end]) + "\n",
                    section=section,
                    extra=mark and mark["extra"],
                    skip=mark and mark["skip"],
                )
            )
            i = end
        i += 1
    return found


BLOCKS = blocks(README.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Step:
    """A python block, or one command line of a bash block, in README order."""

    block: Block
    line: int  # in README.md
    command: str | None = None  # the bash line; None for a python block


STEPS = [
    step
    for block in BLOCKS
    for step in (
        [Step(block, block.line)]
        if block.lang == "python"
        else [
            Step(block, block.line + 1 + n, command)
            for n, command in enumerate(block.code.splitlines())
            if command.strip() and not command.lstrip().startswith("#")
        ]
    )
]


def test_every_block_is_python_or_bash_and_every_marker_is_known() -> None:
    text = README.read_text(encoding="utf-8")
    assert {b.lang for b in BLOCKS} == {"python", "bash"}
    assert len(MARK.findall(text)) == text.count("<!-- readme-test")  # no misspelt marker
    assert {b.extra for b in BLOCKS} - {None} <= set(EXTRAS)
    # Bash blocks that are not lazybars commands (installs, exports) say why they do not run.
    for step in STEPS:
        if step.command is not None and not (step.block.skip or step.block.extra):
            assert step.command.startswith("lazybars "), f"README.md:{step.line} is not marked"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The readers' working directory, with the files the README's commands ingest."""
    root = tmp_path_factory.mktemp("readme")
    # The March bars that "Using it" writes, as a user's files would hold them.
    frames = lb.synth.catalog(["MES", "MNQ"], "2024-03-01", "2024-04-01")
    (root / "downloads").mkdir()
    for symbol, frame in frames.items():  # naive New York wall times, hence --tz
        naive = frame.with_columns(pl.col("datetime").dt.replace_time_zone(None))
        naive.write_csv(root / "downloads" / f"{symbol}.csv")
    mes = frames["MES"]
    mes.write_csv(root / "mes-march.csv")  # ISO 8601 with offsets: nothing else needed
    mes.select(pl.lit("MES.c.0").alias("symbol"), pl.all()).write_csv(root / "flat.csv")
    return root


NAMESPACES: dict[str, dict] = {}


@pytest.fixture
def in_scratch(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(scratch)
    return scratch


@pytest.mark.parametrize("step", STEPS, ids=lambda s: f"L{s.line}-{s.block.lang}")
def test_readme_step_runs(step: Step, in_scratch: Path) -> None:
    block = step.block
    if block.skip:
        pytest.skip(f"README.md:{step.line} is marked: {block.skip}")
    if block.extra and importlib.util.find_spec(EXTRAS[block.extra]) is None:
        pytest.skip(f"README.md:{step.line} needs the {block.extra} extra")
    if step.command is None:
        _run_python(block)
    else:
        _run_command(step, in_scratch)


def _run_python(block: Block) -> None:
    if block.extra == "plot":
        import matplotlib

        matplotlib.use("Agg")
    namespace = NAMESPACES.setdefault(block.section, {"__name__": "readme"})
    code = compile(block.code, f"README.md:{block.line}", "exec")
    with contextlib.ExitStack() as stack:
        if block.extra == "ray":
            stack.callback(_shutdown_a_cluster_the_block_started())
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        exec(code, namespace)


def _shutdown_a_cluster_the_block_started() -> object:
    import ray

    connected = ray.is_initialized()
    return lambda: None if connected else ray.shutdown()


def _run_command(step: Step, cwd: Path) -> None:
    argv = shlex.split(step.command, comments=True)
    if argv[1] == "ingest":
        sources = [a for a in argv[2 : argv.index("--store")] if not a.startswith("-")]
        missing = [s for s in sources if not (cwd / s).exists()]
        if missing:
            pytest.skip(f"README.md:{step.line} ingests {missing}: files of your own")
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, f"README.md:{step.line}: {step.command}\n{result.output}"
