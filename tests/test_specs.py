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
