"""Maintenance commands do only what is asked; the ``phasic`` command's rough edges.

Every check runs the real ``phasic`` console script (or ``python -m phasic.cli``) in a
subprocess, with ``PHASIC_CACHE_DIR``, ``JAX_COMPILATION_CACHE_DIR`` and ``HOME`` pointing
into the test's temporary directory; ``$HOME/.jax_cache`` always holds a file that no
command given another JAX directory may touch.
"""

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from phasic.store import Store

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "phasic"

MODEL = textwrap.dedent("""
    from phasic import with_ipv

    @with_ipv([4])
    def coalescent(state, theta=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]

    def chain(state, n=3, rate=1.5, label="x"):
        k = state[0]
        return [] if k >= n else [[[k + 1], rate]]
""")


class Env:
    """Paths of one test's cache, JAX cache and home, and a runner of the ``phasic`` command."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.cache = tmp_path / "cache"
        self.jax = tmp_path / "jax"
        self.home = tmp_path / "home"
        self.home_jax = self.home / ".jax_cache"
        self.home_jax.mkdir(parents=True)
        (self.home_jax / "home-entry-cache").write_bytes(b"precious")
        self.jax.mkdir()
        (self.jax / "configured-entry-cache").write_bytes(b"x" * 100)

    def env(self, jax=True):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        env["PHASIC_CACHE_DIR"] = str(self.cache)
        env["HOME"] = str(self.home)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        if jax:
            env["JAX_COMPILATION_CACHE_DIR"] = str(self.jax)
        return env

    def run(self, *args, jax=True, stdin=None, cwd=None, text=True):
        cmd = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "phasic.cli"]
        return subprocess.run(
            cmd + [str(a) for a in args],
            env=self.env(jax),
            capture_output=True,
            text=text,
            input=stdin,
            timeout=120,
            cwd=cwd or self.tmp,
        )

    def build(self, code):
        """Run Python `code` (with the model module importable) against this cache."""
        (self.tmp / "models_cli.py").write_text(MODEL)
        env = self.env()
        env["PYTHONPATH"] = os.pathsep.join([str(self.tmp), env["PYTHONPATH"]])
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.tmp,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def _chain(state, n=3):
    k = state[0]
    return [] if k >= n else [[[k + 1], 1.5]]


def _populate(root):
    """Two real graphs stored under the keys a..a and b..b (no key material) and a real trace;
    returns the store and the trace's key."""
    from phasic.graph import Graph
    from phasic.traces import ensure_trace

    store = Store(root)
    for n, key in ((6, "a" * 64), (2, "b" * 64)):
        g = Graph(_chain, n=n, ipv=[[[0], 1.0]])
        arrays, attrs = g.to_arrays(compact=True)
        store.put("graphs", key, arrays, {**attrs, "callback": "_chain"})
    return store, ensure_trace(g, store)


def _one_line_error(out):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert len(lines) == 1 and lines[0].startswith("phasic: error:"), out.stderr
    assert "Traceback" not in out.stderr
    return lines[0]


# ------------------------------------------------------------------------ cache clear
def test_clear_without_a_kind_deletes_nothing_and_says_what_it_would_clear(env):
    store, trace = _populate(env.cache)
    out = env.run("cache", "clear")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert store.entries("graphs") == ["a" * 64, "b" * 64] and store.entries("traces") == [trace]
    assert (env.jax / "configured-entry-cache").exists() and (env.home_jax / "home-entry-cache").exists()
    # what it would clear, by kind and directory, and how to ask for it
    assert "2 graphs entries" in out.stdout and str(env.cache / "graphs") in out.stdout
    assert "1 traces entries" in out.stdout and "1 jax files" in out.stdout and str(env.jax) in out.stdout
    assert str(env.home_jax) not in out.stdout
    for word in ("graphs", "traces", "jax", "--all"):
        assert word in out.stderr


def test_dry_run_lists_without_deleting(env):
    store, trace = _populate(env.cache)
    for args in (("--all", "--dry-run"), ("graphs", "jax", "--dry-run")):
        out = env.run("cache", "clear", *args)
        assert out.returncode == 0, out.stderr
        assert "would remove 2 graphs entries" in out.stdout and str(env.jax) in out.stdout
    assert "traces" not in out.stdout
    assert store.entries("graphs") == ["a" * 64, "b" * 64] and store.entries("traces") == [trace]
    assert (env.jax / "configured-entry-cache").exists() and (env.home_jax / "home-entry-cache").exists()


