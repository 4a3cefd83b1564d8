"""``lb.sweep``: one backtest per parameter combination, locally or on Ray, one results table.

An edge module: ``import lazybars`` imports it for ``lb.sweep`` but nothing here imports Ray or
rich until a sweep asks for them (``engine="ray"``, ``progress=True``). Both engines call
:func:`_attempt` for every combination, so a row means the same on either: the parameters,
the run's outputs, ``status`` (``"ok"``, ``"error"`` when ``run`` raised, ``"crashed"`` when
the worker running it died and Ray's retries ran out), ``error`` (the exception's type and
message), ``seconds`` (the run's wall time in its worker) and ``worker`` (``host:pid``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import polars as pl

from lazybars.errors import InvalidRequest

__all__ = ["sweep"]

_ENGINES = ("local", "ray")
# Columns every results table has after the parameters and outputs; no parameter or output
# may take their names.
_RESERVED = ("status", "error", "seconds", "worker")
_VALUE = "value"  # the output column of a run that returns a single value


def sweep(
    run: Callable[[dict[str, Any]], Any],
    grid: Mapping[str, Iterable[Any]] | Iterable[Mapping[str, Any]],
    *,
    engine: str = "local",
    address: str | None = None,
    retries: int = 3,
    cpus_per_task: float = 1.0,
    progress: bool = True,
) -> pl.DataFrame:
    """Run ``run(params)`` once per parameter combination and return one table of results.

    ``run`` receives only the combination's parameters, as a dict. Whatever else it needs
    (a catalog path or ``s3://`` URI, dates, a strategy class) is bound into it by the
    caller, e.g. ``functools.partial(backtest, catalog="data/bars")``, and each run opens the
    catalog itself: no bars travel from the caller to the workers. It returns a dict (one
    column per key) or a single value (column ``value``); ``None`` adds no columns.

    Parameters
    ----------
    run
        A callable of one dict. With ``engine="ray"`` it must pickle (cloudpickle: module
        functions, partials, lambdas and notebook functions do) and be importable on the
        workers, as must ``lazybars``.
    grid
        ``{name: [values, ...]}``, whose cartesian product is swept (the last name varies
        fastest, as in ``itertools.product``), or an explicit list of parameter dicts.
    engine
        ``"local"``: every run in this process, one after the other, in grid order.
        ``"ray"``: one Ray task per combination (``pip install 'lazybars[ray]'``), on the
        cluster this process is connected to (``ray.init(address=...)`` before the call),
        else on the cluster at ``address``, else on a local cluster started here and left
        running for later sweeps (``ray.shutdown()`` stops it).
    address
        A Ray cluster address (``"auto"``, ``"10.0.0.5:6379"``, ``"ray://head:10001"``);
        only with ``engine="ray"``.
    retries
        How many times Ray reruns a combination whose worker died (Ray's ``max_retries``).
        A run that raises is not retried: it would raise again.
    cpus_per_task
        CPUs Ray reserves for each run (Ray's ``num_cpus``).
    progress
        Show a progress bar (rich, on stderr) as results arrive.

    Returns
    -------
    polars.DataFrame
        One row per combination, in grid order: the parameters, the outputs, then
        ``status``, ``error``, ``seconds`` and ``worker``. Outputs of a failed run are null.
        ``.to_pandas()`` gives the pandas frame for notebooks.

    Raises
    ------
    InvalidRequest
        For an empty grid or value list, a parameter named like a results column, an
        unknown engine, bad options, or a ``run`` that cannot be sent to Ray workers.
    MissingExtra
        For ``engine="ray"`` without Ray installed.

    Examples
    --------
    >>> import functools, tempfile, lazybars as lb
    >>> catalog = tempfile.mkdtemp()
    >>> lb.BarStore(catalog).write("MES", lb.synth.minute_bars("MES"), timestep="minute")
    >>> def backtest(params, *, catalog):
    ...     store = lb.BarStore(catalog)  # each run opens the catalog itself
    ...     symbols = [params["symbol"]]
    ...     strategy = lb.strategies.MomentumStrategy(symbols, fast=params["fast"])
    ...     ticks = lb.sim.clock(store, symbols, "2024-01-03", "2024-01-04", cadence="5m")
    ...     return lb.sim.run(strategy, lb.DataSource(store), ticks).stats()
    >>> run = functools.partial(backtest, catalog=catalog)
    >>> table = lb.sweep(run, {"symbol": ["MES", "MNQ"], "fast": [5, 9]}, progress=False)
    >>> table.select("symbol", "fast", "status").rows()
    [('MES', 5, 'ok'), ('MES', 9, 'ok'), ('MNQ', 5, 'error'), ('MNQ', 9, 'error')]
    >>> table["trades"].to_list()
    [13.0, 11.0, None, None]
    >>> print(table["error"][2])  # doctest: +ELLIPSIS
    UnknownAsset: unknown asset 'MNQ'...
    """
    combos = _combinations(grid)
    _check_options(run, engine, address, retries, cpus_per_task)
    if engine == "local":
        outcomes = ((i, _attempt(run, params)) for i, params in enumerate(combos))
    else:
        from lazybars._ray import execute  # noqa: PLC0415 - Ray only for engine="ray"

        outcomes = execute(
            _attempt, _failure, run, combos, address=address, retries=retries, cpus=cpus_per_task
        )
    rows: list[dict[str, Any] | None] = [None] * len(combos)
    with _bar(len(combos), engine, enabled=progress) as advance:
        for index, row in outcomes:
            rows[index] = row
            advance(row["status"] != "ok")
    return _table(combos, rows)


def _combinations(grid: Any) -> list[dict[str, Any]]:
    """The grid's combinations, in order, as plain dicts; bad grids raise InvalidRequest."""
    if isinstance(grid, Mapping):
        names = list(grid)
        _check_names(names, "grid")
        values = []
        for name in names:
            given = grid[name]
            if isinstance(given, str | bytes | Mapping) or not isinstance(given, Iterable):
                msg = f"grid[{name!r}] must be a list of values, got {given!r}; write [{given!r}]"
                raise InvalidRequest(msg)
            values.append(list(given))
            if not values[-1]:
                msg = f"grid[{name!r}] is empty: give at least one value"
                raise InvalidRequest(msg)
        combos = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    elif isinstance(grid, Iterable) and not isinstance(grid, str | bytes):
        combos = []
        for i, combo in enumerate(grid):
            if not isinstance(combo, Mapping):
                msg = f"grid[{i}] must be a dict of parameters, got {type(combo).__name__}"
                raise InvalidRequest(msg)
            _check_names(list(combo), f"grid[{i}]")
            combos.append(dict(combo))
    else:
        msg = f"grid must be a dict of value lists or a list of dicts, got {type(grid).__name__}"
        raise InvalidRequest(msg)
    if not combos or combos == [{}]:
        msg = "the grid has no combinations: give at least one parameter and one value"
        raise InvalidRequest(msg)
    return combos


def _check_names(names: list[Any], where: str) -> None:
    for name in names:
        if not isinstance(name, str):
            msg = f"{where}: parameter names must be strings, got {name!r}"
            raise InvalidRequest(msg)
        if name in _RESERVED:
            msg = f"{where}: {name!r} names a results column {_RESERVED}; rename the parameter"
            raise InvalidRequest(msg)


def _check_options(
    run: Any, engine: str, address: str | None, retries: int, cpus_per_task: float
) -> None:
    if not callable(run):
        msg = f"run must be a callable taking the parameters dict, got {type(run).__name__}"
        raise InvalidRequest(msg)
    if engine not in _ENGINES:
        msg = f"engine must be one of {_ENGINES}, got {engine!r}"
        raise InvalidRequest(msg)
    if address is not None and engine != "ray":
        msg = f"address= points at a Ray cluster; use it with engine='ray', not {engine!r}"
        raise InvalidRequest(msg)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        msg = f"retries must be a whole number >= 0, got {retries!r}"
        raise InvalidRequest(msg)
    number = isinstance(cpus_per_task, int | float) and not isinstance(cpus_per_task, bool)
    if not number or not cpus_per_task > 0:
        msg = f"cpus_per_task must be a number > 0, got {cpus_per_task!r}"
        raise InvalidRequest(msg)


def _attempt(run: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> dict[str, Any]:
    """One combination, in whichever process runs it: its row, never an exception."""
    start = time.perf_counter()
    try:
        outputs, error = _outputs(run(dict(params)), params), None
    except Exception as exc:
        outputs, error = {}, exc
    worker = f"{socket.gethostname()}:{os.getpid()}"
    status = "ok" if error is None else "error"
    return _row(status, outputs, error, time.perf_counter() - start, worker)


def _failure(status: str, exc: BaseException) -> dict[str, Any]:
    """The row of a combination that produced no result of its own (its worker died)."""
    return _row(status, {}, exc, None, None)


def _row(
    status: str,
    outputs: dict[str, Any],
    exc: BaseException | None,
    seconds: float | None,
    worker: str | None,
) -> dict[str, Any]:
    error = None if exc is None else f"{type(exc).__name__}: {exc}"
    return {
        "outputs": outputs,
        "status": status,
        "error": error,
        "seconds": seconds,
        "worker": worker,
    }


def _outputs(value: Any, params: dict[str, Any]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return {_VALUE: value}
    for key in value:
        if not isinstance(key, str):
            kind = "not a string"
        elif key in params:
            kind = "a parameter"
        elif key in _RESERVED:
            kind = "a results column"
        else:
            continue
        msg = f"run returned the key {key!r}, which is {kind}; rename that output"
        raise InvalidRequest(msg)
    return dict(value)


def _table(combos: list[dict[str, Any]], rows: list[dict[str, Any] | None]) -> pl.DataFrame:
    """Parameters, outputs (in order of first appearance), then the status columns."""
    done = [row for row in rows if row is not None]
    if len(done) != len(rows):  # an engine must account for every combination
        missing = [i for i, row in enumerate(rows) if row is None]
        msg = f"internal error: no result for combinations {missing[:10]}"
        raise RuntimeError(msg)
    params = list(dict.fromkeys(name for combo in combos for name in combo))
    outputs = list(dict.fromkeys(key for row in done for key in row["outputs"]))
    columns = [_column(n, [c.get(n) for c in combos]) for n in params]
    columns += [_column(k, [r["outputs"].get(k) for r in done]) for k in outputs]
    columns.append(pl.Series("status", [r["status"] for r in done], dtype=pl.String))
    columns.append(pl.Series("error", [r["error"] for r in done], dtype=pl.String))
    columns.append(pl.Series("seconds", [r["seconds"] for r in done], dtype=pl.Float64))
    columns.append(pl.Series("worker", [r["worker"] for r in done], dtype=pl.String))
    return pl.DataFrame(columns)


def _column(name: str, values: list[Any]) -> pl.Series:
    """Values as polars infers them; ints mixed with floats widen; anything else is kept as is."""
    try:
        return pl.Series(name, values)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        pass
    numbers = all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
    )
    if numbers:
        return pl.Series(name, values, dtype=pl.Float64, strict=False)
    return pl.Series(name, values, dtype=pl.Object)


@contextlib.contextmanager
def _bar(total: int, engine: str, *, enabled: bool) -> Iterator[Callable[[bool], None]]:
    """A rich progress bar over the combinations; ``advance(failed)`` as each result arrives."""
    if not enabled:
        yield lambda failed: None
        return
    from rich import progress as rp  # noqa: PLC0415 - rich only when a bar is shown
    from rich.console import Console  # noqa: PLC0415

    columns = (
        rp.TextColumn(f"sweep ({engine})"),
        rp.BarColumn(),
        rp.MofNCompleteColumn(),
        rp.TextColumn("{task.fields[failed]} failed"),
        rp.TimeElapsedColumn(),
        rp.TimeRemainingColumn(),
    )
    failures = 0
    # stderr, like any progress report: stdout stays the caller's (pipes, doctests).
    with rp.Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("sweep", total=total, failed=0)

        def advance(failed: bool) -> None:
            nonlocal failures
            failures += failed
            bar.update(task, advance=1, failed=failures)

        yield advance
