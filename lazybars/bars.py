"""Bars: the answer to a history request, polars inside, pandas on first ``.df``."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import polars as pl

from lazybars._aggregate import BUCKET_END, aggregate_lazy, coarser
from lazybars._time import local_ns
from lazybars._windows import Windows
from lazybars.errors import InvalidRequest
from lazybars.timestep import Timestep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Bars", "frame_to_pandas", "pandas_rows"]

_PREVIEW_ROWS = 10  # head and tail shown by repr; the shape line gives the full size


def pandas_rows(frame: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    """Rows ``[start, stop)`` of a cached pandas frame, for a caller to keep and change.

    A view where a caller's writes to it copy instead of reaching the frame (always on
    pandas 3; on pandas 2 once the caller turned copy-on-write on), else a copy. Its axes
    are its own too (renaming them leaves the frame's as they were). A frame asked for many
    windows should keep a :class:`lazybars._windows.Windows` of its own instead.
    """
    return Windows(frame).rows(start, stop)


# Up to this many distinct strings, a string column goes to pandas through codes.
_FEW = 256


def frame_to_pandas(frame: pl.DataFrame) -> pd.DataFrame:
    """The pandas form of bars: a DatetimeIndex named ``datetime`` in the same zone.

    Built column by column from numpy rather than through ``DataFrame.to_pandas()``: that
    goes through pyarrow, whose first use reserves a ~1 GB memory pool that memray users
    would then see in every profile of a backtest that reads ``.df``.
    """
    when = frame["datetime"]
    # A copy as datetime64 (``pd.to_datetime(unit=...)`` checks every value, 3x slower).
    index = pd.DatetimeIndex(when.dt.epoch("ns").to_numpy().astype("M8[ns]"))
    if when.dtype.time_zone is not None:
        index = index.tz_localize("UTC").tz_convert(when.dtype.time_zone)
    columns = {name: _numpy(s) for name, s in frame.to_dict().items() if name != "datetime"}
    return pd.DataFrame(columns, index=index.rename("datetime"), copy=True)


def _numpy(s: pl.Series) -> object:
    if s.dtype == pl.String and s.len() > _FEW:
        # A column of few distinct strings (a long frame's symbol): its distinct values
        # taken by code, 3x faster than a Python string per row, and the same objects.
        distinct = s.unique(maintain_order=True)
        if distinct.len() <= _FEW and not distinct.has_nulls():
            codes = s.cast(pl.Enum(distinct)).to_physical().to_numpy()
            return np.array(distinct.to_list(), dtype=object)[codes]
    if not s.dtype.is_numeric():
        return s.to_list()
    # Like pyarrow's conversion: a numeric column with missing values becomes float64.
    return s.cast(pl.Float64).to_numpy() if s.has_nulls() else s.to_numpy()


class _Mirror(Protocol):
    """A cached frame that hands out windows of its pandas form (built once)."""

    frame: pl.DataFrame

    def pandas_rows(self, start: int, stop: int) -> pd.DataFrame: ...


class Bars:
    """OHLCV bars of one symbol at one timestep, oldest first.

    ``bars.pl`` is a polars DataFrame (``datetime`` in the source zone, then open, high,
    low, close, volume and any extra columns); ``bars.df`` is the same data as pandas,
    indexed by ``datetime``, built on first access and then cached. A strategy that never
    reads ``.df`` never pays for pandas. Changing a returned frame never changes what a
    later request sees.

    Parameters
    ----------
    data
        A polars DataFrame with a ``datetime`` column, or a pandas DataFrame indexed by
        ``datetime``.
    symbol, timestep
        What the bars are.
    timezone
        The local zone for :meth:`aggregate` (day boundaries); default: the data's zone.
    schema
        For pandas ``data``: the polars dtypes to restore in ``.pl`` (pandas widens
        integer columns with missing values to float).

    Examples
    --------
    >>> import lazybars as lb
    >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES", gaps=0)})
    >>> bars = store.scan("MES").head(30).bars()
    >>> len(bars), bars.symbol, bars.timestep
    (30, 'MES', '1m')
    >>> len(bars.aggregate("15m"))
    2
    >>> bars.df.index.name
    'datetime'
    """

    __slots__ = (
        "_df",
        "_local",
        "_mirror",
        "_pl",
        "_schema",
        "_start",
        "_stop",
        "symbol",
        "timestep",
    )

    def __init__(
        self,
        data: pl.DataFrame | pd.DataFrame,
        *,
        symbol: str,
        timestep: str,
        timezone: str | None = None,
        schema: pl.Schema | None = None,
    ) -> None:
        if isinstance(data, pl.DataFrame):
            self._pl, self._df = data, None
        elif isinstance(data, pd.DataFrame):
            self._pl, self._df = None, data
        else:
            msg = f"Bars needs a polars or pandas DataFrame, got {type(data).__name__}"
            raise InvalidRequest(msg)
        self._mirror = None
        self._schema = schema
        self._start = self._stop = 0
        self._local = timezone
        self.symbol = symbol
        self.timestep = timestep

    @classmethod
    def _slice(
        cls, mirror: _Mirror, start: int, stop: int, symbol: str, timestep: str, local: str
    ) -> Bars:
        # The hot path: rows [start, stop) of a cached frame, sliced only when read: a
        # zero-copy polars slice on .pl, a window of the pandas mirror on .df.
        bars = cls.__new__(cls)
        bars._pl = None
        bars._df = None
        bars._mirror = mirror
        bars._schema = None
        bars._start = start
        bars._stop = stop
        bars._local = local
        bars.symbol = symbol
        bars.timestep = timestep
        return bars

    @property
    def pl(self) -> pl.DataFrame:
        """The bars as a polars DataFrame."""
        if self._pl is None:
            if self._mirror is not None:
                self._pl = self._mirror.frame.slice(self._start, self._stop - self._start)
            else:
                frame = pl.from_pandas(self._df.reset_index())
                self._pl = frame if self._schema is None else frame.cast(dict(self._schema))
        return self._pl

    @property
    def df(self) -> pd.DataFrame:
        """The bars as a pandas DataFrame indexed by ``datetime`` (built once, on first use).

        A window of a cached frame is a view of that frame's pandas mirror. On
        pandas 2 without copy-on-write, where writes to a view reach the frame it views, it
        is a copy instead, so that nothing a caller does to it changes a later answer.
        """
        if self._df is None:
            if self._mirror is not None:
                self._df = self._mirror.pandas_rows(self._start, self._stop)
            else:
                self._df = frame_to_pandas(self._pl)
        return self._df

    def __len__(self) -> int:
        if self._mirror is not None:
            return self._stop - self._start
        return self._pl.height if self._pl is not None else len(self._df)

    @property
    def empty(self) -> bool:
        """True when there are no bars."""
        return len(self) == 0

    def get_last_price(self) -> float | None:
        """The last close, or None when there are no bars."""
        return None if self.empty else float(self._column("close")[-1])

    def get_momentum(self, n: int | None = None) -> float | None:
        """Relative change of the close over the last ``n`` bars (all bars when None).

        ``close[-1] / close[-1 - n] - 1``; None when fewer than ``n + 1`` bars are held.
        """
        closes = self._column("close")
        if n is None:
            n = len(closes) - 1
        elif type(n) is not int or n < 1:
            msg = f"get_momentum(n) needs an int >= 1 or None, got {n!r}"
            raise InvalidRequest(msg)
        if n < 1 or len(closes) < n + 1:
            return None
        return float(closes[-1] / closes[-1 - n] - 1.0)

    def get_total_volume(self, start: Any = None, end: Any = None) -> float:
        """Total volume of the bars starting in ``[start, end]`` (inclusive; None: open)."""
        return float(self.filter(start, end)._column("volume").sum())

    def filter(self, start: Any = None, end: Any = None) -> Bars:
        """The bars whose start lies in ``[start, end]`` (inclusive; None: unbounded).

        Naive times and date strings are read in the data's zone.
        """
        return self._derive(_between_inclusive(self.pl, start, end), self.timestep)

    def aggregate(self, timestep: str) -> Bars:
        """These bars aggregated to a coarser ``timestep`` (open first, high max, low min,
        close last, volume sum). Only the bars held are used: a window that begins or ends
        inside a bucket yields a partial first or last bucket.
        """
        source = Timestep.parse(self.timestep)
        target = coarser(source, timestep, "aggregate")
        local = self._local or self._zone()
        lf = aggregate_lazy(self.pl.lazy(), target, local=local, source=source, after_hours=True)
        # In memory already: polars' streaming engine would only add its start-up cost.
        return self._derive(lf.drop(BUCKET_END).collect(engine="in-memory"), str(target))

    def plot(self, *, volume: bool = True) -> Figure:
        """A chart of these bars: candlesticks, with volume beneath.

        Needs the plot extra (``pip install 'lazybars[plot]'``, matplotlib), else raises
        :class:`lazybars.MissingExtra`. The x axis is time in the bars' own zone, each bar
        drawn over its interval; the title names the symbol and timestep. Bars without
        open, high and low (``select("close")``) are drawn as a close line. The matplotlib
        Figure is returned, not kept by pyplot: a notebook shows it as the cell's value,
        ``fig.savefig(path)`` writes it.

        Parameters
        ----------
        volume
            Draw the volume panel beneath the prices (when the bars have volume).

        Examples
        --------
        >>> import lazybars as lb
        >>> store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES", gaps=0)})
        >>> fig = store.scan("MES").head(120).bars().aggregate("15m").plot()
        >>> fig.get_suptitle(), len(fig.axes)  # prices, and volume beneath
        ('MES: 15m bars', 2)
        """
        from lazybars._plot import bars_figure  # noqa: PLC0415 - matplotlib only when drawing

        return bars_figure(self.pl, symbol=self.symbol, timestep=self.timestep, volume=volume)

    def _column(self, name: str) -> pl.Series:
        frame = self.pl
        if name not in frame.columns:
            msg = f"these bars have no {name!r} column (columns {frame.columns}); select it too"
            raise InvalidRequest(msg)
        return frame[name]

    def _derive(self, frame: pl.DataFrame, timestep: str) -> Bars:
        return Bars(frame, symbol=self.symbol, timestep=timestep, timezone=self._local)

    def _zone(self) -> str:
        return self.pl.schema["datetime"].time_zone or "UTC"

    def __repr__(self) -> str:
        with pl.Config(tbl_rows=_PREVIEW_ROWS):
            return f"<{self._summary()}>\n{self.pl!r}"

    def _repr_html_(self) -> str:
        with pl.Config(tbl_rows=_PREVIEW_ROWS):
            return f"<p>{html.escape(self._summary())}</p>{self.pl._repr_html_()}"

    def _summary(self) -> str:
        head = f"lazybars.Bars {self.symbol} @ {self.timestep}: {len(self)} bars"
        if self.empty:
            return head
        first, last = self.pl["datetime"][0], self.pl["datetime"][-1]
        return f"{head}, {first} -> {last} ({self._zone()})"


def _between_inclusive(frame: pl.DataFrame, start: Any, end: Any) -> pl.DataFrame:
    # Bars are sorted by time: two binary searches and a zero-copy slice, no mask.
    zone = frame.schema["datetime"].time_zone or "UTC"
    when = frame["datetime"].dt.epoch("ns").to_numpy()
    lo = 0 if start is None else when.searchsorted(local_ns(start, zone, argument="start"), "left")
    hi = (
        len(when)
        if end is None
        else when.searchsorted(local_ns(end, zone, argument="end"), "right")
    )
    return frame.slice(int(lo), max(int(hi) - int(lo), 0))
