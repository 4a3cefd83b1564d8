"""Contract definitions (multipliers, ticks, expirations) from DataBento definition files,
kept in the catalog: ingest, merge rule, storage on every backend, continuous roots.

Every definition file is written here: DBN files with databento-dbn (skipped without the
databento extra), CSV and parquet exports in DataBento's column layout by hand.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

import lazybars as lb
from lazybars.cli import app

UNDEF_PRICE = 2**63 - 1
UNDEF_TIME = 2**64 - 1
NAME = ".definitions.parquet"


def ns(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value)


# symbol, instrument id, multiplier, tick, asset, expiration (the real CME multipliers).
CONTRACTS = [
    ("MESH4", 101, 5, 0.25, "MES", "2024-03-15 13:30"),
    ("MESM4", 102, 5, 0.25, "MES", "2024-06-21 13:30"),
    ("ESH4", 103, 50, 0.25, "ES", "2024-03-15 13:30"),
    ("MNQH4", 104, 2, 0.25, "MNQ", "2024-03-15 13:30"),
    ("NQH4", 105, 20, 0.25, "NQ", "2024-03-15 13:30"),
    ("GCG4", 106, 100, 0.1, "GC", "2024-02-27 18:30"),
]
RECEIVED = ns("2024-01-02 00:00")
EXPECTED = {c[0]: float(c[2]) for c in CONTRACTS}


def records() -> list[dict[str, Any]]:
    """The definition records: every contract, then an older MESH4 record with another
    tick, received a day earlier (later in the file: the most recent must still win)."""
    rows = [
        {
            "ts_recv": RECEIVED + i,
            "ts_event": RECEIVED + i - 1000,
            "instrument_id": iid,
            "raw_symbol": symbol,
            "multiplier": multiplier,
            "tick": tick,
            "asset": asset,
            "expiration": ns(expiration),
            "activation": ns("2023-03-17 13:30") if symbol != "GCG4" else None,
        }
        for i, (symbol, iid, multiplier, tick, asset, expiration) in enumerate(CONTRACTS)
    ]
    stale = dict(rows[0], ts_recv=RECEIVED - 86_400 * 10**9, tick=0.5)
    return [*rows, stale]


def fixed(value: float | None) -> int:
    return UNDEF_PRICE if value is None else round(value * 10**9)


def export_frame(rows: list[dict[str, Any]], *, pretty: bool) -> pl.DataFrame:
    """A DataBento definition export: fixed-point prices and ns times as integers, or
    (pretty_px/pretty_ts) decimals and ISO times with undefined values left empty."""

    def price(value: float | None) -> Any:
        if not pretty:
            return fixed(value)
        return None if value is None else f"{value:.9f}"

    def time(value: int | None) -> Any:
        if not pretty:
            return UNDEF_TIME if value is None else value
        return None if value is None else pd.Timestamp(value, tz="UTC").strftime("%FT%T.%fZ")

    columns = {
        "ts_recv": [time(r["ts_recv"]) for r in rows],
        "ts_event": [time(r["ts_event"]) for r in rows],
        "rtype": [19] * len(rows),
        "publisher_id": [1] * len(rows),
        "instrument_id": [r["instrument_id"] for r in rows],
        "raw_symbol": [r["raw_symbol"] for r in rows],
        "security_update_action": ["A"] * len(rows),
        "instrument_class": ["F"] * len(rows),
        "min_price_increment": [price(r["tick"]) for r in rows],
        "display_factor": [price(1.0) for r in rows],
        "expiration": [time(r["expiration"]) for r in rows],
        "activation": [time(r["activation"]) for r in rows],
        "high_limit_price": [price(None) for r in rows],
        "unit_of_measure_qty": [price(r["multiplier"]) for r in rows],
        "currency": ["USD"] * len(rows),
        "asset": [r["asset"] for r in rows],
        "security_type": ["FUT"] * len(rows),
        "unit_of_measure": ["IPNT"] * len(rows),
    }
    frame = pl.DataFrame(columns, strict=False)
    return frame.with_columns(pl.col(pl.UInt64, pl.Int64, pl.Float64).cast(pl.String))


def write_csv(
    path: Path, *, pretty: bool = False, rows: list[dict[str, Any]] | None = None
) -> Path:
    export_frame(records() if rows is None else rows, pretty=pretty).write_csv(path)
    return path


def write_to_df_parquet(path: Path) -> Path:
    """``DBNStore.to_df()``'s shape saved by pandas: ``ts_recv`` the index, decimal prices,
    tz-aware times (NaT where undefined)."""
    rows = records()
    utc = [pd.Timestamp(r["expiration"], tz="UTC") for r in rows]
    frame = pd.DataFrame(
        {
            "ts_event": pd.to_datetime([r["ts_event"] for r in rows], utc=True),
            "rtype": 19,
            "publisher_id": 1,
            "instrument_id": [r["instrument_id"] for r in rows],
            "raw_symbol": [r["raw_symbol"] for r in rows],
            "min_price_increment": [r["tick"] for r in rows],
            "display_factor": 1.0,
            "expiration": utc,
            "activation": pd.to_datetime([r["activation"] for r in rows], utc=True),
            "unit_of_measure_qty": [float(r["multiplier"]) for r in rows],
            "currency": "USD",
            "asset": [r["asset"] for r in rows],
            "symbol": [r["raw_symbol"] for r in rows],
        },
        index=pd.DatetimeIndex(pd.to_datetime([r["ts_recv"] for r in rows], utc=True)),
    )
    frame.index.name = "ts_recv"
    frame.to_parquet(path)
    return path


def write_dbn(path: Path, rows: list[dict[str, Any]] | None = None, *, zstd: bool = False) -> Path:
    dbn = pytest.importorskip(
        "databento_dbn", reason="DBN definitions need the databento extra (lazybars[databento])"
    )
    import dbn_files

    head = dbn.Metadata(
        dataset="GLBX.MDP3",
        start=0,
        stype_in=dbn.SType.RAW_SYMBOL,
        stype_out=dbn.SType.INSTRUMENT_ID,
        schema=dbn.Schema.DEFINITION,
        symbols=[c[0] for c in CONTRACTS],
        mappings=[],
    ).encode()
    body = b"".join(
        bytes(
            dbn.InstrumentDefMsg(
                publisher_id=1,
                instrument_id=r["instrument_id"],
                ts_event=r["ts_event"],
                ts_recv=r["ts_recv"],
                min_price_increment=fixed(r["tick"]),
                display_factor=fixed(1.0),
                raw_symbol=r["raw_symbol"],
                asset=r["asset"],
                security_type="FUT",
                instrument_class=dbn.InstrumentClass.FUTURE,
                security_update_action=dbn.SecurityUpdateAction.ADD,
                expiration=r["expiration"],
                activation=UNDEF_TIME if r["activation"] is None else r["activation"],
                unit_of_measure_qty=fixed(r["multiplier"]),
                currency="USD",
                unit_of_measure="IPNT",
            )
        )
        for r in (records() if rows is None else rows)
    )
    return dbn_files.write(path, head, body, zstd=zstd)


def check_definitions(store: lb.BarStore) -> None:
    """The store holds what :func:`records` says: the latest record of each contract."""
    defined = store.definitions()
    assert defined["symbol"].to_list() == sorted(EXPECTED)
    assert dict(defined.select("symbol", "multiplier").iter_rows()) == EXPECTED
    for symbol, multiplier in EXPECTED.items():
        assert store.multiplier(symbol) == multiplier
    by_symbol = {r["symbol"]: r for r in defined.iter_rows(named=True)}
    for symbol, iid, _, tick, asset, expiration in CONTRACTS:
        row = by_symbol[symbol]
        assert row["min_price_increment"] == tick  # MESH4: not the stale 0.5
        assert row["instrument_id"] == iid and row["asset"] == asset
        assert row["expiration"] == pd.Timestamp(expiration, tz="UTC")
    assert by_symbol["GCG4"]["activation"] is None  # undefined stays undefined
    assert by_symbol["MESH4"]["ts_recv"] == pd.Timestamp(RECEIVED, tz="UTC")


def bars_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lb.synth.minute_bars("MESH4", "2024-01-02", "2024-01-04").write_csv(folder / "MESH4.csv")
    return folder


WRITERS = {
    "csv": lambda folder: write_csv(folder / "definitions.csv"),
    "csv-pretty": lambda folder: write_csv(folder / "definitions.csv", pretty=True),
    "parquet-to_df": lambda folder: write_to_df_parquet(folder / "definitions.parquet"),
    "dbn": lambda folder: write_dbn(folder / "definitions.dbn"),
    "dbn-zst": lambda folder: write_dbn(folder / "definitions.dbn.zst", zstd=True),
}


@pytest.mark.parametrize("kind", WRITERS)
def test_ingest_stores_the_definitions_of_a_folder_beside_its_bars(
    tmp_path: Path, kind: str
) -> None:
    folder = bars_folder(tmp_path / "in")
    WRITERS[kind](folder)
    store = lb.BarStore(tmp_path / "catalog")
    summary = lb.ingest_into(store, folder)
    check_definitions(store)
    # The bars are stored exactly as without the definition file.
    plain = lb.BarStore(tmp_path / "plain")
    lb.ingest_into(plain, folder / "MESH4.csv")
    assert summary["symbol"].to_list() == ["MESH4"]
    assert store.symbols() == plain.symbols() == ["MESH4"]
    assert store.info().drop("bytes").equals(plain.info().drop("bytes"))
    assert store.scan("MESH4").collect().equals(plain.scan("MESH4").collect())
    assert (tmp_path / "catalog" / NAME).is_file()


def test_reingesting_the_same_definitions_changes_nothing(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "definitions.csv")
    store = lb.BarStore(tmp_path / "catalog")
    lb.ingest_into(store, source)
    stored = tmp_path / "catalog" / NAME
    before = (stored.stat().st_ino, stored.stat().st_mtime_ns, stored.read_bytes())
    # The same contracts received again a day later: the same definitions.
    later = [dict(r, ts_recv=r["ts_recv"] + 86_400 * 10**9) for r in records()]
    for again in (source, write_csv(tmp_path / "later.csv", rows=later)):
        lb.ingest_into(store, again)
        assert (stored.stat().st_ino, stored.stat().st_mtime_ns, stored.read_bytes()) == before
    check_definitions(store)


def test_conflicting_definitions_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = lb.BarStore(tmp_path / "catalog")
    lb.ingest_into(store, write_csv(tmp_path / "definitions.csv"))
    stored = (tmp_path / "catalog" / NAME).read_bytes()
    folder = bars_folder(tmp_path / "in")
    wrong = [dict(r, multiplier=10) if r["raw_symbol"] == "ESH4" else r for r in records()]
    write_csv(folder / "definitions.csv", rows=wrong)
    with pytest.raises(lb.SchemaError, match=r"ESH4.*multiplier: stored 50\.0, new 10\.0"):
        lb.ingest_into(store, folder)
    assert (tmp_path / "catalog" / NAME).read_bytes() == stored
    assert store.symbols() == []  # the bars beside it were not written either
    check_definitions(store)


def test_the_cli_adds_a_definition_file_alone_to_an_existing_catalog(tmp_path: Path) -> None:
    folder = bars_folder(tmp_path / "in")
    root = str(tmp_path / "catalog")
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(folder), "--store", root])
    assert first.exit_code == 0, first.output
    info = runner.invoke(app, ["info", root, "--json"]).output
    added = runner.invoke(app, ["ingest", str(write_csv(tmp_path / "defs.csv")), "--store", root])
    assert added.exit_code == 0, added.output
    assert f"{len(EXPECTED)} contract definitions (+{len(EXPECTED)})" in added.output
    check_definitions(lb.BarStore(root))
    assert runner.invoke(app, ["info", root, "--json"]).output == info  # bars only
    wrong = [dict(r, tick=0.1) for r in records()]
    refused = runner.invoke(
        app, ["ingest", str(write_csv(tmp_path / "wrong.csv", rows=wrong)), "--store", root]
    )
    assert refused.exit_code == 1
    assert "min_price_increment: stored 0.25, new 0.1" in refused.output


def test_a_continuous_root_answers_its_contracts_multiplier() -> None:
    days = lb.synth.daily_bars("MES", "2023-12-01", "2024-06-30")
    frames = {"MESH4": days, "MESM4": days, "ESH4": days}
    store = lb.BarStore.from_frames(
        frames, timestep="day", definitions=export_frame(records(), pretty=False)
    )
    assert store.multiplier("MES") == 5.0
    assert store.multiplier("ES") == 50.0
    assert store.multiplier("CL") is None  # nothing defined
    # The contracts it answers for are those the root stitches.
    rolls = store.rolls("MES")
    rolled = set(rolls["out"]) | set(rolls["in"])
    assert store.definitions("MES")["symbol"].to_list() == sorted(rolled) == ["MESH4", "MESM4"]
    assert store.definitions(["ESH4", "GC"])["symbol"].to_list() == ["ESH4", "GCG4"]
    # A root whose contracts disagree has no one multiplier.
    odd = pl.DataFrame({"symbol": ["ZZH4", "ZZM4"], "multiplier": [5.0, 50.0]})
    store.write_definitions(odd)
    with pytest.raises(lb.SchemaError, match=r"ZZ.*\[5\.0, 50\.0\]"):
        store.multiplier("ZZ")
    assert store.multiplier("ZZM4") == 50.0


def test_definitions_live_in_a_hidden_file_on_every_backend(catalog: Any) -> None:
    store = catalog.open()
    store.write("MES", lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03"))
    info = store.info()
    assert store.write_definitions(export_frame(records(), pretty=True)) == len(EXPECTED)
    again = catalog.open()
    check_definitions(again)
    assert again.symbols() == ["MES"]
    assert again.info().drop("bytes").equals(info.drop("bytes"))
    assert NAME in catalog.tree() or any(k.endswith(NAME) for k in catalog.tree())
    # The catalog's own shape round-trips; the same definitions change nothing.
    assert again.write_definitions(again.definitions()) == 0
    # Conflicts are refused here too, and replace= takes the new definition.
    changed = again.definitions().with_columns(
        pl.when(pl.col("symbol") == "GCG4").then(200.0).otherwise("multiplier").alias("multiplier")
    )
    with pytest.raises(lb.SchemaError, match=r"GCG4 .*multiplier: stored 100\.0, new 200\.0"):
        again.write_definitions(changed)
    assert catalog.open().multiplier("GCG4") == 100.0
    assert again.write_definitions(changed, replace=True) == 1
    assert catalog.open().multiplier("GCG4") == 200.0
    assert catalog.open().multiplier("MESH4") == 5.0


def test_an_in_memory_store_without_definitions_answers_none() -> None:
    store = lb.BarStore.from_frames({"MES": lb.synth.minute_bars("MES")})
    assert store.definitions().is_empty()
    assert store.multiplier("MES") is None
    assert store.definitions().columns[:3] == ["symbol", "instrument_id", "multiplier"]


def test_bad_definitions_are_named(tmp_path: Path, catalog: Any) -> None:
    with pytest.raises(lb.SchemaError, match="no unit_of_measure_qty column"):
        catalog.open().write_definitions(pl.DataFrame({"symbol": ["ESH4"], "tick": [0.25]}))
    catalog.put(NAME, b"not parquet")
    with pytest.raises(lb.SchemaError, match=r"cannot read the catalog's definitions"):
        catalog.open().multiplier("ESH4")


def test_a_dbn_file_of_another_schema_is_still_read_as_bars(tmp_path: Path) -> None:
    pytest.importorskip("databento_dbn")
    import dbn_files

    head = dbn_files.metadata(mappings={"MESH4": [(dt.date(2024, 1, 2), dt.date(2024, 1, 3), 7)]})
    body = dbn_files.records([7], [ns("2024-01-02 15:00")], [[10**9] * 4], [1])
    path = dbn_files.write(tmp_path / "bars.dbn", head, body)
    store = lb.BarStore(tmp_path / "catalog")
    lb.ingest_into(store, path)
    assert store.symbols() == ["MESH4"] and store.definitions().is_empty()


def test_a_truncated_dbn_definition_file_is_refused(tmp_path: Path) -> None:
    path = write_dbn(tmp_path / "definitions.dbn")
    path.write_bytes(path.read_bytes()[:-100])  # inside the last record
    store = lb.BarStore(tmp_path / "catalog")
    with pytest.raises(lb.SchemaError, match="truncated"):
        lb.ingest_into(store, path)
    assert store.definitions().is_empty()


def test_lumibot_futures_assets_take_the_stored_multiplier() -> None:
    entities = pytest.importorskip("lumibot.entities", reason="needs lazybars[lumibot]")
    from lazybars._definitions import apply_multiplier

    Asset = entities.Asset
    store = lb.BarStore.from_frames({}, definitions=export_frame(records(), pretty=False))
    root = Asset("MES", asset_type=Asset.AssetType.CONT_FUTURE)
    contract = Asset("GCG4", asset_type=Asset.AssetType.FUTURE)
    chosen = Asset("ES", asset_type=Asset.AssetType.CONT_FUTURE, multiplier=7)
    unknown = Asset("CL", asset_type=Asset.AssetType.CONT_FUTURE)
    stock = Asset("ESH4")  # a stock that happens to share a contract's name
    for asset in (root, contract, chosen, unknown, stock):
        apply_multiplier(store, asset)
    assert (root.multiplier, contract.multiplier, chosen.multiplier) == (5, 100, 7)
    assert type(root.multiplier) is int  # as lumibot sets it
    assert unknown.multiplier == 1 and stock.multiplier == 1


def test_concurrent_writers_of_definitions_lose_none(catalog: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def define(i: int) -> int:
        frame = pl.DataFrame({"symbol": [f"Z{i}H4", f"Z{i}M4"], "multiplier": [float(i)] * 2})
        return catalog.open().write_definitions(frame)

    # On S3 a writer outrun by another reads and merges again (a few times, as appends).
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(define, range(8))) == [2] * 8
    store = catalog.open()
    assert store.definitions().height == 16
    assert [store.multiplier(f"Z{i}") for i in range(8)] == [float(i) for i in range(8)]
