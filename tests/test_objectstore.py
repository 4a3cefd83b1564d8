"""Catalogs on S3-compatible storage (``lazybars._objectstore``), against moto's S3 server.

The store, parity and hostile-input suites also run on S3 (``test_store``, ``test_parity``,
``test_reliability``); this file covers what only object storage has: the optional extra,
credentials and endpoints, what a read transfers, uploads that fail or are killed, ETags,
and the ingest and info commands on an ``s3://`` catalog.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import polars as pl
import polars.testing
import pytest
from typer.testing import CliRunner

import lazybars as lb
from lazybars._objectstore import resolve_options
from lazybars.cli import app

NY = "America/New_York"
MINUTE = lb.Timestep.parse("1m")
CLIENTS = ("boto3", "s3fs", "obstore", "fsspec", "botocore", "moto")


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS configuration in the environment: the options given are all there is."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def uri(s3_server) -> str:
    return f"s3://{s3_server.bucket()}/catalog"


def open_store(s3_server, uri: str, **overrides: str) -> lb.BarStore:
    return lb.BarStore(uri, storage_options=s3_server.options(**overrides))


def minutes(start: str = "2024-01-02", end: str = "2024-01-05", **kwargs) -> pl.DataFrame:
    return lb.synth.minute_bars("MES", start, end, gaps=0, **kwargs)


# -- the extra ------------------------------------------------------------------------------
def test_import_lazybars_imports_no_object_store_client() -> None:
    code = (
        "import sys, lazybars as lb, tempfile; lb.BarStore(tempfile.mkdtemp());"
        f"print([m for m in {CLIENTS!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_without_the_extra_an_s3_store_names_the_pip_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "obstore", None)  # what an absent package looks like
    with pytest.raises(lb.MissingExtra, match=r"pip install 'lazybars\[s3\]'"):
        lb.BarStore("s3://bucket/catalog", storage_options={"aws_skip_signature": "true"})


# -- credentials and options ----------------------------------------------------------------
@pytest.mark.usefixtures("bare_env")
def test_no_credentials_fail_at_once_naming_the_fix() -> None:
    pytest.importorskip("obstore", reason="s3:// catalogs need: pip install 'lazybars[s3]'")
    started = time.perf_counter()
    with pytest.raises(lb.StorageError) as info:
        lb.BarStore("s3://bucket/catalog")
    text = str(info.value)
    for words in ("s3://bucket/catalog", "AWS_ACCESS_KEY_ID", "aws_access_key_id"):
        assert words in text
    assert "aws_metadata_endpoint" in text  # how to use an instance role on purpose
    # What a CLI user sets (the environment) and what a Python user passes, with braces
    # printed once.
    for words in ("AWS_SKIP_SIGNATURE=true", "AWS_METADATA_ENDPOINT=", "storage_options={'"):
        assert words in text
    assert "{{" not in text and "}}" not in text
    assert isinstance(info.value, OSError)
    # No probe of the instance metadata service, whose timeouts would take seconds.
    assert time.perf_counter() - started < 1


@pytest.mark.usefixtures("bare_env")
def test_half_credentials_and_profiles_are_explained(monkeypatch) -> None:
    pytest.importorskip("obstore", reason="s3:// catalogs need: pip install 'lazybars[s3]'")
    with pytest.raises(lb.StorageError, match="only one of"):
        lb.BarStore("s3://bucket/x", storage_options={"aws_access_key_id": "AKIA"})
    monkeypatch.setenv("AWS_PROFILE", "research")
    with pytest.raises(lb.StorageError, match=r"'research'.*export-credentials"):
        lb.BarStore("s3://bucket/x")


def test_options_are_spelled_as_polars_takes_them() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "env-key",
        "AWS_SECRET_ACCESS_KEY": "env-secret",
        "AWS_SESSION_TOKEN": "env-token",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
    }
    given = {"Endpoint_URL": "http://127.0.0.1:9000", "allow_http": True, "max_retries": 2}
    assert resolve_options(given, env) == {
        "aws_endpoint_url": "http://127.0.0.1:9000",  # given wins over the environment
        "aws_allow_http": "true",  # polars wants the string
        "max_retries": 2,  # polars' own option, kept as is
        "aws_region": "eu-west-1",
        "aws_access_key_id": "env-key",
        "aws_secret_access_key": "env-secret",
        "aws_session_token": "env-token",
    }
    # Keys are taken together: given ones never mix with the environment's token.
    mine = resolve_options({"key": "k", "secret": "s"}, env)
    assert (mine["aws_access_key_id"], mine["aws_secret_access_key"]) == ("k", "s")
    assert "aws_session_token" not in mine
    with pytest.raises(lb.InvalidRequest, match="strings"):
        resolve_options({1: "x"}, {})


def test_credentials_and_endpoint_from_the_environment(
    s3_server, uri, monkeypatch, bare_env
) -> None:
    options = s3_server.options()
    for name in ("aws_access_key_id", "aws_secret_access_key", "aws_endpoint_url"):
        monkeypatch.setenv(name.upper(), options[name])
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    store = lb.BarStore(uri)
    store.write("MES", minutes())
    assert open_store(s3_server, uri).symbols() == ["MES"]


@pytest.mark.usefixtures("bare_env")
def test_a_plain_http_endpoint_names_the_switch_that_allows_it(s3_server, uri) -> None:
    with pytest.raises(lb.StorageError, match=r"plain http.*AWS_ALLOW_HTTP=true.*aws_allow_http"):
        lb.BarStore(uri, storage_options=s3_server.options(aws_allow_http=None))
    for allowed in (True, "1", "yes"):  # what the client takes for true
        lb.BarStore(uri, storage_options=s3_server.options(aws_allow_http=allowed)).symbols()


def test_the_repr_of_an_s3_store_touches_no_network(s3_server) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = lb.BarStore(
        "s3://bars/catalog",
        storage_options=s3_server.options(
            aws_endpoint_url=f"http://127.0.0.1:{port}", max_retries=0
        ),
    )
    started = time.perf_counter()
    assert repr(store) == "<lazybars.BarStore s3://bars/catalog>"
    assert time.perf_counter() - started < 0.5


def test_unknown_options_are_named(s3_server, uri) -> None:
    with pytest.raises(lb.InvalidRequest, match="aws_colour"):
        open_store(s3_server, uri, aws_colour="blue")


def test_a_missing_bucket_is_named(s3_server) -> None:
    store = lb.BarStore("s3://no-such-bucket/catalog", storage_options=s3_server.options())
    with pytest.raises(lb.StorageError, match=r"'no-such-bucket' does not exist.*create it"):
        store.symbols()


def test_an_endpoint_that_does_not_answer_is_named(s3_server) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    store = lb.BarStore(
        "s3://bars/catalog",
        storage_options=s3_server.options(aws_endpoint_url=endpoint, max_retries=0),
    )
    with pytest.raises(lb.StorageError, match=f"{endpoint}.*aws_endpoint_url"):
        store.symbols()


def test_access_denied_is_named(s3_server, uri) -> None:
    store = open_store(s3_server, uri)
    store.write("MES", minutes())
    with s3_server.refusing(lambda method, query: True):
        with pytest.raises(lb.StorageError, match=r"access denied.*credentials"):
            store.symbols()
        with pytest.raises(lb.StorageError, match="access denied"):
            store.scan("MES")


# -- locations --------------------------------------------------------------------------------
def test_prefixes_and_bucket_roots_are_separate_catalogs(s3_server) -> None:
    bucket = s3_server.bucket()
    top = lb.BarStore(f"s3://{bucket}", storage_options=s3_server.options())
    nested = lb.BarStore(f"s3a://{bucket}/a/b/", storage_options=s3_server.options())
    top.write("TOP", minutes())
    nested.write("DEEP", minutes())
    assert top.symbols() == ["TOP"]  # a/b/1m/DEEP.parquet is too deep to be a symbol
    assert nested.symbols() == ["DEEP"]
    assert "s3://" in repr(nested) and "a/b" in repr(nested)
    again = lb.BarStore(f"s3://{bucket}/a/b", storage_options=s3_server.options())
    assert again.scan("DEEP").tail(3) == nested.scan("DEEP").tail(3)  # one catalog, one plan
    with pytest.raises(lb.InvalidRequest, match="malformed"):
        lb.BarStore("s3:///catalog", storage_options=s3_server.options())


# -- what a read transfers ------------------------------------------------------------------
def test_a_month_of_three_years_transfers_a_tenth_of_the_file(s3_server, uri) -> None:
    """Predicate pushdown on object storage: only the row groups holding the month."""
    years = minutes("2021-01-04", "2024-01-04", session="24h")
    open_store(s3_server, uri).write("MES", years)
    store = open_store(s3_server, uri)
    lo, hi = pd.Timestamp("2023-03-01", tz=NY), pd.Timestamp("2023-04-01", tz=NY)
    with s3_server.log() as requests:  # the first read of the new file: nothing memoised
        got = store.scan("MES").between(lo, hi).collect()
    month = pl.col("datetime").is_between(lo, hi, closed="left")
    polars.testing.assert_frame_equal(got, years.filter(month), check_exact=True)
    size = store.info()["bytes"].item()
    sent = sum(r.sent for r in requests)
    assert sent <= size / 10, f"{sent:,} of {size:,} bytes for one month"
    assert all(r.method in ("GET", "HEAD") for r in requests)
    # Listing, bounds and manifests read metadata only.
    with s3_server.log() as requests:
        assert open_store(s3_server, uri).info()["rows"].item() == years.height
        assert store._bounds("MES", MINUTE)[0] == years["datetime"].dt.epoch("ns")[0]
    assert sum(r.sent for r in requests) < 100_000
    # A backtest over that month, with the DataSource's default 30 days of lookback.
    src = lb.DataSource(open_store(s3_server, uri), start="2023-03-01", end="2023-03-31")
    src.set_datetime(pd.Timestamp("2023-03-15 12:00", tz=NY))
    with s3_server.log() as requests:
        assert len(src.get_historical_prices("MES", 100)) == 100
    assert sum(r.sent for r in requests) <= size / 6


def test_a_schema_check_is_memoised_per_etag(s3_server, uri) -> None:
    store = open_store(s3_server, uri)
    bars = minutes()
    store.write("MES", bars)
    store.scan("MES").collect()
    size = store.info()["bytes"].item()

    def footer_reads(requests: list) -> list:
        # lazybars reads a footer with a range ending at the last byte; polars reads its
        # own with a suffix range ("bytes=-N") and checks the leading magic bytes.
        return [r for r in requests if r.range and r.range.endswith(f"-{size - 1}")]

    with s3_server.log() as requests:
        store.scan("MES").tail(1).collect()
        store._bounds("MES", MINUTE)
    assert any(r.method == "HEAD" for r in requests)  # versions are checked
    assert footer_reads(requests) == []
    store.write("MES", bars.tail(10))  # a new ETag: checked and read afresh
    size = store.info()["bytes"].item()
    with s3_server.log() as requests:
        first = store._bounds("MES", MINUTE)[0]
    assert first == bars.tail(10)["datetime"].dt.epoch("ns")[0]
    assert footer_reads(requests) == []  # info() above read the new version's footer


# -- writes -----------------------------------------------------------------------------------
def test_a_write_is_one_put_of_the_finished_file(s3_server, uri) -> None:
    store = open_store(s3_server, uri)
    with s3_server.log() as requests:
        store.write("MES", minutes())
    writes = [r for r in requests if r.method in ("PUT", "POST", "DELETE")]
    assert [(r.method, r.path.rsplit("/", 2)[-2:]) for r in writes] == [
        ("PUT", ["1m", "MES.parquet"])
    ]


def test_a_refused_upload_keeps_the_previous_object(s3_server, uri) -> None:
    store = open_store(s3_server, uri)
    bars = minutes()
    store.write("MES", bars)
    with s3_server.refusing(lambda method, query: method == "PUT"):
        with pytest.raises(lb.StorageError, match=r"upload 1m/MES\.parquet"):
            store.write("MES", bars.tail(5))
        with pytest.raises(lb.StorageError):
            store.write("NEW", bars.tail(5))
    assert store.symbols() == ["MES"]
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars, check_exact=True)


def test_a_multipart_upload_is_invisible_until_complete(s3_server, uri) -> None:
    """A large file goes up in parts; if the completion fails, the old object stays."""
    store = open_store(s3_server, uri)
    small = minutes()
    store.write("MES", small)
    big = minutes("2021-01-04", "2022-01-04", session="24h")  # > 5 MiB: multipart
    completing = lambda method, query: method == "POST" and "uploadId=" in query  # noqa: E731
    with (
        s3_server.log() as requests,
        s3_server.refusing(completing),
        pytest.raises(lb.StorageError),
    ):
        store.write("MES", big)
    assert any("partNumber=" in r.query for r in requests)  # parts were uploaded...
    polars.testing.assert_frame_equal(store.scan("MES").collect(), small, check_exact=True)
    # ...and the failed upload was aborted, leaving no parts behind.
    assert b"<Upload>" not in s3_server.raw("GET", f"{uri.split('/')[2]}?uploads")
    store.write("MES", big)
    assert store.info()["rows"].item() == big.height


def test_a_killed_writer_leaves_the_old_object(s3_server, uri, tmp_path: Path) -> None:
    """SIGKILL mid-upload (parts sent, not completed): readers still see the old bars."""
    store = open_store(s3_server, uri)
    small = minutes()
    store.write("MES", small)
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import lazybars as lb
            store = lb.BarStore({uri!r}, storage_options={s3_server.options()!r})
            big = lb.synth.minute_bars("MES", "2021-01-04", "2022-01-04", session="24h", gaps=0)
            store.write("MES", big)
            """
        )
    )
    part = lambda method, query: "partNumber=" in query  # noqa: E731
    with s3_server.holding(part, 3) as parts:  # parts arrive, then wait: the kill comes first
        writer = subprocess.Popen([sys.executable, str(script)])
        try:
            deadline = time.monotonic() + 60
            while not parts:
                assert writer.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            writer.kill()
        finally:
            writer.wait()
    assert writer.returncode != 0
    fresh = open_store(s3_server, uri)
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), small, check_exact=True)
    assert fresh.info()["rows"].item() == small.height


