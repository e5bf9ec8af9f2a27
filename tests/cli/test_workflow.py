"""``phasic evaluate`` and ``phasic trace record`` (phasic/cli/_workflow.py): readable tables, ``-``
for stdout and stdin, and a clear error for a time grid too large.

Every check runs the real ``phasic`` console script (or ``python -m phasic.cli``) in a
subprocess through the ``env`` fixture (tests/cli/conftest.py), with ``PHASIC_CACHE_DIR``,
``JAX_COMPILATION_CACHE_DIR`` and ``HOME`` pointing into the test's temporary directory."""

import json

import pytest

from tests.models import CLI_MODEL, one_line_error


def test_huge_time_grid_is_a_clear_error(env):
    (env.tmp / "models_cli.py").write_text(CLI_MODEL)
    for times, num in (
        ("0:1:1000000000", 10**9),
        ("0:1:" + "1" * 30, int("1" * 30)),
        ('{"start": 0, "stop": 1, "num": 10000000000}', 10**10),
        ("auto:1000000000", 10**9),
    ):
        out = env.run(
            "evaluate",
            "--file",
            "models_cli.py",
            "--callback",
            "coalescent",
            "--times",
            times,
            "--distribution-out",
            "-",
        )
        line = one_line_error(out)
        assert f"{num} time points" in line and "at most 1000000 " in line, line


def test_evaluate_prints_a_readable_table_and_dash_means_stdout(env):
    (env.tmp / "models_cli.py").write_text(CLI_MODEL)
    model = ("--file", "models_cli.py", "--callback", "coalescent", "--param", "theta=2.0")
    out = env.run("evaluate", *model)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["reward", "moment_1", "moment_2", "variance"]
    # 4 lineages at rate 2*C(n,2): E[T] = sum 1/(n(n-1)) = 3/4
    assert float(lines[1].split()[1]) == pytest.approx(0.75, rel=1e-12)
    out = env.run("evaluate", *model, "--moments-out", "-", "--distribution-out", "-", "--times", "0:2:3")
    assert out.returncode == 0, out.stderr
    moments, dist = out.stdout.strip().split("\n\n")
    assert moments.splitlines()[0] == "reward\tmoment_1\tmoment_2\tvariance"
    assert dist.splitlines()[0] == "t\tpdf\tcdf" and len(dist.splitlines()) == 4
    assert float(moments.splitlines()[1].split("\t")[1]) == pytest.approx(0.75, rel=1e-12)
    out = env.run("evaluate", *model, "--moments-out", "-", "--json")
    one_line_error(out)
    # trace record --out - writes the JSON result to stdout, the summary to stderr
    out = env.run("trace", "record", *model, "--out", "-")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["vertices"] == 5
    # --spec @- reads the spec from stdin
    spec = json.dumps({"name": "k", "file": "models_cli.py", "callback": "coalescent", "params": {"theta": 2.0}})
    out = env.run("evaluate", "--spec", "@-", "--moments-out", "-", stdin=spec)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.splitlines()[1].split("\t")[1]) == pytest.approx(0.75, rel=1e-12)


def test_auto_time_grid_follows_each_parameter_vector(tmp_path, monkeypatch):
    """`--times auto` gives every parameter vector its own grid, to mean + 5 sd of its own
    distribution: Kingman from 4 genes at coal=2 gets its peak covered, not 5 of 100 points."""
    import numpy as np

    from phasic.cli import main
    from tests.models import WORKFLOW_MODELS_PY

    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    out = tmp_path / "dist.tsv"
    args = ["evaluate", "--file", str(tmp_path / "models.py"), "--callback", "kingman", "--theta", "[[0.05], [2.0]]"]
    assert main([*args, "--times", "auto", "--distribution-out", str(out), "--json"]) == 0
    lines = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    for coal in (0.05, 2.0):
        t = np.array([float(row[1]) for row in lines if float(row[0]) == coal])
        # T = sum of Exp(coal * i (i-1) / 2) for i = 4, 3, 2: mean and variance in closed form
        rates = coal * np.array([6.0, 3.0, 1.0])
        mean, sd = (1 / rates).sum(), np.sqrt((1 / rates**2).sum())
        assert t.size == 100 and t[0] == 0.0
        assert t[-1] == pytest.approx(mean + 5 * sd, rel=1e-9)
        assert (t <= mean).sum() >= 20  # the bulk of this vector's density is on its grid
