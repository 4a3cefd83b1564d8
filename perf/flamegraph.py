"""A PNG of a memray capture's flame graph at its peak, for the README (memray's own is HTML).

    memray run -f -o lazybars.bin -m perf.memory --backend lazybars
    python -m perf.flamegraph lazybars.bin           # writes memray-flamegraph-lazybars.png
    python -m perf.flamegraph lazybars.bin -o docs/flamegraph-lazybars.png
    python -m perf.flamegraph lazybars.bin --quick --markdown   # the tables only

It reads the allocations alive at the high-water mark with ``memray.FileReader`` and draws
them as an icicle chart: the whole peak at the top, each row below split among the callees
of the row above, widths in bytes, as in ``memray flamegraph``. Import-machinery and runpy
frames are left out (as memray's "hide import system frames"). Allocations made by threads
with no Python frames, such as polars' thread pool decoding parquet, hang under one node of
their own. Only the first ``--depth`` levels are drawn; nothing needs the network. It also
prints the largest parts of the peak (and of the zoomed function) as a table.
"""

from __future__ import annotations

import argparse
import linecache
import sys
from dataclasses import dataclass, field
from pathlib import Path

import memray

from perf._harness import parse_args, print_table

MiB = 2**20
_SKIP = ("<frozen importlib", "<frozen runpy>", "/memray/")
_COLORS = {  # by the top-level package of a frame's file
    "lazybars": "#4c78a8",
    "perf": "#b279a2",
    "polars": "#f58518",
    "pandas": "#54a24b",
    "numpy": "#72b7b2",
    "pyarrow": "#eeca3b",
    "threads": "#e45756",
}
_OTHER = "#bab0ac"
_THREADS = "threads without Python frames (polars' pool)"
_MAIN_NATIVE = "no Python frames"


@dataclass
class Node:
    """One frame of the call tree, with the bytes alive at the peak below it."""

    name: str
    package: str
    size: int = 0
    children: dict[str, Node] = field(default_factory=dict)

    def add(self, path: list[tuple[str, str]], size: int) -> None:
        self.size += size
        node = self
        for name, package in path:
            node = node.children.setdefault(name, Node(name, package))
            node.size += size


def _frame(function: str, filename: str, line: int) -> tuple[str, str]:
    parts = Path(filename).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    else:  # the repository's own files: from the package folder on
        keep = next((i for i, p in enumerate(parts) if p in ("lazybars", "perf")), 0)
        parts = parts[keep:]
    short = "/".join(parts)
    if function == "<module>":  # module-level code is mostly imports: say which
        return f"{short}:{line} {linecache.getline(filename, line).strip()}", parts[0]
    return f"{function} {short}:{line}", parts[0] if parts else ""


def call_tree(capture: Path) -> tuple[Node, memray.FileReader]:
    """The allocations alive at the peak of ``capture``, as a tree rooted at the peak."""
    reader = memray.FileReader(capture)
    main = reader.metadata.main_thread_id
    root = Node("peak", "")
    for record in reader.get_high_watermark_allocation_records(merge_threads=False):
        stack = reversed(record.stack_trace())  # memray lists the innermost frame first
        frames = [f for f in stack if not any(s in f[1] for s in _SKIP)]
        if frames:
            path = [_frame(*f) for f in frames]
        elif record.tid != main:
            path = [(_THREADS, "threads")]
        else:
            path = [(_MAIN_NATIVE, "threads")]
        root.add(path, record.size)
    return root, reader


def find(node: Node, function: str) -> Node | None:
    """The largest node of ``function`` (a frame's function name) under ``node``."""
    found = [c for c in node.children.values() if c.name.split(" ", 1)[0] == function]
    found += [f for c in node.children.values() if (f := find(c, function)) is not None]
    return max(found, key=lambda n: n.size, default=None)


def draw(panels: list[tuple[Node, str, int]], out: Path) -> None:
    """Draw each (tree, title, depth) as an icicle chart, one under the other, into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    depths = [depth for _, _, depth in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(13, 0.36 * sum(depths) + 0.9 * len(panels)), height_ratios=depths
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    chars_per_unit = fig.get_figwidth() * fig.dpi / 6.2  # 7 pt DejaVu Sans: ~6 px a character

    for ax, (root, title, depth) in zip(axes, panels, strict=True):

        def place(node: Node, x: float, level: int, ax=ax, root=root, depth=depth) -> None:
            width = node.size / root.size
            color = _COLORS.get(node.package, _OTHER) if level else "#dddddd"
            ax.add_patch(Rectangle((x, -level - 1), width, 0.92, color=color, ec="white"))
            fits = int(width * chars_per_unit)
            if fits >= 6:
                label = f"{node.name} ({node.size / MiB:,.1f} MiB)"
                text = label if len(label) <= fits else label[: fits - 1] + "…"
                ax.text(x + 0.002, -level - 0.54, text, fontsize=7, va="center", clip_on=True)
            if level + 1 < depth:
                for child in sorted(node.children.values(), key=lambda c: -c.size):
                    place(child, x, level + 1)
                    x += child.size / root.size

        place(root, 0.0, 0)
        ax.set_xlim(0, 1)
        ax.set_ylim(-depth - 0.05, 0)
        ax.axis("off")
        ax.set_title(title, fontsize=9, loc="left")
    handles = [Patch(color=c, label=_THREADS if p == "threads" else p) for p, c in _COLORS.items()]
    handles.append(Patch(color=_OTHER, label="other"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _split(node: Node, top: int = 8) -> list[tuple[str, int]]:
    """The largest parts of ``node`` (below any chain of single callees), then the rest."""
    while len(node.children) == 1:
        node = next(iter(node.children.values()))
    parts = sorted(node.children.values(), key=lambda c: -c.size)
    rows = [(c.name, c.size) for c in parts[:top]]
    rest = node.size - sum(size for _, size in rows)
    return rows + ([("everything else", rest)] if rest else [])


def _report(root: Node, zoomed: Node | None, zoom: str) -> None:
    for node, title in ((root, "the peak"), (zoomed, f"{zoom}()")):
        if node is None:
            continue
        rows = [(name, size / MiB, f"{size / node.size:.0%}") for name, size in _split(node)]
        print_table(
            f"Allocations alive at {title}: {node.size / MiB:,.1f} MiB",
            ["frame", "MiB", "share"],
            rows,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path, help="a memray capture file (memray run -o ...)")
    parser.add_argument("-o", "--output", type=Path, help="PNG to write")
    parser.add_argument("--depth", type=int, default=7, help="levels drawn below the peak")
    parser.add_argument(
        "--zoom", default="backtest", help="a function drawn again below, on its own scale"
    )
    parser.add_argument("--quick", action="store_true", help="print the tables, draw no PNG")
    args = parse_args(parser)
    out = args.output or Path(f"memray-flamegraph-{args.capture.stem}.png")
    root, reader = call_tree(args.capture)
    command = reader.metadata.command_line.split(" -m ", 1)[-1]
    panels = [(root, f"memray: allocations alive at the peak of python -m {command}", args.depth)]
    zoomed = find(root, args.zoom) if args.zoom else None
    if zoomed is not None:
        panels.append((zoomed, f"the same peak, zoomed in on {args.zoom}()", args.depth + 2))
    _report(root, zoomed, args.zoom)
    if not args.quick:
        draw(panels, out)
        print(f"wrote {out} ({root.size / MiB:,.1f} MiB at the peak)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
