"""The Snakemake workflow, run for real in subprocesses on a tiny config.

One module-scoped run (``first``) builds three tiny models; the later tests reuse its working
directory and cache in file order (re-run, deleted results, forced rebuild, a second workflow
and a module sharing the cache).  Reuse is detected through marker files the models' callbacks
append to: a callback that is not called did not rebuild anything.  Every number is checked
against ``phasic.Graph`` computed here and against closed forms / dense-matrix formulas.
"""

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.models import (
    BIN,
    REPO,
    SNAKEFILE,
    SNAKEMAKE,
    WORKFLOW_MODELS_PY,
    job_counts,
    load_callback,
    write_config,
)

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install phasic[workflow])"),
]


TIMES = [0.0, 0.5, 1.0, 2.0, 4.0]


def _specs(base):
    models = str(base / "models.py")
    return [
        {
            "name": "kingman",
            "file": models,
            "callback": "kingman",
            "params": {"marker": str(base / "m_kingman")},
            "theta_names": ["coal"],
            "theta_grid": [[0.5, 2.0]],
            "moments": 3,
            "times": TIMES,
        },
        {
            "name": "sfs",
            "file": models,
            "callback": "block_counting",
            "params": {"marker": str(base / "m_sfs")},
            "rewards": "sfs",
            "times": {"stop": 4.0, "num": 5},
        },
        {
            "name": "countdown",
            "file": models,
            "callback": "countdown",
            "discrete": True,
            "params": {"p": 0.5, "marker": str(base / "m_countdown")},
            "times": [0, 1, 2, 3, 4, 5, 6, 8],
        },
    ]


