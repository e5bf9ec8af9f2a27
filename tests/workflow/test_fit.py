"""Fits in the Snakemake workflow (config `fits:`), run for real.

One module-scoped run from an empty store fits the example of workflows/config/default.yaml
(one deme, growth, msprime data at known parameters: workflows/data/) by maximum likelihood and
a two-deme split to a tskit ``.trees`` file made here with msprime (the joint SFS: heatmaps);
where ``phasic.inference.fit`` has ``method="svgd"``, also the example by SVGD with a few
particles. The tests check the tables against the truth and against ``phasic.inference`` and
``phasic.demography.from_demes`` called here, the plots and the report; bad entries fail at
parse time naming the fit (the checks of workflows/scripts/fits.py also directly).
"""

import importlib.util
import inspect
import json
import math
import re
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
msprime = pytest.importorskip("msprime")
pytest.importorskip("demesdraw")

from phasic import inference  # noqa: E402

WORKFLOWS = REPO / "workflows"
SVGD = "n_particles" in inspect.signature(inference.fit).parameters


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SIM = _load(WORKFLOWS / "data" / "simulate_expansion.py", "simulate_expansion")
FITS = _load(WORKFLOWS / "scripts" / "fits.py", "workflow_fits")

SPLIT = """\
time_units: generations
demes:
- name: anc
  epochs:
  - {start_size: 2000, end_time: %s}
- name: A
  ancestors: [anc]
  epochs:
  - {start_size: %s}
- name: B
  ancestors: [anc]
  epochs:
  - {start_size: 2000}
"""
SPLIT_OPTIONS = """\
parameters:
- name: T
  values: [{demes: {anc: {epochs: {0: end_time}}}}]
  lower_bound: 100
  upper_bound: 10000
- name: NA
  values: [{demes: {A: {epochs: {0: start_size}}}}]
  lower_bound: 200
  upper_bound: 100000
"""

EXPANSION = {
    "name": "expansion",
    "model": "expansion.yaml",  # relative to the config file's directory
    "options": "expansion_options.yaml",
    "data": "expansion.fs",
    "samples": {"pop": SIM.SAMPLES},
    "mutation_rate": SIM.MUTATION_RATE,
    "sequence_length": SIM.SEQUENCE_LENGTH,
    "scan": {"points": 9},
}
SPLIT_FIT = {
    "name": "split",
    "model": "split.yaml",
    "options": "split_options.yaml",
    "data": "split.trees",
    "samples": {"A": 3, "B": 3},
    "scan": {"points": 5, "width": 2},
    "uncertainty": "godambe",
    "bootstrap": 10,
    "blocks": 10,
    "seed": 7,
}
# the same data as a VCF of haploid individuals with a popmap, and the same block-bootstrap
# replicates (same seed and blocks) as .fs files: the same estimates and Godambe errors
SPLIT_VCF = {
    **SPLIT_FIT,
    "name": "split_vcf",
    "data": "split.vcf",
    "popmap": "split_pops.txt",
    "bootstrap": [f"split_rep{i}.fs" for i in range(10)],
}
del SPLIT_VCF["blocks"]
POSTERIOR = {
    **{k: v for k, v in EXPANSION.items() if k != "scan"},
    "name": "expansion_svgd",
    "method": "svgd",
    "n_particles": 6,
    "n_iterations": 40,
    "seed": 3,
    "scan": {"points": 5},
}


def _read_tsv(path):
    lines = Path(path).read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def _copy_example(base):
    shutil.copy(WORKFLOWS / "models" / "expansion.yaml", base / "expansion.yaml")
    shutil.copy(WORKFLOWS / "models" / "expansion_options.yaml", base / "expansion_options.yaml")
    shutil.copy(WORKFLOWS / "data" / "expansion.fs", base / "expansion.fs")


