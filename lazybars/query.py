"""Query: an immutable, composable lazy plan over stored bars.

A Query is a source (store, symbols, timestep, local zone) plus a tuple of steps. Every
builder method returns a new Query; nothing runs until ``lazy``, ``collect``, ``to_pandas``
or ``bars`` compiles the steps, in order, into one polars LazyFrame.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl

from lazybars._aggregate import BUCKET_END
from lazybars._plan import (
    Context,
    Step,
    as_of_step,
    between_step,
    head_step,
    leading_windows,
    resample_step,
    select_step,
    start_range,
    stored_columns,
    tail_step,
)
from lazybars.bars import Bars, frame_to_pandas
from lazybars.errors import InvalidRequest
from lazybars.timestep import Timestep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lazybars._held import Held

__all__ = ["Query"]

# How a plan meets the store's held bars (see _compile).
_PEEK, _FILL = "peek", "fill"


@dataclass(frozen=True, slots=True)
class QuerySource:
    """Where a query's bars come from; ``read`` is excluded from equality. ``long``: the
    symbols were given as a list, so the bars come in long format (a ``symbol`` column).
    ``held``: the store's bars held in memory, which warm queries are answered from.
    ``columns``: a symbol's stored column names without planning a scan (None: from
    ``read``'s schema)."""

    store_key: object
    symbols: tuple[str, ...]
    timestep: Timestep
    zone: str
    long: bool
    read: Callable[[str, Timestep], pl.LazyFrame] = field(compare=False, repr=False)
    held: Held | None = field(default=None, compare=False, repr=False)
    columns: Callable[[str, Timestep], Sequence[str]] | None = field(
        default=None, compare=False, repr=False
    )


