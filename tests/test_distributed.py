"""phasic.distributed on a real LocalCluster (2 worker processes): builds, sweeps, failures,
client selection, the ``phasic build`` command.

Numbers are checked against closed forms (Kingman coalescent: a sum of exponentials) and
dense-matrix formulas written here (moments ``k! alpha (-S)^-k 1``, pdf ``alpha e^{St} s``),
and sweeps against the serial batch replay on the same chunks (bit for bit).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import expm

from phasic import Graph
from phasic.batch import evaluate_batch
from phasic.exceptions import DistributedError, ParameterError, PhasicError, UnhashableError
from phasic.store import Store
from phasic.traces import trace_key
from tests import models as dm
from tests.dask_cluster import decoy_cluster

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parent.parent

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster(decoy):
    with decoy_cluster(decoy) as lc:
        yield lc


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        c.get_task_stream(start=0, stop=0)  # install the scheduler's task-stream plugin
        yield c


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
    for name in ("PHASIC_SCHEDULER", "PHASIC_CLUSTER", "PHASIC_JOBS"):
        monkeypatch.delenv(name, raising=False)
    return Store(root)


def _no_default_client():
    with pytest.raises(ValueError):
        distributed.default_client()


def _kingman_moments(n, scale):
    """E[T], E[T^2] of the Kingman coalescent from n lineages: a sum of exponentials."""
    rates = np.array([k * (k - 1) / 2 * scale for k in range(2, n + 1)])
    mean = np.sum(1 / rates)
    return mean, np.sum(1 / rates**2) + mean**2


def _dense(g, theta):
    """(alpha, S, s) of g at theta from its sub-intensity matrix."""
    h = g.copy()
    h.update_weights(theta)
    alpha, S = h.as_matrices()
    return np.asarray(alpha), np.asarray(S), -np.asarray(S).sum(axis=1)


def _dense_moments(g, theta, rewards=None):
    alpha, S, _ = _dense(g, theta)
    U = np.linalg.inv(-S)
    if rewards is not None:
        h = g.copy()
        h.update_weights(theta)  # which vertices are transient depends on the rates
        U = U @ np.diag(np.asarray(rewards)[h.transient_vertices()])
    one = np.ones(len(alpha))
    return alpha @ U @ one, 2 * alpha @ U @ U @ one


# ------------------------------------------------------------------------------ build + sweep


def test_build_stores_graph_and_trace_and_sweep_matches_serial(client, store):
    from phasic.distributed import ModelSpec, build, sweep

    specs = [ModelSpec(dm.two_island_param, ipv=[4, 3]), ModelSpec(dm.coalescent_param)]
    keys = build(specs, client=client, progress=False)
    assert keys == [s.key for s in specs]
    local = Graph(dm.two_island_param, ipv=[4, 3])
    from phasic.specs import ModelSpec

    assert Path(store.path("graphs", keys[0])) == ModelSpec(dm.two_island_param, ipv=[4, 3]).entry_path()
    from phasic._csr import unpack

    arrays = unpack(store.get("graphs", keys[0])[0])  # stored in the compact form
    ref, _ = local.to_arrays()
    assert set(arrays) == set(ref) and all(np.array_equal(arrays[k], ref[k]) for k in ref)
    assert store.contains("traces", trace_key(local))

    rng = np.random.default_rng(1)
    thetas = np.column_stack([rng.uniform(0.5, 2.0, 45), rng.uniform(0.1, 1.5, 45)])
    got = sweep(keys[0], thetas, what="moments", k=2, chunk_size=7, client=client, progress=False)
    serial = np.concatenate([evaluate_batch(local, thetas[i : i + 7], k=2) for i in range(0, 45, 7)])
    assert got.shape == (45, 2) and np.array_equal(got, serial)
    for i in (0, 17, 44):
        h = local.copy()
        h.update_weights(thetas[i])
        np.testing.assert_allclose(got[i], h.moments(2), rtol=1e-12, atol=0)
        np.testing.assert_allclose(got[i], _dense_moments(local, thetas[i]), rtol=1e-9)

    # a graph and its trace are loaded once per worker process, not once per chunk (7 chunks)
    counts = client.run(lambda: __import__("phasic.distributed._sweep", fromlist=["_"]).load_counts())
    loads = [c.get((str(store.root), keys[0]), 0) for c in counts.values()]
    assert sum(loads) >= 1 and max(loads) == 1, counts

    scales = np.array([[0.5], [1.0], [3.0]])
    m = sweep(keys[1], scales, k=2, client=client, progress=False)
    for (s,), row in zip(scales, m):
        np.testing.assert_allclose(row, _kingman_moments(10, s), rtol=1e-12)


def test_sweep_expectation_variance_rewards_pdf_cdf_and_dask_array(client, store):
    from phasic.distributed import ModelSpec, build, sweep

    (key,) = build([ModelSpec(dm.two_island_param, ipv=[3, 2])], client=client, progress=False)
    g = Graph(dm.two_island_param, ipv=[3, 2])
    rewards = (g.states().sum(axis=1) >= 2).astype(float) * np.arange(g.vertices_length()) % 3
    thetas = np.array([[1.0, 0.3], [2.0, 0.7], [0.7, 1.9], [1.3, 0.05], [0.9, 0.9]])
    times = np.array([0.0, 0.25, 1.0, 3.0])
    common = dict(client=client, chunk_size=2, progress=False)
    e = sweep(key, thetas, what="expectation", rewards=rewards, **common)
    v = sweep(key, thetas, what="variance", rewards=rewards, **common)
    pdf = sweep(key, thetas, what="pdf", times=times, **common)
    cdf = sweep(key, thetas, what="cdf", times=times, **common)
    assert e.shape == v.shape == (5,) and pdf.shape == cdf.shape == (5, 4)
    for what, got, kw in (
        ("expectation", e, {"rewards": rewards}),
        ("variance", v, {"rewards": rewards}),
        ("pdf", pdf, {"times": times}),
        ("cdf", cdf, {"times": times}),
    ):
        serial = np.concatenate([evaluate_batch(g, thetas[i : i + 2], what=what, **kw) for i in range(0, 5, 2)])
        assert np.array_equal(got, serial), what
    for i, th in enumerate(thetas):
        m1, m2 = _dense_moments(g, th, rewards)
        np.testing.assert_allclose([e[i], v[i]], [m1, m2 - m1**2], rtol=1e-9)
        alpha, S, s = _dense(g, th)
        np.testing.assert_allclose(pdf[i], [alpha @ expm(S * t) @ s for t in times], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(cdf[i], [1 - alpha @ expm(S * t).sum(axis=1) for t in times], rtol=1e-8, atol=1e-12)

    lazy = sweep(key, thetas, what="pdf", times=times, chunk_size=2, as_dask_array=True)
    import dask.array as da

    assert isinstance(lazy, da.Array) and lazy.shape == (5, 4) and lazy.numblocks == (3, 1)
    assert np.array_equal(client.compute(lazy).result(), pdf)
    lazy_e = sweep(key, thetas, what="expectation", rewards=rewards, chunk_size=2, as_dask_array=True)
    assert lazy_e.shape == (5,) and np.array_equal(lazy_e.compute(scheduler="sync"), e)

    # a Graph object works too (stored under the hash of its arrays)
    assert np.array_equal(sweep(g, thetas, what="pdf", times=times, **common), pdf)


# ------------------------------------------------------------------------------ dedup, reuse


def test_duplicates_build_once_and_stored_models_are_not_rebuilt(client, store, tmp_path, monkeypatch):
    from phasic.distributed import ModelSpec, build

    marker = tmp_path / "calls.txt"
    a = ModelSpec(dm.counting_coalescent, theta=1.0, marker=str(marker))
    b = ModelSpec(dm.counting_coalescent, theta=2.0, marker=str(marker))
    a2 = ModelSpec(dm.counting_coalescent, theta=1.0, marker=str(marker))
    keys = build([a, a2, b, a], client=client, progress=False)
    assert keys == [a.key, a.key, b.key, a.key] and a.key != b.key
    assert len(marker.read_text().split()) == 2  # one build per distinct key

    c = ModelSpec(dm.counting_coalescent, theta=3.0, marker=str(marker))
    info = build([a, b, c], client=client, progress=False, details=True)
    assert [i["built"] for i in info] == [False, False, True]
    assert len(marker.read_text().split()) == 3

    # all stored: no client is needed at all (an unreachable scheduler is never contacted)
    monkeypatch.setenv("PHASIC_SCHEDULER", "tcp://127.0.0.1:9")
    assert build([c, a], progress=False) == [c.key, a.key]
    assert len(marker.read_text().split()) == 3
    g = Graph.from_arrays(*store.get("graphs", c.key))
    np.testing.assert_allclose(g.moments(2), _kingman_moments(8, 3.0), rtol=1e-12)


def test_concurrent_builds_of_one_model_run_once_per_store(client, store, tmp_path):
    from phasic.distributed import ModelSpec, build

    marker = tmp_path / "calls.txt"
    spec = ModelSpec(dm.counting_coalescent, theta=5.0, marker=str(marker))
    other = Store(tmp_path / "other-store")
    results = []
    jobs = [None, None, None, other.root]
    threads = [
        threading.Thread(target=lambda d=d: results.append(build([spec], client=client, cache_dir=d, progress=False)))
        for d in jobs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [[spec.key]] * 4
    assert len(marker.read_text().split()) == 2  # once per store, however many callers
    assert store.contains("graphs", spec.key) and other.contains("graphs", spec.key)


# ------------------------------------------------------------------------------ failures


def test_killed_worker_during_build_is_retried_and_store_stays_valid(client, store, tmp_path):
    from phasic.distributed import ModelSpec, build

    marker = tmp_path / "sleeping.pid"
    spec = ModelSpec(dm.sleepy_coalescent, theta=1.5, marker=str(marker), sleep=120.0)
    out = {}

    def run():
        try:
            out["keys"] = build([spec], client=client, progress=False)
        except BaseException as exc:  # reported below
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the build never started"
        time.sleep(0.05)
    pid = int(marker.read_text())
    assert pid in client.run(os.getpid).values()
    os.kill(pid, signal.SIGKILL)
    t.join(90)
    assert not t.is_alive()
    assert out.get("keys") == [spec.key], out.get("error")
    report = store.verify()
    assert report and report.checked == 2 and not report.removed_temp
    assert not [p for p in Path(store.root).rglob(".*") if p.is_file()]  # no temp or lock files
    g = Graph.from_arrays(*store.get("graphs", spec.key))
    np.testing.assert_allclose(g.moments(2), _kingman_moments(6, 1.5), rtol=1e-12)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker


def test_raising_callback_names_spec_state_and_cause(client, store):
    from phasic.distributed import ModelSpec, build

    bad = ModelSpec(dm.failing_coalescent, fail_at=3)
    good = ModelSpec(dm.coalescent, theta=4.0)
    with pytest.raises(DistributedError) as info:
        build([good, bad], client=client, progress=False)
    err = info.value
    msg = str(err)
    assert "tests.models.failing_coalescent(fail_at=3)" in msg
    assert "state [3]" in msg and "ZeroDivisionError" in msg and "no rate defined for 3 lineages" in msg
    assert isinstance(err, PhasicError) and isinstance(err, RuntimeError)
    assert [s for s, _ in err.failures] == [bad] and err.keys == [good.key]
    assert store.contains("graphs", good.key) and not store.contains("graphs", bad.key)


def test_sweep_errors(client, store):
    from phasic.distributed import ModelSpec, build, sweep

    key, plain = build(
        [ModelSpec(dm.two_island_param, ipv=[2, 2]), ModelSpec(dm.coalescent, theta=1.0)], client=client, progress=False
    )
    ok = np.array([[1.0, 0.5]] * 4)
    with pytest.raises(DistributedError, match=r"rows 2:4 .*ParameterError.*negative rate"):
        sweep(
            key,
            np.array([[1.0, 0.5], [1.0, 0.5], [1.0, -2.0], [1.0, 0.5]]),
            chunk_size=2,
            client=client,
            progress=False,
        )
    # bad inputs are found before any task runs; the message names the value
    with pytest.raises(ParameterError, match=r"\(4, 3\)"):
        sweep(key, np.ones((4, 3)), client=client)
    with pytest.raises(ParameterError, match=r"row 1 .*non-finite"):
        sweep(key, np.array([[1.0, 0.5], [np.nan, 1.0]]), client=client)
    with pytest.raises(ParameterError, match="'mean'"):
        sweep(key, ok, what="mean", client=client)
    with pytest.raises(ParameterError, match="needs times"):
        sweep(key, ok, what="pdf", client=client)
    with pytest.raises(ParameterError, match="rewards"):
        sweep(key, ok, what="expectation", rewards=[1.0, 2.0], client=client)
    with pytest.raises(ParameterError, match="parameterised"):
        sweep(plain, ok, client=client)
    with pytest.raises(ParameterError, match="not in the store"):
        sweep("ab" * 32, ok, client=client)
    with pytest.raises(ParameterError, match="'nope'"):
        sweep("nope", ok, client=client)
    with pytest.raises(ParameterError, match="chunk_size=0"):
        sweep(key, ok, chunk_size=0, client=client)
    with pytest.raises(ParameterError, match="not a ModelSpec"):
        build([ModelSpec(dm.coalescent), dm.coalescent], client=client)
    with pytest.raises(ParameterError, match="retries=-1"):
        build([ModelSpec(dm.coalescent)], client=client, retries=-1)
    with pytest.raises(ParameterError, match="not callable"):
        ModelSpec("tests.models:coalescent")
    with pytest.raises(UnhashableError, match="lambda"):
        build([ModelSpec(lambda state: [])], client=client)
    assert sweep(key, np.empty((0, 2)), client=client).shape == (0, 2)


# ------------------------------------------------------------------------------ client choice


def test_passed_client_beats_default_and_environment(cluster, client, store, monkeypatch):
    from phasic.distributed import connect

    monkeypatch.setenv("PHASIC_SCHEDULER", "tcp://127.0.0.1:9")
    with distributed.Client(cluster) as default:
        assert distributed.default_client() is default
        with connect(client) as conn:
            assert conn.client is client and conn.source == "argument"
        with connect() as conn:  # the default client beats the environment
            assert conn.client is default and conn.source == "default"
    assert client.status == "running" and default.status == "closed"


def test_default_client_is_used_by_build(cluster, store, monkeypatch):
    from phasic.distributed import ModelSpec, build

    monkeypatch.setenv("PHASIC_SCHEDULER", "tcp://127.0.0.1:9")  # would fail if contacted
    with distributed.Client(cluster) as default:
        start = time.time()
        (key,) = build([ModelSpec(dm.coalescent, theta=6.0)], progress=False)
        ran = {t["key"] for t in default.get_task_stream(start=start)}
    assert any(k.startswith(f"phasic-build-{key}-") for k in ran), ran


def test_address_from_environment_then_config(cluster, client, store, monkeypatch):
    import dask

    from phasic.distributed import ModelSpec, build, connect

    _no_default_client()
    monkeypatch.setenv("PHASIC_SCHEDULER", cluster.scheduler_address)
    monkeypatch.setenv("PHASIC_CLUSTER", "slurm")  # an address comes first
    with connect() as conn:
        assert conn.source == "address" and "PHASIC_SCHEDULER" in conn.detail
        assert conn.client.scheduler.address == cluster.scheduler_address
        assert conn.client is not client
    assert conn.client.status == "closed"  # phasic closes what it opened
    start = time.time()
    (key,) = build([ModelSpec(dm.coalescent, theta=7.0)], progress=False)
    ran = {t["key"] for t in client.get_task_stream(start=start)}
    assert any(k.startswith(f"phasic-build-{key}-") for k in ran), ran

    monkeypatch.delenv("PHASIC_SCHEDULER")
    monkeypatch.delenv("PHASIC_CLUSTER")
    with dask.config.set({"phasic.scheduler-address": cluster.scheduler_address}):
        with connect() as conn:
            assert conn.source == "address" and "phasic.scheduler-address" in conn.detail


def test_bad_configuration_errors(store, monkeypatch):
    import dask

    from phasic.distributed import connect

    _no_default_client()
    monkeypatch.setenv("PHASIC_CLUSTER", "pbs")
    with pytest.raises(ParameterError, match="'pbs'"):
        with connect():
            pass
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PHASIC_SCHEDULER", f"tcp://127.0.0.1:{port}")
    with dask.config.set({"phasic.connect-timeout": "1s"}):
        with pytest.raises(DistributedError, match=f"tcp://127.0.0.1:{port}.*PHASIC_SCHEDULER"):
            with connect():
                pass


def test_local_cluster_fallback_sized_to_machine_and_closed(store):
    from phasic.distributed import ModelSpec, build, connect

    _no_default_client()
    with connect() as conn:
        assert conn.source == "local"
        assert len(conn.client.nthreads()) == len(os.sched_getaffinity(0))
        assert set(conn.client.nthreads().values()) == {1}
        (key,) = build([ModelSpec(dm.coalescent, theta=8.0)], client=conn.client, progress=False)
    assert conn.client.status == "closed" and conn.cluster.status.name == "closed"
    g = Graph.from_arrays(*store.get("graphs", key))
    np.testing.assert_allclose(g.moments(1)[0], _kingman_moments(10, 8.0)[0], rtol=1e-12)


# ------------------------------------------------------------------------------ progress, report


def test_build_progress_line_and_performance_report(client, store, tmp_path, capsys):
    from phasic.distributed import ModelSpec, build

    report = tmp_path / "report.html"
    build([ModelSpec(dm.two_island_param, ipv=[2, 1])], client=client, progress=True, performance_report=report)
    assert "phasic build (1 models)" in capsys.readouterr().err
    assert report.stat().st_size > 1000 and "Dask Performance Report" in report.read_text()


def test_sweep_progress_is_dasks_display_and_changes_no_result(client, store, capfd):
    """progress=True draws Dask's own text bar (distributed.progress, on stdout as Dask
    writes it); the numbers are the same bit for bit with progress on, off and by default."""
    from phasic.distributed import ModelSpec, build, sweep

    (key,) = build([ModelSpec(dm.two_island_param, ipv=[3, 2])], client=client, progress=False)
    thetas = np.random.default_rng(7).uniform(0.5, 2.0, size=(60, 2))
    capfd.readouterr()
    shown = sweep(key, thetas, k=2, chunk_size=7, client=client, progress=True)
    out, err = capfd.readouterr()
    assert "] | 100% Completed |" in out and out.startswith("\r["), out
    assert out.endswith("\x1b[2K\r")  # Dask erases its bar at the end
    assert "phasic sweep" not in err + out  # not phasic's own line any more
    quiet = sweep(key, thetas, k=2, chunk_size=7, client=client, progress=False)
    default = sweep(key, thetas, k=2, chunk_size=7, client=client)  # stdout is not a terminal here
    assert capfd.readouterr() == ("", "")
    assert np.array_equal(shown, quiet) and np.array_equal(shown, default)
    np.testing.assert_array_equal(shown, evaluate_batch(Graph.from_arrays(*store.get("graphs", key)), thetas, k=2))
    # a chunk whose inputs fail is reported the same way with the bar on
    bad = thetas.copy()
    bad[9, 1] = -3.0
    with pytest.raises(DistributedError, match=r"rows 7:14 .*negative rate"):
        sweep(key, bad, chunk_size=7, client=client, progress=True)
    assert "100% Completed" in capfd.readouterr().out


def test_sweep_progress_is_dasks_widget_in_a_jupyter_kernel(cluster, store):
    """In a Jupyter kernel progress=True (and the default) shows Dask's widget, and it is
    drawn while the sweep blocks the cell: finished before the call returns, which Dask's own
    listener on the kernel's loop would only be after the cell (runs where ipykernel,
    ipywidgets and nbclient are installed)."""
    for name in ("ipykernel", "ipywidgets", "nbclient", "nbformat"):
        pytest.importorskip(name)
    import nbformat
    from nbclient import NotebookClient

    from phasic.distributed import ModelSpec, build

    (key,) = build([ModelSpec(dm.two_island_param, ipv=[4, 4])], progress=False)
    code = (
        "import sys, numpy as np, distributed, ipywidgets\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from phasic.distributed import sweep\n"
        f"c = distributed.Client({cluster.scheduler_address!r}, set_as_default=False)\n"
        "th = np.random.default_rng(1).uniform(0.5, 2.0, size=(4000, 2))\n"
        "bars = lambda: [w for w in list(ipywidgets.widgets.widget._instances.values())\n"
        "                if isinstance(w, ipywidgets.FloatProgress)]\n"
        f"shown = sweep({key!r}, th, chunk_size=40, client=c, progress=True)\n"
        "drawn = [(b.value, b.bar_style) for b in bars()]\n"
        f"same = np.array_equal(shown, sweep({key!r}, th, chunk_size=40, client=c))\n"
        "print('RESULT', same, drawn, len(bars()))\n"
        "c.close()\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    env = {"PHASIC_CACHE_DIR": str(store.root)}
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute(
        env={**os.environ, **env}
    )
    outputs = nb.cells[0].outputs
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert len(views) == 2, outputs  # the default in a kernel shows the widget too
    assert "RESULT True [(1.0, 'success')] 2" in text, text
    assert "Completed" not in text  # the widget, not the text bar


def test_dask_progress_ends_when_a_task_fails(client, capfd):
    """Dask's bar stops at a task that raised; the wait goes on until every task is done."""
    from phasic.distributed._client import wait_with_dask_progress

    futures = [client.submit(sum, [i, 1], pure=False) for i in range(4)]
    futures.append(client.submit(int, "not a number", pure=False))
    wait_with_dask_progress(client, futures, True)
    assert [f.status for f in futures] == ["finished"] * 4 + ["error"]
    assert client.gather(futures[:4]) == [1, 2, 3, 4]
    assert "% Completed |" in capfd.readouterr().out