def _split_data(base):
    ts = msprime.sim_ancestry(
        samples=[msprime.SampleSet(3, population="A", ploidy=1), msprime.SampleSet(3, population="B", ploidy=1)],
        demography=msprime.Demography.from_demes(demes.loads(SPLIT % (1500, 1000))),
        ploidy=2,
        sequence_length=2e6,
        recombination_rate=1e-7,
        random_seed=3,
    )
    ts = msprime.sim_mutations(ts, rate=1e-8, random_seed=4, model=msprime.BinaryMutationModel(), discrete_genome=False)
    ts.dump(str(base / "split.trees"))
    with open(base / "split.vcf", "w") as f:  # positions rounded, from 1
        ts.write_vcf(f, position_transform=lambda x: 1 + np.floor(np.asarray(x)))
    pops = {p.id: p.metadata["name"] for p in ts.populations()}
    popmap = [f"tsk_{ind.id} {pops[ts.node(ind.nodes[0]).population]}" for ind in ts.individuals()]
    (base / "split_pops.txt").write_text("\n".join(popmap) + "\n")
    reps = inference.block_bootstrap(ts, SPLIT_FIT["samples"], 10, blocks=10, seed=SPLIT_FIT["seed"])
    for i, rep in enumerate(reps):
        (base / f"split_rep{i}.fs").write_text("4 4 unfolded\n" + " ".join(repr(float(x)) for x in rep.ravel()) + "\n")
    (base / "split.yaml").write_text(SPLIT % (1000, 2000))
    (base / "split_options.yaml").write_text(SPLIT_OPTIONS)
    return ts


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("fit")
    _copy_example(base)
    ts = _split_data(base)
    cache, work = base / "cache", base / "work"
    work.mkdir()
    fits = [EXPANSION, SPLIT_FIT, SPLIT_VCF] + ([POSTERIOR] if SVGD else [])
    config = write_config(base / "config.yaml", [], fits=fits)
    proc = snakemake(work, cache=cache, configfile=config)
    assert proc.returncode == 0, proc.output[-4000:]
    return {"base": base, "cache": cache, "work": work, "config": config, "ts": ts, "output": proc.output}


def _estimates(path):
    header, rows = _read_tsv(path)
    return header, {r[0]: dict(zip(header[1:], map(float, r[1:]))) for r in rows}


def test_outputs_exist(run):
    for fit in [EXPANSION, SPLIT_FIT, SPLIT_VCF] + ([POSTERIOR] if SVGD else []):
        out = run["work"] / "results" / fit["name"]
        names = ["estimates.tsv", "fitted.yaml", "sfs.tsv", "fit.json", "loglik.tsv", "sfs.png", "loglik.png"]
        names += ["demes.png"] + (["posterior.tsv", "posterior.png"] if fit.get("method") == "svgd" else [])
        for f in names:
            assert (out / f).is_file() and (out / f).stat().st_size > 0, f"{out / f} missing"
    assert not (run["work"] / "results" / "summary.tsv").exists()  # no models: no summary


def test_mle_estimates_near_truth(run):
    out = run["work"] / "results" / "expansion"
    header, est = _estimates(out / "estimates.tsv")
    assert header == ["parameter", "estimate", "stderr"]
    assert list(est) == ["N", "T", "NA"]  # the options file's order
    for name, value in SIM.TRUTH.items():  # msprime's parameters, within 3 (unlinked-site) standard errors
        e = est[name]
        assert 0 < e["stderr"] < e["estimate"]
        assert abs(e["estimate"] - value) <= 3 * e["stderr"], (name, e, value)
    summary = json.loads((out / "fit.json").read_text())
    assert summary["converged"] is True and summary["method"] == "mle"
    assert summary["theta"] == pytest.approx(SIM.MUTATION_RATE * SIM.SEQUENCE_LENGTH)
    # the log-likelihood at the written estimates, computed here by the library
    ll = inference.loglik(
        str(run["base"] / "expansion.yaml"),
        str(run["base"] / "expansion_options.yaml"),
        str(run["base"] / "expansion.fs"),
        samples=EXPANSION["samples"],
        params={k: v["estimate"] for k, v in est.items()},
        mutation_rate=SIM.MUTATION_RATE,
        sequence_length=SIM.SEQUENCE_LENGTH,
    )
    assert summary["loglik"] == pytest.approx(ll, rel=1e-9)


def test_fitted_yaml_carries_the_estimates(run):
    out = run["work"] / "results" / "expansion"
    _, est = _estimates(out / "estimates.tsv")
    g = demes.load(out / "fitted.yaml")
    assert g["pop"].epochs[0].start_size == pytest.approx(est["NA"]["estimate"], rel=1e-12)
    assert g["pop"].epochs[0].end_time == pytest.approx(est["T"]["estimate"], rel=1e-12)
    assert g["pop"].epochs[1].start_size == pytest.approx(est["N"]["estimate"], rel=1e-12)
    split = demes.load(run["work"] / "results" / "split" / "fitted.yaml")
    _, est = _estimates(run["work"] / "results" / "split" / "estimates.tsv")
    assert split["A"].start_time == pytest.approx(est["T"]["estimate"], rel=1e-12)
    assert split["A"].epochs[0].start_size == pytest.approx(est["NA"]["estimate"], rel=1e-12)


