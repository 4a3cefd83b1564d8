"""lb.sweep: grids, results tables and failures on the local engine; the same on Ray.

The Ray tests share one local cluster (starting one takes 5-30 s on a 2-core machine) and
skip without the ray extra. The oracle of every Ray sweep is the local engine, whose rows
are in turn checked against backtests run here by hand.
"""

import contextlib
import datetime as dt
import functools
import importlib.util
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import polars as pl
import polars.testing
import pytest

import lazybars as lb
from lazybars import sim, strategies

START, END = "2024-01-03", "2024-01-05"


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A catalog on disk, as a cluster's workers would share it."""
    root = tmp_path_factory.mktemp("sweep-catalog")
    store = lb.BarStore(root)
    bars = lb.synth.catalog(("MES", "MNQ"), "2024-01-02", "2024-01-06", session="regular")
    for symbol, frame in bars.items():
        store.write(symbol, frame, timestep="minute")
    return str(root)


def backtest(params: dict, *, catalog: str) -> dict:
    """What a user sweeps: a momentum backtest over the catalog, opened here."""
    store = lb.BarStore(catalog)
    symbols = [params.pop("symbol")]
    strategy = strategies.MomentumStrategy(symbols, **params)
    ticks = sim.clock(store, symbols, START, END, cadence="5m")
    result = sim.run(strategy, lb.DataSource(store), ticks)
    return {**result.stats(), "rejections": len(result.rejections)}


GRID = {"fast": [5, 9, 13], "slow": [20, 30], "atr_stop": [1.0, 3.0], "symbol": ["MES", "MNQ"]}


def unstable(params: dict) -> dict:
    """Fails on some combinations, in different ways."""
    if params["x"] == 2:
        raise ValueError("x must not be 2")
    if params["x"] == 4:
        return {"half": 2.0, "oops": 1 / 0}
    return {"half": params["x"] / 2}


# -- local engine ------------------------------------------------------------------------------
def test_rows_are_the_grid_in_order_with_each_backtests_outputs(catalog: str) -> None:
    table = lb.sweep(functools.partial(backtest, catalog=catalog), GRID, progress=False)
    names = list(GRID)
    assert table.columns[: len(names)] == names
    assert table.height == 24
    for row, values in zip(
        table.iter_rows(named=True), itertools.product(*GRID.values()), strict=True
    ):
        params = dict(zip(names, values, strict=True))
        assert {name: row[name] for name in names} == params
        assert row["status"] == "ok" and row["error"] is None
        assert row["seconds"] > 0 and row["worker"].endswith(f":{os.getpid()}")
        want = backtest(dict(params), catalog=catalog)
        assert {key: row[key] for key in want} == want
    assert table["trades"].sum() > 100  # the strategies traded: the outputs say something
    assert table.columns[len(names) :] == [
        *backtest(dict(zip(names, (5, 20, 1.0, "MES"), strict=True)), catalog=catalog),
        "status",
        "error",
        "seconds",
        "worker",
    ]
    frame = table.to_pandas()
    assert list(frame["symbol"]) == table["symbol"].to_list()


def test_failures_are_reported_per_combination_and_the_others_kept() -> None:
    table = lb.sweep(unstable, {"x": [1, 2, 3, 4, 5]}, progress=False)
    assert table["status"].to_list() == ["ok", "error", "ok", "error", "ok"]
    assert table["error"].to_list() == [
        None,
        "ValueError: x must not be 2",
        None,
        "ZeroDivisionError: division by zero",
        None,
    ]
    assert table["half"].to_list() == [0.5, None, 1.5, None, 2.5]
    assert table["seconds"].null_count() == 0


def test_an_explicit_list_of_combinations() -> None:
    combos = [{"a": 1}, {"a": 2, "b": "x"}, {"b": "y"}]
    table = lb.sweep(
        lambda p: sum(v for v in p.values() if isinstance(v, int)), combos, progress=False
    )
    assert table.select("a", "b", "value").rows() == [(1, None, 1), (2, "x", 2), (None, "y", 0)]