class Query:
    """A lazy plan over stored bars: scan -> window -> tail/head -> select -> resample.

    Build one with :meth:`lazybars.BarStore.scan`. Every method returns a new Query; equal
    plans compare and hash equal.

    Examples
    --------
    >>> import lazybars as lb
    >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES", gaps=0)})
    >>> q = store.scan("MES").between("2024-01-03", "2024-01-04").tail(3).select("close")
    >>> q.collect().shape
    (3, 2)
    >>> q == store.scan("MES").between("2024-01-03", "2024-01-04").tail(3).select("close")
    True
    """

    __slots__ = ("_source", "_steps")

    def __init__(self, source: QuerySource, steps: tuple[Step, ...] = ()) -> None:
        self._source = source
        self._steps = steps

    def _then(self, step: Step) -> Query:
        return Query(self._source, (*self._steps, step))

    # -- builders ---------------------------------------------------------------------------
    def between(self, start: Any, end: Any) -> Query:
        """Keep bars whose start lies in the half-open interval ``[start, end)``.

        ``start`` and ``end`` are datetimes, dates or ISO strings; naive values are read in
        the query's local zone.
        """
        return self._then(between_step(start, end, self._source.zone))

    def as_of(self, dt: Any) -> Query:
        """Keep bars completed by ``dt``: a bar is visible iff its end <= ``dt``.

        A bar ends one timestep after its start; a stored day bar at the next midnight in
        the zone it was written in, an aggregated day bucket at the next local midnight.
        """
        return self._then(as_of_step(dt, self._source.zone))

    def tail(self, n: int) -> Query:
        """Keep the last ``n`` bars (per symbol when the query spans several)."""
        return self._then(tail_step(n))

    def head(self, n: int) -> Query:
        """Keep the first ``n`` bars (per symbol when the query spans several)."""
        return self._then(head_step(n))

    def select(self, *columns: str) -> Query:
        """Keep ``datetime`` (and ``symbol``) plus the named columns, in that order."""
        return self._then(select_step(columns, self._columns()))

    def resample(self, timestep: str, *, after_hours: bool = True) -> Query:
        """Aggregate to a coarser ``timestep`` (open first, high max, low min, close last,
        volume sum); ``after_hours=False`` first keeps bars starting in [09:30, 16:00) local.
        """
        return self._then(resample_step(timestep, after_hours, self._timestep_now()))

    # -- execution --------------------------------------------------------------------------
    @property
    def lazy(self) -> pl.LazyFrame:
        """The plan compiled to a polars LazyFrame (over the held bars where the store
        holds the window, else over the parquet scans)."""
        return _compile(self._source, self._steps)[0]

    def explain(self) -> str:
        """The lazybars steps, then the optimised polars plan that runs them.

        The steps end with a ``held`` line: the symbols the store's held cache answers
        for (their bars come from memory, not from a parquet scan) and what it holds.
        """
        lf, answered = _compile(self._source, self._steps)
        held = self._source.held
        if held is None:
            return f"{self._describe()}\n\npolars plan:\n{lf.explain()}"
        info = held.info()
        budget = "unbounded" if info.max_bytes is None else _size(info.max_bytes)
        holds = f"holds {info.windows} windows, {_size(info.bytes)} of {budget}"
        line = f"  {'held':<9}{', '.join(answered) or 'none'} from memory (the cache {holds})"
        return f"{self._describe()}\n{line}\n\npolars plan:\n{lf.explain()}"

    def collect(self) -> pl.DataFrame:
        """Run the plan and return a polars DataFrame.

        The window's stored bars are read once and held by the store: running the same
        window again (or one inside it) reads no parquet.
        """
        # _FILL puts every window in memory first: the rest of the plan runs there, where
        # polars' streaming engine (its default) only adds a start-up cost of 0.03-2 ms.
        return _compile(self._source, self._steps, _FILL)[0].collect(engine="in-memory")

    def to_pandas(self) -> pd.DataFrame:
        """Run the plan and return a pandas DataFrame indexed by ``datetime``."""
        return frame_to_pandas(self.collect())

    def bars(self) -> Bars:
        """Run the plan and return :class:`lazybars.Bars` (single-symbol queries only)."""
        if len(self._source.symbols) != 1:
            msg = (
                f"bars() needs a single-symbol query, this one spans {list(self._source.symbols)}; "
                "use collect() or to_pandas() for several symbols"
            )
            raise InvalidRequest(msg)
        frame = self.collect()
        if self._source.long:  # a list of one: Bars has no symbol column
            frame = frame.drop("symbol")
        return Bars(frame, symbol=self._source.symbols[0], timestep=self._timestep())

    def plot(self, *, overlay: bool = False, volume: bool = True) -> Figure:
        """Run the plan and chart it: candlesticks with volume beneath, per symbol.

        Needs the plot extra (``pip install 'lazybars[plot]'``, matplotlib), else raises
        :class:`lazybars.MissingExtra`. A query over several symbols draws small multiples
        (a price and a volume panel per symbol, one shared time axis), or with
        ``overlay=True`` every close on one panel, as the change since its first bar in
        percent. The x axis is time in the result's zone; the title names the symbols and
        the final timestep, and the one it was aggregated from. Returns the matplotlib
        Figure, not kept by pyplot: a notebook shows it as the cell's value.

        Parameters
        ----------
        overlay
            One panel of closes instead of small multiples of candlesticks.
        volume
            Draw a volume panel beneath each symbol's prices (when the bars have volume).

        Examples
        --------
        >>> import lazybars as lb
        >>> frames = lb.synth.catalog(("MES", "MNQ"), "2024-03-04", "2024-03-09")
        >>> store = lb.BarStore.from_frames(frames)
        >>> fig = store.scan(["MES", "MNQ"]).resample("1h").plot()
        >>> fig.get_suptitle(), len(fig.axes)  # price and volume panels of each symbol
        ('MES, MNQ: 1h bars (aggregated from 1m)', 4)
        >>> len(store.scan(["MES", "MNQ"]).plot(overlay=True).axes)
        1
        """
        from lazybars._plot import query_figure  # noqa: PLC0415 - matplotlib only when drawing

        return query_figure(
            self.collect(),
            symbols=self._source.symbols,
            timestep=self._timestep_now(),
            source=self._source.timestep,
            overlay=overlay,
            volume=volume,
        )

    # -- identity and display ---------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Query):
            return NotImplemented
        return self._source == other._source and self._steps == other._steps

    def __hash__(self) -> int:
        return hash((self._source, self._steps))

    def __repr__(self) -> str:
        return f"<{self._describe()}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(arg)}</td></tr>"
            for name, arg in self._rows()
        )
        return f"<table><caption>lazybars.Query</caption>{rows}</table>"

    def _describe(self) -> str:
        lines = [f"lazybars.Query {', '.join(self._source.symbols)} @ {self._timestep()}"]
        lines += [f"  {name:<9}{arg}" for name, arg in self._rows()]
        return "\n".join(lines)

    def _rows(self) -> list[tuple[str, str]]:
        src = self._source
        scan = f"{', '.join(src.symbols)} {src.timestep} (local zone {src.zone})"
        return [("scan", scan)] + [step.describe(src.zone) for step in self._steps]

    def _timestep(self) -> str:
        return str(self._timestep_now())

    def _timestep_now(self) -> Timestep:
        return _final_timestep(self._source.timestep, self._steps)

    def _columns(self) -> tuple[str, ...]:
        # Folded from the stored names, step by step, rather than read from the compiled
        # plan's schema: that plans a scan and costs a quarter of a warm read.
        names = _stored_names(self._source)
        for step in self._steps:
            names = step.columns_after(names, self._source.long)
        return names


