"""GraphCache, Graph(..., cache=True) and the unified cache stats/print/clear API."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import phasic
from phasic import Graph
from phasic.cache import (
    GraphCache,
    clear_caches,
    clear_model_cache,
    get_all_cache_stats,
    get_graph_cache_stats,
    get_trace_cache_stats,
    print_graph_cache_info,
    print_trace_cache_info,
)
from phasic.exceptions import UnhashableError
from phasic.specs import ModelSpec
from phasic.store import Store
from tests import _keys_helpers as kh

REPO = Path(__file__).resolve().parents[1]
UNIFORM = {"cache_dir", "num_entries", "total_bytes", "total_size_mb"}
RULE = "=" * 70


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = tmp_path / "phasic_cache"
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    return root


def _calls(marker):
    return len(Path(marker).read_text().splitlines()) if Path(marker).exists() else 0


def _kingman_moments(n, theta):
    """E[T] and Var[T] of the time to the MRCA of n lineages (independent exponential epochs)."""
    means = np.array([2.0 / (k * (k - 1) * theta) for k in range(2, n + 1)])
    return means.sum(), (means**2).sum()


def _kingman(marker, theta, **kw):
    return Graph(kh.counted_coalescent, ipv=[10], marker=str(marker), theta=theta, **kw)


def test_second_cached_build_does_not_call_the_callback(root, tmp_path):
    marker = tmp_path / "calls.txt"
    g1 = _kingman(marker, 2.0, cache=True)
    first = _calls(marker)
    assert first >= 10
    g2 = _kingman(marker, 2.0, cache=True)
    assert _calls(marker) == first
    mean, var = _kingman_moments(10, 2.0)
    for g in (g1, g2):
        assert g.vertices_length() == 11
        assert g.expectation() == pytest.approx(mean, rel=1e-12)
        assert g.variance() == pytest.approx(var, rel=1e-12)
    for a, b in zip(g1.edges(), g2.edges()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g1.states(), g2.states())
    path = ModelSpec(kh.counted_coalescent, ipv=[10], marker=str(marker), theta=2.0, cache=True).entry_path()
    assert path.is_file() and path.parent.parent == root / "graphs"
    with h5py.File(path, "r") as f:
        spec = ModelSpec(kh.counted_coalescent, ipv=[10], marker=str(marker), theta=2.0)
        key, material = spec.key, spec.material
        assert f.attrs["key"] == key == path.parent.name + path.stem
        assert f.attrs["key_material"] == material
        assert f.attrs["callback"] == "counted_coalescent"
    _kingman(marker, 3.0, cache=True)  # another parameter value is another entry
    assert _calls(marker) > first and Store(root).stats("graphs")["num_entries"] == 2


def test_entry_built_by_another_process_is_used(root, tmp_path):
    marker = tmp_path / "calls.txt"
    code = textwrap.dedent(f"""
        from phasic import Graph
        from tests._keys_helpers import counted_coalescent
        g = Graph(counted_coalescent, ipv=[10], marker={str(marker)!r}, theta=3.0, cache=True)
        print(repr(g.expectation()))
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    built = _calls(marker)
    assert built >= 10
    g = _kingman(marker, 3.0, cache=True)
    assert _calls(marker) == built
    assert g.expectation() == pytest.approx(_kingman_moments(10, 3.0)[0], rel=1e-12)
    assert float(out.stdout.strip()) == pytest.approx(g.expectation(), rel=1e-12)


FRESH_HIT = textwrap.dedent("""
    import json, sys, time
    from phasic import Graph
    from tests._keys_helpers import counted_coalescent
    before = set(sys.modules)
    t = time.perf_counter()
    g = Graph(counted_coalescent, ipv=[10], marker=sys.argv[1], theta=2.0, cache=True)
    ms = (time.perf_counter() - t) * 1e3
    new = set(sys.modules) - before
    print(json.dumps({"h5py": "h5py" in new, "h5py_before": "h5py" in before, "ms": ms,
                      "mean": g.expectation(), "var": g.variance(), "n": g.vertices_length()}))
""")


