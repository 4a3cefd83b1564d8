"""``lazybars ingest`` and ``lazybars info`` on the command line."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import lazybars as lb
from lazybars.cli import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def csv(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_csv(path)
    return path


def test_ingest_prints_a_summary_and_info_shows_the_catalog(tmp_path: Path) -> None:
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-05")
    a = csv(tmp_path / "MES.csv", bars)
    b = csv(tmp_path / "mnq.csv", bars[:100])
    code, out = run(
        "ingest", str(a), str(b), "--store", str(tmp_path / "cat"), "--symbol", "mnq=MNQ"
    )
    assert code == 0, out
    assert "MES" in out and "MNQ" in out and f"{bars.height:,}" in out
    assert lb.BarStore(tmp_path / "cat").symbols() == ["MES", "MNQ"]

    code, out = run("info", str(tmp_path / "cat"))
    assert code == 0, out
    assert "MES" in out and "1m" in out and f"{bars.height:,}" in out

    code, out = run("info", str(tmp_path / "cat"), "--json")
    assert code == 0, out
    rows = json.loads(out)
    first, last = (bars["datetime"][i].astimezone(dt.UTC) for i in (0, -1))
    assert rows[0] == {
        "symbol": "MES",
        "timestep": "1m",
        "rows": bars.height,
        "first": first.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last": last.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bytes": (tmp_path / "cat" / "1m" / "MES.parquet").stat().st_size,
        "parts": 0,
    }
    assert rows[1]["symbol"] == "MNQ" and rows[1]["rows"] == 100


def test_append_flag(tmp_path: Path) -> None:
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-05")
    root = str(tmp_path / "cat")
    run("ingest", str(csv(tmp_path / "a.csv", bars[:300])), "--store", root, "--symbol", "MES")
    b = csv(tmp_path / "b.csv", bars[200:])
    code, out = run("ingest", str(b), "--store", root, "--symbol", "MES", "--append")
    assert code == 0, out
    assert f"+{bars.height - 300:,}" in out
    got = lb.BarStore(root).scan("MES").collect()
    assert got.select(pl.exclude("datetime")).equals(bars.select(pl.exclude("datetime")))


def test_bad_input_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime,open,high,close\n2024-01-02T09:30:00Z,1,2,1.5\n")
    code, out = run("ingest", str(bad), "--store", str(tmp_path / "cat"))
    assert code == 1
    assert "error:" in out and "bad.csv" in out and "missing price column" in out
    assert not (tmp_path / "cat" / "1m").exists()

    code, out = run("ingest", str(tmp_path / "nope.csv"), "--store", str(tmp_path / "cat"))
    assert code == 1 and "no such file or folder" in out

    code, out = run("ingest", str(bad), "--store", str(tmp_path / "cat"), "--tz", "Mars/Base")
    assert code == 1 and "not a known IANA time zone" in out


def test_several_symbol_options_must_be_renames(tmp_path: Path) -> None:
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03")
    path = str(csv(tmp_path / "a.csv", bars))
    code, out = run(
        "ingest", path, "--store", str(tmp_path / "c"), "--symbol", "A", "--symbol", "B"
    )
    assert code == 2 and "SOURCE=NAME" in out


def test_info_of_a_missing_catalog(tmp_path: Path) -> None:
    code, out = run("info", str(tmp_path / "nothing"))
    assert code == 1 and "no catalog directory" in out
    assert not (tmp_path / "nothing").exists()


def test_errors_name_the_cli_options(tmp_path: Path) -> None:
    naive = tmp_path / "naive.csv"
    naive.write_text("datetime,open,high,low,close\n2024-01-02 09:30,1,2,0.5,1.5\n")
    code, out = run("ingest", str(naive), "--store", str(tmp_path / "cat"))
    assert code == 1 and "pass --tz naming the zone" in out and "--tz UTC" in out
    assert "tz=" not in out
    code, out = run("ingest", str(naive), "--store", str(tmp_path / "cat"), "--tz", "Mars/Base")
    assert code == 1 and "--tz Mars/Base is not a known IANA time zone" in out
    # Python callers keep the words of Python.
    with pytest.raises(lb.SchemaError, match=r"pass tz= naming .* tz='UTC'"):
        lb.ingest_into(tmp_path / "cat", naive)


@pytest.mark.parametrize(
    ("first", "second"), [("ticker", "symbol"), ("t", "timestamp"), ("v", "Volume")]
)
def test_clashing_aliases_are_one_line_not_a_traceback(
    tmp_path: Path, first: str, second: str
) -> None:
    columns = {"timestamp": 1_704_205_800, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5}
    columns |= {"symbol": "A", first: 1, second: 2}
    frame = pl.DataFrame([columns, columns | {"timestamp": 1_704_205_860}])
    path = csv(tmp_path / "clash.csv", frame)
    result = CliRunner().invoke(app, ["ingest", str(path), "--store", str(tmp_path / "cat")])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert repr(first) in lines[0] and repr(second) in lines[0] and "both mean" in lines[0]
    assert "drop one of them" in lines[0]


def test_flags_are_shown_without_a_value_type() -> None:
    for command in ("ingest", "info", "compact"):
        code, out = run(command, "--help")
        assert code == 0 and "--help" in out and "<bool>" not in out
    assert "--append" in run("ingest", "--help")[1]
    assert "--json" in run("info", "--help")[1]


def test_s3_hints_name_the_environment_variables(tmp_path: Path, monkeypatch) -> None:
    """The CLI takes S3 settings from the environment only: its errors name the variables."""
    pytest.importorskip("obstore", reason="s3:// catalogs need: pip install 'lazybars[s3]'")
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    source = csv(tmp_path / "MES.csv", lb.synth.minute_bars("MES", "2024-01-02", "2024-01-03"))
    code, out = run("ingest", str(source), "--store", "s3://bars/catalog")
    assert code == 1
    text = out.replace("\n", "")  # the console wraps long lines
    assert "AWS_ACCESS_KEY_ID" in text and "AWS_SKIP_SIGNATURE=true" in text
    assert "{{" not in text and "}}" not in text
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    code, out = run("ingest", str(source), "--store", "s3://bars/catalog")
    assert code == 1
    assert "AWS_ALLOW_HTTP=true" in out.replace("\n", "")


def test_ingest_of_a_lumibot_databento_cache_folder(tmp_path: Path) -> None:
    from lumibot_caches import contract_bars, oracle, write

    cache = tmp_path / "lumibot"
    bars = contract_bars("MESH4", "1m", "2024-01-02", "2024-01-05", seed=1)
    write(cache, "databento", bars, "minute", "2024-01-02", "2024-01-04")
    first = write(cache, "databento_polars", bars, "minute", "2024-01-03", "2024-01-05")
    code, out = run("ingest", str(cache), "--store", str(tmp_path / "cat"))
    assert code == 0, out
    (want,) = oracle(cache / "databento", cache / "databento_polars").values()
    got = lb.BarStore(tmp_path / "cat").scan("MESH4").collect().to_pandas()
    assert got.set_index("datetime").tz_convert("UTC").equals(want)
    assert "MESH4" in out and f"{len(want):,}" in out

    # A refetch whose bar differs from the cached one is refused, in one line.
    changed = bars.copy()
    changed.loc[changed.index[-1], "close"] += 1
    second = write(cache, "databento_polars", changed, "minute", "2024-01-04", "2024-01-06")
    code, out = run("ingest", str(cache), "--store", str(tmp_path / "cat2"))
    assert code == 1
    (line,) = out.strip().splitlines()
    assert "MESH4 (1m): " in line and first.name in line and second.name in line
    assert str(bars.index[-1])[:19] in line


def test_compact_folds_the_parts_and_reports_them(tmp_path: Path) -> None:
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-01-10", session="24h", gaps=0)
    root = tmp_path / "cat"
    store = lb.BarStore(root)
    for symbol in ("MES", "MNQ"):
        store.write(symbol, bars[:5_000])
    for start in (5_000, 5_100):
        store.write("MES", bars[start : start + 100], mode="append")
    assert store.info()["parts"].to_list() == [2, 0]

    code, out = run("compact", str(root), "--symbol", "MNQ")
    assert code == 0, out
    assert "compacted 0 of 1 catalog files" in out and "no appended parts" in out
    code, out = run("compact", str(root))
    assert code == 0, out
    assert "compacted 1 of 2 catalog files" in out.replace("\n", " ")
    assert "MES" in out and "5,200" in out
    assert lb.BarStore(root).info()["parts"].to_list() == [0, 0]
    assert lb.BarStore(root).scan("MES").collect().equals(bars[:5_200])


def test_compact_errors_are_one_line(tmp_path: Path) -> None:
    lb.BarStore(tmp_path / "cat").write("MES", lb.synth.minute_bars("MES"))
    code, out = run("compact", str(tmp_path / "cat"), "--symbol", "ZZZ")
    assert code == 1 and out.strip().startswith("error: unknown asset 'ZZZ'")
    assert len(out.strip().splitlines()) == 1
    code, out = run("compact", str(tmp_path / "cat"), "--timestep", "fortnight")
    assert code == 1 and "fortnight" in out and "Traceback" not in out
    code, out = run("compact", str(tmp_path / "nothing"))
    assert code == 1 and "no catalog directory" in out
    assert not (tmp_path / "nothing").exists()
