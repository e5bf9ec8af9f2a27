"""Jobs sized from what is known: record_trace and evaluate ask for memory (and time) by the
stored graph's vertex and edge counts and the model's grid (workflows/scripts/sizing.py); a
model's own `resources` and the config's top-level `resources` win.

The sizing functions are called directly on real store entries; one real Snakemake run from an
empty store shows that the size is read when the job is scheduled, after build_graph stored the
graph (the job banners print each job's resources)."""

import importlib.util
import json
import math
import re
import textwrap

import pytest

from tests.models import REPO, SNAKEMAKE, WORKFLOW_MODELS_PY, load_callback, write_config
from tests.workflow.test_workflow import snakemake

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install phasic[workflow])"),
]

#: a chain 0 -> 1 -> ... -> n: n + 1 vertices and n edges, built in seconds even for n = 10^6
CHAIN_PY = textwrap.dedent("""
    from phasic import with_ipv


    @with_ipv([0])
    def chain(state, n=10):
        k = state[0]
        return [] if k >= n else [[[k + 1], 1.0]]
""")

#: a chain this long needs more than the floor to record its trace (about 1.3 GB asked for)
BIG = 1_000_000


def _sizing():
    spec = importlib.util.spec_from_file_location("phasic_sizing_test", REPO / "workflows" / "scripts" / "sizing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sizing = _sizing()


def _entry(tmp_path, monkeypatch, callback, **kwargs):
    """The store entry of a graph built here through the library (Graph(cache=True))."""
    from phasic import Graph
    from phasic.specs import ModelSpec

    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    g = Graph(callback, cache=True, **kwargs)
    entry = ModelSpec(callback, **kwargs).entry_path()
    assert entry.is_file()
    return g, entry


def test_size_is_read_from_the_store_entry(tmp_path, monkeypatch):
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    g, entry = _entry(tmp_path, monkeypatch, load_callback(tmp_path / "models.py", "block_counting"))
    size = sizing.graph_size(entry)
    assert size == {
        "vertices": g.vertices_length(),
        "edges": g.edges_length(),
        "state_length": 4,
        "theta_dim": 0,
    }
    assert sizing.graph_size(tmp_path / "cache" / "graphs" / "00" / ("0" * 62 + ".h5")) is None


def test_small_model_gets_the_floor(tmp_path, monkeypatch):
    """The workflow's Kingman model (5 vertices): both steps ask for what every job got before
    sizing, 1000 MB and 15 minutes; so does a graph not built yet."""
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    _, entry = _entry(tmp_path, monkeypatch, load_callback(tmp_path / "models.py", "kingman"))
    spec = {"name": "kingman", "theta_grid": [[0.5, 1.0, 2.0]], "times": "auto"}
    for step in ("record_trace", "evaluate"):
        assert sizing.resources(step, spec, entry) == {"mem_mb": 1000, "runtime": 15}
        assert sizing.resources(step, spec, tmp_path / "missing.h5") == sizing.FLOOR


def test_bigger_graph_gets_more_memory():
    sizes = [sizing.estimate("record_trace", v, 4 * v)["mem_mb"] for v in (10**3, 10**5, 10**6, 10**7)]
    assert sizes[0] == sizes[1] == 1000 < sizes[2] < sizes[3]
    # the documented formula: 2 x (50 MB + 256 B per vertex + 384 B per edge)
    assert sizes[3] == math.ceil(2 * (50 + (256 * 10**7 + 384 * 4 * 10**7) / 2**20))
    # evaluate: its rows count too (a 2000-vector x 1000-time table of a 5-vertex graph)
    small = sizing.estimate("evaluate", 5, 4, n_theta=3, n_times=100)
    sweep = sizing.estimate("evaluate", 5, 4, n_theta=2000, n_times=1000)
    assert small == {"mem_mb": 1000, "runtime": 15}
    assert sweep["mem_mb"] == math.ceil(2 * (40 + (160 * 9 + 700 * 2 * 10**6 + 1536 * 2000) / 2**20)) > 2000
    assert sweep["runtime"] == 15  # ~80 s of writing tables: within the floor
    assert sizing.estimate("evaluate", 5, 4, n_theta=10**5, n_times=1000)["runtime"] > 60
    with pytest.raises(ValueError, match="no sizes for the step 'plot'"):
        sizing.estimate("plot", 1, 1)


def test_evaluation_size_of_specs():
    assert sizing.evaluation_size({"theta_grid": [[1.0, 2.0], {"start": 0, "stop": 1, "num": 5}]}) == (10, 100, 1)
    assert sizing.evaluation_size({"theta": [[1.0]], "times": [0, 1, 2]}) == (1, 3, 1)
    assert sizing.evaluation_size({"times": {"stop": 4.0, "num": 7}}) == (1, 7, 1)
    assert sizing.evaluation_size({"rewards": "sfs"}, {"state_length": 8}) == (1, 100, 7)
    assert sizing.evaluation_size({"rewards": "columns"}, {"state_length": 8}) == (1, 100, 8)


def _job_resources(output):
    """``[(rule, wildcards, {resource: value})]`` of the job banners Snakemake printed."""
    jobs = []
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?: {4}.*\n)+)", output, flags=re.M):
        fields = dict(re.findall(r"^ {4}(\w+): (.*)$", body, flags=re.M))
        resources = dict(item.split("=", 1) for item in fields.get("resources", "").split(", ") if "=" in item)
        jobs.append((rule, fields.get("wildcards", ""), resources))
    return jobs


def test_workflow_asks_for_the_computed_size_and_explicit_resources_win(tmp_path):
    """A real run from an empty store: the long chain's record_trace asks for the computed
    memory (its size read after build_graph stored the graph), the short one for the floor, a
    model's own mem_mb wins, and so does the config's top-level runtime."""
    (tmp_path / "chain.py").write_text(CHAIN_PY)
    work = tmp_path / "work"
    work.mkdir()
    chain = {"file": str(tmp_path / "chain.py"), "callback": "chain"}
    config = write_config(
        tmp_path / "config.yaml",
        [
            {"name": "short", **chain, "params": {"n": 10}},
            {"name": "long", **chain, "params": {"n": BIG}},
            {"name": "pinned", **chain, "params": {"n": BIG}, "resources": {"mem_mb": 777}},
        ],
        resources={"runtime": 42},
    )
    cache = tmp_path / "cache"
    targets = [f"results/{m}/trace.json" for m in ("short", "long", "pinned")]
    proc = snakemake(work, *targets, cache=cache, configfile=config)
    assert proc.returncode == 0, proc.output[-4000:]
    jobs = {wc.removeprefix("model="): res for rule, wc, res in _job_resources(proc.output) if rule == "record_trace"}
    assert set(jobs) == {"short", "long", "pinned"}, proc.output[-4000:]
    entry = json.loads((work / "results" / "long" / "trace.json").read_text())["graph_entry"]
    assert sizing.graph_size(entry)["vertices"] > BIG
    expected = sizing.resources("record_trace", {}, entry)["mem_mb"]
    assert expected > 1000
    assert jobs["long"]["mem_mb"] == str(expected)
    assert jobs["short"]["mem_mb"] == "1000"
    assert jobs["pinned"]["mem_mb"] == "777"
    assert {res["runtime"] for res in jobs.values()} == {"42"}