def test_first_hit_in_a_fresh_process_reads_without_h5py(root, tmp_path):
    marker = tmp_path / "calls.txt"
    _kingman(marker, 2.0, cache=True)
    built = _calls(marker)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", FRESH_HIT, str(marker)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert _calls(marker) == built  # the callback never ran in the children
    mean, var = _kingman_moments(10, 2.0)
    for run in runs:
        assert run["n"] == 11 and not run["h5py_before"] and not run["h5py"]
        assert run["mean"] == pytest.approx(mean, rel=1e-12) and run["var"] == pytest.approx(var, rel=1e-12)


def test_repeated_hits_in_one_process_return_independent_graphs(root, tmp_path):
    marker = tmp_path / "calls.txt"
    kw = dict(ipv=[8], marker=str(marker), theta_dim=1, cache=True)
    Graph(kh.counted_parameterised, **kw)
    calls = _calls(marker)
    g1 = Graph(kh.counted_parameterised, **kw)
    g1.update_weights([0.25])  # changing one hit's weights must not leak into later hits
    g2 = Graph(kh.counted_parameterised, **kw)
    assert _calls(marker) == calls
    assert g1.expectation() == pytest.approx(_kingman_moments(8, 0.25)[0], rel=1e-12)
    g2.update_weights([3.0])
    assert g2.expectation() == pytest.approx(_kingman_moments(8, 3.0)[0], rel=1e-12)
    assert g1.expectation() == pytest.approx(_kingman_moments(8, 0.25)[0], rel=1e-12)
    np.testing.assert_array_equal(g1.coefficients(), g2.coefficients())


def test_parameterised_graph_round_trips_through_the_cache(root, tmp_path):
    marker = tmp_path / "calls.txt"
    g1 = Graph(kh.counted_parameterised, ipv=[8], marker=str(marker), theta_dim=1, cache=True)
    n = _calls(marker)
    g2 = Graph(kh.counted_parameterised, ipv=[8], marker=str(marker), theta_dim=1, cache=True)
    assert _calls(marker) == n
    np.testing.assert_array_equal(g1.coefficients(), g2.coefficients())
    for theta in (0.5, 4.0):
        g2.update_weights([theta])
        assert g2.expectation() == pytest.approx(_kingman_moments(8, theta)[0], rel=1e-12)


def test_entry_path_splits_options_like_graph(root, tmp_path):
    base = ModelSpec(kh.coalescent, ipv=[5], theta=2.0).entry_path()
    assert (
        ModelSpec(kh.coalescent, ipv=[5], theta=2.0, cache=True, max_vertices=10, hierarchical=True).entry_path()
        == base
    )
    assert ModelSpec(kh.coalescent, ipv=[5], theta=2.0, discrete=True).entry_path() != base
    assert ModelSpec(kh.coalescent, ipv=[5], theta=2.5).entry_path() != base
    assert not root.exists()  # computing a path creates nothing
    Graph(kh.coalescent, ipv=[5], theta=2.0, cache=True, max_vertices=100)
    assert base.is_file()


def test_corrupt_cached_graph_is_rebuilt(root, tmp_path):
    marker = tmp_path / "calls.txt"
    _kingman(marker, 2.0, cache=True)
    path = ModelSpec(kh.counted_coalescent, ipv=[10], marker=str(marker), theta=2.0).entry_path()
    path.write_bytes(path.read_bytes()[:100])
    before = _calls(marker)
    with pytest.warns(RuntimeWarning, match="corrupt entry"):
        g = _kingman(marker, 2.0, cache=True)
    assert _calls(marker) > before
    assert g.expectation() == pytest.approx(_kingman_moments(10, 2.0)[0], rel=1e-12)
    assert Store(root).get("graphs", path.parent.name + path.stem) is not None


def test_unwritable_cache_still_returns_the_graph(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(blocker))
    with pytest.warns(RuntimeWarning, match="built but not cached"):
        g = Graph(kh.coalescent, ipv=[6], theta=1.0, cache=True)
    assert g.expectation() == pytest.approx(_kingman_moments(6, 1.0)[0], rel=1e-12)


def test_lambda_with_cache_gives_clear_error(root):
    with pytest.raises(UnhashableError, match="def in a file"):
        Graph(lambda state: [], ipv=[3], cache=True)