def test_clear_graphs_deletes_only_graphs(env):
    store, trace = _populate(env.cache)
    out = env.run("cache", "clear", "graphs")
    assert out.returncode == 0, out.stderr
    assert f"removed 2 graphs entries from {env.cache / 'graphs'}" in out.stdout
    assert store.entries("graphs") == [] and store.entries("traces") == [trace]
    assert (env.jax / "configured-entry-cache").exists() and (env.home_jax / "home-entry-cache").exists()


def test_clear_all_uses_the_configured_jax_directory_never_home(env):
    store, trace = _populate(env.cache)
    configured, env.jax = env.jax, env.home  # JAX pointed at the home directory: refused before any removal
    assert "refusing to clear" in _one_line_error(env.run("cache", "clear", "--all"))
    assert store.entries("graphs") == ["a" * 64, "b" * 64] and store.entries("traces") == [trace]
    env.jax = configured
    (env.jax / "notes.txt").write_text("not a JAX file")
    out = env.run("cache", "clear", "--all")
    assert out.returncode == 0, out.stderr
    assert store.entries("graphs") == [] and store.entries("traces") == []
    assert not (env.jax / "configured-entry-cache").exists() and (env.jax / "notes.txt").exists()
    assert (env.home_jax / "home-entry-cache").read_bytes() == b"precious"
    assert str(env.jax) in out.stdout and str(env.home_jax) not in out.stdout
    # without JAX_COMPILATION_CACHE_DIR the default is used, and named
    out = env.run("cache", "clear", "jax", jax=False)
    assert out.returncode == 0, out.stderr
    assert not (env.home_jax / "home-entry-cache").exists() and str(env.home_jax) in out.stdout


