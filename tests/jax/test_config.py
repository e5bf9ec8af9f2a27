"""Tests of phasic.jax._config.CompilationConfig.

Anything that imports jax or changes jax state runs in a subprocess, so the global JAX
state of the test process stays untouched.
"""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import phasic.jax._config as jc
from phasic.exceptions import PhasicError
from phasic.jax._config import CompilationConfig, CompilationConfigError

# Directory from which this test process imported phasic; subprocesses import the same.
PKG_ROOT = Path(os.path.abspath(jc.__file__)).parents[2]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "phasic_cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)


def run_python(code, args, extra_env=None, timeout=120):
    """Run `code` in a fresh interpreter with ``sys.argv[1] = json(args)``; parse the
    last stdout line as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PKG_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra_env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), json.dumps(args)],
        cwd=PKG_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- import is light
def test_import_does_not_import_jax():
    out = run_python(
        """
        import json, sys
        import phasic.jax._config, phasic.jax._cache
        cfg = phasic.jax._config.CompilationConfig.balanced(cache_dir="/tmp/x")
        cfg.xla_flags(); cfg.jax_options(); cfg.as_dict()
        print(json.dumps(sorted(m for m in sys.modules if m == "jax" or m.startswith("jax."))))
        """,
        {},
    )
    assert out == []


# ---------------------------------------------------------------- presets and mapping
@pytest.mark.parametrize(
    "factory, level, min_time",
    [
        (CompilationConfig.balanced, 2, 1.0),
        (CompilationConfig.max_performance, 3, 1.0),
        (CompilationConfig.fast_compile, 1, 0.5),
        (CompilationConfig, 2, 1.0),  # the default is balanced
    ],
)
def test_preset_values(factory, level, min_time):
    cfg = factory()
    assert cfg.optimization_level == level
    assert cfg.min_cache_time == min_time
    assert cfg.cache_strategy == "local"
    assert cfg.xla_flags() == [f"--xla_backend_optimization_level={level}"]


def test_from_preset_overrides_and_unknown_names():
    cfg = CompilationConfig.from_preset("fast_compile", min_cache_time=0, cpu_threads=2)
    assert (cfg.optimization_level, cfg.min_cache_time, cfg.cpu_threads) == (1, 0.0, 2)
    with pytest.raises(CompilationConfigError, match=r"'turbo'.*balanced"):
        CompilationConfig.from_preset("turbo")
    with pytest.raises(CompilationConfigError, match=r"'opt_level'.*optimization_level"):
        CompilationConfig.balanced(opt_level=3)


def test_default_cache_dir_from_env_or_home(tmp_path, monkeypatch):
    cfg = CompilationConfig()
    assert cfg.cache_dir == "~/.jax_cache"
    assert cfg.effective_cache_dir() == tmp_path / "home" / ".jax_cache"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "envcache"))
    assert CompilationConfig().cache_dir == str(tmp_path / "envcache")
    assert CompilationConfig(cache_dir=tmp_path / "x").cache_dir == str(tmp_path / "x")


def test_flags_and_options_mapping(tmp_path):
    cfg = CompilationConfig(
        cache_dir=tmp_path / "local",
        optimization_level=0,
        parallel_compile=False,
        min_cache_time=2.5,
        min_entry_size_bytes=4096,
        enable_x64=False,
        platform="CPU",
        cpu_threads=1,
    )
    assert cfg.platform == "cpu"
    assert cfg.xla_flags() == [
        "--xla_backend_optimization_level=0",
        "--xla_cpu_parallel_codegen_split_count=1",
        "--xla_cpu_multi_thread_eigen=false",
    ]
    assert cfg.jax_options() == {
        "jax_enable_compilation_cache": True,
        "jax_compilation_cache_dir": str(tmp_path / "local"),
        "jax_persistent_cache_min_compile_time_secs": 2.5,
        "jax_persistent_cache_min_entry_size_bytes": 4096,
        "jax_enable_x64": False,
        "jax_persistent_cache_enable_xla_caches": None,
        "jax_platforms": "cpu",
    }
    autotune = CompilationConfig(gpu_autotune_cache=True).jax_options()
    assert autotune["jax_persistent_cache_enable_xla_caches"] == ("xla_gpu_per_fusion_autotune_cache_dir")
    assert CompilationConfig(cpu_threads=4).xla_flags()[-1] == "--xla_cpu_multi_thread_eigen=true"


def test_cache_strategies_choose_directory(tmp_path):
    local, shared = tmp_path / "local", tmp_path / "shared"
    layered = CompilationConfig(cache_dir=local, shared_cache_dir=shared)
    assert layered.cache_strategy == "layered"
    assert layered.effective_cache_dir() == local
    only_shared = CompilationConfig(cache_dir=local, shared_cache_dir=shared, cache_strategy="shared")
    assert only_shared.effective_cache_dir() == shared
    assert CompilationConfig(cache_dir=local).effective_cache_dir() == local


def test_merge_xla_flags_replaces_same_name_keeps_others():
    merged = jc._merge_xla_flags(
        "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0",
        ["--xla_backend_optimization_level=3"],
    )
    assert merged == ("--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=3")


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, bad",
    [
        ({"optimization_level": 4}, "4"),
        ({"optimization_level": -1}, "-1"),
        ({"optimization_level": "2"}, "'2'"),
        ({"optimization_level": True}, "True"),
        ({"min_cache_time": -0.5}, "-0.5"),
        ({"min_cache_time": math.nan}, "nan"),
        ({"min_cache_time": "1"}, "'1'"),
        ({"min_entry_size_bytes": -5}, "-5"),
        ({"cpu_threads": 0}, "0"),
        ({"cpu_threads": 1.5}, "1.5"),
        ({"parallel_compile": "yes"}, "'yes'"),
        ({"enable_x64": 1}, "1"),
        ({"platform": "cpux"}, "'cpux'"),
        ({"platform": 3}, "3"),
        ({"cache_strategy": "cloud"}, "'cloud'"),
        ({"cache_dir": ""}, "''"),
        ({"cache_dir": None}, "None"),
        ({"cache_dir": "gs://bucket/cache"}, "'gs://bucket/cache'"),
        ({"cache_strategy": "shared"}, "shared_cache_dir"),
        ({"cache_strategy": "local", "shared_cache_dir": "/s"}, "'/s'"),
        ({"gpu_autotune_cache": "on"}, "'on'"),
        ({"shared_cache_dir": "/s", "gpu_autotune_cache": True}, "gpu_autotune_cache=False"),
    ],
)
def test_invalid_values_are_named(kwargs, bad):
    with pytest.raises(CompilationConfigError) as info:
        CompilationConfig(**kwargs)
    assert isinstance(info.value, PhasicError) and isinstance(info.value, ValueError)
    assert bad in str(info.value)


def test_mutated_config_is_rejected_by_apply_before_touching_jax(tmp_path):
    cfg = CompilationConfig(cache_dir=tmp_path / "c")
    cfg.optimization_level = 9
    with pytest.raises(CompilationConfigError, match="got 9"):
        cfg.apply()
    assert not (tmp_path / "c").exists()


def test_apply_reports_uncreatable_cache_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = CompilationConfig(cache_dir=blocker / "cache")
    with pytest.raises(CompilationConfigError, match="cannot create the JAX cache directory"):
        cfg.apply()
    assert blocker.read_text() == "not a directory"


# ---------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path):
    cfg = CompilationConfig.max_performance(
        cache_dir=tmp_path / "local",
        shared_cache_dir=tmp_path / "shared",
        parallel_compile=False,
        min_cache_time=0.25,
        enable_x64=False,
        platform="cpu",
        cpu_threads=3,
    )
    path = cfg.save_to_file(tmp_path / "jax.json")
    on_disk = json.loads(path.read_text())
    assert on_disk == {
        "cache_dir": str(tmp_path / "local"),
        "shared_cache_dir": str(tmp_path / "shared"),
        "optimization_level": 3,
        "parallel_compile": False,
        "min_cache_time": 0.25,
        "min_entry_size_bytes": 0,
        "enable_x64": False,
        "platform": "cpu",
        "cpu_threads": 3,
        "cache_strategy": "layered",
        "gpu_autotune_cache": False,
    }
    assert CompilationConfig.load_from_file(path) == cfg
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".phasic-tmp")] == []


def test_load_rejects_bad_files(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(CompilationConfigError, match="bad.json"):
        CompilationConfig.load_from_file(bad_json)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(CompilationConfigError, match=r"\[1, 2\]"):
        CompilationConfig.load_from_file(listed)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"optimization_level": 1, "speed": "max"}))
    with pytest.raises(CompilationConfigError, match=r"unknown.json.*'speed'"):
        CompilationConfig.load_from_file(unknown)
    out_of_range = tmp_path / "range.json"
    out_of_range.write_text(json.dumps({"min_cache_time": -3}))
    with pytest.raises(CompilationConfigError, match="-3"):
        CompilationConfig.load_from_file(out_of_range)
    with pytest.raises(FileNotFoundError):
        CompilationConfig.load_from_file(tmp_path / "missing.json")


def test_failed_save_keeps_old_file(tmp_path):
    path = tmp_path / "jax.json"
    CompilationConfig.fast_compile(cache_dir=tmp_path).save_to_file(path)
    before = path.read_text()
    cfg = CompilationConfig(cache_dir=tmp_path)
    cfg.cpu_threads = -2
    with pytest.raises(CompilationConfigError):
        cfg.save_to_file(path)
    assert path.read_text() == before


# ---------------------------------------------------------------- apply() in a real JAX
APPLY_SCRIPT = """
import json, os, sys, warnings
args = json.loads(sys.argv[1])
from phasic.jax import _cache as jax_cache
from phasic.jax._config import CompilationConfig
import jax

