"""Tests of phasic.jax._cache: directory resolution, stats, clearing, syncing, and real
reuse of compiled code by a second process (JAX runs only in subprocesses)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from phasic.exceptions import PhasicError
from phasic.jax import _cache as jax_cache
from phasic.jax._cache import (
    cache_info,
    clear_jax_cache,
    get_jax_cache_stats,
    jax_cache_dir,
    print_jax_cache_info,
    sync_jax_cache,
)

PKG_ROOT = Path(os.path.abspath(jax_cache.__file__)).parents[2]
STAT_KEYS = {"cache_dir", "exists", "num_entries", "num_files", "total_bytes", "total_size_mb"}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "phasic_cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setattr(jax_cache, "_applied_cache_dir", None)


def fill(directory, sizes):
    """Write files named like JAX's cache files with the given sizes."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        (directory / name).write_bytes(b"x" * size)


ENTRIES = {
    "jit_f-" + "a" * 64 + "-cache": 1000,
    "jit_g-" + "b" * 64 + "-cache": 3000,
    "jit_g-" + "b" * 64 + "-atime": 8,
}


# ---------------------------------------------------------------- directory resolution
def test_jax_cache_dir_resolution_order(tmp_path, monkeypatch):
    assert jax_cache_dir() == tmp_path / "home" / ".jax_cache"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "env"))
    assert jax_cache_dir() == tmp_path / "env"
    jax_cache._set_applied_cache_dir(tmp_path / "applied")
    assert jax_cache_dir() == tmp_path / "applied"
    assert jax_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert jax_cache_dir("~/c") == tmp_path / "home" / "c"
    with pytest.raises(jax_cache.JaxCacheError, match="42"):
        jax_cache_dir(42)


# ---------------------------------------------------------------- stats
def test_stats_on_missing_dir_have_all_keys_and_create_nothing(tmp_path):
    target = tmp_path / "no" / "such" / "cache"
    stats = get_jax_cache_stats(target)
    assert set(stats) == STAT_KEYS
    assert stats == {
        "cache_dir": str(target),
        "exists": False,
        "num_entries": 0,
        "num_files": 0,
        "total_bytes": 0,
        "total_size_mb": 0.0,
    }
    assert not (tmp_path / "no").exists()
    # the default directory is not created either
    assert get_jax_cache_stats()["exists"] is False
    assert not (tmp_path / "home").exists()


def test_stats_count_jax_files_only(tmp_path):
    target = tmp_path / "cache"
    fill(target, ENTRIES)
    (target / "README.txt").write_text("not a cache entry")
    (target / "subdir").mkdir()
    stats = cache_info(target)
    assert stats["exists"] is True
    assert stats["num_entries"] == 2
    assert stats["num_files"] == 3
    assert stats["total_bytes"] == 1000 + 3000 + 8
    assert stats["total_size_mb"] == pytest.approx(4008 / 2**20)
    assert cache_info is get_jax_cache_stats


def test_print_jax_cache_info_format(tmp_path, capsys):
    target = tmp_path / "cache"
    fill(target, {"jit_h-" + "c" * 64 + "-cache": 3 * 2**20 // 2})  # 1.5 MiB
    print_jax_cache_info(target)
    assert capsys.readouterr().out.splitlines() == [
        "=" * 70,
        "JAX CACHE INFO",
        "=" * 70,
        f"Cache directory: {target}",
        "Cached compilations: 1",
        "Total size: 1.50 MB",
    ]


# ---------------------------------------------------------------- clear
def test_clear_empties_exactly_its_own_dir(tmp_path):
    target, sibling = tmp_path / "cache", tmp_path / "sibling"
    fill(target, ENTRIES)
    fill(sibling, {"jit_s-" + "d" * 64 + "-cache": 10})
    (sibling / "sentinel").write_text("keep me")
    (target / "notes.txt").write_text("not JAX's")
    assert clear_jax_cache(target) == 3
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in sibling.iterdir()) == ["jit_s-" + "d" * 64 + "-cache", "sentinel"]
    assert get_jax_cache_stats(target)["num_files"] == 0
    assert clear_jax_cache(target) == 0


def test_clear_uses_resolved_dir_and_missing_dir_is_fine(tmp_path, monkeypatch):
    target = tmp_path / "envcache"
    fill(target, ENTRIES)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(target))
    assert clear_jax_cache() == 3
    assert clear_jax_cache(tmp_path / "missing") == 0
    assert not (tmp_path / "missing").exists()


def test_clear_refuses_home_directory(tmp_path):
    home = tmp_path / "home"
    fill(home, ENTRIES)
    with pytest.raises(jax_cache.JaxCacheError) as info:
        clear_jax_cache(home)
    assert isinstance(info.value, PhasicError) and str(home) in str(info.value)
    assert len(list(home.iterdir())) == 3


