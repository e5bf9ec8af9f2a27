"""Model specs (phasic/specs.py): the YAML reader refuses alias bombs and recursive aliases in
bounded memory and time, with short messages; anchors within the bound keep working."""

import sys

import pytest

from phasic.exceptions import ParameterError
from tests.models import run_limited

BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + BOMB


def test_yaml_alias_bomb_is_refused_in_bounded_memory_and_time(tmp_path):
    assert len(BOMB) < 450  # 9**9 strings once expanded
    path = tmp_path / "models.yaml"
    path.write_text(BOMB)
    # 1.5 GB of address space: enough for the interpreter and the CLI, far from the expansion
    run = run_limited([sys.executable, "-m", "phasic.cli", "build", str(path)], timeout=180, limit_bytes=1536 * 2**20)
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "alias" in run.stderr and len(run.stderr) < 1000, run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def test_yaml_specs_refuse_recursive_aliases_and_keep_messages_short(tmp_path):
    from phasic.cli._build import read_models
    from phasic.specs import read_spec

    path = tmp_path / "rec.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ParameterError, match="alias inside its own anchor"):
        read_models(path)
    # a document within the bound but large: the message is short
    big = tmp_path / "big.yaml"
    big.write_text("x: &x [" + ", ".join(["12345"] * 1000) + "]\ny: [*x, *x, *x, *x, *x]\n")
    with pytest.raises(ParameterError) as info:
        read_models(big)
    assert len(str(info.value)) < 400, len(str(info.value))
    with pytest.raises(ParameterError, match="alias"):
        read_spec(BOMB)
    # anchors and aliases within the bound keep working
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        "p: &p {theta: 2.0}\nmodels:\n  - {name: k, module: tests.models, callback: coalescent, params: *p}\n"
    )
    assert read_spec(f"@{ok}")["params"] == {"theta": 2.0}


MODEL_A = "from phasic import with_ipv\n\n\n@with_ipv([3])\ndef m(state):\n    n = state[0]\n    return [] if n <= 1 else [[[n - 1], 1.0]]\n"
MODEL_B = MODEL_A.replace("[3]", "[5]")


def _two_dirs(tmp_path, monkeypatch):
    """A config dir and a working dir, each with its own models.py (3 and 5 lineages)."""
    cfg, cwd = tmp_path / "cfg", tmp_path / "cwd"
    cfg.mkdir()
    cwd.mkdir()
    (cfg / "models.py").write_text(MODEL_A)
    (cwd / "models.py").write_text(MODEL_B)
    (cfg / "config.yaml").write_text("models:\n  - name: m\n    file: models.py\n    callback: m\n")
    monkeypatch.chdir(cwd)
    return cfg, cwd


def test_relative_model_files_resolve_relative_to_the_config_first(tmp_path, monkeypatch):
    from phasic.specs import resolve_spec

    cfg, cwd = _two_dirs(tmp_path, monkeypatch)
    spec = {"name": "m", "file": "models.py", "callback": "m"}
    assert resolve_spec(spec, [cfg, "."])["file"] == str(cfg / "models.py")
    assert resolve_spec(spec, ["."])["file"] == str(cwd / "models.py")
    assert resolve_spec(spec, [cfg])["file"] == str(cwd / "models.py")  # without ".", the cwd comes first


def test_model_file_not_found_lists_each_place_once(tmp_path, monkeypatch):
    from phasic.specs import resolve_spec

    monkeypatch.chdir(tmp_path)
    spec = {"name": "m", "file": "nope.py", "callback": "m"}
    with pytest.raises(ParameterError) as info:
        resolve_spec(spec, [tmp_path, ".", str(tmp_path), tmp_path / "sub" / ".."])
    msg = str(info.value)
    assert msg.count(str(tmp_path / "nope.py")) == 1, msg
    assert "model 'm': model file 'nope.py' not found (looked at" in msg and "relative to the config file" in msg