def test_outputs_scalars_none_and_keys_that_vary() -> None:
    def run(p: dict) -> object:
        return {0: None, 1: 7.5, 2: {"q": 1}, 3: {"q": 2, "r": "s"}}[p["k"]]

    table = lb.sweep(run, {"k": [0, 1, 2, 3]}, progress=False)
    assert table.columns == ["k", "value", "q", "r", "status", "error", "seconds", "worker"]
    assert table.select("value", "q", "r").rows() == [
        (None, None, None),
        (7.5, None, None),
        (None, 1, None),
        (None, 2, "s"),
    ]


def test_column_types() -> None:
    combos = [{"n": 1, "symbols": ("MES", "MNQ")}, {"n": 2.5, "symbols": ("MYM",)}]
    table = lb.sweep(lambda p: {"obj": object, "pair": (p["n"], "x")}, combos, progress=False)
    assert table["n"].to_list() == [1.0, 2.5]  # ints and floats widen
    assert table["symbols"].to_list() == [["MES", "MNQ"], ["MYM"]]
    assert table["obj"].dtype == pl.Object and table["obj"].to_list() == [object, object]
    assert len(table.to_pandas()) == 2


def test_an_output_named_like_a_parameter_or_a_results_column_fails_its_row() -> None:
    outputs = {1: {"x": 1}, 2: {"status": "fine"}, 3: {4: "four"}, 4: {"y": 1}}
    table = lb.sweep(lambda p: outputs[p["x"]], {"x": [1, 2, 3, 4]}, progress=False)
    assert table["status"].to_list() == ["error", "error", "error", "ok"]
    errors = table["error"].to_list()
    assert errors[0].startswith("InvalidRequest: run returned the key 'x', which is a parameter")
    assert "'status', which is a results column" in errors[1]
    assert "4, which is not a string" in errors[2]


def test_run_gets_a_copy_of_its_parameters() -> None:
    def run(p: dict) -> int:
        p["x"] = 99
        return 0

    assert lb.sweep(run, {"x": [1, 2]}, progress=False)["x"].to_list() == [1, 2]


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        ({}, "no combinations"),
        ([], "no combinations"),
        ([{}], "no combinations"),
        ({"x": []}, r"grid\['x'\] is empty"),
        ({"x": "abc"}, r"grid\['x'\] must be a list of values, got 'abc'; write \['abc'\]"),
        ({"x": 5}, r"must be a list of values"),
        ({"x": {"a": 1}}, r"must be a list of values"),
        ({"status": [1]}, "'status' names a results column"),
        ({3: [1]}, "parameter names must be strings"),
        ([{"x": 1}, 2], r"grid\[1\] must be a dict of parameters, got int"),
        ([{"seconds": 1}], "'seconds' names a results column"),
        (7, "grid must be a dict of value lists or a list of dicts"),
        ("x", "grid must be a dict of value lists or a list of dicts"),
    ],
)
def test_bad_grids_are_rejected(grid: object, match: str) -> None:
    with pytest.raises(lb.InvalidRequest, match=match):
        lb.sweep(unstable, grid, progress=False)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"engine": "dask"}, "engine must be one of"),
        ({"address": "auto"}, "use it with engine='ray'"),
        ({"retries": -1}, "retries must be a whole number"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"cpus_per_task": 0}, "cpus_per_task must be a number > 0"),
        ({"cpus_per_task": "1"}, "cpus_per_task must be a number > 0"),
    ],
)
def test_bad_options_are_rejected(options: dict, match: str) -> None:
    with pytest.raises(lb.InvalidRequest, match=match):
        lb.sweep(unstable, {"x": [1]}, progress=False, **options)
    with pytest.raises(lb.InvalidRequest, match="run must be a callable"):
        lb.sweep("unstable", {"x": [1]})


def test_the_progress_bar_counts_results_and_failures(capsys: pytest.CaptureFixture) -> None:
    lb.sweep(unstable, {"x": [1, 2, 3]})
    out, err = capsys.readouterr()
    assert out == ""
    assert "sweep (local)" in err and "3/3" in err and "1 failed" in err


def test_without_ray_the_ray_engine_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "lazybars._ray", raising=False)
    with pytest.raises(lb.MissingExtra, match=r"pip install 'lazybars\[ray\]'") as info:
        lb.sweep(unstable, {"x": [1]}, engine="ray", progress=False)
    assert isinstance(info.value, ImportError)


