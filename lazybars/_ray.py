"""The Ray engine of ``lb.sweep``: one Ray task per combination, results as they arrive.

Imported only by ``lb.sweep(..., engine="ray")``, never by ``import lazybars``. Scheduling,
placement and retries are Ray's: every combination is submitted at once as a task with
``max_retries`` (Ray reruns a task whose worker died) and ``retry_exceptions=False`` (a run
that raised has already produced its row), and the driver collects results with
``ray.wait`` as they complete.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from lazybars.errors import InvalidRequest, LazyBarsWarning, MissingExtra

try:
    import ray
    import ray.exceptions
except ModuleNotFoundError as exc:
    _msg = f"engine='ray' needs Ray ({exc.name} is missing): pip install 'lazybars[ray]'"
    raise MissingExtra(_msg) from exc

__all__ = ["execute"]

# A run is sent to the workers once, through Ray's object store. Past this size it is almost
# certainly carrying bars (an in-memory BarStore, a frame bound into a partial) instead of a
# catalog path, which the contract says workers open themselves.
_LARGE_RUN = 1024 * 1024
# The address given to the connection this module opened, so that a second sweep with the
# same address= reuses it instead of failing on an already-initialised Ray.
_connected: list[str | None] = []


def execute(
    attempt: Callable[[Any, dict[str, Any]], dict[str, Any]],
    failure: Callable[[str, BaseException], dict[str, Any]],
    run: Any,
    combos: list[dict[str, Any]],
    *,
    address: str | None,
    retries: int,
    cpus: float,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, row)`` for every combination, in completion order.

    ``attempt(run, params)`` runs in a worker and returns the row; when Ray cannot deliver
    it (the worker died ``retries + 1`` times, the node was lost, ``run`` did not unpickle
    there), ``failure(status, exception)`` makes the row on the driver instead, so no
    combination goes missing.
    """
    _connect(address)
    shipped = _put(run)
    task = _remote(attempt).options(
        max_retries=retries, retry_exceptions=False, num_cpus=cpus, name="lazybars.sweep"
    )
    index = {task.remote(shipped, params): i for i, params in enumerate(combos)}
    pending = list(index)
    try:
        while pending:
            # Block until one result is in, then take every other one already done.
            ready, pending = ray.wait(pending, num_returns=1)
            if pending:
                more, pending = ray.wait(pending, num_returns=len(pending), timeout=0)
                ready += more
            for ref in ready:
                yield index[ref], _collect(ref, failure)
    finally:
        # Interrupted (Ctrl-C, an exception in the caller's loop): free the cluster.
        for ref in pending:
            ray.cancel(ref)


@functools.cache
def _remote(attempt: Callable[[Any, dict[str, Any]], dict[str, Any]]) -> Any:
    # One remote function per process: Ray exports a function's definition to the cluster
    # each time ray.remote wraps it, which a new wrapper per sweep would pay every time.
    return ray.remote(attempt)


def _collect(
    ref: ray.ObjectRef, failure: Callable[[str, BaseException], dict[str, Any]]
) -> dict[str, Any]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        # The task raised outside run's own try: run (or its module) did not unpickle.
        return failure("error", exc.cause if exc.cause is not None else exc)
    except ray.exceptions.RayError as exc:
        # The worker or its node died more often than Ray retried, the task was cancelled,
        # or it ran out of memory: there is no result, say so in its row.
        return failure("crashed", exc)


def _connect(address: str | None) -> None:
    if ray.is_initialized():
        if address is None or _connected == [address]:
            return
        msg = (
            f"Ray is already connected (ray.init was called), so address={address!r} cannot "
            "be used; drop address= to sweep on that cluster, or call ray.shutdown() first"
        )
        raise InvalidRequest(msg)
    # Without an address Ray connects to RAY_ADDRESS if set, else starts a local cluster;
    # that one needs no dashboard (an HTTP server and its agents) for a sweep.
    local = address is None and not os.environ.get("RAY_ADDRESS")
    ray.init(address=address, **({"include_dashboard": False} if local else {}))
    _connected[:] = [address]


def _put(run: Any) -> ray.ObjectRef:
    try:
        blob = ray.cloudpickle.dumps(run)
    except Exception as exc:
        msg = (
            f"run cannot be sent to Ray workers ({type(exc).__name__}: {exc}); make it a "
            "function, or a functools.partial of one, binding only picklable configuration "
            "such as a catalog path or URI"
        )
        raise InvalidRequest(msg) from exc
    if len(blob) > _LARGE_RUN:
        msg = (
            f"run pickles to {len(blob) / 2**20:.1f} MiB, sent to every worker: bind the "
            "catalog's path or URI and open the BarStore inside run, rather than bars"
        )
        warnings.warn(msg, LazyBarsWarning, stacklevel=4)
    return ray.put(run)