def test_cli_resolves_a_config_like_the_workflow(tmp_path, monkeypatch, capsys):
    """`phasic graph build --spec @config.yaml` takes the config's models.py, not the cwd's."""
    import json

    from phasic.cli import main

    cfg, cwd = _two_dirs(tmp_path, monkeypatch)
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["graph", "build", "--spec", f"@{cfg / 'config.yaml'}", "--model", "m", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vertices"] == 4  # start + 3, 2, 1 lineages: the config's
    assert main(["graph", "build", "--file", "models.py", "--callback", "m", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vertices"] == 6  # no config: the working directory's


# ------------------------------------------------------------------ Demes models
IM = """\
time_units: generations
demes:
  - name: anc
    epochs: [{start_size: 1000, end_time: 500}]
  - name: A
    ancestors: [anc]
    epochs: [{start_size: 800}]
  - name: B
    ancestors: [anc]
    epochs: [{start_size: 1200}]
migrations: [{demes: [A, B], rate: 1.0e-3}]
"""


def test_demes_spec_names_the_graph_from_demes_caches(tmp_path, monkeypatch):
    """A `demes:` spec resolves (relative to the config's directory first) to the callback spec
    whose key and entry are those of from_demes(..., cache=True)."""
    pytest.importorskip("demes")
    from phasic.demography import from_demes
    from phasic.specs import ModelSpec, resolve_spec

    cfg, cwd = tmp_path / "cfg", tmp_path / "cwd"
    cfg.mkdir(), cwd.mkdir()
    (cfg / "im.yaml").write_text(IM)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    spec = resolve_spec({"name": "im", "demes": "im.yaml", "samples": {"A": 2, "B": 2}, "params": {}}, [cfg, "."])
    assert spec["demes"] == str(cfg / "im.yaml")
    assert spec["module"] == "phasic.demography._spaces" and spec["callback"] == "block_counting"
    assert spec["state_space"] == "sfs"
    assert resolve_spec(spec, [cfg]) == spec  # resolving again changes nothing
    path = ModelSpec.from_dict(spec).entry_path()
    assert not path.exists()
    from_demes(str(cfg / "im.yaml"), {"A": 2, "B": 2}, cache=True)
    assert path.is_file()  # the entry from_demes stored is the one the spec names
    lineages = resolve_spec(
        {"name": "l", "demes": str(cfg / "im.yaml"), "samples": {"A": 3}, "state_space": "lineages"}
    )
    assert lineages["callback"] == "lineage_counting"


@pytest.mark.parametrize(
    "change, words",
    [
        ({"demes": "missing.yaml"}, "model 'im': Demes file 'missing.yaml' not found"),
        ({"samples": {"C": 2}}, "samples name deme 'C'"),
        ({"samples": {"A": 1}}, "fewer than 2 genomes"),
        ({"samples": {"A": 2.0}}, "'samples' must map deme names to numbers"),
        ({"samples": []}, "'samples' must map deme names to numbers"),
        ({"state_space": "trees"}, "'state_space' must be 'sfs' or 'lineages'"),
        ({"theta": [[1.0]]}, "a Demes model takes no 'theta'"),
        ({"theta_grid": [[1.0]]}, "a Demes model takes no 'theta_grid'"),
        ({"file": "m.py"}, "'file' does not go with 'demes'"),
        ({"rewards": "sfs"}, "'rewards' does not go with 'demes'"),
        ({"params": {"n": 2}}, "'params' does not go with 'demes'"),
        ({"demes": ""}, "'demes' must be the path of a Demes YAML file"),
    ],
)
def test_bad_demes_specs_are_clear_errors_naming_the_model(tmp_path, change, words):
    pytest.importorskip("demes")
    from phasic.specs import resolve_spec

    (tmp_path / "im.yaml").write_text(IM)
    spec = {"name": "im", "demes": "im.yaml", "samples": {"A": 2, "B": 2}, **change}
    with pytest.raises(ParameterError) as info:
        resolve_spec(spec, [tmp_path])
    assert "model 'im'" in str(info.value) and words in str(info.value), str(info.value)


def test_cli_builds_and_evaluates_a_demes_model(tmp_path, monkeypatch, capsys):
    """`phasic graph build --spec @config --model im` stores from_demes' entry; `phasic evaluate
    --demes` writes the T_MRCA moments and the SFS table from it."""
    pytest.importorskip("demes")
    import json

    import numpy as np

    from phasic.cli import main
    from phasic.demography import from_demes

    (tmp_path / "im.yaml").write_text(IM)
    (tmp_path / "config.yaml").write_text(
        "models:\n  - name: im\n    demes: im.yaml\n    samples: {A: 2, B: 2}\n"
        "  - name: k\n    file: m.py\n    callback: m\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["graph", "build", "--spec", f"@{tmp_path / 'config.yaml'}", "--model", "im", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    model = from_demes(str(tmp_path / "im.yaml"), {"A": 2, "B": 2}, cache=True)
    assert built["built"] and built["vertices"] == model.graph.vertices_length()
    args = ["evaluate", built["graph_entry"], "--demes", "im.yaml", "--samples", '{"A": 2, "B": 2}']
    assert main([*args, "--moments-out", "m.tsv", "--sfs-out", "s.tsv", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["graph_key"] == built["graph_key"] and result["built"] is False
    assert result["expectation"] == pytest.approx([model.expectation()], rel=1e-12)
    rows = [line.split("\t") for line in (tmp_path / "s.tsv").read_text().splitlines()]
    assert rows[0] == ["A", "B", "branch_length"]
    sfs = np.zeros((3, 3))
    for i, j, x in rows[1:]:
        sfs[int(i), int(j)] = float(x)
    np.testing.assert_allclose(sfs, model.expected_sfs(), rtol=1e-12)
    assert main([*args, "--theta", "[[1.0]]"]) == 2
    assert "--theta does not go with --demes" in capsys.readouterr().err
    assert main(["evaluate", "--demes", "im.yaml", "--samples", '{"A": 2, "B": 2}', "--state-space", "lineages"]) == 0
    capsys.readouterr()
    assert main(["evaluate", built["graph_entry"], "--sfs-out", "x.tsv"]) == 2
    assert "--sfs-out is for a Demes model" in capsys.readouterr().err
    # the model named in a config: the same Demes route
    spec_args = ["evaluate", "--spec", f"@{tmp_path / 'config.yaml'}", "--model", "im", "--json"]
    assert main(spec_args) == 0
    assert json.loads(capsys.readouterr().out)["expectation"] == pytest.approx([model.expectation()], rel=1e-12)
