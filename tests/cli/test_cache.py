"""The ``phasic cache`` command, run as a real subprocess."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from phasic.store import Store

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