def test_append_on_s3_reads_the_stored_object_and_replaces_it(s3_server, uri) -> None:
    store = open_store(s3_server, uri)
    bars = minutes("2024-01-02", "2024-01-10")
    store.write("MES", bars[:1500])
    store.write("MES", bars[1000:], mode="append")
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars, check_exact=True)
    with pytest.raises(lb.SchemaError, match="differ"):
        store.write("MES", bars[:10].with_columns(pl.col("close") + 1), mode="append")
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars, check_exact=True)


def bucket_keys(s3_server, uri: str) -> list[str]:
    import obstore
    from obstore.store import S3Store

    bucket, prefix = uri.split("/")[2], uri.split("/", 3)[3]
    config = {k: v for k, v in s3_server.options().items() if k != "max_retries"}
    store = S3Store(bucket, prefix=prefix, config=config)
    return sorted(m["path"] for batch in obstore.list(store) for m in batch)


def test_s3_appends_write_parts_that_a_compaction_folds(s3_server, uri) -> None:
    """An append after the stored bars uploads a part and the manifest, never the base;
    a compaction folds the parts, keeps them (retired) until the next rewrite, which
    deletes them."""
    store = open_store(s3_server, uri)
    bars = minutes("2024-01-02", "2024-01-10", session="24h")
    store.write("MES", bars[:5_000])
    base = next(iter(bucket_keys(s3_server, uri)))
    with s3_server.log() as requests:
        store.write("MES", bars[5_000:5_100], mode="append")
        store.write("MES", bars[5_100:5_200], mode="append")
    puts = [r for r in requests if r.method == "PUT"]
    assert len(puts) == 4 and not any(r.path.endswith("/1m/MES.parquet") for r in puts)
    # Of the stored bars, nothing is read: the base's footer at most (memoised).
    base_reads = [r for r in requests if r.method == "GET" and r.path.endswith("/1m/MES.parquet")]
    assert sum(r.sent for r in base_reads) < 64 * 1024
    keys = bucket_keys(s3_server, uri)
    assert len([k for k in keys if k.startswith("1m/.MES.parts/")]) == 3  # + the manifest
    assert store.symbols() == ["MES"] and store.info()["parts"].item() == 2
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars[:5_200], check_exact=True)
    assert store.compact().rows() == [("MES", "1m", 2, 5_200)]
    fresh = open_store(s3_server, uri)
    assert fresh.info()["parts"].item() == 0
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), bars[:5_200], check_exact=True)
    store.write("MES", bars[5_200:5_300], mode="append")
    store.write("MES", bars[5_250:5_400], mode="append")  # overlaps: a new base, parts deleted
    assert bucket_keys(s3_server, uri) == [
        base.replace("MES.parquet", ".MES.parts/manifest.json"),
        base,
    ]
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), bars[:5_400], check_exact=True)


