"""DataBento DBN files: decoding, symbology, schemas, and bad files.

Every file is written here (``tests/dbn_files.py``: metadata encoded by databento-dbn,
records as numpy bytes); expectations come from plain Python (``Decimal`` for prices,
dicts for symbology), never from lazybars.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lazybars as lb

dbn = pytest.importorskip(
    "databento_dbn",
    reason="DBN ingestion needs the databento extra: pip install 'lazybars[databento]'",
)
import dbn_files as files  # noqa: E402 - after the importorskip above

T0 = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC
MIN = 60_000_000_000
SEC = 1_000_000_000
UTC = dt.UTC
JAN = (dt.date(2024, 1, 1), dt.date(2024, 12, 31))
SANTIAGO = "America/Santiago"


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def price(fixed: int) -> float:
    """The closest double to the decimal price (independent of the code under test)."""
    return float(Decimal(fixed) / Decimal(10**9))


def stamp(ns: int, zone: str = "UTC") -> dt.datetime:
    from zoneinfo import ZoneInfo

    return (dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=ns // 1000)).astimezone(
        ZoneInfo(zone)
    )


def one_symbol_file(
    path: Path, n: int = 10, *, schema: str = "ohlcv-1m", step: int = MIN, **kw
) -> Path:
    recs = files.records(
        [42] * n,
        [T0 + i * step for i in range(n)],
        [
            [
                (4500 + i) * 10**9 + 250_000_000,
                (4501 + i) * 10**9,
                (4499 + i) * 10**9,
                (4500 + i) * 10**9,
            ]
            for i in range(n)
        ],
        [i * 3 for i in range(n)],
        schema=schema,
    )
    head = files.metadata(schema=schema, mappings={"MES.c.0": [(*JAN, 42)]}, stype_in="continuous")
    return files.write(path, head, recs, **kw)


def test_the_record_layout_is_databentos() -> None:
    mine = files.records([42], [T0], [[1, 2, 3, 4]], [5]).tobytes()
    theirs = bytes(dbn.OHLCVMsg(0x21, 1, 42, T0, 1, 2, 3, 4, 5))
    assert mine == theirs
    assert files.RECORD.itemsize == 56


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 2),  # instrument
            st.lists(st.integers(1, 9_000_000 * 10**9), min_size=4, max_size=4),
            st.integers(0, 10**12),  # volume
        ),
        min_size=1,
        max_size=60,
    ),
    zstd=st.booleans(),
)
def test_round_trip_is_exact(tmp_path_factory: pytest.TempPathFactory, data, zstd: bool) -> None:
    tmp = tmp_path_factory.mktemp("rt")
    names = ["ESH4", "NQH4", "BRK.B"]
    ids = [i for i, _, _ in data]
    times = [T0 + k * MIN for k in range(len(data))]
    recs = files.records(
        [100 + i for i in ids], times, [p for _, p, _ in data], [v for _, _, v in data]
    )
    head = files.metadata(mappings={n: [(*JAN, 100 + k)] for k, n in enumerate(names)})
    path = files.write(tmp / ("x.dbn.zst" if zstd else "x.dbn"), head, recs, zstd=zstd)
    lb.ingest_into(tmp / "cat", path)
    store = lb.BarStore(tmp / "cat")
    for k, name in enumerate(names):
        mine = [(t, p, v) for (i, p, v), t in zip(data, times, strict=True) if i == k]
        if not mine:
            assert name not in store.symbols()
            continue
        got = store.scan(name, timezone="UTC").collect()  # shown in UTC, as stored
        assert got["datetime"].to_list() == [stamp(t) for t, _, _ in mine]
        for j, col in enumerate(("open", "high", "low", "close")):
            assert got[col].to_list() == [price(p[j]) for _, p, _ in mine]
        assert got["volume"].to_list() == [float(v) for _, _, v in mine]
        assert got.columns == ["datetime", "open", "high", "low", "close", "volume"]
        assert got.schema["datetime"] == pl.Datetime("ns", "UTC")


def test_many_batches_and_spills_give_the_same_catalog(tmp_path: Path) -> None:
    n = 20_000
    rng = np.random.default_rng(3)
    recs = files.records(
        rng.integers(7, 10, n),
        [T0 + (k // 3) * MIN for k in range(n)],
        (rng.integers(1000, 2000, (n, 4)) * 250_000_000).tolist(),
        rng.integers(0, 100, n),
    )
    # Three instruments, but two share a minute now and then: keep one record per minute each.
    keep = ~pl.DataFrame({"i": recs["instrument_id"], "t": recs["ts_event"]}).is_duplicated()
    recs = recs[keep.to_numpy()]
    head = files.metadata(mappings={"A": [(*JAN, 7)], "B": [(*JAN, 8)], "C": [(*JAN, 9)]})
    path = files.write(tmp_path / "x.dbn", head, recs)
    whole = lb.ingest_into(tmp_path / "one", path)
    spilled = lb.ingest_into(tmp_path / "many", path, buffer_rows=3000)
    assert whole.drop("sources").equals(spilled.drop("sources"))
    assert not list((tmp_path / "many").glob(".ingest-*"))  # the spill folder is gone
    a, b = lb.BarStore(tmp_path / "one"), lb.BarStore(tmp_path / "many")
    for s in ("A", "B", "C"):
        assert a.scan(s).collect().equals(b.scan(s).collect())
        expected = int((recs["instrument_id"] == {"A": 7, "B": 8, "C": 9}[s]).sum())
        assert a.scan(s).collect().height == expected


def test_a_continuous_symbol_follows_its_roll(tmp_path: Path) -> None:
    roll = dt.date(2024, 3, 15)
    day = 86_400 * SEC
    t_before = int(dt.datetime(2024, 3, 14, 15, tzinfo=UTC).timestamp()) * SEC
    t_after = t_before + 2 * day
    # Both contracts trade on both days; MES.c.0 is 42 before the roll and 43 after.
    recs = files.records(
        [42, 43, 42, 43],
        [t_before, t_before, t_after, t_after],
        [[1 * 10**9] * 4, [2 * 10**9] * 4, [3 * 10**9] * 4, [4 * 10**9] * 4],
        [1, 2, 3, 4],
    )
    head = files.metadata(
        mappings={"MES.c.0": [(dt.date(2024, 1, 1), roll, 42), (roll, dt.date(2024, 6, 1), 43)]},
        stype_in="continuous",
    )
    path = files.write(tmp_path / "x.dbn", head, recs)
    summary = lb.ingest_into(tmp_path / "cat", path)
    store = lb.BarStore(tmp_path / "cat")
    # The stored name is the continuous symbol itself (a valid catalog symbol).
    assert store.symbols() == ["42", "43", "MES.c.0"]
    assert store.scan("MES.c.0").collect()["open"].to_list() == [1.0, 4.0]
    # Records no mapping covers are kept under their instrument id.
    assert store.scan("42").collect()["open"].to_list() == [3.0]
    assert store.scan("43").collect()["open"].to_list() == [2.0]
    assert summary["symbol"].to_list() == ["42", "43", "MES.c.0"]


def test_one_instrument_under_two_symbols_goes_to_both(tmp_path: Path) -> None:
    recs = files.records([42, 42], [T0, T0 + MIN], [[10**9] * 4, [2 * 10**9] * 4], [1, 2])
    head = files.metadata(mappings={"MES.c.0": [(*JAN, 42)], "MESH4": [(*JAN, 42)]})
    lb.ingest_into(tmp_path / "cat", files.write(tmp_path / "x.dbn", head, recs))
    store = lb.BarStore(tmp_path / "cat")
    assert store.symbols() == ["MES.c.0", "MESH4"]
    assert store.scan("MES.c.0").collect().equals(store.scan("MESH4").collect())


def test_unsafe_vendor_symbols_get_safe_catalog_names(tmp_path: Path) -> None:
    recs = files.records([1], [T0], [[10**9] * 4], [1])
    head = files.metadata(mappings={"EUR/USD": [(*JAN, 1)]})
    lb.ingest_into(tmp_path / "cat", files.write(tmp_path / "x.dbn", head, recs))
    assert lb.BarStore(tmp_path / "cat").symbols() == ["EUR-USD"]


def test_symbol_renames_a_one_symbol_file(tmp_path: Path) -> None:
    path = one_symbol_file(tmp_path / "x.dbn")
    lb.ingest_into(tmp_path / "a", path, symbol="MES")
    lb.ingest_into(tmp_path / "b", path, symbol={"MES.c.0": "MES"})
    assert lb.BarStore(tmp_path / "a").symbols() == lb.BarStore(tmp_path / "b").symbols() == ["MES"]


def test_one_second_bars_become_minute_bars(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    seconds = sorted(set(rng.integers(0, 3 * 3600, 4000).tolist()))
    rows = [(inst, s) for s in seconds for inst in (1, 2) if rng.random() < 0.7]
    prices = rng.integers(100, 200, (len(rows), 4)) * 10**9
    vols = rng.integers(0, 50, len(rows))
    recs = files.records(
        [i for i, _ in rows],
        [T0 + s * SEC for _, s in rows],
        prices.tolist(),
        vols,
        schema="ohlcv-1s",
    )
    head = files.metadata(schema="ohlcv-1s", mappings={"A": [(*JAN, 1)], "B": [(*JAN, 2)]})
    path = files.write(tmp_path / "x.dbn", head, recs)
    # Small batches: minutes are cut across batches and must be stitched back together.
    summary = lb.ingest_into(tmp_path / "cat", path, buffer_rows=2048)
    assert summary["timestep"].to_list() == ["1m", "1m"]
    store = lb.BarStore(tmp_path / "cat")
    for inst, name in ((1, "A"), (2, "B")):
        buckets: dict[int, list[int]] = {}
        for k, (i, s) in enumerate(rows):
            if i == inst:
                buckets.setdefault(s // 60, []).append(k)
        got = store.scan(name).collect()
        assert got["datetime"].to_list() == [stamp(T0 + m * MIN) for m in sorted(buckets)]
        ks = [buckets[m] for m in sorted(buckets)]
        assert got["open"].to_list() == [price(int(prices[k[0], 0])) for k in ks]
        assert got["high"].to_list() == [price(int(max(prices[j, 1] for j in k))) for k in ks]
        assert got["low"].to_list() == [price(int(min(prices[j, 2] for j in k))) for k in ks]
        assert got["close"].to_list() == [price(int(prices[k[-1], 3])) for k in ks]
        assert got["volume"].to_list() == [float(sum(int(vols[j]) for j in k)) for k in ks]


def test_hour_bars_are_stored_at_1h(tmp_path: Path) -> None:
    path = one_symbol_file(tmp_path / "x.dbn", schema="ohlcv-1h", step=3600 * SEC)
    assert lb.ingest_into(tmp_path / "cat", path)["timestep"].to_list() == ["1h"]


@pytest.mark.parametrize("schema", ["ohlcv-1d", "ohlcv-eod"])
def test_day_bars_start_at_local_midnight_of_their_date(tmp_path: Path, schema: str) -> None:
    midnight = int(dt.datetime(2024, 3, 8, tzinfo=UTC).timestamp()) * SEC
    path = one_symbol_file(tmp_path / "x.dbn", n=5, schema=schema, step=86_400 * SEC)
    with pytest.raises(lb.SchemaError, match=r"pass tz=.*America/Chicago"):
        lb.ingest_into(tmp_path / "cat", path)
    assert not (tmp_path / "cat" / "1d").exists()
    recs = files.records(
        [42] * 5,
        [midnight + d * 86_400 * SEC for d in range(5)],
        [[10**9] * 4] * 5,
        [1] * 5,
        schema=schema,
    )
    head = files.metadata(schema=schema, mappings={"MES.c.0": [(*JAN, 42)]})
    path = files.write(tmp_path / "y.dbn", head, recs)
    lb.ingest_into(tmp_path / "cat", path, tz="America/Chicago")
    got = lb.BarStore(tmp_path / "cat").scan("MES.c.0", "1d").collect()["datetime"]
    from zoneinfo import ZoneInfo

    chicago = ZoneInfo("America/Chicago")  # 2024-03-10 is a DST day there
    assert got.to_list() == [dt.datetime(2024, 3, 8 + d, tzinfo=chicago) for d in range(5)]


def test_day_bars_in_a_zone_whose_midnight_is_skipped(tmp_path: Path) -> None:
    # 2024-09-08 has no midnight in Santiago (00:00 -04 becomes 01:00 -03): its bar starts
    # at the first instant of that date, 01:00.
    midnight = int(dt.datetime(2024, 9, 7, tzinfo=UTC).timestamp()) * SEC
    recs = files.records(
        [42] * 3,
        [midnight + d * 86_400 * SEC for d in range(3)],
        [[10**9] * 4] * 3,
        [1] * 3,
        schema="ohlcv-1d",
    )
    head = files.metadata(schema="ohlcv-1d", mappings={"SQM": [(*JAN, 42)]})
    lb.ingest_into(tmp_path / "cat", files.write(tmp_path / "x.dbn", head, recs), tz=SANTIAGO)
    got = lb.BarStore(tmp_path / "cat").scan("SQM", "1d").collect()["datetime"]
    first_instants = ["2024-09-07T00:00-04:00", "2024-09-08T01:00-03:00", "2024-09-09T00:00-03:00"]
    assert got.to_list() == [dt.datetime.fromisoformat(t) for t in first_instants]


def test_a_file_without_mappings_names_instruments_by_id(tmp_path: Path) -> None:
    recs = files.records([5, 6], [T0, T0], [[10**9] * 4] * 2, [1, 1])
    head = files.metadata(stype_in="instrument_id")
    lb.ingest_into(tmp_path / "cat", files.write(tmp_path / "x.dbn", head, recs))
    assert lb.BarStore(tmp_path / "cat").symbols() == ["5", "6"]


# -- bad files -----------------------------------------------------------------------------
@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    root = tmp_path / "cat"
    lb.BarStore(root).write("OLD", lb.synth.minute_bars("OLD", "2024-01-02", "2024-01-03"))
    lb.ingest_into(root, one_symbol_file(tmp_path / "first.dbn"))
    return root


def rejects(root: Path, path: Path, pattern: str, **kw) -> str:
    before = snapshot(root)
    with pytest.raises(lb.LazyBarsError, match=pattern) as err:
        lb.ingest_into(root, path, append=True, **kw)
    assert snapshot(root) == before
    assert str(path) in str(err.value)
    return str(err.value)


def test_a_truncated_record_is_named(tmp_path: Path, catalog: Path) -> None:
    whole = one_symbol_file(tmp_path / "whole.dbn", n=10).read_bytes()
    (tmp_path / "cut.dbn").write_bytes(whole[:-20])
    rejects(catalog, tmp_path / "cut.dbn", r"ends inside record 9 .*truncated; download it again")


def test_truncated_metadata_is_named(tmp_path: Path, catalog: Path) -> None:
    whole = one_symbol_file(tmp_path / "whole.dbn").read_bytes()
    (tmp_path / "cut.dbn").write_bytes(whole[:100])
    rejects(catalog, tmp_path / "cut.dbn", r"ends inside the DBN metadata")
    (tmp_path / "tiny.dbn").write_bytes(whole[:5])
    rejects(catalog, tmp_path / "tiny.dbn", r"ends inside the DBN header")


def test_a_truncated_zstd_file_is_named(tmp_path: Path, catalog: Path) -> None:
    whole = one_symbol_file(tmp_path / "whole.dbn.zst", n=2000, zstd=True).read_bytes()
    (tmp_path / "cut.dbn.zst").write_bytes(whole[: len(whole) // 2])
    rejects(catalog, tmp_path / "cut.dbn.zst", r"truncated")


def test_a_non_ohlcv_schema_is_rejected(tmp_path: Path, catalog: Path) -> None:
    head = dbn.Metadata(
        dataset="GLBX.MDP3",
        start=0,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.TRADES,
    ).encode()
    path = files.write(tmp_path / "trades.dbn", head, b"")
    message = rejects(catalog, path, r"holds trades records, not OHLCV bars")
    assert "ohlcv-1m" in message


def test_a_foreign_record_is_named(tmp_path: Path, catalog: Path) -> None:
    recs = files.records([42] * 6, [T0 + i * MIN for i in range(6)], [[10**9] * 4] * 6, [1] * 6)
    recs["rtype"][4] = 0x22  # an hour bar in a minute file
    head = files.metadata(mappings={"MES.c.0": [(*JAN, 42)]})
    rejects(
        catalog,
        files.write(tmp_path / "x.dbn", head, recs),
        r"record 4 is not an ohlcv-1m record \(rtype 0x22",
    )


def test_an_undefined_price_names_the_record(tmp_path: Path, catalog: Path) -> None:
    recs = files.records([42] * 6, [T0 + i * MIN for i in range(6)], [[10**9] * 4] * 6, [1] * 6)
    recs["close"][3] = 2**63 - 1
    head = files.metadata(mappings={"MES.c.0": [(*JAN, 42)]})
    rejects(
        catalog,
        files.write(tmp_path / "x.dbn", head, recs),
        r"'close' has missing.* at records \[3\]",
    )


def test_duplicate_records_are_rejected(tmp_path: Path, catalog: Path) -> None:
    recs = files.records([42] * 3, [T0, T0 + MIN, T0 + MIN], [[10**9] * 4] * 3, [1] * 3)
    head = files.metadata(mappings={"MES.c.0": [(*JAN, 42)]})
    rejects(catalog, files.write(tmp_path / "x.dbn", head, recs), r"share a timestamp")


def test_a_file_that_is_not_dbn_is_rejected(tmp_path: Path, catalog: Path) -> None:
    (tmp_path / "x.dbn").write_text("datetime,open,high,low,close\n")
    rejects(catalog, tmp_path / "x.dbn", r"not a DBN file")


def test_appending_a_differing_overlap_names_the_bar(tmp_path: Path, catalog: Path) -> None:
    recs = files.records([42], [T0 + 3 * MIN], [[10**9] * 4], [1])
    head = files.metadata(mappings={"MES.c.0": [(*JAN, 42)]})
    message = rejects(
        catalog, files.write(tmp_path / "x.dbn", head, recs), r"overlapping bars differ"
    )
    assert "2024-01-02 14:33:00" in message