def test_sfs_tables(run, monkeypatch):
    from phasic.demography import from_demes

    monkeypatch.setenv("PHASIC_CACHE_DIR", str(run["cache"]))
    # one deme, Poisson: expected = mutation rate x length x E[branch lengths] at the fit
    out = run["work"] / "results" / "expansion"
    header, rows = _read_tsv(out / "sfs.tsv")
    assert header == ["pop", "observed", "expected", "used"]
    counts, _, _ = inference.read_fs(run["base"] / "expansion.fs")
    e = from_demes(demes.load(out / "fitted.yaml"), EXPANSION["samples"]).expected_sfs()
    np.testing.assert_array_equal([float(r[1]) for r in rows], counts)
    np.testing.assert_allclose([float(r[2]) for r in rows], SIM.MUTATION_RATE * SIM.SEQUENCE_LENGTH * e, rtol=1e-10)
    assert [r[3] for r in rows] == ["0"] + ["1"] * (SIM.SAMPLES - 1) + ["0"]
    # two demes from a tree sequence, multinomial: tskit's joint SFS, theta its MLE
    out = run["work"] / "results" / "split"
    header, rows = _read_tsv(out / "sfs.tsv")
    assert header == ["A", "B", "observed", "expected", "used"] and len(rows) == 16
    ts = run["ts"]
    sets = [ts.samples(population=p.id) for p in ts.populations() if p.metadata["name"] in ("A", "B")]
    ref = ts.allele_frequency_spectrum(sample_sets=sets, mode="site", polarised=True, span_normalise=False)
    got = np.zeros((4, 4))
    exp = np.zeros((4, 4))
    for r in rows:
        got[int(r[0]), int(r[1])] = float(r[2])
        exp[int(r[0]), int(r[1])] = float(r[3])
    np.testing.assert_array_equal(got, ref)
    e = from_demes(demes.load(out / "fitted.yaml"), SPLIT_FIT["samples"]).expected_sfs()
    inner = np.ones((4, 4), bool)
    inner[0, 0] = inner[3, 3] = False
    theta = ref[inner].sum() / e[inner].sum()
    np.testing.assert_allclose(exp, theta * e, rtol=1e-10)
    assert json.loads((out / "fit.json").read_text())["theta"] == pytest.approx(theta, rel=1e-10)
    # the VCF with its popmap: the same observed SFS
    _, vcf_rows = _read_tsv(run["work"] / "results" / "split_vcf" / "sfs.tsv")
    assert [r[:3] for r in vcf_rows] == [r[:3] for r in rows]


def test_godambe_from_the_block_bootstrap_and_from_fs_replicates(run):
    """uncertainty: godambe with `bootstrap: 10, blocks: 10` on the .trees file, and with the
    same replicates as .fs files on the VCF: the same estimates and standard errors, and not
    the Hessian's."""
    out = run["work"] / "results"
    trees = json.loads((out / "split" / "fit.json").read_text())
    vcf = json.loads((out / "split_vcf" / "fit.json").read_text())
    assert trees["uncertainty"] == vcf["uncertainty"] == "godambe"
    assert trees["bootstrap"] == vcf["bootstrap"] == 10 and trees["blocks"] == 10 and "blocks" not in vcf
    assert vcf["vcf_records"]["used"] == vcf["vcf_records"]["records"] == run["ts"].num_sites
    for name in ("T", "NA"):
        assert vcf["params"][name] == pytest.approx(trees["params"][name], rel=1e-9)
        assert vcf["stderr"][name] == pytest.approx(trees["stderr"][name], rel=1e-6)
    _, est = _estimates(out / "split" / "estimates.tsv")
    assert {k: v["stderr"] for k, v in est.items()} == pytest.approx(trees["stderr"], rel=1e-12)


def test_scan_peaks_at_the_estimate(run):
    for fit in (EXPANSION, SPLIT_FIT, SPLIT_VCF):
        out = run["work"] / "results" / fit["name"]
        header, rows = _read_tsv(out / "loglik.tsv")
        assert header == ["parameter", "value", "loglik", "at_estimate"]
        _, est = _estimates(out / "estimates.tsv")
        best = json.loads((out / "fit.json").read_text())["loglik"]
        for name, e in est.items():
            mine = [(float(r[1]), float(r[2]), r[3]) for r in rows if r[0] == name]
            points = fit["scan"]["points"]
            assert points <= len(mine) <= points + 1  # the grid and the estimate (one of them when symmetric)
            at = [m for m in mine if m[2] == "1"]
            assert len(at) == 1 and at[0][0] == e["estimate"]
            assert at[0][1] == pytest.approx(best, rel=1e-9)  # the fit's own maximum
            values = [m[0] for m in mine]
            width = fit["scan"].get("width", 3)
            assert min(values) >= e["estimate"] - width * e["stderr"] * (1 + 1e-12)
            assert max(values) <= e["estimate"] + width * e["stderr"] * (1 + 1e-12)
            # a maximum: no value along a parameter does better
            assert all(math.isfinite(m[1]) and m[1] <= best + 1e-6 for m in mine), mine