def test_graph_cache_class(tmp_path):
    marker = tmp_path / "calls.txt"
    cache = GraphCache(tmp_path / "gc")
    assert cache.cache_dir == tmp_path / "gc" / "graphs"
    assert GraphCache(tmp_path / "gc" / "graphs").cache_dir == cache.cache_dir
    kw = dict(ipv=[7], marker=str(marker), theta=1.5)
    assert cache.load_graph(kh.counted_coalescent, **kw) is None
    g = cache.get_or_build(kh.counted_coalescent, **kw)
    calls = _calls(marker)
    again = cache.get_or_build(kh.counted_coalescent, **kw)
    loaded = cache.load_graph(kh.counted_coalescent, **kw)
    assert _calls(marker) == calls
    for h in (g, again, loaded):
        assert h.expectation() == pytest.approx(_kingman_moments(7, 1.5)[0], rel=1e-12)
    other = Graph(kh.coalescent, ipv=[4], theta=1.0)
    path = cache.save_graph(other, kh.coalescent, ipv=[4], theta=1.0)
    assert path.is_file() and cache.load_graph(kh.coalescent, ipv=[4], theta=1.0).vertices_length() == 5
    stats = cache.get_cache_stats()
    assert stats["num_graphs"] == stats["num_entries"] == 2 and UNIFORM <= set(stats)
    assert cache.clear_graph_cache() == 2 and cache.get_cache_stats()["num_graphs"] == 0


def _frame(title, directory, label, count, size_bytes):
    return (
        "\n".join(
            [
                RULE,
                title,
                RULE,
                f"Cache directory: {directory}",
                f"{label}: {count}",
                f"Total size: {size_bytes / 2**20:.2f} MB",
            ]
        )
        + "\n"
    )


def test_print_info_frames(root, capsys):
    store = Store(root)
    store.put("graphs", "a" * 64, {"x": np.random.default_rng(0).random(200_000)}, {})
    store.put("graphs", "b" * 64, {"x": np.arange(5)}, {})
    store.put("traces", "c" * 64, {"ops": np.arange(9)}, {})
    gbytes = sum(p.stat().st_size for p in (root / "graphs").rglob("*.h5"))
    tbytes = sum(p.stat().st_size for p in (root / "traces").rglob("*.h5"))
    print_graph_cache_info()
    assert capsys.readouterr().out == _frame("GRAPH CACHE INFO", root / "graphs", "Cached graphs", 2, gbytes)
    print_trace_cache_info()
    assert capsys.readouterr().out == _frame("TRACE CACHE INFO", root / "traces", "Cached traces", 1, tbytes)
    GraphCache(root).print_cache_info()
    assert capsys.readouterr().out == _frame("GRAPH CACHE INFO", root / "graphs", "Cached graphs", 2, gbytes)
    phasic.print_all_cache_info()
    out = capsys.readouterr().out
    assert out.index("JAX CACHE INFO") < out.index("GRAPH CACHE INFO") < out.index("TRACE CACHE INFO")
    g = get_graph_cache_stats()
    assert (g["num_graphs"], g["total_bytes"], g["cache_dir"]) == (2, gbytes, str(root / "graphs"))
    assert g["total_size_mb"] == pytest.approx(gbytes / 2**20)
    t = get_trace_cache_stats()
    assert (t["total_files"], t["total_bytes"], t["total_mb"]) == (1, tbytes, pytest.approx(tbytes / 2**20))


