"""Appended parts: how an append costs the new bars, not the stored history.

A (symbol, timestep) is its base file ``<timestep>/<symbol>.parquet`` plus, when bars were
appended after it, immutable part files in a hidden folder ``<timestep>/.<symbol>.parts/``
and a small JSON manifest there (``manifest.json``) naming them in time order, with their
rows, first and last bar and bytes. The manifest is replaced atomically (a rename; on
object storage a conditional upload).

The base's own manifest (its parquet metadata) carries a ``generation``, an id unique to
each write of the base; the parts manifest names the generation it extends, and applies
only while the base is that generation. Every rewrite of the base (a compaction, a
replace, an append that overlaps or backfills) writes a new generation first and clears
the parts after: a writer killed in between leaves parts of an older generation, which
readers ignore, so nothing is lost and nothing read twice. (Unique ids rather than a
counter: writers racing on object storage, which has no lock, cannot pick the same one.)
Bases written before parts existed have no generation; parts never extend them (the
first append after them rewrites the base).

A reader reads the parts manifest first, then the base's footer: a base rewritten in
between has a newer generation, and the parts it already holds are ignored. It scans the
base up to the last bar the base held when described, then each part: a base compacted
while a lazy scan is pending then yields exactly the bars it held before (the compacted
parts are kept until the next rewrite, for such scans). This module holds the rules; the
backends do the I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lazybars._time import ns_literal
from lazybars.errors import SchemaError

__all__ = [
    "MANIFEST",
    "PartEntry",
    "Parts",
    "applying",
    "crowded",
    "extended",
    "folder_name",
    "new_generation",
    "new_part_name",
    "parse_parts",
    "retiring",
    "stacked",
]

MANIFEST = "manifest.json"
_FORMAT = 1
# Compaction rewrites the whole history, so it waits until the parts are worth it:
# - rows: once the parts hold a quarter of the base's rows, rewriting costs at most five
#   rows written per row appended since the last compaction, however long the history;
# - count: every part is one more file a read opens (a footer read; a request on object
#   storage), so 32 parts bound that overhead to a few milliseconds (31 parts added 3 ms to
#   a one-day window of a year of 24h minute bars on local disk, 25% of that read).
COMPACT_PARTS = 32
COMPACT_FRACTION = 0.25


class PartEntry(BaseModel):
    """One appended part: its file name in the parts folder and what it holds."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[0-9a-f]{32}\.parquet$")
    rows: int = Field(ge=1)
    first: int
    last: int
    bytes: int = Field(ge=0)


class Parts(BaseModel):
    """The parts manifest: the base generation the parts extend, and the parts in time
    order.

    Object storage has no lock, so two more fields serve its writers: ``sealed``, a
    rewrite of the base is under way and no part may be added to this manifest; and
    ``retired``, part files that no longer apply (folded by the last compaction and kept
    for lazy scans planned before it, or left by a rewrite that died), which the next
    rewrite deletes. (A directory's writers hold a lock, so they list the folder instead.)
    """

    model_config = ConfigDict(frozen=True)

    format: int = Field(ge=1, le=_FORMAT)
    generation: str = Field(pattern=r"^[0-9a-f]{32}$")
    parts: tuple[PartEntry, ...] = ()
    sealed: bool = False
    retired: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        generation: str,
        parts: Sequence[PartEntry] = (),
        *,
        sealed: bool = False,
        retired: Sequence[str] = (),
    ) -> Parts:
        return cls(
            format=_FORMAT,
            generation=generation,
            parts=tuple(parts),
            sealed=sealed,
            retired=tuple(retired),
        )

    def dump(self) -> bytes:
        return self.model_dump_json().encode()


def folder_name(symbol: str) -> str:
    """The hidden folder of a symbol's parts, beside its base file (never listed: hidden)."""
    return f".{symbol}.parts"


def new_part_name() -> str:
    """A unique name for a new part (never reused)."""
    return f"{uuid.uuid4().hex}.parquet"


def new_generation() -> str:
    """A unique id for a new write of a base."""
    return uuid.uuid4().hex


def parse_parts(raw: bytes, where: str) -> Parts:
    """A checked parts manifest (SchemaError naming ``where`` when it is damaged)."""
    try:
        parts = Parts.model_validate_json(raw)
    except ValidationError as exc:
        msg = (
            f"the parts manifest {where} is damaged ({str(exc).splitlines()[0]}); restore it, "
            "or delete its folder to drop the bars appended since the last compaction"
        )
        raise SchemaError(msg) from None
    if any(b.first <= a.last for a, b in zip(parts.parts, parts.parts[1:], strict=False)):
        msg = (
            f"the parts manifest {where} lists parts out of time order; restore it, or delete "
            "its folder to drop the bars appended since the last compaction"
        )
        raise SchemaError(msg)
    return parts


def applying(base_generation: str, manifest: Parts | None) -> tuple[PartEntry, ...]:
    """The parts that extend the base: those of a manifest naming the base's generation."""
    if not base_generation or manifest is None or manifest.generation != base_generation:
        return ()
    return manifest.parts


def stacked(base: pl.LazyFrame, base_last: int, parts: pl.LazyFrame) -> pl.LazyFrame:
    """The base scan then the scan of the parts, in time order, each filterable on its own
    (the window predicate reaches every file). The base is cut at the last bar it held when
    described: a compaction that lands before the scan runs adds nothing twice."""
    zone = base.collect_schema()["datetime"].time_zone
    until = base.filter(pl.col("datetime") <= ns_literal(base_last, zone))
    return pl.concat([until, parts], how="vertical")


def extended(manifest: Parts | None, generation: str, entry: PartEntry) -> Parts:
    """The manifest with ``entry`` appended after the parts of the base ``generation``
    (the parts of a manifest of another generation are retired)."""
    if manifest is None:
        return Parts.of(generation, (entry,))
    retired = manifest.retired
    if manifest.generation != generation:
        retired = (*retired, *(p.name for p in manifest.parts))
    return Parts.of(generation, (*applying(generation, manifest), entry), retired=retired)


def retiring(manifest: Parts | None) -> tuple[str, ...]:
    """Every part file a manifest names (its parts and its retired ones)."""
    if manifest is None:
        return ()
    return (*manifest.retired, *(p.name for p in manifest.parts))


def crowded(base_rows: int, parts: Sequence[PartEntry]) -> bool:
    """Whether the parts are many or large enough to compact into the base."""
    rows = sum(p.rows for p in parts)
    return len(parts) >= COMPACT_PARTS or rows >= COMPACT_FRACTION * base_rows
