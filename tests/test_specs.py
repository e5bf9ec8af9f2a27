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
