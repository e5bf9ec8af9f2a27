"""`phasic fit`: a Demes model, a moments-style options file and a .fs file in, the estimates
table, the fitted Demes graph, the observed and fitted SFS (and for SVGD the posterior sample)
out; usage errors exit with status 2 and one line."""

import inspect
import json

import numpy as np
import pytest

demes = pytest.importorskip("demes")

from phasic import inference  # noqa: E402
from phasic.cli import main  # noqa: E402
from phasic.demography import from_demes  # noqa: E402

SVGD = "n_particles" in inspect.signature(inference.fit).parameters

MODEL = """\
time_units: generations
demes:
- name: A
  epochs:
  - {start_size: %s, end_time: %s}
  - {start_size: 2000}
"""
OPTIONS = """\
parameters:
- name: N0
  values:
  - demes: {A: {epochs: {0: start_size}}}
  lower_bound: 100
  upper_bound: 1000000
- name: T
  values:
  - demes: {A: {epochs: {0: end_time}}}
  lower_bound: 1
  upper_bound: 100000
"""


def test_fit_writes_estimates_and_the_fitted_graph(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    truth = demes.loads(MODEL % (8000, 500))
    expected = from_demes(truth, {"A": 8}).expected_sfs()
    data = np.random.default_rng(2).poisson(expected * 2.0)  # theta = mu L = 2 per generation
    (tmp_path / "data.fs").write_text("9 unfolded\n" + " ".join(str(int(x)) for x in data) + "\n")
    (tmp_path / "start.yaml").write_text(MODEL % (3000, 2000))
    (tmp_path / "options.yaml").write_text(OPTIONS)
    args = [
        "fit",
        str(tmp_path / "start.yaml"),
        str(tmp_path / "options.yaml"),
        str(tmp_path / "data.fs"),
        "--samples",
        '{"A": 8}',
        "--mutation-rate",
        "2.0",
        "--sequence-length",
        "1",
        "--out",
        str(tmp_path / "est.tsv"),
        "--fitted-out",
        str(tmp_path / "fitted.yaml"),
    ]
    assert main(args) == 0
    rows = [line.split("\t") for line in (tmp_path / "est.tsv").read_text().splitlines()]
    assert rows[0] == ["parameter", "estimate", "stderr"] and [r[0] for r in rows[1:]] == ["N0", "T"]
    est = {r[0]: (float(r[1]), float(r[2])) for r in rows[1:]}
    for name, value in (("N0", 8000.0), ("T", 500.0)):
        assert abs(est[name][0] - value) <= 3 * est[name][1], (name, est)
    fitted = demes.load(tmp_path / "fitted.yaml")
    assert fitted["A"].epochs[0].end_time == pytest.approx(est["T"][0])
    assert "log-likelihood" in capsys.readouterr().err


def test_fit_usage_errors(tmp_path, capsys):
    base = ["fit", "m.yaml", "o.yaml", "d.fs"]
    assert main([*base, "--samples", "{A: 4}"]) == 2
    assert "--samples '{A: 4}' is not JSON" in capsys.readouterr().err
    assert main([*base, "--samples", '{"A": 4}', "--mutation-rate", "1e-8"]) == 2
    assert "give both --mutation-rate and --sequence-length" in capsys.readouterr().err
    assert main([*base, "--samples", '{"A": 4}']) == 2
    assert "not found" in capsys.readouterr().err


def _files(tmp_path, data, header="9 unfolded"):
    (tmp_path / "data.fs").write_text(header + "\n" + " ".join(str(int(x)) for x in data) + "\n")
    (tmp_path / "start.yaml").write_text(MODEL % (3000, 2000))
    (tmp_path / "options.yaml").write_text(OPTIONS)
    return [str(tmp_path / "start.yaml"), str(tmp_path / "options.yaml"), str(tmp_path / "data.fs")]


def _table(path):
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def test_sfs_out_is_what_the_likelihood_compares(tmp_path, monkeypatch, capsys):
    """Folded data without a mutation rate: both spectra folded, theta its multinomial MLE,
    the folded-away half and the monomorphic cells marked unused."""
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    truth = demes.loads(MODEL % (8000, 500))
    data = np.random.default_rng(3).poisson(from_demes(truth, {"A": 8}).expected_sfs() * 2.0)
    files = _files(tmp_path, data, header="9 folded")
    args = ["fit", *files, "--samples", '{"A": 8}', "--out", str(tmp_path / "est.tsv")]
    args += ["--fitted-out", str(tmp_path / "fitted.yaml"), "--sfs-out", str(tmp_path / "sfs.tsv"), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    header, rows = _table(tmp_path / "sfs.tsv")
    assert header == ["A", "observed", "expected", "used"] and [int(r[0]) for r in rows] == list(range(9))
    e = from_demes(demes.load(tmp_path / "fitted.yaml"), {"A": 8}).expected_sfs()
    folded_data = np.array(
        [data[0] + data[8], data[1] + data[7], data[2] + data[6], data[3] + data[5], data[4], 0, 0, 0, 0]
    )
    folded_e = np.array([e[0] + e[8], e[1] + e[7], e[2] + e[6], e[3] + e[5], e[4], 0, 0, 0, 0])
    theta = folded_data[1:5].sum() / folded_e[1:5].sum()
    assert summary["folded"] is True and summary["theta"] == pytest.approx(theta, rel=1e-12)
    np.testing.assert_array_equal([float(r[1]) for r in rows], folded_data)
    np.testing.assert_allclose([float(r[2]) for r in rows], theta * folded_e, rtol=1e-12, atol=0)
    assert [r[3] for r in rows] == ["0", "1", "1", "1", "1", "0", "0", "0", "0"]
    # the JSON summary is the estimates table's
    _, est = _table(tmp_path / "est.tsv")
    assert {r[0]: float(r[1]) for r in est} == summary["params"]


def test_svgd_options_need_the_method(tmp_path, capsys):
    base = ["fit", "m.yaml", "o.yaml", "d.fs", "--samples", '{"A": 4}']
    assert main([*base, "--particles", "8"]) == 2
    assert "--particles goes with --method svgd (the method is 'mle')" in capsys.readouterr().err
    assert main([*base, "--posterior-out", "p.tsv"]) == 2
    assert "--posterior-out goes with --method svgd" in capsys.readouterr().err
    assert main([*base, "--method", "svgd", "--iterations", "0"]) == 2
    assert "--iterations must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "--method", "mcmc"])
    assert exc.value.code == 2
    assert "invalid choice: 'mcmc'" in capsys.readouterr().err


@pytest.mark.skipif(not SVGD, reason="phasic.inference.fit has no method='svgd' yet")
def test_svgd_writes_the_posterior(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    truth = demes.loads(MODEL % (8000, 500))
    data = np.random.default_rng(2).poisson(from_demes(truth, {"A": 8}).expected_sfs() * 2.0)
    files = _files(tmp_path, data)
    args = ["fit", *files, "--samples", '{"A": 8}', "--mutation-rate", "2.0", "--sequence-length", "1"]
    args += ["--method", "svgd", "--particles", "5", "--iterations", "20", "--seed", "1", "--json"]
    args += ["--out", str(tmp_path / "est.tsv"), "--posterior-out", str(tmp_path / "post.tsv")]
    args += ["--fitted-out", str(tmp_path / "fitted.yaml")]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    names, rows = _table(tmp_path / "post.tsv")
    assert names == ["N0", "T"] and len(rows) == 5
    sample = np.array([[float(x) for x in r] for r in rows])
    header, est = _table(tmp_path / "est.tsv")
    assert header == ["parameter", "mean", "sd", "q05", "median", "q95"] and [r[0] for r in est] == ["N0", "T"]
    for i, r in enumerate(est):
        assert float(r[1]) == pytest.approx(sample[:, i].mean(), rel=1e-12)
        assert float(r[2]) == pytest.approx(sample[:, i].std(ddof=1), rel=1e-9)
        assert float(r[4]) == pytest.approx(np.median(sample[:, i]), rel=1e-12)
    assert summary["method"] == "svgd" and summary["n_particles"] == 5
    assert set(summary["map_params"]) == {"N0", "T"}
    assert demes.load(tmp_path / "fitted.yaml")["A"].epochs[0].end_time == pytest.approx(float(est[1][4]))


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    """MODEL at N0 = 8000, T = 500: 4 diploid individuals over 2 Mb with recombination, as a
    tree sequence and as a VCF with its popmap file."""
    msprime = pytest.importorskip("msprime")
    base = tmp_path_factory.mktemp("linked")
    ts = msprime.sim_ancestry(
        samples=[msprime.SampleSet(4, population="A", ploidy=2)],
        demography=msprime.Demography.from_demes(demes.loads(MODEL % (8000, 500))),
        sequence_length=2e6,
        recombination_rate=1e-8,
        random_seed=11,
    )
    ts = msprime.sim_mutations(ts, rate=1e-8, random_seed=12, model=msprime.BinaryMutationModel(), discrete_genome=True)
    ts.dump(str(base / "data.trees"))
    with open(base / "data.vcf", "w") as f:
        ts.write_vcf(f, position_transform=lambda x: 1 + np.asarray(x))
    (base / "pops.txt").write_text("".join(f"tsk_{ind.id}\tA\n" for ind in ts.individuals()))
    (base / "start.yaml").write_text(MODEL % (3000, 2000))
    (base / "options.yaml").write_text(OPTIONS)
    return base, ts


def _run_json(args, capsys):
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_godambe_on_a_tree_sequence_and_a_vcf_with_popmap(linked, tmp_path, monkeypatch, capsys):
    """The block bootstrap of a .trees file gives Godambe standard errors; the VCF of the same
    simulation, with its popmap, gives the same SFS and so the same estimates (Hessian errors)."""
    pytest.importorskip("cyvcf2")
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    base, ts = linked
    common = [str(base / "start.yaml"), str(base / "options.yaml")]
    flags = ["--samples", '{"A": 8}', "--mutation-rate", "1e-8", "--sequence-length", "2e6", "--seed", "1", "--json"]
    god = _run_json(
        ["fit", *common, str(base / "data.trees"), *flags, "--out", str(tmp_path / "god.tsv")]
        + ["--uncertainty", "godambe", "--bootstrap", "20", "--blocks", "20"],
        capsys,
    )
    assert god["uncertainty"] == "godambe" and god["bootstrap"] == 20 and god["blocks"] == 20
    vcf = _run_json(
        ["fit", *common, str(base / "data.vcf"), *flags, "--out", str(tmp_path / "vcf.tsv")]
        + ["--popmap", str(base / "pops.txt"), "--sfs-out", str(tmp_path / "sfs.tsv")],
        capsys,
    )
    assert vcf["uncertainty"] == "hessian" and "bootstrap" not in vcf
    assert vcf["vcf_records"] == {
        "records": ts.num_sites,
        "used": ts.num_sites,
        "not_biallelic_snp": 0,
        "missing_genotype": 0,
        "ancestral_unknown": 0,
    }
    _, rows = _table(tmp_path / "sfs.tsv")
    ref = ts.allele_frequency_spectrum(polarised=True, span_normalise=False, mode="site")
    np.testing.assert_array_equal([float(r[1]) for r in rows], ref)
    for name in ("N0", "T"):
        assert vcf["params"][name] == pytest.approx(god["params"][name], rel=1e-9)
        assert 0 < god["stderr"][name] and 0 < vcf["stderr"][name]
        assert god["stderr"][name] != pytest.approx(vcf["stderr"][name], rel=1e-3)


def test_uncertainty_usage_errors(tmp_path, capsys):
    base = ["fit", "m.yaml", "o.yaml", "d.trees", "--samples", '{"A": 4}']
    assert main([*base, "--uncertainty", "godambe"]) == 2
    assert "--uncertainty godambe needs --bootstrap" in capsys.readouterr().err
    assert main([*base, "--bootstrap", "20"]) == 2
    assert "--bootstrap goes with --uncertainty godambe" in capsys.readouterr().err
    assert main([*base, "--uncertainty", "godambe", "--bootstrap", "a.fs,b.txt"]) == 2
    assert "'b.txt' is not a .fs file" in capsys.readouterr().err
    assert main([*base, "--uncertainty", "godambe", "--bootstrap", "a.fs,b.fs", "--blocks", "10"]) == 2
    assert "--blocks goes with --bootstrap N" in capsys.readouterr().err
    assert main([*base, "--method", "svgd", "--uncertainty", "godambe"]) == 2
    assert "--uncertainty goes with --method mle" in capsys.readouterr().err
    assert main(["fit", "m.yaml", "o.yaml", "d.vcf.gz", "--samples", '{"A": 4}']) == 2
    assert "the VCF 'd.vcf.gz' needs --popmap FILE" in capsys.readouterr().err
    assert main([*base, "--popmap", "p.txt"]) == 2
    assert "popmap goes with VCF data" in capsys.readouterr().err