@pytest.mark.skipif(not SVGD, reason="phasic.inference.fit has no method='svgd' yet")
def test_svgd_outputs(run):
    out = run["work"] / "results" / "expansion_svgd"
    header, est = _estimates(out / "estimates.tsv")
    assert header == ["parameter", "mean", "sd", "q05", "median", "q95"]
    names, rows = _read_tsv(out / "posterior.tsv")
    assert names == ["N", "T", "NA"]
    sample = np.array([[float(x) for x in r] for r in rows])
    assert sample.shape == (POSTERIOR["n_particles"], 3) and np.all(sample > 0)
    for i, name in enumerate(names):  # the summary is the sample's
        assert est[name]["mean"] == pytest.approx(sample[:, i].mean(), rel=1e-9)
        assert est[name]["median"] == pytest.approx(np.median(sample[:, i]), rel=1e-9)
        assert est[name]["q05"] <= est[name]["median"] <= est[name]["q95"]
    g = demes.load(out / "fitted.yaml")  # at the posterior median
    assert g["pop"].epochs[1].start_size == pytest.approx(est["N"]["median"], rel=1e-9)
    summary = json.loads((out / "fit.json").read_text())
    assert summary["method"] == "svgd" and summary["n_particles"] == POSTERIOR["n_particles"]
    _, scan = _read_tsv(out / "loglik.tsv")
    assert {r[0] for r in scan} == set(names)


def test_report_has_the_fit_sections(run):
    proc = snakemake(run["work"], "--report", "results/report.html", cache=run["cache"], configfile=run["config"])
    assert proc.returncode == 0, proc.output[-3000:]
    html = (run["work"] / "results" / "report.html").read_text(errors="replace")
    categories = json.loads(re.search(r"^\s*var categories = (.*);$", html, flags=re.M).group(1))
    for fit in ("expansion", "split") + (("expansion_svgd",) if SVGD else ()):
        assert set(categories[fit]) == {"plots", "tables"}, categories[fit]
        plots = {f"results/{fit}/{p}.png" for p in ("sfs", "loglik", "demes")}
        tables = {f"results/{fit}/{t}" for t in ("estimates.tsv", "fitted.yaml", "sfs.tsv", "loglik.tsv")}
        if fit == "expansion_svgd":
            plots.add(f"results/{fit}/posterior.png")
            tables.add(f"results/{fit}/posterior.tsv")
        assert set(categories[fit]["plots"]) == plots
        assert set(categories[fit]["tables"]) == tables
    assert "Each fit of the configuration" in html


def test_rerun_is_up_to_date_and_edits_rerun_the_fit(run):
    base, cache, work = run["base"], run["cache"], run["work"]
    proc = snakemake(work, "--dry-run", cache=cache, configfile=base / "config.yaml")
    assert proc.returncode == 0, proc.output[-3000:]
    assert "Nothing to be done" in proc.output
    path = base / "split_pops.txt"  # an edited popmap: the VCF's fit (and what follows it) again
    path.write_text("".join(reversed(path.read_text().splitlines(keepends=True))))
    proc = snakemake(work, "--dry-run", cache=cache, configfile=base / "config.yaml")
    assert proc.returncode == 0, proc.output[-3000:]
    counts = job_counts(proc.output)
    assert counts.get("fit_mle") == 1 and counts.get("scan_fit") == 1 and counts.get("plot_fit") == 1, counts
    path = base / "split_options.yaml"  # an edited input of both split fits
    path.write_text(path.read_text().replace("upper_bound: 10000\n", "upper_bound: 9000\n"))
    proc = snakemake(work, "--dry-run", cache=cache, configfile=base / "config.yaml")
    assert proc.returncode == 0, proc.output[-3000:]
    counts = job_counts(proc.output)
    assert counts.get("fit_mle") == 2 and counts.get("scan_fit") == 2 and counts.get("plot_fit") == 2, counts


