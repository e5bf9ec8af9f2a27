"""Demes models in the Snakemake workflow (`demes:` config entries), run for real.

One module-scoped run builds, records and evaluates a two-deme isolation-with-migration model
(2 + 2 genomes, block counting) and a one-deme bottleneck (6 genomes, lineage counting) from
an empty store; the tests compare its tables with ``phasic.demography.from_demes`` computed
here and check the graph entries are the ones ``from_demes(..., cache=True)`` uses.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.models import REPO, SNAKEMAKE, job_counts, write_config
from tests.workflow.test_workflow import snakemake

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install phasic[workflow])"),
]

demes = pytest.importorskip("demes")
pytest.importorskip("demesdraw")

MODELS = REPO / "workflows" / "models"
SPECS = [
    {"name": "im", "demes": "im.yaml", "samples": {"A": 2, "B": 2}, "moments": 3},
    {"name": "bottleneck", "demes": "bottleneck.yaml", "samples": {"pop": 6}, "times": {"num": 50}},
]


def _read_tsv(path):
    lines = Path(path).read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("demes")
    for name in ("im.yaml", "bottleneck.yaml"):  # relative to the config file's directory
        shutil.copy(MODELS / name, base / name)
    cache, work = base / "cache", base / "work"
    work.mkdir()
    config = write_config(base / "config.yaml", SPECS)
    proc = snakemake(work, cache=cache, configfile=config)
    assert proc.returncode == 0, proc.output[-4000:]
    return base, cache, work


def _model(base, spec, cache):
    from phasic.demography import from_demes

    return from_demes(str(base / spec["demes"]), spec["samples"], cache=True)


def test_outputs_exist(run):
    _, _, work = run
    for spec in SPECS:
        out = work / "results" / spec["name"]
        for f in ("trace.json", "moments.tsv", "distribution.tsv", "sfs.tsv", "sfs.png", "demes.png", "pdf.png"):
            assert (out / f).is_file() and (out / f).stat().st_size > 0, f"{out / f} missing"


def test_tables_equal_from_demes(run, monkeypatch):
    base, cache, work = run
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(cache))
    for spec in SPECS:
        model = _model(base, spec, cache)
        out = work / "results" / spec["name"]
        # the graph entry the workflow built is the one from_demes(cache=True) uses
        pointer = json.loads((out / "trace.json").read_text())
        from phasic.specs import ModelSpec

        assert pointer["graph_key"] == ModelSpec.from_dict({**spec, "demes": str(base / spec["demes"])}).key
        from phasic.demography import graph_spec

        made = graph_spec(str(base / spec["demes"]), spec["samples"])
        from phasic import Graph

        g = Graph(made["callback"], ipv=made["ipv"], cache=True, **made["params"])
        assert g.vertices_length() == model.graph.vertices_length()
        assert Path(pointer["graph_entry"]).is_file()
        assert Path(pointer["graph_entry"]).resolve().parent.parent.parent == cache.resolve()
        # sfs.tsv
        header, rows = _read_tsv(out / "sfs.tsv")
        assert header == list(spec["samples"]) + ["branch_length"]
        expected = model.expected_sfs()
        got = np.zeros(expected.shape)
        for row in rows:
            got[tuple(int(x) for x in row[:-1])] = float(row[-1])
        assert len(rows) == expected.size
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
        # moments.tsv: one row, the usual format
        header, rows = _read_tsv(out / "moments.tsv")
        k = spec.get("moments", 2)
        assert header == ["reward"] + [f"moment_{i + 1}" for i in range(k)] + ["variance"]
        assert len(rows) == 1 and rows[0][0] == "time"
        np.testing.assert_allclose([float(x) for x in rows[0][1 : k + 1]], model.moments(k), rtol=1e-12)
        # distribution.tsv: the T_MRCA on a grid reaching the tail
        header, rows = _read_tsv(out / "distribution.tsv")
        assert header == ["t", "pdf", "cdf"]
        t = np.array([float(r[0]) for r in rows])
        np.testing.assert_allclose([float(r[1]) for r in rows], model.pdf(t), rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose([float(r[2]) for r in rows], model.cdf(t), rtol=1e-10, atol=1e-300)
        assert t[0] == 0.0 and float(rows[-1][2]) >= 0.999
    assert len(_read_tsv(work / "results" / "bottleneck" / "distribution.tsv")[1]) == 50


def test_summary_lists_demes_models(run):
    _, _, work = run
    header, rows = _read_tsv(work / "results" / "summary.tsv")
    by_model = {r[0]: dict(zip(header, r)) for r in rows}
    assert set(by_model) == {"im", "bottleneck"}
    moments = _read_tsv(work / "results" / "im" / "moments.tsv")[1][0]
    assert float(by_model["im"]["expectation_min"]) == float(moments[1])
    assert by_model["im"]["n_theta"] == "0"


def test_rerun_is_up_to_date(run):
    base, cache, work = run
    proc = snakemake(work, "--dry-run", cache=cache, configfile=base / "config.yaml")
    assert proc.returncode == 0, proc.output[-3000:]
    assert "Nothing to be done" in proc.output


def test_edited_demes_file_reevaluates_without_rebuilding(run):
    """Sizes are parameters, not structure: the graph entry stays, evaluate_demes reruns."""
    base, cache, work = run
    path = base / "bottleneck.yaml"
    path.write_text(path.read_text().replace("start_size: 1000,", "start_size: 500,"))
    proc = snakemake(work, "--dry-run", cache=cache, configfile=base / "config.yaml")
    assert proc.returncode == 0, proc.output[-3000:]
    counts = job_counts(proc.output)
    assert counts.get("evaluate_demes") == 1 and counts.get("plot_demes") == 1, counts
    assert "build_graph" not in counts and "record_trace" not in counts, counts


@pytest.mark.parametrize(
    "change, words",
    [
        ({"demes": "missing.yaml"}, ["model 'im'", "'missing.yaml' not found"]),
        ({"samples": {"C": 2}}, ["model 'im'", "'C'"]),
        ({"samples": {"A": 1}}, ["model 'im'", "fewer than 2"]),
        ({"theta_grid": [[1.0]]}, ["model 'im'", "no 'theta_grid'"]),
        ({"callback": "kingman"}, ["model 'im'", "'callback' does not go with 'demes'"]),
    ],
)
def test_bad_spec_fails_at_parse_time(tmp_path, change, words):
    shutil.copy(MODELS / "im.yaml", tmp_path / "im.yaml")
    config = write_config(tmp_path / "config.yaml", [{**SPECS[0], **change}])
    proc = snakemake(tmp_path, "--dry-run", cache=tmp_path / "cache", configfile=config, timeout=120)
    assert proc.returncode != 0
    for w in words:
        assert w in proc.output, proc.output[-3000:]
    assert not (tmp_path / "cache").exists()