# ------------------------------------------------------------------------------ command line


def test_cli_build_models_yaml(cluster, store, tmp_path):
    models = tmp_path / "models.yaml"
    (tmp_path / "m.py").write_text(
        "from phasic import with_ipv\n\n"
        "@with_ipv([5])\n"
        "def kingman(state, theta=1.0):\n"
        "    n = state[0]\n"
        "    return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]\n"
    )
    models.write_text(
        "models:\n"
        "  - {name: islands, module: tests.models, callback: two_island_rates, ipv: [2, 2], params: {m: 0.25}}\n"
        "  - {name: kingman, file: m.py, callback: kingman, params: {theta: 2.0}, theta_grid: [[1.0]]}\n"
    )
    cmd = [sys.executable, "-m", "phasic.cli", "build", str(models), "--scheduler", cluster.scheduler_address, "--json"]
    env = {**os.environ, "PHASIC_CACHE_DIR": str(store.root)}
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert [m["name"] for m in doc["models"]] == ["islands", "kingman"]
    assert [m["built"] for m in doc["models"]] == [True, True] and doc["built"] == 2
    g = Graph.from_arrays(*store.get("graphs", doc["models"][1]["key"]))
    np.testing.assert_allclose(g.moments(2), _kingman_moments(5, 2.0), rtol=1e-12)
    islands = Graph(dm.two_island_rates, ipv=[2, 2], m=0.25)
    assert doc["models"][0]["vertices"] == islands.vertices_length()
    np.testing.assert_allclose(
        Graph.from_arrays(*store.get("graphs", doc["models"][0]["key"])).moments(2), islands.moments(2), rtol=1e-12
    )
    assert Path(doc["models"][0]["graph"]).is_file()
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert [m["built"] for m in json.loads(again.stdout)["models"]] == [False, False]

    models.write_text("models:\n  - {name: broken, module: tests.models, callback: nope}\n")
    bad = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "models[0]" in bad.stderr and "'nope'" in bad.stderr


