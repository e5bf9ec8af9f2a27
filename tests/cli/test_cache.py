"""The ``phasic cache`` commands (phasic/cli/_cache.py), run as a real subprocess: info, verify,
export, import (with provenance, through ``-``) and clear (only what is asked, never the home
directory's JAX cache); errors are one line, exit 2, no traceback."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from phasic.store import Store
from tests.models import one_line_error, store_two_graphs_and_a_trace

REPO = Path(__file__).resolve().parents[2]


def _run(*args, env_root=None, jax=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if env_root is not None:
        env["PHASIC_CACHE_DIR"] = str(env_root)
    if jax is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(jax)
    return subprocess.run(
        [sys.executable, "-m", "phasic.cli", *map(str, args)], env=env, capture_output=True, text=True, timeout=120
    )


def _populate(root):
    store = Store(root)
    store.put("graphs", "a" * 64, {"x": np.arange(10.0)}, {})
    store.put("graphs", "b" * 64, {"x": np.arange(3)}, {})
    store.put("traces", "c" * 64, {"ops": np.arange(5)}, {})
    return store


def test_info_json_and_text_with_cache_dir_override(tmp_path):
    root = tmp_path / "cache"
    _populate(root)
    decoy = tmp_path / "decoy"
    out = _run("--cache-dir", root, "cache", "info", "--json", env_root=decoy, jax=tmp_path / "jax")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["graph"]["cache_dir"] == str(root / "graphs") and stats["graph"]["num_graphs"] == 2
    assert stats["trace"]["total_files"] == 1 and stats["jax"]["num_entries"] == 0
    graph_bytes = sum(p.stat().st_size for p in (root / "graphs").rglob("*.h5"))
    assert stats["graph"]["total_bytes"] == graph_bytes
    out = _run("cache", "info", env_root=root, jax=tmp_path / "jax")
    assert out.returncode == 0, out.stderr
    assert (
        f"Cache directory: {root / 'graphs'}\nCached graphs: 2\nTotal size: {graph_bytes / 2**20:.2f} MB" in out.stdout
    )
    assert "TRACE CACHE INFO" in out.stdout and "JAX CACHE INFO" in out.stdout
    assert not decoy.exists() and not (tmp_path / "jax").exists()


def test_verify_reports_bad_entries_with_nonzero_exit(tmp_path):
    store = _populate(tmp_path)
    bad = store.path("graphs", "a" * 64)
    bad.write_bytes(bad.read_bytes()[:200])
    out = _run("--cache-dir", tmp_path, "cache", "verify")
    assert out.returncode == 1
    assert "3 entries" in out.stdout and "2 ok, 1 bad" in out.stdout and str(bad) in out.stdout
    assert not bad.exists()
    out = _run("cache", "verify", "--cache-dir", tmp_path)  # the option is also accepted after the command
    assert out.returncode == 0 and "2 ok, 0 bad" in out.stdout


def test_export_import_and_clear(tmp_path):
    src = tmp_path / "src"
    _populate(src)
    archive = tmp_path / "graphs.tar.gz"
    out = _run("--cache-dir", src, "cache", "export", archive, "--kind", "graphs")
    assert out.returncode == 0, out.stderr
    with tarfile.open(archive) as tar:
        assert all(name.startswith("graphs/") for name in tar.getnames()) and len(tar.getnames()) == 2
    dst = tmp_path / "dst"
    out = _run("--cache-dir", dst, "cache", "import", archive)
    assert out.returncode == 0, out.stderr
    assert "Imported 2 entries" in out.stdout
    assert Store(dst).entries("graphs") == ["a" * 64, "b" * 64]
    out = _run("--cache-dir", src, "cache", "clear", "graphs", jax=tmp_path / "jax")
    assert out.returncode == 0, out.stderr
    assert Store(src).entries("graphs") == [] and Store(src).entries("traces") == ["c" * 64]


def test_errors_are_one_line_exit_2_without_traceback(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escape.h5")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    for args in (("cache", "import", evil), ("cache", "import", tmp_path / "missing.tar.gz")):
        out = _run("--cache-dir", tmp_path / "c", *args)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("phasic: error:") and "Traceback" not in out.stderr
    assert "'../../escape.h5'" in _run("--cache-dir", tmp_path / "c", "cache", "import", evil).stderr
    out = _run("cache", "clear", "everything", env_root=tmp_path / "c")
    assert out.returncode == 2 and "invalid choice" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path.parent / "escape.h5").exists()


# ------------------------------------------------------------------------ cache clear does only what is asked


def test_clear_without_a_kind_deletes_nothing_and_says_what_it_would_clear(env):
    store, trace = store_two_graphs_and_a_trace(env.cache)
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
    store, trace = store_two_graphs_and_a_trace(env.cache)
    for args in (("--all", "--dry-run"), ("graphs", "jax", "--dry-run")):
        out = env.run("cache", "clear", *args)
        assert out.returncode == 0, out.stderr
        assert "would remove 2 graphs entries" in out.stdout and str(env.jax) in out.stdout
    assert "traces" not in out.stdout
    assert store.entries("graphs") == ["a" * 64, "b" * 64] and store.entries("traces") == [trace]
    assert (env.jax / "configured-entry-cache").exists() and (env.home_jax / "home-entry-cache").exists()


def test_clear_graphs_deletes_only_graphs(env):
    store, trace = store_two_graphs_and_a_trace(env.cache)
    out = env.run("cache", "clear", "graphs")
    assert out.returncode == 0, out.stderr
    assert f"removed 2 graphs entries from {env.cache / 'graphs'}" in out.stdout
    assert store.entries("graphs") == [] and store.entries("traces") == [trace]
    assert (env.jax / "configured-entry-cache").exists() and (env.home_jax / "home-entry-cache").exists()


def test_clear_all_uses_the_configured_jax_directory_never_home(env):
    store, trace = store_two_graphs_and_a_trace(env.cache)
    configured, env.jax = env.jax, env.home  # JAX pointed at the home directory: refused before any removal
    assert "refusing to clear" in one_line_error(env.run("cache", "clear", "--all"))
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


# ------------------------------------------------------------------------ import provenance, export and import through a dash


def test_import_shows_provenance_of_what_it_imported(env):
    store_two_graphs_and_a_trace(env.tmp / "src")
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


def test_export_to_and_import_from_a_dash(env):
    store_two_graphs_and_a_trace(env.tmp / "src")
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