def test_stats_of_missing_directories_have_all_keys_and_create_nothing(root, tmp_path):
    stats = get_all_cache_stats()
    assert set(stats) == {"jax", "graph", "trace"}
    for part in stats.values():
        assert UNIFORM <= set(part) and part["num_entries"] == 0 and part["total_bytes"] == 0
    assert {"num_graphs", "total_size_mb", "cache_dir"} <= set(stats["graph"])
    assert {"total_files", "total_bytes", "total_mb", "cache_dir"} <= set(stats["trace"])
    assert stats["jax"]["cache_dir"] == str(tmp_path / "jax_cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_clear_model_cache_and_clear_caches(root, tmp_path, capsys):
    store = Store(root)
    store.put("graphs", "a" * 64, {"x": np.arange(3)}, {})
    store.put("traces", "b" * 64, {"x": np.arange(3)}, {})
    (root / "notes.txt").write_text("keep me")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "old.h5").write_bytes(b"x")
    assert clear_model_cache() == {"graphs": 1, "traces": 1}
    assert store.entries("graphs") == store.entries("traces") == []
    assert (root / "notes.txt").exists() and (root / "corrupt" / "old.h5").exists()
    store.put("graphs", "a" * 64, {"x": np.arange(3)}, {})
    jax_dir = tmp_path / "jax_cache"
    jax_dir.mkdir()
    (jax_dir / "jit_f-0123abcd-cache").write_bytes(b"compiled")
    (jax_dir / "unrelated.txt").write_text("keep")
    removed = clear_caches(verbose=True)
    assert removed["graphs"] == 1 and removed["traces"] == 0 and removed["jax"] >= 1
    assert "Cleared 1 graphs" in capsys.readouterr().out
    assert not (jax_dir / "jit_f-0123abcd-cache").exists() and (jax_dir / "unrelated.txt").exists()


def test_a_checksummed_entry_that_is_no_graph_is_moved_aside_and_rebuilt(root):
    """Arrays with a valid checksum that hold no graph at all: the hit names the file, moves it
    aside and rebuilds (before: every later Graph(cache=True) failed without naming the file)."""
    from phasic.exceptions import CacheWarning
    from phasic.specs import ModelSpec

    key = ModelSpec(kh.coalescent, theta=2.0, ipv=[6]).key
    store = Store(root)
    store.put("graphs", key, {"something/else": np.arange(3)}, {"note": "not a graph"})
    path = store.path("graphs", key)
    with pytest.warns(CacheWarning, match=str(path.name)):
        g = Graph(kh.coalescent, theta=2.0, ipv=[6], cache=True)
    assert g.expectation() == pytest.approx(sum(2.0 / (k * (k - 1) * 2.0) for k in range(2, 7)))  # 1 - 1/6
    assert any(p.name.startswith(f"graphs-{key}") for p in (root / "corrupt").iterdir())
    assert Graph(kh.coalescent, theta=2.0, ipv=[6], cache=True).expectation() == pytest.approx(g.expectation())


def test_graph_entries_name_their_model_and_module(root):
    Graph(kh.wrapped, cache=True)
    (path,) = [p for p in root.rglob("*.h5")]
    arrays, attrs = Store(root).get("graphs", path.parent.name + path.stem)
    assert attrs["callback"] == "wrapped" and attrs["callback_module"] == "tests._keys_helpers"


def test_entry_of_a_newer_phasic_is_never_overwritten_and_warns_once(root, tmp_path):
    """Review 3: an entry written by a newer phasic (a newer store format) used to be read as a
    miss three times (three warnings) and then overwritten by the rebuild.  Now the graph is
    built in memory with one CacheWarning saying to upgrade, and the entry keeps its bytes."""
    from phasic.exceptions import CacheWarning
    from phasic.specs import ModelSpec

    marker = tmp_path / "calls.txt"
    want = _kingman(marker, 2.0, cache=True).expectation()
    first = _calls(marker)
    path = ModelSpec(kh.counted_coalescent, ipv=[10], marker=str(marker), theta=2.0).entry_path()
    data = bytearray(path.read_bytes())
    data[:16] = b"phasic-store-v9\n"
    path.write_bytes(bytes(data))
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _kingman(marker, 2.0, cache=True).expectation()
    msgs = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert got == pytest.approx(want, rel=1e-12) and _calls(marker) == 2 * first
    assert len(msgs) == 1 and "upgrade phasic" in msgs[0] and str(path) in msgs[0], msgs
    assert path.read_bytes() == bytes(data)
    assert Store(root).get_or_create("graphs", path.parent.name + path.name[:-3], lambda: ({"x": np.arange(2)}, {}))[0][
        "x"
    ].tolist() == [0, 1]
    assert path.read_bytes() == bytes(data)  # Store.get_or_create leaves it too