NAMES = ["jax_enable_compilation_cache", "jax_compilation_cache_dir",
         "jax_persistent_cache_min_compile_time_secs",
         "jax_persistent_cache_min_entry_size_bytes", "jax_enable_x64", "jax_platforms",
         "jax_persistent_cache_enable_xla_caches"]

def apply(spec):
    cfg = CompilationConfig.from_preset(spec["preset"], **spec["overrides"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = cfg.apply()
    row = {name: getattr(jax.config, name) for name in NAMES}
    row["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    row["jax_cache_dir"] = str(jax_cache.jax_cache_dir())
    row["effective"] = info["xla_flags_effective"]
    row["warnings"] = [str(w.message) for w in caught if w.category is RuntimeWarning]
    return row

before = [apply(spec) for spec in args["before_start"]]
import jax.numpy as jnp
started = {"dtype": str(jnp.ones(2).dtype), "device_count": jax.device_count()}
after = [apply(spec) for spec in args["after_start"]]
print(json.dumps({"before": before, "started": started, "after": after}))
"""


def test_apply_sets_documented_jax_config_and_xla_flags(tmp_path):
    local, shared, env_dir = tmp_path / "local", tmp_path / "shared", tmp_path / "env"
    args = {
        "before_start": [
            {"preset": "balanced", "overrides": {"cache_dir": str(local)}},
            {
                "preset": "max_performance",
                "overrides": {
                    "cache_dir": str(local),
                    "parallel_compile": False,
                    "cpu_threads": 1,
                    "enable_x64": False,
                },
            },
            {
                "preset": "fast_compile",
                "overrides": {
                    "cache_dir": str(local),
                    "shared_cache_dir": str(shared),
                    "cache_strategy": "shared",
                    "platform": "cpu",
                    "min_entry_size_bytes": 1024,
                },
            },
            {"preset": "balanced", "overrides": {"cache_dir": str(local)}},
        ],
        "after_start": [
            {"preset": "fast_compile", "overrides": {"cache_dir": str(local)}},
            {"preset": "fast_compile", "overrides": {"cache_dir": str(local), "platform": "tpu"}},
        ],
    }
    user_flags = "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    out = run_python(
        APPLY_SCRIPT,
        args,
        extra_env={"XLA_FLAGS": user_flags, "JAX_COMPILATION_CACHE_DIR": str(env_dir)},
    )
    b0, b1, b2, b3 = out["before"]
    for row in out["before"]:
        assert row["effective"] is True and row["warnings"] == []
        assert row["jax_enable_compilation_cache"] is True
        assert row["jax_persistent_cache_enable_xla_caches"] is None

    # balanced: level 2, 1.0 s; the user's unrelated flag is kept, the level replaced
    assert b0["jax_compilation_cache_dir"] == str(local)
    assert b0["jax_cache_dir"] == str(local)  # applied dir wins over the env variable
    assert b0["jax_persistent_cache_min_compile_time_secs"] == 1.0
    assert b0["jax_persistent_cache_min_entry_size_bytes"] == 0
    assert b0["jax_enable_x64"] is True
    assert b0["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=2")
    # max_performance: level 3, single-piece codegen, single-threaded Eigen, no x64
    assert b1["jax_persistent_cache_min_compile_time_secs"] == 1.0
    assert b1["jax_enable_x64"] is False
    assert b1["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        "--xla_backend_optimization_level=3",
        "--xla_cpu_parallel_codegen_split_count=1",
        "--xla_cpu_multi_thread_eigen=false",
    ]
    # fast_compile with the shared strategy: JAX uses the shared directory
    assert b2["jax_compilation_cache_dir"] == str(shared)
    assert b2["jax_cache_dir"] == str(shared)
    assert shared.is_dir()
    assert b2["jax_persistent_cache_min_compile_time_secs"] == 0.5
    assert b2["jax_persistent_cache_min_entry_size_bytes"] == 1024
    assert b2["jax_platforms"] == "cpu"
    assert "--xla_backend_optimization_level=1" in b2["XLA_FLAGS"].split()
    assert b3["jax_compilation_cache_dir"] == str(local)
    assert b3["jax_enable_x64"] is True

    # the backend started after the last apply: x64 on, and XLA read our XLA_FLAGS
    assert out["started"] == {"dtype": "float64", "device_count": 2}

    # applying new XLA flags or another platform afterwards warns and says so
    a0, a1 = out["after"]
    assert a0["effective"] is False
    assert any("already started" in w for w in a0["warnings"])
    assert a0["jax_persistent_cache_min_compile_time_secs"] == 0.5  # jax.config still set
    assert a1["jax_platforms"] == "cpu"
    assert any("platform='tpu' not applied" in w for w in a1["warnings"])