# ------------------------------------------------------------------------ cache list
def test_list_shows_model_params_vertices_size_dates_and_provenance(env):
    env.build("""
        from phasic import Graph
        from phasic.traces import ensure_trace
        import models_cli
        Graph(models_cli.coalescent, theta=2.0, cache=True)
        g = Graph(models_cli.chain, n=4, rate=0.25, label="pop A", ipv=[[[0], 1.0]], cache=True)
        ensure_trace(g)
    """)
    store = Store(env.cache)
    assert len(store.entries("graphs")) == 2 and len(store.entries("traces")) == 1
    out = env.run("cache", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    graphs = {r["callback"]: r for r in rows if r["kind"] == "graphs"}
    assert set(graphs) == {"coalescent", "chain"}
    coal, chain = graphs["coalescent"], graphs["chain"]
    assert coal["params"] == {"theta": 2.0} and coal["vertices"] == 5
    assert chain["params"] == {"n": 4, "rate": 0.25, "label": "pop A"} and chain["vertices"] == 6
    for r in rows:
        path = Path(r["path"])
        assert r["status"] == "ok" and r["bytes"] == path.stat().st_size
        assert r["created"].startswith("20") and r["last_used"].startswith("20")
        assert r["phasic_version"] != "-" and r["module"] and r["user"] and r["host"]
    trace = [r for r in rows if r["kind"] == "traces"][0]
    assert trace["vertices"] == 6 and trace["params"] is None
    out = env.run("cache", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    header, body = lines[0], lines[1:]
    for column in ("KIND", "MODEL", "PARAMS", "VERTICES", "SIZE", "CREATED", "LAST USED", "BY", "PHASIC"):
        assert column in header
    assert len(body) == 3
    line = [x for x in body if "coalescent" in x][0]
    assert "theta=2.0" in line and coal["phasic_version"] in line.split()
    assert f"{coal['user']}@{coal['host']}" in line.split() or coal["user"] == coal["host"] == "-"
    assert coal["last_used"] >= coal["created"]
    assert "label='pop A' n=4 rate=0.25" in [x for x in body if "chain" in x][0]


def test_list_marks_damaged_entries_and_skips_what_is_not_a_file(env):
    store, trace = _populate(env.cache)
    bad = store.path("graphs", "a" * 64)
    bad.write_bytes(bad.read_bytes()[:300])
    fifo_dir = env.cache / "graphs" / "dd"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / ("d" * 62 + ".h5"))  # would block a reader that opens it
    legacy = env.cache / "graphs" / "ee" / ("e" * 62 + ".h5")  # format 1: plain HDF5, no store head
    legacy.parent.mkdir()
    import h5py

    with h5py.File(legacy, "w") as f:
        f["states"] = np.zeros((4, 1))
        f.attrs["key"] = "e" * 64
    compressed = "f" * 64  # a gzip entry: its index has the attributes only
    Store(env.cache, compression="gzip").put("traces", compressed, {"xinit": np.zeros(20000)}, {"n": 1})
    out = env.run("cache", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["key"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"a" * 64, "b" * 64, "e" * 64, compressed, trace}
    assert rows["a" * 64]["status"].startswith("damaged") and rows["b" * 64]["status"] == "ok"
    assert rows["e" * 64]["status"].startswith("legacy") and rows["e" * 64]["vertices"] is None
    assert rows[compressed]["status"] == "ok" and rows[compressed]["vertices"] == 20000
    assert rows["b" * 64]["vertices"] == Store(env.cache).get("graphs", "b" * 64)[0]["states"].shape[0]
    assert rows["b" * 64]["module"] == "-" and rows["b" * 64]["params"] is None
    out = env.run("cache", "list")
    assert out.returncode == 0 and "damaged" in [x for x in out.stdout.splitlines() if "aaaaaaaa" in x][0].lower()
    assert store.entries("graphs") == ["a" * 64, "b" * 64, "e" * 64]  # listing moves nothing


# ------------------------------------------------------------------------ import provenance
def test_import_shows_provenance_of_what_it_imported(env):
    _populate(env.tmp / "src")
    archive = env.tmp / "a.tar.gz"
    assert env.run("--cache-dir", env.tmp / "src", "cache", "export", archive).returncode == 0
    out = env.run("cache", "import", archive)
    assert out.returncode == 0, out.stderr
    assert "Imported 3 entries" in out.stdout
    version = Store(env.cache).get("graphs", "b" * 64)[1]["phasic_version"]
    assert f"phasic {version}" in out.stdout and "created" in out.stdout
    assert "not authenticity" in out.stdout or "trust" in out.stdout
    out = env.run("cache", "import", archive)  # nothing new: no provenance lines
    assert out.returncode == 0 and "(3 already present)" in out.stdout and "created" not in out.stdout


# ------------------------------------------------------------------------ rough edges
def test_version(env):
    import phasic
    from phasic.store import phasic_version

    out = env.run("--version")
    expected = phasic_version() if phasic_version() != "unknown" else phasic.__version__
    assert out.returncode == 0 and out.stdout == f"phasic {expected}\n", out


def test_cache_dir_naming_a_regular_file_is_refused(env):
    afile = env.tmp / "afile"
    afile.write_text("data")
    for args in (
        ("--cache-dir", afile, "cache", "info"),
        ("cache", "list", "--cache-dir", afile),
        ("--cache-dir", afile, "graph", "build", "--file", "m.py", "--callback", "f"),
    ):
        line = _one_line_error(env.run(*args))
        assert str(afile) in line and "not a directory" in line
    assert afile.read_text() == "data"


def test_huge_time_grid_is_a_clear_error(env):
    (env.tmp / "models_cli.py").write_text(MODEL)
    for times, num in (
        ("0:1:1000000000", 10**9),
        ("0:1:" + "1" * 30, int("1" * 30)),
        ('{"start": 0, "stop": 1, "num": 10000000000}', 10**10),
        ("auto:1000000000", 10**9),
    ):
        out = env.run(
            "evaluate",
            "--file",
            "models_cli.py",
            "--callback",
            "coalescent",
            "--times",
            times,
            "--distribution-out",
            "-",
        )
        line = _one_line_error(out)
        assert f"{num} time points" in line and "at most 1000000 " in line, line


def test_evaluate_prints_a_readable_table_and_dash_means_stdout(env):
    (env.tmp / "models_cli.py").write_text(MODEL)
    model = ("--file", "models_cli.py", "--callback", "coalescent", "--param", "theta=2.0")
    out = env.run("evaluate", *model)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["reward", "moment_1", "moment_2", "variance"]
    # 4 lineages at rate 2*C(n,2): E[T] = sum 1/(n(n-1)) = 3/4
    assert float(lines[1].split()[1]) == pytest.approx(0.75, rel=1e-12)
    out = env.run("evaluate", *model, "--moments-out", "-", "--distribution-out", "-", "--times", "0:2:3")
    assert out.returncode == 0, out.stderr
    moments, dist = out.stdout.strip().split("\n\n")
    assert moments.splitlines()[0] == "reward\tmoment_1\tmoment_2\tvariance"
    assert dist.splitlines()[0] == "t\tpdf\tcdf" and len(dist.splitlines()) == 4
    assert float(moments.splitlines()[1].split("\t")[1]) == pytest.approx(0.75, rel=1e-12)
    out = env.run("evaluate", *model, "--moments-out", "-", "--json")
    _one_line_error(out)
    # trace record --out - writes the JSON result to stdout, the summary to stderr
    out = env.run("trace", "record", *model, "--out", "-")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["vertices"] == 5
    # --spec @- reads the spec from stdin
    spec = json.dumps({"name": "k", "file": "models_cli.py", "callback": "coalescent", "params": {"theta": 2.0}})
    out = env.run("evaluate", "--spec", "@-", "--moments-out", "-", stdin=spec)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.splitlines()[1].split("\t")[1]) == pytest.approx(0.75, rel=1e-12)


def test_export_to_and_import_from_a_dash(env):
    _populate(env.tmp / "src")
    out = env.run("--cache-dir", env.tmp / "src", "cache", "export", "-", text=False)
    assert out.returncode == 0, out.stderr
    archive = env.tmp / "piped.tar.gz"
    archive.write_bytes(out.stdout)
    with tarfile.open(archive) as tar:
        assert len(tar.getnames()) == 3
    out = env.run("cache", "import", "-", stdin=out.stdout, text=False)
    assert out.returncode == 0, out.stderr
    assert Store(env.cache).entries("graphs") == ["a" * 64, "b" * 64]
    assert not any(p.name.startswith(".") for p in env.tmp.iterdir() if p.is_file())


def test_list_shows_a_damaged_compressed_entry_and_a_newer_one(tmp_path):
    """Review 2: ``cache list`` showed a compressed entry that fails its check as "ok"; it is
    DAMAGED with the reason now, and an entry of a newer store format is NEWER (as verify
    says), not DAMAGED.  (entry_info/format_listing in-process: what the command prints.)"""
    import numpy as np

    from phasic.cli._list import entry_info, format_listing
    from phasic.store import Store

    store = Store(tmp_path, compression="gzip", memory_mb=0)
    V = 10_000
    arrays = {
        "states": np.arange(V, dtype=np.int32).reshape(V, 1),
        "edges/indptr": np.concatenate([np.arange(V, dtype=np.int64), [V - 1]]),
        "edges/target": np.arange(1, V, dtype=np.int32),
        "edges/weight": np.full(V - 1, 2.0),
    }
    key, newer = "ab" * 32, "cd" * 32
    path = store.put("graphs", key, arrays)
    assert path.read_bytes()[:16] == b"phasic-store-h2\n"
    assert entry_info(store, "graphs", key)["vertices"] == V
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the compressed HDF5 part: the whole-file SHA-256 fails
    path.write_bytes(bytes(data))
    row = entry_info(store, "graphs", key)
    assert row["status"].startswith("damaged: checksum mismatch"), row
    other = store.put("graphs", newer, {"x": np.arange(3)})
    head = bytearray(other.read_bytes())
    head[:16] = b"phasic-store-v7\n"
    other.write_bytes(bytes(head))
    row2 = entry_info(store, "graphs", newer)
    assert row2["status"] == "newer: newer store format 7 (this phasic reads 2)", row2
    text = format_listing([row, row2])
    assert "DAMAGED: checksum mismatch" in text and "NEWER: newer store format 7" in text
    assert path.exists() and other.exists()  # a listing never moves anything


def test_cache_dir_naming_a_fifo_says_what_it_is(tmp_path):
    """Review 15: ``--cache-dir FIFO`` said "is not a directory: it is not a directory either"."""
    from phasic.cli._main import _check_cache_dir

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(Exception) as info:
        _check_cache_dir(str(fifo), "--cache-dir")
    assert "it is a FIFO" in str(info.value) and "either" not in str(info.value)