@pytest.mark.parametrize(
    "change, words",
    [
        ({"data": "missing.fs"}, ["fit 'expansion'", "data file 'missing.fs' not found"]),
        ({"samples": {"pop": 10}}, ["fit 'expansion'", "dimensions (13,)", "give (11,)"]),
    ],
)
def test_bad_entry_fails_at_parse_time(tmp_path, change, words):
    _copy_example(tmp_path)
    config = write_config(tmp_path / "config.yaml", [], fits=[{**EXPANSION, **change}])
    proc = snakemake(tmp_path, "--dry-run", cache=tmp_path / "cache", configfile=config, timeout=120)
    assert proc.returncode != 0
    for w in words:
        assert w in proc.output, proc.output[-3000:]
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "change, words",
    [
        ({"model": "nope.yaml"}, "Demes file 'nope.yaml' not found"),
        ({"samples": {"B": 4}}, "samples name the deme 'B'"),
        ({"samples": {"pop": 1}}, "fewer than 2 genomes"),
        ({"samples": {"pop": 2.5}}, "'samples' must map deme names"),
        ({"mutation_rate": None}, "give both 'mutation_rate' and 'sequence_length'"),
        ({"sequence_length": -1.0}, "'sequence_length' must be a positive number, got -1.0"),
        ({"method": "mcmc"}, "'method' must be one of mle, svgd, got 'mcmc'"),
        ({"n_particles": 8}, "'n_particles' goes with method: svgd"),
        ({"starts": 0}, "'starts' must be an integer >= 1, got 0"),
        ({"sead": 1}, "unknown key 'sead'"),
        ({"scan": {"points": 2}}, "'scan.points' must be an integer >= 3, got 2"),
        ({"data": "expansion.yaml"}, "must be a dadi/moments .fs file, a tskit .trees file or a VCF/BCF file"),
        ({"options": "expansion.fs"}, "has no 'parameters' list"),
        ({"uncertainty": "sandwich"}, "'uncertainty' must be one of hessian, godambe, got 'sandwich'"),
        ({"uncertainty": "godambe"}, "uncertainty: godambe needs 'bootstrap'"),
        ({"bootstrap": 10}, "'bootstrap' goes with uncertainty: godambe"),
        ({"uncertainty": "godambe", "bootstrap": 10}, "'bootstrap' 10 (block-bootstrap replicates) needs .trees"),
        (
            {"uncertainty": "godambe", "bootstrap": ["expansion.fs", "nope.fs"]},
            "bootstrap replicate 'nope.fs' not found",
        ),
        ({"uncertainty": "godambe", "bootstrap": ["expansion.fs"] * 2, "blocks": 5}, "'blocks' goes with a number"),
        ({"method": "svgd", "uncertainty": "hessian"}, "'uncertainty' goes with method: mle"),
        ({"popmap": "expansion.yaml"}, "'popmap' goes with VCF data"),
        ({"data": "x.vcf.gz"}, "data file 'x.vcf.gz' not found"),
    ],
)
def test_fit_entry_checks(tmp_path, change, words):
    _copy_example(tmp_path)
    with pytest.raises(FITS.FitConfigError) as err:
        FITS.resolve_fits([{**EXPANSION, **change}], [tmp_path])
    assert str(err.value).startswith("fit 'expansion': ") and words in str(err.value), str(err.value)


def test_fit_names_are_unique(tmp_path):
    _copy_example(tmp_path)
    with pytest.raises(FITS.FitConfigError, match="fit 'im': the name is already used"):
        FITS.resolve_fits([{**EXPANSION, "name": "im"}], [tmp_path], model_names=["im"])
    with pytest.raises(FITS.FitConfigError, match="fit 'expansion': the name is already used"):
        FITS.resolve_fits([EXPANSION, EXPANSION], [tmp_path])
    with pytest.raises(FITS.FitConfigError, match="needs a 'name'"):
        FITS.resolve_fits([{k: v for k, v in EXPANSION.items() if k != "name"}], [tmp_path])
    resolved = FITS.resolve_fits([EXPANSION], [tmp_path])["expansion"]
    assert resolved["data"] == str(tmp_path / "expansion.fs") and resolved["method"] == "mle"
    assert resolved["scan"] == {"points": 9, "width": 3.0}


def test_own_models_drop_the_example_fit(tmp_path):
    """A config file with its own models and no `fits:` does not inherit the default's example
    fit (and the example models are not run for a config that only fits: the run above)."""
    shutil.copy(WORKFLOWS / "models" / "im.yaml", tmp_path / "im.yaml")
    config = write_config(tmp_path / "config.yaml", [{"name": "im", "demes": "im.yaml", "samples": {"A": 2, "B": 2}}])
    proc = snakemake(tmp_path, "--dry-run", cache=tmp_path / "cache", configfile=config, timeout=120)
    assert proc.returncode == 0, proc.output[-3000:]
    counts = job_counts(proc.output)
    assert counts.get("evaluate_demes") == 1 and not {"fit_mle", "fit_svgd", "scan_fit"} & set(counts), counts
