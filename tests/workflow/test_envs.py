"""The software environment of the rules (workflows/envs/phasic.yaml, `--sdm conda`).

conda, mamba and micromamba are not installable on the development machine (not on its package
registries) and conda's channels are not reachable from it, so no environment is created here:
`snakemake --sdm conda` is not run.  What is checked is the part that is phasic's own: the
environment's `pip:` list, handed to pip as conda hands it (a requirements file, in which pip
expands ${PHASIC_SOURCE}), resolves to *this* phasic (not the unrelated "phasic" on PyPI) and
its dependencies, and the workflow sets PHASIC_SOURCE to its checkout.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.models import REPO, SNAKEMAKE, WORKFLOW_MODELS_PY, write_config
from tests.workflow.test_workflow import snakemake

ENV_FILE = REPO / "workflows" / "envs" / "phasic.yaml"


def _env():
    return yaml.safe_load(ENV_FILE.read_text())


def _pip_specs():
    lists = [d["pip"] for d in _env()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(lists) == 1, "one pip: list"
    return lists[0]


def _phasic_source():
    """What the workflow sets PHASIC_SOURCE to (its checkout), unless the environment sets it."""
    return Path(os.environ.get("PHASIC_SOURCE") or REPO)


def test_env_file_installs_phasic_from_phasic_source():
    env = _env()
    assert env["channels"] == ["conda-forge"]
    names = [d.split()[0] for d in env["dependencies"] if isinstance(d, str)]
    # pip to install phasic, a compiler to build it, snakemake for the script: rules
    assert {"python", "pip", "cxx-compiler", "numpy", "h5py", "snakemake-minimal"} <= set(names)
    # a bare "phasic" would be the other project of that name on PyPI
    assert _pip_specs() == ["phasic[demography,vcf] @ file://${PHASIC_SOURCE}"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pip_part_of_the_env_resolves_to_this_phasic(tmp_path):
    """`pip install --dry-run` of the env's pip: list, written as conda writes it (a requirements
    file next to Snakemake's copy of the env file, pip run in that directory): phasic from the
    checkout, version as in pyproject.toml, and its dependencies from the package index.  Builds
    phasic's core once to read its metadata (meson-python has no metadata-only hook): ~40 s."""
    source = _phasic_source()
    if not (source / "pyproject.toml").is_file() and source.suffix != ".whl":
        pytest.skip(f"PHASIC_SOURCE={source} is neither a phasic checkout nor a wheel")
    conda_dir = tmp_path / ".snakemake" / "conda"
    conda_dir.mkdir(parents=True)
    requirements = conda_dir / "condaenv.test.requirements.txt"
    requirements.write_text("\n".join(_pip_specs()))
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-build-isolation"]
    cmd += ["--quiet", "--report", str(report), "-r", str(requirements)]
    env = {**os.environ, "PHASIC_SOURCE": str(source), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(cmd, cwd=conda_dir, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    install = {item["metadata"]["name"].lower(): item for item in json.loads(report.read_text())["install"]}
    phasic = install["phasic"]
    assert phasic["requested"] and phasic["download_info"]["url"] == source.as_uri()
    assert phasic["metadata"]["version"] == _pyproject_version()
    # and the extras the Demes models and fits of the workflow need
    assert {"numpy", "h5py", "pyyaml", "demes", "demesdraw", "scipy", "cyvcf2"} <= set(install)


def _pyproject_version():
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install phasic[workflow])")
def test_workflow_names_its_checkout_as_phasic_source(tmp_path):
    """The jobs (and conda creating the environment) see PHASIC_SOURCE: the checkout the workflow
    lives in, or what the caller set."""
    expected = os.environ.get("PHASIC_SOURCE") or (str(REPO) if (REPO / "phasic" / "__init__.py").is_file() else None)
    if expected is None:
        pytest.skip(f"{REPO} is no phasic checkout and PHASIC_SOURCE is unset")
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    rules = tmp_path / "Snakefile"
    rules.write_text(
        f"include: {str(REPO / 'Snakefile')!r}\n\n"
        "rule show_source:\n"
        "    output: 'source.txt'\n"
        "    localrule: True\n"
        "    shell: 'printf %s \"$PHASIC_SOURCE\" > {output}'\n"
    )
    config = write_config(tmp_path / "c.yaml", [{"name": "k", "file": "models.py", "callback": "kingman"}])
    proc = snakemake(tmp_path, "source.txt", cache=tmp_path / "cache", configfile=config, snakefile=rules)
    assert proc.returncode == 0, proc.output[-3000:]
    assert (tmp_path / "source.txt").read_text() == expected