def test_import_lazybars_imports_neither_ray_nor_rich() -> None:
    code = "import sys, lazybars; print([m for m in ('ray', 'rich', 'typer') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- Ray -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    """One local cluster for this module (tests/conftest.py keeps it on loopback), shut
    down after it: its threads would allocate under the memray limits of later tests."""
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install -e '.[ray]'")
    temp = short_temp_dir()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    # Workers cannot import this module (pytest put tests/ on the driver's sys.path only),
    # so its functions travel by value, as a notebook's or a script's do.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def short_temp_dir() -> str:
    """Ray's sockets live under its temp dir, in paths that must fit in 107 bytes: pytest's
    tmp_path (plus Ray's session_<date>_<pid>/sockets/plasma_store) is too long for that.
    """
    return tempfile.mkdtemp(prefix="lb-ray-")


def same_results(ray_table: pl.DataFrame, local_table: pl.DataFrame) -> None:
    """Equal but for timing and worker; and the Ray runs ran in other processes."""
    polars.testing.assert_frame_equal(
        ray_table.drop("seconds", "worker"), local_table.drop("seconds", "worker")
    )
    ran = ray_table.filter(pl.col("worker").is_not_null())["worker"]
    assert ran.len() > 0 and not ran.str.ends_with(f":{os.getpid()}").any()


def test_ray_gives_the_local_results(ray_cluster: types.ModuleType, catalog: str) -> None:
    run = functools.partial(backtest, catalog=catalog)
    on_ray = lb.sweep(run, GRID, engine="ray", progress=False)
    assert on_ray.height == 24 and set(on_ray["status"]) == {"ok"}
    same_results(on_ray, lb.sweep(run, GRID, progress=False))
    assert on_ray["worker"].n_unique() >= 2  # tasks ran side by side on the 2-CPU cluster


def test_ray_reports_failures_per_combination(ray_cluster: types.ModuleType) -> None:
    grid = {"x": [1, 2, 3, 4, 5]}
    on_ray = lb.sweep(unstable, grid, engine="ray", progress=False)
    same_results(on_ray, lb.sweep(unstable, grid, progress=False))
    assert on_ray["status"].to_list() == ["ok", "error", "ok", "error", "ok"]


def dies_once(params: dict, *, marker: str, victim: int) -> dict:
    """Kills its own worker process (SIGKILL) on the first attempt of one combination."""
    time.sleep(0.05)  # others are running or queued when the victim dies
    if params["i"] == victim and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return {"square": params["i"] ** 2, "pid": os.getpid()}


def test_a_killed_worker_is_retried(ray_cluster: types.ModuleType, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    run = functools.partial(dies_once, marker=str(marker), victim=5)
    table = lb.sweep(run, {"i": range(12)}, engine="ray", progress=False)
    killed = int(marker.read_text())
    assert table["status"].to_list() == ["ok"] * 12
    assert table["square"].to_list() == [i**2 for i in range(12)]
    assert table["pid"][5] != killed  # the victim's result came from a rerun, elsewhere


def test_a_worker_killed_without_retries_is_reported(
    ray_cluster: types.ModuleType, tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    run = functools.partial(dies_once, marker=str(marker), victim=5)
    table = lb.sweep(run, {"i": range(12)}, engine="ray", retries=0, progress=False)
    assert marker.exists()
    status = table["status"].to_list()
    assert status == ["ok"] * 5 + ["crashed"] + ["ok"] * 6
    victim = table.row(5, named=True)
    assert victim["error"].startswith("WorkerCrashedError")
    assert victim["square"] is None and victim["worker"] is None and victim["seconds"] is None
    assert table.filter(pl.col("status") == "ok")["square"].to_list() == [
        i**2 for i in range(12) if i != 5
    ]


def slow_writer(params: dict, *, folder: str) -> int:
    if params["i"]:
        time.sleep(0.3)
        (Path(folder) / str(params["i"])).touch()
    return params["i"]


def test_an_interrupted_sweep_cancels_what_it_started(
    ray_cluster: types.ModuleType, tmp_path: Path
) -> None:
    from lazybars import _ray, _sweep

    run = functools.partial(slow_writer, folder=str(tmp_path))
    combos = [{"i": i} for i in range(12)]
    results = _ray.execute(
        _sweep._attempt, _sweep._failure, run, combos, address=None, retries=3, cpus=1
    )
    _, row = next(results)
    assert row["status"] == "ok"
    results.close()  # what Ctrl-C in lb.sweep's loop does
    time.sleep(2.5)  # 11 runs of 0.3 s on 2 CPUs would all have finished by now
    assert len(list(tmp_path.iterdir())) <= 3  # at most those already running
    lb.sweep(run, {"i": [20]}, engine="ray", progress=False)
    assert (tmp_path / "20").exists()  # uninterrupted, the run does write


def test_a_run_the_workers_cannot_unpickle_fails_its_rows(
    ray_cluster: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that exists only in this process: cloudpickle sends its functions by
    # reference, and the workers fail to import it.
    module = types.ModuleType("lazybars_sweep_phantom")
    exec("def run(params):\n    return params['x']", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    table = lb.sweep(module.run, {"x": [1, 2]}, engine="ray", progress=False)
    assert table["status"].to_list() == ["error", "error"]
    assert all("lazybars_sweep_phantom" in error for error in table["error"])


def test_a_run_that_does_not_pickle_is_rejected_before_any_task(
    ray_cluster: types.ModuleType,
) -> None:
    run = functools.partial(dies_once, marker=threading.Lock(), victim=0)
    with pytest.raises(lb.InvalidRequest, match="run cannot be sent to Ray workers"):
        lb.sweep(run, {"i": [1]}, engine="ray", progress=False)


def test_a_run_carrying_bars_warns(ray_cluster: types.ModuleType) -> None:
    bars = lb.synth.minute_bars("MES", "2024-01-02", "2024-03-01", session="24h")
    run = functools.partial(lambda params, bars: bars.height * params["x"], bars=bars)
    with pytest.warns(lb.LazyBarsWarning, match=r"run pickles to \d+\.\d MiB") as record:
        table = lb.sweep(run, {"x": [1, 2]}, engine="ray", progress=False)
    assert record[0].filename == __file__
    assert table["value"].to_list() == [bars.height, 2 * bars.height]


def test_another_address_while_connected_is_refused(ray_cluster: types.ModuleType) -> None:
    with pytest.raises(lb.InvalidRequest, match="Ray is already connected"):
        lb.sweep(unstable, {"x": [1]}, engine="ray", address="127.0.0.1:1", progress=False)


SWEEP_SCRIPT = """
import json, os, sys
import ray
import lazybars as lb

def run(params):
    if params["x"] == 2:
        raise ValueError("x must not be 2")
    return {"half": params["x"] / 2, "pid": os.getpid()}

kwargs = json.loads(sys.argv[1])
grid = {"x": [1, 2, 3]}
first = lb.sweep(run, grid, engine="ray", progress=False, **kwargs)
again = lb.sweep(run, grid, engine="ray", progress=False, **kwargs)  # the same cluster
local = lb.sweep(run, grid, progress=False)
columns = ["x", "half", "status", "error"]
print(json.dumps({
    "ray": first.vstack(again).select(columns).rows(),
    "local": local.vstack(local).select(columns).rows(),
    "pids": sorted(set(first.vstack(again)["pid"].drop_nulls())),
    "driver": os.getpid(),
    "cluster": ray.get_runtime_context().gcs_address,
}))
"""


def sweep_elsewhere(temp: str, **kwargs: object) -> dict:
    """Two Ray sweeps and a local one in a fresh process, which has not called ray.init."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = temp  # a cluster started by the sweep keeps its files here
    out = subprocess.run(
        [sys.executable, "-c", SWEEP_SCRIPT, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=temp,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ray"] == got["local"]
    assert got["pids"] and got["driver"] not in got["pids"]
    return got


@pytest.fixture
def short_temp() -> str:
    temp = short_temp_dir()
    yield temp
    shutil.rmtree(temp, ignore_errors=True)


def test_address_connects_to_a_running_cluster(
    ray_cluster: types.ModuleType, short_temp: str
) -> None:
    address = ray_cluster.get_runtime_context().gcs_address
    assert sweep_elsewhere(short_temp, address=address)["cluster"] == address


def test_without_a_cluster_the_sweep_starts_one(
    ray_cluster: types.ModuleType, short_temp: str
) -> None:
    got = sweep_elsewhere(short_temp)
    assert got["cluster"] != ray_cluster.get_runtime_context().gcs_address
    assert any(Path(short_temp).glob("ray/session_*"))  # its own cluster, under RAY_TMPDIR


# -- lumibot strategies on the lazybars lumibot data source --------------------------------------
def lumibot_backtest(params: dict, *, catalog: str, workdir: str) -> dict:
    """A lumibot strategy, parameters from the sweep, bars from the catalog (opened here)."""
    from lumibot.entities import Asset
    from lumibot.strategies import Strategy

    from lazybars.lumibot import OFFLINE, LazyBarsBacktesting

    class Crossover(Strategy):
        parameters = {"fast": 5, "slow": 20}  # noqa: RUF012 - lumibot's own convention

        def initialize(self) -> None:
            self.sleeptime = "5M"
            self.set_market("24/7")

        def on_trading_iteration(self) -> None:
            asset = Asset("MES", asset_type="future")
            fast, slow = self.parameters["fast"], self.parameters["slow"]
            bars = self.get_historical_prices(asset, slow, "minute")
            if bars is None or len(bars.df) < slow:
                return
            close = bars.df["close"]
            held = self.get_position(asset)
            long = close.iloc[-fast:].mean() > close.mean()
            if long and (held is None or held.quantity == 0):
                self.submit_order(self.create_order(asset, 1, "buy"))
            elif not long and held is not None and held.quantity > 0:
                self.submit_order(self.create_order(asset, held.quantity, "sell"))

    # lumibot writes its logs into the working directory: keep them out of the worker's.
    with contextlib.chdir(workdir):
        _, done = Crossover.run_backtest(
            LazyBarsBacktesting,
            dt.datetime(2024, 1, 3, 10),
            dt.datetime(2024, 1, 3, 15),
            store=catalog,
            parameters=params,
            **OFFLINE,
        )
    log = done.broker._trade_event_log_df
    return {"fills": int((log["status"] == "fill").sum()), "value": float(done.portfolio_value)}


@pytest.mark.skipif(
    importlib.util.find_spec("lazybars.lumibot") is None,
    reason="needs lazybars.lumibot (LazyBarsBacktesting, issue #11)",
)
@pytest.mark.skipif(
    importlib.util.find_spec("lumibot") is None,
    reason="needs the lumibot extra: pip install -e '.[lumibot]'",
)
def test_lumibot_strategies_sweep_on_ray_as_locally(
    ray_cluster: types.ModuleType, catalog: str, tmp_path: Path
) -> None:
    run = functools.partial(lumibot_backtest, catalog=catalog, workdir=str(tmp_path))
    grid = {"fast": [3, 5], "slow": [10, 20]}
    local = lb.sweep(run, grid, progress=False)
    assert local["status"].to_list() == ["ok"] * 4, local["error"].to_list()
    assert local["fills"].min() > 0 and local["value"].n_unique() > 1
    same_results(lb.sweep(run, grid, engine="ray", progress=False), local)


# -- the cluster stays on this machine --------------------------------------------------------
def _loopback(hex_address: str) -> bool:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        address = ipaddress.IPv4Address(raw[::-1])
    else:
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        address = ipaddress.IPv6Address(words)
        address = address.ipv4_mapped or address
    return address.is_loopback


def _listeners(pids: set[int]) -> list[tuple[str, bool]]:
    """(local address, is loopback) of every TCP socket the processes listen on."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                found.append((local, _loopback(local.split(":")[0])))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_the_test_cluster_listens_on_loopback_only(ray_cluster: types.ModuleType) -> None:
    session = ray_cluster.get_runtime_context().get_temp_dir()
    pids = {os.getpid()}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if session.encode() in (proc / "cmdline").read_bytes():
                pids.add(int(proc.name))
        except OSError:
            continue
    listeners = _listeners(pids)
    gcs_port = int(ray_cluster.get_runtime_context().gcs_address.rsplit(":")[1])
    assert any(int(local.rsplit(":")[1], 16) == gcs_port for local, _ in listeners)
    assert len(pids) >= 4 and all(loopback for _, loopback in listeners), listeners
