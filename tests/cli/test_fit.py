"""`phasic fit`: a Demes model, a moments-style options file and a .fs file in, the estimates
table and the fitted Demes graph out; usage errors exit with status 2 and one line."""

import numpy as np
import pytest

demes = pytest.importorskip("demes")

from phasic.cli import main  # noqa: E402
from phasic.demography import from_demes  # noqa: E402

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
