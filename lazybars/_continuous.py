"""A continuous future as the store serves it: a root's stored contracts stitched by a roll
rule (``lazybars.futures``), read like one symbol.

The stitched bars of a timestep are one lazy plan: each contract's scan, kept to the bars
starting in its window (from its first instant to the roll that ends it), then
concatenated. A window or ``as_of`` put on top reaches every contract's parquet scan, as
polars pushes predicates through a concatenation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import polars as pl

from lazybars._aggregate import bar_ends_expr
from lazybars._time import ns_literal, timestamp
from lazybars.errors import InvalidRequest, SchemaError, UnknownAsset
from lazybars.futures import (
    CalendarRule,
    Rule,
    Schedule,
    Stitch,
    VolumeRule,
    default_rule,
    is_contract,
    parse_contract,
)
from lazybars.query import Query, QuerySource
from lazybars.timestep import Timestep, serving_timestep

__all__ = ["Stitched", "find_root", "scan_roots"]

Adjust = Literal["difference", "ratio"] | None
_PRICES = ("open", "high", "low", "close")
_DATETIME = pl.col("datetime")


class _Store(Protocol):  # what this module uses of a BarStore
    def symbols(self, timestep: str | None = None) -> list[str]: ...

    def _bounds(self, symbol: str, timestep: Timestep) -> tuple[int, int]: ...

    _backend: Any


def _candidates(store: _Store, root: str) -> list[str]:
    return [s for s in store.symbols() if is_contract(s, root)]


def find_root(store: _Store, symbol: str) -> Stitched | None:
    """``symbol`` as a continuous root with its default rule, when the store holds none of
    that name but holds its contracts (None when it holds no contract of it)."""
    if not _candidates(store, symbol):
        return None
    return Stitched(store, symbol, default_rule(symbol), None)


def scan_roots(
    store: _Store,
    symbols: str | Iterable[str],
    timestep: str | None,
    zone: str,
    roll: Rule | None,
    adjust: Adjust,
) -> Query:
    """``BarStore.scan`` of continuous roots stitched by an explicit rule or adjustment."""
    names = (symbols,) if isinstance(symbols, str) else tuple(symbols)
    stitched = {name: Stitched(store, name, roll or default_rule(name), adjust) for name in names}
    wanted = None if timestep is None else Timestep.parse(timestep)
    bases = {serving_timestep(s.timesteps, wanted, name) for name, s in stitched.items()}
    if len(bases) > 1:
        msg = (
            f"{list(names)} would be read at different stored timesteps "
            f"{sorted(map(str, bases))}; scan them one by one"
        )
        raise InvalidRequest(msg)
    base = bases.pop()

    def read(symbol: str, timestep: Timestep) -> pl.LazyFrame:
        return stitched[symbol].read(timestep)

    # The rule and the adjustment are part of what the query reads: equal only if equal.
    key = (store._backend.key, roll, adjust)
    long = not isinstance(symbols, str)
    query = Query(QuerySource(key, names, base, zone, long, read))
    if wanted is not None and wanted != base:
        query = query.resample(str(wanted))
    return query


def _read(store: _Store, symbol: str, timestep: Timestep) -> pl.LazyFrame:
    return store._backend.read(symbol, timestep)


class Stitched:
    """The contracts of ``root`` stitched by ``rule`` (and back-adjusted by ``adjust``).

    Built once per scan (or per DataSource load): it lists the contracts, reads the bars
    the rule needs (the volume rule: each contract's volume; adjustment: the closes at each
    roll) and checks that the chain is whole.
    """

    def __init__(self, store: _Store, root: str, rule: Rule, adjust: Adjust) -> None:
        if adjust not in (None, "difference", "ratio"):
            msg = f"adjust must be None, 'difference' or 'ratio', got {adjust!r}"
            raise InvalidRequest(msg)
        if not isinstance(rule, CalendarRule | VolumeRule | Schedule):
            msg = (
                f"roll must be a rule of lazybars.futures (CalendarRule, VolumeRule or "
                f"Schedule), got {type(rule).__name__} {rule!r}"
            )
            raise InvalidRequest(msg)
        self.root, self.adjust = root, adjust
        self._store = store
        stored: dict[str, list[Timestep]] = {}
        contracts = []
        for symbol in _candidates(store, root):
            timesteps = store._backend.timesteps(symbol)
            first = store._bounds(symbol, timesteps[0])[0]
            contract = parse_contract(symbol, root, first)
            if contract is not None:
                contracts.append(contract)
                stored[symbol] = timesteps
        if not contracts:
            msg = (
                f"unknown asset {root!r}: the store holds no contract of it (symbols such as "
                f"{root}H4, {root}H24 or {root}H2024); write them first with store.write()"
            )
            raise UnknownAsset(msg)
        self.stitch: Stitch = rule.rolls(root, contracts, self._volumes(stored))
        common = set.intersection(*(set(stored[c]) for c in self.stitch.contracts))
        if not common:
            each = "; ".join(f"{c}: {[str(t) for t in stored[c]]}" for c in self.stitch.contracts)
            msg = (
                f"the contracts of {root} share no stored timestep ({each}); store them at "
                "a common timestep to stitch them"
            )
            raise SchemaError(msg)
        self.timesteps = sorted(common)
        self._gaps = self._measure() if adjust is not None else None
        # Bounds come from the bars (a roll window cuts into a contract's stored range).
        self._bounds: dict[Timestep, tuple[int, int]] = {}

    def _volumes(self, stored: dict[str, list[Timestep]]) -> Callable[[str], pl.DataFrame]:
        def volumes(symbol: str) -> pl.DataFrame:
            lf = _read(self._store, symbol, stored[symbol][0])
            return lf.select("datetime", "volume").collect()

        return volumes

    def windows(self) -> list[tuple[str, int | None, int | None]]:
        """Each contract and the bars it serves: starting in ``[start, end)`` (None: open)."""
        stitch = self.stitch
        starts = [stitch.start, *(r.resume for r in stitch.rolls)]
        ends = [*(r.at for r in stitch.rolls), stitch.end]
        return list(zip(stitch.contracts, starts, ends, strict=True))

    def _measure(self) -> list[tuple[float, float]]:
        """The closes of both contracts at each roll: each one's last bar at the finest
        common timestep that has ended by the roll instant."""
        timestep, closes = self.timesteps[0], []
        for roll in self.stitch.rolls:
            pair = []
            for symbol in (roll.out, roll.into):
                lf = _read(self._store, symbol, timestep)
                zone = lf.collect_schema()["datetime"].time_zone
                assert zone is not None
                ended = lf.filter(_DATETIME < ns_literal(roll.at, zone)).filter(
                    bar_ends_expr(_DATETIME, timestep, zone) <= roll.at
                )
                last = ended.select(pl.col("close").last()).collect().item()
                if last is None:
                    msg = (
                        f"cannot adjust {self.root} at its roll from {roll.out} to {roll.into} "
                        f"at {timestamp(roll.at, 'UTC')}: {symbol} has no {timestep} bar "
                        "ended by then; store its bars before the roll, or use adjust=None"
                    )
                    raise SchemaError(msg)
                pair.append(float(last))
            closes.append((pair[0], pair[1]))
        return closes

    def _offsets(self) -> list[float]:
        """Each contract's adjustment: added (difference) or multiplied (ratio)."""
        ratio = self.adjust == "ratio"
        assert self._gaps is not None
        total, out = (1.0 if ratio else 0.0), [1.0 if ratio else 0.0]
        for before, after in reversed(self._gaps):
            total = total * (after / before) if ratio else total + (after - before)
            out.append(total)
        return out[::-1]

    def read(self, timestep: Timestep) -> pl.LazyFrame:
        """The stitched bars at ``timestep``, lazily, in the first contract's zone, with a
        ``contract`` column."""
        if timestep not in self.timesteps:
            msg = (
                f"{self.root} (stitched from {list(self.stitch.contracts)}) is stored at "
                f"{[str(t) for t in self.timesteps]}, not at {timestep}"
            )
            raise UnknownAsset(msg)
        offsets = self._offsets() if self.adjust is not None else None
        parts, zone = [], None
        for k, (symbol, start, end) in enumerate(self.windows()):
            lf = _read(self._store, symbol, timestep)
            mine = lf.collect_schema()["datetime"].time_zone
            zone = zone or mine
            if start is not None:
                lf = lf.filter(_DATETIME >= ns_literal(start, mine))
            if end is not None:
                lf = lf.filter(_DATETIME < ns_literal(end, mine))
            if mine != zone:
                lf = lf.with_columns(_DATETIME.dt.convert_time_zone(zone))
            if offsets is not None:
                by = pl.lit(offsets[k])
                shifted = pl.col(*_PRICES) * by if self.adjust == "ratio" else pl.col(*_PRICES) + by
                lf = lf.with_columns(shifted.cast(pl.Float64))
            parts.append(lf.with_columns(contract=pl.lit(symbol, pl.String)))
        return pl.concat(parts, how="diagonal_relaxed")

    def bounds(self, timestep: Timestep) -> tuple[int, int]:
        """The first and last stitched bar start (int64 ns), read once per timestep."""
        found = self._bounds.get(timestep)
        if found is None:
            found = self._bounds[timestep] = self._read_bounds(timestep)
        return found

    def _read_bounds(self, timestep: Timestep) -> tuple[int, int]:
        ns = _DATETIME.dt.epoch("ns")
        row = self.read(timestep).select(ns.min(), ns.max().alias("last")).collect().row(0)
        if row[0] is None:
            msg = (
                f"{self.root}: no stored bar of {list(self.stitch.contracts)} falls in its "
                "roll windows; store the bars each contract serves (see store.rolls)"
            )
            raise SchemaError(msg)
        return int(row[0]), int(row[1])

    def frame(self, zone: str) -> pl.DataFrame:
        """The rolls as a table: the instant, the contracts out and in, the instant the
        contract in serves from, and with ``adjust`` both closes and the adjustment."""
        rolls = self.stitch.rolls
        when = pl.Datetime("ns", "UTC")
        data: dict[str, Any] = {
            "roll": pl.Series([r.at for r in rolls], dtype=pl.Int64).cast(when),
            "out": [r.out for r in rolls],
            "in": [r.into for r in rolls],
            "in_from": pl.Series([r.resume for r in rolls], dtype=pl.Int64).cast(when),
        }
        frame = pl.DataFrame(data, schema_overrides={"out": pl.String, "in": pl.String})
        frame = frame.with_columns(pl.col("roll", "in_from").dt.convert_time_zone(zone))
        if self._gaps is not None:
            outs = [g[0] for g in self._gaps]
            ins = [g[1] for g in self._gaps]
            gap = [b / a if self.adjust == "ratio" else b - a for a, b in self._gaps]
            frame = frame.with_columns(
                out_close=pl.Series(outs, dtype=pl.Float64),
                in_close=pl.Series(ins, dtype=pl.Float64),
                adjustment=pl.Series(gap, dtype=pl.Float64),
            )
        return frame