def _stored_names(source: QuerySource) -> tuple[str, ...]:
    """The columns of the source's bars before any step (as ``_compile`` lays them out)."""
    read, timestep = source.columns, source.timestep
    each = [
        read(s, timestep) if read is not None else source.read(s, timestep).collect_schema()
        for s in source.symbols
    ]
    if not source.long:
        return tuple(each[0])
    others = dict.fromkeys(c for names in each for c in names if c not in ("datetime", "symbol"))
    return ("datetime", "symbol", *others)


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def _final_timestep(timestep: Timestep, steps: tuple[Step, ...]) -> Timestep:
    for step in steps:
        timestep = step.timestep_after(timestep)
    return timestep


def _compile(
    source: QuerySource, steps: tuple[Step, ...], mode: str = _PEEK
) -> tuple[pl.LazyFrame, list[str]]:
    """The plan as a LazyFrame, and the symbols whose bars the held cache gave.

    ``mode``: _PEEK takes what the cache holds; _FILL also reads the windows it lacks
    into it, so the whole plan runs in memory.
    """
    grouped = source.long
    windows, rest = leading_windows(steps)
    bases, answered = _bases(source, windows, stored_columns(steps), mode)
    # The zone each symbol was written in, where its stored day bars end.
    written = {s: lf.collect_schema()["datetime"].time_zone for s, lf in bases.items()}
    if not grouped:
        lf = bases[source.symbols[0]]
    else:
        # Long format in the query's zone (the symbols may be stored in different zones),
        # rows ordered by time, then by the order the symbols were given in: each symbol's
        # bars are sorted and concatenated in that order, so a stable sort by time does it.
        parts = [
            lf.with_columns(
                pl.col("datetime").dt.convert_time_zone(source.zone), symbol=pl.lit(symbol)
            )
            for symbol, lf in bases.items()
        ]
        lf = pl.concat(parts, how="diagonal_relaxed").sort("datetime", maintain_order=True)
        others = [c for c in lf.collect_schema().names() if c not in ("datetime", "symbol")]
        lf = lf.select("datetime", "symbol", *others)
    zone = lf.collect_schema()["datetime"].time_zone
    timestep, aggregated = source.timestep, False
    clock = None
    for step in windows:
        clock = _earliest(clock, getattr(step, "at", None))
    for step in rest:
        ctx = Context(zone, source.zone, written, timestep, grouped, aggregated, clock)
        lf = step.apply(lf, ctx)
        timestep = step.timestep_after(timestep)
        if step.aggregates:
            aggregated, zone = True, source.zone
            written = dict.fromkeys(source.symbols, source.zone)
            if grouped:  # group_by keeps first appearances; restore (datetime, symbol order)
                lf = _ordered(lf, source.symbols)
        clock = _earliest(clock, getattr(step, "at", None))
    # Aggregated bars carry their bucket end for as_of; it is plumbing, not a bar column.
    if aggregated:
        lf = lf.drop(BUCKET_END)
    # One zone out: stored bars are read in their own zone so that window predicates reach
    # the parquet scan, and shown in the query's zone only at the end (metadata, no copy).
    if zone != source.zone:
        lf = lf.with_columns(pl.col("datetime").dt.convert_time_zone(source.zone))
    return lf, answered


def _bases(
    source: QuerySource, windows: tuple[Step, ...], columns: frozenset[str] | None, mode: str
) -> tuple[dict[str, pl.LazyFrame], list[str]]:
    """Each symbol's stored bars with the leading windows applied, in its written zone:
    sliced from the held cache, or scanned with the windows pushed into the scan."""
    timestep, symbols = source.timestep, dict.fromkeys(source.symbols)
    lo, hi, exact = start_range(windows, timestep)
    frames: dict[str, pl.DataFrame | None] = dict.fromkeys(symbols)
    answered = []
    if source.held is not None:
        wanted = [(s, timestep, lo, hi) for s in symbols]
        found = source.held.frames(wanted, columns, load=mode == _FILL)
        for symbol, (frame, held) in zip(symbols, found, strict=True):
            frames[symbol] = frame
            if held:
                answered.append(symbol)
    bases = {}
    for symbol in symbols:
        frame = frames.get(symbol)
        lf = source.read(symbol, timestep) if frame is None else frame.lazy()
        if frame is None or not exact:  # a held slice is the windows' answer when exact
            zone = lf.collect_schema()["datetime"].time_zone
            ctx = Context(zone, source.zone, {symbol: zone}, timestep, False, False, None)
            for step in windows:
                lf = step.apply(lf, ctx)
        bases[symbol] = lf
    return bases, answered


def _ordered(lf: pl.LazyFrame, symbols: tuple[str, ...]) -> pl.LazyFrame:
    """Aggregated rows by time, then by the order the symbols were given in."""
    rank = pl.col("symbol").replace_strict(symbols, range(len(symbols)), return_dtype=pl.UInt32)
    return lf.sort(pl.col("datetime"), rank)


def _earliest(clock: int | None, at: int | None) -> int | None:
    if at is None:
        return clock
    return at if clock is None else min(clock, at)