# ---------------------------------------------------------------- sync
def test_sync_copies_missing_entries_only(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    fill(src, ENTRIES)
    existing = "jit_f-" + "a" * 64 + "-cache"
    fill(dst, {existing: 5})
    assert sync_jax_cache(src, dst) == 1
    assert (dst / existing).stat().st_size == 5  # never overwritten
    assert (dst / ("jit_g-" + "b" * 64 + "-cache")).read_bytes() == b"x" * 3000
    assert sorted(p.name for p in dst.iterdir()) == sorted([existing, "jit_g-" + "b" * 64 + "-cache"])
    assert sync_jax_cache(src, dst) == 0
    assert sync_jax_cache(tmp_path / "nothing", tmp_path / "new") == 0
    assert not (tmp_path / "new").exists()
    with pytest.raises(jax_cache.JaxCacheError, match="two different directories"):
        sync_jax_cache(src, src)


# ---------------------------------------------------------------- real reuse across processes
COMPILE_SCRIPT = """
import json, os, sys, time
args = json.loads(sys.argv[1])
from phasic.jax._config import CompilationConfig
from phasic.jax._cache import get_jax_cache_stats
cfg = CompilationConfig.from_dict(args["config"])
info = cfg.apply()
import jax, jax.numpy as jnp

hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name.endswith("/cache_hits") else None)

def f(x):
    for i in range(args["steps"]):
        x = (0.5 * jnp.tanh(x @ x.T / 16 + 0.01 * i) + 0.3 * jnp.sin(x[::-1])
             + 0.2 * jnp.cumsum(x, axis=0) / 16)
    return x.sum()

x = jnp.asarray(args["x"])
lowered = jax.jit(f).lower(x)
hits.clear()
t0 = time.perf_counter()
compiled = lowered.compile()
out = {"compile_s": time.perf_counter() - t0, "hits": len(hits),
       "value": float(compiled(x)), "seeded": info["seeded_entries"],
       "stats": get_jax_cache_stats()}
if args.get("push"):
    jax.jit(lambda y: jnp.exp(y) @ y).lower(x).compile()  # a new entry, local only
    out["local_before_push"] = sorted(os.listdir(info["cache_dir"]))
    out["pushed"] = cfg.push_to_shared()
print(json.dumps(out))
"""


def run_compile(config, x, steps, push=False):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PKG_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    args = {"config": config, "x": x.tolist(), "steps": steps, "push": push}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(COMPILE_SCRIPT), json.dumps(args)],
        cwd=PKG_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference_f(x, steps):
    """The jitted function, in float64 numpy (a contraction, so rounding stays small)."""
    for i in range(steps):
        x = 0.5 * np.tanh(x @ x.T / 16 + 0.01 * i) + 0.3 * np.sin(x[::-1]) + 0.2 * np.cumsum(x, axis=0) / 16
    return x.sum()


def entries(directory):
    return {p.name for p in Path(directory).iterdir() if p.name.endswith("-cache")}


def test_second_process_reuses_compiled_function(tmp_path):
    shared, local = tmp_path / "shared_cache", tmp_path / "node_local"
    x = np.linspace(-0.5, 0.5, 256).reshape(16, 16)
    steps = 8
    expected = reference_f(x, steps)
    base = {"optimization_level": 2, "min_cache_time": 0.0, "enable_x64": True}

    first = run_compile({**base, "cache_dir": str(shared)}, x, steps)
    after_first = entries(shared)
    assert first["hits"] == 0
    assert len(after_first) >= 1
    assert first["stats"]["cache_dir"] == str(shared)
    assert first["stats"]["num_entries"] == len(after_first)
    assert first["value"] == pytest.approx(expected, rel=1e-9)

    second = run_compile({**base, "cache_dir": str(shared)}, x, steps)
    assert second["hits"] == 1
    assert entries(shared) == after_first  # nothing new had to be compiled and stored
    assert second["compile_s"] < first["compile_s"]
    assert second["value"] == pytest.approx(expected, rel=1e-9)

    # layered: an empty node-local cache is seeded from the shared one and reused
    third = run_compile(
        {**base, "cache_dir": str(local), "shared_cache_dir": str(shared), "cache_strategy": "layered"},
        x,
        steps,
        push=True,
    )
    assert third["seeded"] == len(after_first)
    assert third["hits"] == 1
    assert third["compile_s"] < first["compile_s"]
    assert third["stats"]["cache_dir"] == str(local)
    assert third["value"] == pytest.approx(expected, rel=1e-9)
    local_names = {n for n in third["local_before_push"] if n.endswith("-cache")}
    assert third["pushed"] == len(local_names - after_first) >= 1
    assert entries(shared) == after_first | local_names