def test_an_s3_compaction_that_dies_after_the_upload_loses_and_doubles_nothing(
    s3_server, uri, monkeypatch
) -> None:
    """Killed between the base's upload and the manifest's reset: the sealed manifest
    names the old generation, so its parts are ignored; the next append rewrites."""
    from lazybars._objectstore import ObjectBackend

    class Killed(BaseException):
        pass

    store = open_store(s3_server, uri)
    bars = minutes("2024-01-02", "2024-01-10", session="24h")
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")
    put_manifest = ObjectBackend._put_manifest

    def dies_before_the_reset(self, symbol, timestep, manifest, version):
        if not manifest.sealed:
            raise Killed
        return put_manifest(self, symbol, timestep, manifest, version)

    monkeypatch.setattr(ObjectBackend, "_put_manifest", dies_before_the_reset)
    with pytest.raises(Killed):
        store.compact()
    monkeypatch.undo()
    fresh = open_store(s3_server, uri)
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), bars[:5_100], check_exact=True)
    assert fresh.info().select("rows", "parts").row(0) == (5_100, 0)
    fresh.write("MES", bars[5_100:5_200], mode="append")  # sealed: appended by a rewrite
    fresh.write("MES", bars[5_200:5_300], mode="append")  # a part again
    assert fresh.info().select("rows", "parts").row(0) == (5_300, 1)
    polars.testing.assert_frame_equal(fresh.scan("MES").collect(), bars[:5_300], check_exact=True)