def test_script_without_main_guard_gets_one_clear_error(tmp_path):
    """A script that starts phasic's local cluster at its top level, unguarded, gets one
    DistributedError naming the line and the guard to add, before any worker starts."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import phasic.distributed as pd\n"
        "from tests.models import coalescent\n"
        "\n"
        "pd.build([pd.ModelSpec(coalescent, theta=1.0)], progress=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHASIC_SCHEDULER", "PHASIC_CLUSTER", "DASK_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    env["PHASIC_CACHE_DIR"] = str(tmp_path / "cache")
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"{script}, line 4: phasic.distributed starts a local Dask cluster here" in run.stderr
    assert 'if __name__ == "__main__":' in run.stderr and "DistributedError" in run.stderr
    assert "Nanny" not in run.stderr and run.stderr.count("Traceback") == 1


def test_session_serves_many_calls_with_one_cluster_and_prints_its_dashboard(store, capfd):
    """Inside `session()` every build()/sweep() uses the session's client: the LocalCluster
    phasic starts is started once (its dashboard link printed), and closed with the block."""
    import phasic.distributed as pd
    from phasic.distributed._client import connect

    with pd.session(cluster="local") as s:
        err = capfd.readouterr().err
        assert "phasic: started a local Dask cluster" in err and "dashboard: http://" in err, err
        (k1,) = pd.build([pd.ModelSpec(dm.coalescent_param)], progress=False)
        (k2,) = pd.build([pd.ModelSpec(dm.two_island_param, ipv=[2, 1])], progress=False)
        table = pd.sweep(k1, np.array([[1.0], [2.0]]), k=1, progress=False)
        assert "Completed" not in capfd.readouterr().out
        shown = pd.sweep(k1, np.array([[1.0], [2.0]]), k=1, chunk_size=1, progress=True)
        out, err = capfd.readouterr()
        assert "] | 100% Completed |" in out  # Dask's bar, through the session's client
        with connect() as inner:
            assert inner is s  # a call without client= gets the session's connection
        assert "started a" not in err + capfd.readouterr().err  # no second cluster
        assert k1 != k2 and np.asarray(table).shape[0] == 2 and np.array_equal(shown, table)
    assert s.client.status == "closed"
    with connect(cluster="local") as again:  # outside, calls choose their own client again
        assert again is not s