def snakemake(workdir, *args, cache, configfile=None, timeout=300, snakefile=SNAKEFILE):
    """Run snakemake in a subprocess (killed after `timeout` s); returns the CompletedProcess."""
    cmd = [
        "timeout",
        "-s",
        "KILL",
        str(timeout),
        SNAKEMAKE,
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += ["--config", f"cache_dir={cache}"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PHASIC_CACHE_DIR": str(cache)}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    proc.output = proc.stdout + proc.stderr
    return proc


def _ok(proc):
    assert proc.returncode == 0, proc.output[-4000:]


def _kwargs(spec):
    kw = dict(spec.get("params", {}))
    if spec.get("discrete"):
        kw["discrete"] = True
    return kw


def _read_tsv(path):
    lines = Path(path).read_text().splitlines()
    header = lines[0].split("\t")
    return header, [line.split("\t") for line in lines[1:]]


def _markers(base):
    return {
        name: (base / f"m_{name}").read_text() if (base / f"m_{name}").exists() else ""
        for name in ("kingman", "sfs", "countdown", "broken")
    }


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The tiny workflow run once, with `kingman` built beforehand through the library."""
    from phasic import Graph

    base = tmp_path_factory.mktemp("wf")
    (base / "models.py").write_text(WORKFLOW_MODELS_PY)
    cache, work = base / "cache", base / "work"
    work.mkdir()
    specs = _specs(base)
    config = write_config(base / "config.yaml", specs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASIC_CACHE_DIR", str(cache))
        Graph(load_callback(base / "models.py", "kingman"), cache=True, **_kwargs(specs[0]))
    assert _markers(base)["kingman"], "the library build calls the callback"
    (base / "m_kingman").unlink()
    proc = snakemake(work, cache=cache, configfile=config)
    return {
        "base": base,
        "cache": cache,
        "work": work,
        "config": config,
        "specs": specs,
        "proc": proc,
        "markers": _markers(base),
    }


def _graph(first, name, cache=True):
    """The model's graph built here (cache=True: from the store, like a user's call; needs cache_env)."""
    from phasic import Graph

    spec = next(s for s in first["specs"] if s["name"] == name)
    cb = load_callback(first["base"] / "models.py", spec["callback"])
    return Graph(cb, cache=cache, **_kwargs(spec)), cb, spec


@pytest.fixture
def cache_env(first, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(first["cache"]))
    return first


def test_first_run_outputs_and_reuse(cache_env):
    first = cache_env
    _ok(first["proc"])
    counts = job_counts(first["proc"].output)
    # kingman was built by the library beforehand: only the other two graphs are built
    assert counts["build_graph"] == 2, counts
    assert counts["evaluate"] == 3 and counts["plot"] == 3 and counts["plot_sfs"] == 1
    assert first["markers"]["kingman"] == ""
    assert first["markers"]["sfs"] and first["markers"]["countdown"]
    res = first["work"] / "results"
    for name in ("kingman", "sfs", "countdown"):
        for png in ("pdf", "cdf", "moments"):
            assert (res / name / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (res / "sfs" / "sfs.png").read_bytes()[:4] == b"\x89PNG"
    # every log of a model is under logs/<model>/, its build log included (a link to the
    # key-named log of the build_graph job); kingman's graph was not built by the workflow
    logs = first["work"] / "logs"
    for name in ("sfs", "countdown"):
        link = logs / name / "build_graph.log"
        assert link.is_symlink() and json.loads(link.read_text())["vertices"] > 0, name
        assert {"record_trace.log", "evaluate.log", "plot.log"} <= {p.name for p in (logs / name).iterdir()}
        # Snakemake's benchmark records of the model's jobs, next to their logs
        for rule in ("build_graph", "record_trace", "evaluate"):
            header, rows = _read_tsv(logs / name / f"{rule}.benchmark.tsv")
            assert header[:2] == ["s", "h:m:s"] and len(rows) == 1 and float(rows[0][0]) > 0, (name, rule)
    assert not (logs / "kingman" / "build_graph.log").exists()
    header, rows = _read_tsv(res / "summary.tsv")
    assert {row[0]: row[header.index("logs")] for row in rows} == {
        n: f"logs/{n}/" for n in ("kingman", "sfs", "countdown")
    }


def test_entries_are_the_library_store_paths(cache_env):
    from phasic.specs import ModelSpec
    from phasic.store import Store
    from phasic.traces import trace_key

    first = cache_env
    header, rows = _read_tsv(first["work"] / "results" / "summary.tsv")
    summary = {row[0]: dict(zip(header, row)) for row in rows}
    assert set(summary) == {"kingman", "sfs", "countdown"}
    for name in summary:
        g, cb, spec = _graph(first, name, cache=False)
        entry = ModelSpec(cb, **_kwargs(spec)).entry_path()
        assert summary[name]["graph_entry"] == str(entry) and entry.is_file()
        pointer = json.loads((first["work"] / "results" / name / "trace.json").read_text())
        assert pointer["graph_entry"] == str(entry)
        assert pointer["trace_key"] == trace_key(g) == summary[name]["trace_key"]
        assert Store(first["cache"]).get("traces", pointer["trace_key"]) is not None
        assert (int(summary[name]["vertices"]), int(summary[name]["edges"])) == (g.vertices_length(), g.edges_length())


def test_kingman_numbers(cache_env):
    from scipy.linalg import expm

    first = cache_env
    g, _, _ = _graph(first, "kingman")
    header, rows = _read_tsv(first["work"] / "results" / "kingman" / "moments.tsv")
    assert header == ["coal", "reward", "moment_1", "moment_2", "moment_3", "variance"]
    assert [r[0] for r in rows] == ["0.5", "2.0"]
    n = 4
    for row in rows:
        theta = float(row[0])
        m = np.array(row[2:5], dtype=float)
        # closed form: T = sum of independent Exp(theta * k(k-1)/2), k = n..2
        rates = np.array([theta * k * (k - 1) / 2 for k in range(2, n + 1)])
        mean, var = np.sum(1 / rates), np.sum(1 / rates**2)
        np.testing.assert_allclose(m[:2], [mean, var + mean**2], rtol=1e-12)
        assert float(row[5]) == pytest.approx(var, rel=1e-12)
        g.update_weights([theta])
        np.testing.assert_allclose(m, g.moments(3), rtol=1e-12)
    header, rows = _read_tsv(first["work"] / "results" / "kingman" / "distribution.tsv")
    assert header == ["coal", "t", "pdf", "cdf"]
    table = np.array(rows, dtype=float)
    assert table.shape == (2 * len(TIMES), 4)
    for theta in (0.5, 2.0):
        sub = table[table[:, 0] == theta]
        np.testing.assert_array_equal(sub[:, 1], TIMES)
        g.update_weights([theta])
        alpha, S = g.as_matrices()
        exit_rates = -S.sum(axis=1)
        dense_pdf = [alpha @ expm(S * t) @ exit_rates for t in TIMES]
        dense_cdf = [1 - alpha @ expm(S * t) @ np.ones(len(alpha)) for t in TIMES]
        np.testing.assert_allclose(sub[:, 2], dense_pdf, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sub[:, 3], dense_cdf, rtol=1e-9, atol=1e-12)


def test_sfs_and_discrete_numbers(cache_env):
    first = cache_env
    g, _, _ = _graph(first, "sfs")
    header, rows = _read_tsv(first["work"] / "results" / "sfs" / "moments.tsv")
    assert header == ["reward", "moment_1", "moment_2", "variance"]
    assert [r[0] for r in rows] == ["xi_1", "xi_2", "xi_3"]
    states = g.states().astype(float)
    for i, row in enumerate(rows):
        assert float(row[1]) == pytest.approx(2 / (i + 1), rel=1e-12)  # E[L_i] = 2/i
        np.testing.assert_allclose(np.array(row[1:3], dtype=float), g.moments(2, rewards=states[:, i]), rtol=1e-12)

    g, _, _ = _graph(first, "countdown")
    header, rows = _read_tsv(first["work"] / "results" / "countdown" / "distribution.tsv")
    assert header == ["k", "pmf", "cdf"]
    k = np.array([int(r[0]) for r in rows])
    np.testing.assert_array_equal(k, [0, 1, 2, 3, 4, 5, 6, 8])
    pmf, cdf = np.array([r[1] for r in rows], float), np.array([r[2] for r in rows], float)
    np.testing.assert_allclose(pmf, g.pmf(k), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cdf, np.cumsum(g.pmf(np.arange(9)))[k], rtol=1e-12, atol=1e-15)
    alpha, T = g.as_matrices()  # dense reference: P(tau = k) = alpha T^(k-1) t for k >= 1
    t = 1 - T.sum(axis=1)
    dense = [0.0 if kk == 0 else alpha @ np.linalg.matrix_power(T, kk - 1) @ t for kk in k]
    np.testing.assert_allclose(pmf, dense, rtol=1e-12, atol=1e-15)


def test_library_reuses_workflow_graph(cache_env):
    first = cache_env
    before = _markers(first["base"])["sfs"]
    g, cb, spec = _graph(first, "sfs", cache=True)
    assert _markers(first["base"])["sfs"] == before, "the library rebuilt a graph the workflow had stored"
    from phasic import Graph

    fresh = Graph(cb, **_kwargs(spec))
    np.testing.assert_array_equal(g.states(), fresh.states())
    for a, b in zip(g.edges(), fresh.edges()):
        np.testing.assert_array_equal(a, b)


def test_forced_rerun_and_touch_keep_entries(cache_env):
    from phasic.store import Store

    first = cache_env
    store = Store(first["cache"])
    keys = store.entries("graphs")
    markers = _markers(first["base"])
    # a forced rerun of build_graph finds every entry and reuses it (update(): not deleted first)
    proc = snakemake(
        first["work"],
        "results/sfs/trace.json",
        "results/kingman/trace.json",
        "--forcerun",
        "build_graph",
        cache=first["cache"],
        configfile=first["config"],
    )
    _ok(proc)
    assert job_counts(proc.output)["build_graph"] == 2
    assert _markers(first["base"]) == markers
    proc = snakemake(first["work"], "--touch", cache=first["cache"], configfile=first["config"])
    _ok(proc)
    assert store.entries("graphs") == keys
    for key in keys:
        assert store.get("graphs", key) is not None  # checksum still verifies
    assert not list(first["cache"].glob("corrupt/*"))


def test_rerun_does_nothing(cache_env):
    first = cache_env
    markers = _markers(first["base"])
    proc = snakemake(first["work"], cache=first["cache"], configfile=first["config"])
    _ok(proc)
    assert "Nothing to be done" in proc.output
    assert _markers(first["base"]) == markers


def test_report(cache_env):
    first = cache_env
    proc = snakemake(first["work"], "--report", "results/report.html", cache=first["cache"], configfile=first["config"])
    _ok(proc)
    html = (first["work"] / "results" / "report.html").read_text(errors="replace")
    assert "kingman" in html and "sfs.png" in html
    # the report's sections: the summary first, then one per model with its plots and tables
    categories = json.loads(re.search(r"^\s*var categories = (.*);$", html, flags=re.M).group(1))
    assert categories["(all models)"] == {"summary": ["results/summary.tsv"]}
    for name in ("kingman", "sfs", "countdown"):
        assert set(categories[name]) == {"plots", "tables"}, name
        assert sorted(categories[name]["tables"]) == [f"results/{name}/distribution.tsv", f"results/{name}/moments.tsv"]
        assert f"results/{name}/pdf.png" in categories[name]["plots"]
    assert set(categories) == {"(all models)", "kingman", "sfs", "countdown"}
    assert _menu_order(list(categories)) == ["(all models)", "countdown", "kingman", "sfs"]
    # the start page points at the summary
    assert "app.showResultInfo('results/summary.tsv')" in html


def _menu_order(names):
    """The order of the report's menu: its script sorts the sections with localeCompare (run by
    node where it is installed; else the rule it relies on: punctuation sorts before letters
    and digits, which start every model name, and the rest compare case-insensitively)."""
    node = shutil.which("node")
    if node is None:
        return sorted(names, key=lambda n: (n[:1].isalnum(), n.casefold()))
    script = "console.log(JSON.stringify(JSON.parse(process.argv[1]).sort((a, b) => a.localeCompare(b))))"
    proc = subprocess.run([node, "-e", script, json.dumps(names)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_deleted_results_recompute_only_evaluations(cache_env):
    from phasic.store import Store

    first = cache_env
    store = Store(first["cache"])
    inodes = {k: store.path("traces", k).stat().st_ino for k in store.entries("traces")}
    markers = _markers(first["base"])
    shutil.rmtree(first["work"] / "results")
    proc = snakemake(first["work"], "results/summary.tsv", cache=first["cache"], configfile=first["config"])
    _ok(proc)
    counts = job_counts(proc.output)
    assert "build_graph" not in counts and counts["evaluate"] == 3, counts
    assert _markers(first["base"]) == markers
    for name in ("kingman", "sfs", "countdown"):
        pointer = json.loads((first["work"] / "results" / name / "trace.json").read_text())
        assert pointer["recorded"] is False  # found in the store, not recorded again
    assert {k: store.path("traces", k).stat().st_ino for k in store.entries("traces")} == inodes


def test_second_workflow_using_it_as_a_module_shares_the_cache(cache_env):
    first = cache_env
    work = first["base"] / "host"
    work.mkdir()
    shutil.copy(first["config"], work / "config.yaml")
    (work / "Snakefile").write_text(
        textwrap.dedent(f"""
        configfile: "config.yaml"

        module phasic:
            snakefile: {str(SNAKEFILE)!r}
            config: config

        use rule * from phasic as phasic_*
    """)
    )
    markers = _markers(first["base"])
    proc = snakemake(
        work,
        "results/sfs/moments.tsv",
        "results/countdown/moments.tsv",
        cache=first["cache"],
        snakefile=work / "Snakefile",
    )
    _ok(proc)
    counts = job_counts(proc.output)
    assert counts == {"phasic_record_trace": 2, "phasic_evaluate": 2, "total": 4}, counts
    assert _markers(first["base"]) == markers  # the graphs the first workflow built are not rebuilt
    for name in ("sfs", "countdown"):
        assert (work / "results" / name / "moments.tsv").read_text() == (
            first["work"] / "results" / name / "moments.tsv"
        ).read_text()
        assert json.loads((work / "results" / name / "trace.json").read_text())["recorded"] is False


def test_failing_callback_fails_only_its_jobs(cache_env):
    from phasic.specs import ModelSpec

    first = cache_env
    base = first["base"]
    work = base / "work_broken"
    work.mkdir()
    broken = {
        "name": "broken",
        "file": str(base / "models.py"),
        "callback": "broken",
        "params": {"marker": str(base / "m_broken")},
    }
    config = write_config(base / "broken.yaml", [first["specs"][0], broken])
    proc = snakemake(work, "results/summary.tsv", "--keep-going", cache=first["cache"], configfile=config)
    assert proc.returncode != 0
    assert (work / "results" / "kingman" / "moments.tsv").is_file()  # the other model went on
    assert not (work / "results" / "summary.tsv").exists()
    entry = ModelSpec(load_callback(base / "models.py", "broken"), marker=str(base / "m_broken")).entry_path()
    assert _markers(base)["broken"]  # it did run ...
    assert not entry.exists()  # ... and left no entry
    leftovers = [p.name for p in entry.parent.glob("*")] if entry.parent.exists() else []
    assert leftovers == [], leftovers  # no partial, temporary or lock files either
    log = (work / "logs" / "broken" / "build_graph.log").read_text()  # named by model (onerror links it)
    assert "broken on purpose at n=2" in log and "nothing was stored" in log
    assert "Error in rule build_graph" in proc.output


def test_theta_that_does_not_fit_a_built_graph_fails_at_parse_time(cache_env):
    """kingman's graph is in the store (1 parameter): a config giving it a 2-axis theta_grid is
    refused before any job runs, naming the model and the config key to change."""
    first = cache_env
    base = first["base"]
    work = base / "work_theta"
    work.mkdir()
    spec = {**first["specs"][0], "name": "islands", "theta_grid": [[1.0], [0.5, 2.0]]}
    config = write_config(base / "theta.yaml", [spec])
    proc = snakemake(work, "results/summary.tsv", "-n", cache=first["cache"], configfile=config)
    assert proc.returncode != 0
    assert (
        "model 'islands': theta vectors have length 2, its graph has 1 parameters; "
        "set `theta_grid` with 1 axes (one list of values per parameter)"
    ) in proc.output
    assert not (work / "results").exists() and "build_graph" not in proc.output


def test_relative_model_file_resolves_relative_to_the_config_first(tmp_path):
    """As the command line does: a config's relative `file:` is its own directory's file, even
    when the working directory has one of the same name (dry run; the build command shows it)."""
    cfg, work = tmp_path / "cfg", tmp_path / "work"
    cfg.mkdir()
    work.mkdir()
    (cfg / "models.py").write_text(WORKFLOW_MODELS_PY)
    (work / "models.py").write_text(WORKFLOW_MODELS_PY)
    spec = {"name": "k", "file": "models.py", "callback": "kingman", "theta_grid": [[1.0]]}
    config = write_config(cfg / "config.yaml", [spec])
    proc = snakemake(work, "results/summary.tsv", "-n", "-p", cache=tmp_path / "cache", configfile=config)
    assert proc.returncode == 0, proc.output[-3000:]
    assert str(cfg / "models.py") in proc.output and str(work / "models.py") not in proc.output


def test_moments_plot_joins_points_only_along_one_ordered_axis():
    import importlib.util

    path = REPO / "workflows" / "scripts" / "plot.py"
    spec = importlib.util.spec_from_file_location("phasic_plot_script", path)
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    assert plot.one_axis([(1.0, 0.5), (2.0, 0.5), (3.0, 0.5)]) == 0
    assert plot.one_axis([(1.0, 3.0), (1.0, 2.0), (1.0, 1.0)]) == 1  # decreasing is ordered too
    assert plot.one_axis([(1.0, 0.5), (2.0, 0.5), (1.5, 0.5)]) is None  # not ordered
    assert plot.one_axis([(1.0, 0.5), (2.0, 1.0)]) is None  # two parameters vary: a grid, not a curve
    assert plot.one_axis([(1.0,)]) is None and plot.one_axis([()]) is None


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", cache=tmp_path / "cache")
    _ok(proc)
    assert "Congratulations" in proc.output and "Lints for" not in proc.output


def test_config_schema_rejects_malformed_spec(tmp_path):
    config = write_config(
        tmp_path / "bad.yaml", [{"name": "m", "file": "x.py", "callback": "f", "theta_grid": [["a"]]}]
    )
    proc = snakemake(tmp_path, "-n", cache=tmp_path / "cache", configfile=config)
    assert proc.returncode != 0
    assert "Error validating config file" in proc.output and "theta_grid" in proc.output, proc.output[-3000:]


@pytest.mark.parametrize(
    "model, expected",
    [
        ({"name": "m", "file": "x.py"}, "'callback' must be the name of a function"),
        ({"name": "m", "file": "x.py", "callback": "f", "parmas": {}}, "unknown key 'parmas'"),
        ({"name": "m", "callback": "f"}, "give exactly one of 'file'"),
        ({"name": "a b", "file": "x.py", "callback": "f"}, "model name 'a b'"),
    ],
)
def test_model_spec_errors_are_clear(model, expected):
    from phasic.exceptions import ParameterError
    from phasic.specs import check_spec

    with pytest.raises(ParameterError, match=re.escape(expected)):
        check_spec(model)


def test_schema_accepts_default_and_rejects_bad_values():
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "workflows" / "schemas" / "config.schema.yaml")
    config = yaml.safe_load((REPO / "workflows" / "config" / "default.yaml").read_text())
    validate(config, schema)
    assert config["models"][0]["params"] == {}  # defaults filled in
    for bad in ({"moments": 0}, {"times": {"num": 1}}, {"sweep": "mpi"}, {"theta": [[]]}):
        with pytest.raises(WorkflowError):
            validate({"models": [{"name": "m", "file": "x.py", "callback": "f", **bad}]}, schema)


def test_cli_commands_and_their_errors(tmp_path, monkeypatch, capsys):
    from phasic.cli import main

    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    m = str(tmp_path / "models.py")
    assert main(["graph", "build", "--file", m, "--callback", "kingmann"]) == 2
    err = capsys.readouterr().err
    assert "callback 'kingmann' is not defined" in err and "kingman" in err
    assert main(["graph", "build", "--file", m, "--callback", "kingman", "--expect", str(tmp_path / "x.h5")]) == 2
    assert "--expect" in capsys.readouterr().err
    assert main(["graph", "build", "--file", m, "--callback", "kingman", "--ipv", "[3]", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["built"] is True and built["vertices"] == 4 and Path(built["graph_entry"]).is_file()
    assert main(["graph", "build", "--file", m, "--callback", "kingman", "--ipv", "[3]", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["built"] is False
    entry = built["graph_entry"]
    assert main(["evaluate", entry]) == 2
    assert "no parameter vectors are given; set --theta or --theta-grid" in capsys.readouterr().err
    assert main(["evaluate", entry, "--theta", "[[1, 2]]"]) == 2
    assert "length 2, its graph has 1 parameters; give --theta vectors of 1 numbers" in capsys.readouterr().err
    # as the workflow calls it: the model's config name and config keys, not flags and keys
    assert main(["evaluate", entry, "--theta-grid", "[[1], [2, 3]]", "--name", "islands"]) == 2
    assert capsys.readouterr().err.strip() == (
        "phasic: error: model 'islands': theta vectors have length 2, its graph has 1 parameters; "
        "set `theta_grid` with 1 axes (one list of values per parameter)"
    )
    assert main(["evaluate", entry, "--theta", "[[1.0]]", "--times", "1:0:x"]) == 2
    assert "--times '1:0:x'" in capsys.readouterr().err
    assert main(["trace", "record", str(tmp_path / "nope.h5")]) == 2
    assert "is not a store entry path" in capsys.readouterr().err
    out = tmp_path / "m.tsv"
    assert main(["evaluate", entry, "--theta", "[[2.0]]", "--moments-out", str(out), "--json"]) == 0
    header, rows = _read_tsv(out)
    # n = 3 lineages at coalescence rate 2: E[T] = 1/(2*3) + 1/(2*1)
    assert float(rows[0][header.index("moment_1")]) == pytest.approx(1 / 6 + 1 / 2, rel=1e-12)


def test_evaluate_through_dask_equals_batch(tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    from phasic.cli import main

    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    common = [
        "evaluate",
        "--file",
        str(tmp_path / "models.py"),
        "--callback",
        "kingman",
        "--theta-grid",
        '[{"start": 0.5, "stop": 3.0, "num": 7}]',
        "--moments",
        "3",
        "--times",
        "0:3:4",
    ]
    assert (
        main(
            common
            + [
                "--method",
                "batch",
                "--moments-out",
                str(tmp_path / "b.tsv"),
                "--distribution-out",
                str(tmp_path / "bd.tsv"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None):
        assert (
            main(
                common
                + [
                    "--method",
                    "dask",
                    "--moments-out",
                    str(tmp_path / "d.tsv"),
                    "--distribution-out",
                    str(tmp_path / "dd.tsv"),
                    "--json",
                    "--quiet",
                ]
            )
            == 0
        )
    assert json.loads(capsys.readouterr().out)["method"] == "dask"
    np.testing.assert_allclose(
        np.loadtxt(tmp_path / "d.tsv", skiprows=1, usecols=(0, 2, 3, 4, 5)),
        np.loadtxt(tmp_path / "b.tsv", skiprows=1, usecols=(0, 2, 3, 4, 5)),
        rtol=1e-13,
    )
    np.testing.assert_allclose(
        np.loadtxt(tmp_path / "dd.tsv", skiprows=1), np.loadtxt(tmp_path / "bd.tsv", skiprows=1), rtol=1e-12, atol=1e-15
    )


def test_rewards_function_from_a_spec_file(tmp_path, monkeypatch, capsys):
    from phasic.cli import main

    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    sub = tmp_path / "project"
    sub.mkdir()
    (sub / "models.py").write_text(
        WORKFLOW_MODELS_PY
        + textwrap.dedent("""

        def lineages(states):
            return {"lineages": states[:, 0].astype(float)}
    """)
    )
    write_config(
        sub / "models.yaml",
        [{"name": "k", "file": "models.py", "callback": "kingman", "theta": [[1.0]], "rewards": "lineages"}],
    )
    monkeypatch.chdir(tmp_path)  # the model file is found next to the spec file
    out = tmp_path / "m.tsv"
    assert main(["evaluate", "--spec", "@project/models.yaml", "--moments-out", str(out)]) == 0
    header, rows = _read_tsv(out)
    assert rows[0][header.index("reward")] == "lineages"
    # reward = number of lineages: E[total branch length] of 4 genes = 2 (1 + 1/2 + 1/3)
    assert float(rows[0][header.index("moment_1")]) == pytest.approx(2 * (1 + 1 / 2 + 1 / 3), rel=1e-12)