def test_the_cli_compacts_an_s3_catalog(s3_server, uri, monkeypatch, bare_env) -> None:
    for name, value in s3_server.options().items():
        monkeypatch.setenv(name.upper(), value)
    store = open_store(s3_server, uri)
    bars = minutes("2024-01-02", "2024-01-10", session="24h")
    store.write("MES", bars[:5_000])
    store.write("MES", bars[5_000:5_100], mode="append")
    result = CliRunner().invoke(app, ["compact", uri])
    assert result.exit_code == 0, result.output
    assert "compacted 1 of 1" in " ".join(result.output.split())
    assert store.info()["parts"].item() == 0


# -- ingest and the command line --------------------------------------------------------------
def test_ingest_into_an_s3_catalog_spills_locally(s3_server, uri, tmp_path: Path) -> None:
    bars = minutes("2024-01-02", "2024-01-10")
    bars[:1500].write_csv(tmp_path / "MES.csv")
    bars[1500:].write_csv(tmp_path / "late.csv")
    store = open_store(s3_server, uri)
    summary = lb.ingest_into(
        store, tmp_path / "MES.csv", tmp_path / "late.csv", symbol="MES", buffer_rows=1000
    )
    assert summary["rows"].to_list() == [bars.height]
    polars.testing.assert_frame_equal(store.scan("MES").collect(), bars, check_exact=True)
    # Chunks were spilled (more rows than buffer_rows) to local disk, not to the bucket.
    keys = s3_server.raw("GET", f"{uri.split('/')[2]}?list-type=2").count(b"<Key>")
    assert keys == 1


def test_the_cli_ingests_into_and_shows_an_s3_catalog(
    s3_server, uri, tmp_path: Path, monkeypatch, bare_env
) -> None:
    for name, value in s3_server.options().items():
        monkeypatch.setenv(name.upper(), value)
    bars = minutes()
    bars.write_csv(tmp_path / "MES.csv")
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(tmp_path / "MES.csv"), "--store", uri])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["info", uri, "--json"])
    assert result.exit_code == 0, result.output
    assert '"rows": ' + str(bars.height) in result.output
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = runner.invoke(app, ["info", uri])
    assert result.exit_code == 1
    assert "AWS_SECRET_ACCESS_KEY" in result.output


# -- concurrency and processes ------------------------------------------------------------
def test_a_file_replaced_between_its_check_and_its_read_is_read_again(
    s3_server, uri, monkeypatch
) -> None:
    """The footer is read pinned to the ETag just seen; a newer object means a new look."""
    from lazybars._objectstore import ObjectBackend

    store = open_store(s3_server, uri)
    old, new = minutes(), minutes("2024-01-02", "2024-01-03")
    store.write("MES", old)
    seen = ObjectBackend.snapshot
    calls = []

    def seen_then_replaced(self, name):
        found = seen(self, name)
        if not calls:  # a writer replaces the object right after the first look
            calls.append(name)
            open_store(s3_server, uri).write("MES", new)
        return found

    monkeypatch.setattr(ObjectBackend, "snapshot", seen_then_replaced)
    epochs = new["datetime"].dt.epoch("ns")
    assert store._bounds("MES", MINUTE) == (epochs[0], epochs[-1])
    assert calls == ["1m/MES.parquet"]
    # The old bytes again (the same ETag): their own footer, not the one read in the race.
    store.write("MES", old)
    epochs = old["datetime"].dt.epoch("ns")
    assert store._bounds("MES", MINUTE) == (epochs[0], epochs[-1])


def test_a_store_pickles_and_opens_the_same_catalog(s3_server, uri) -> None:
    store = open_store(s3_server, uri)
    bars = minutes()
    store.write("MES", bars)
    again = pickle.loads(pickle.dumps(store))
    polars.testing.assert_frame_equal(again.scan("MES").collect(), bars, check_exact=True)
    assert again.scan("MES") == store.scan("MES")
