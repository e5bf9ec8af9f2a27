"""The `container:` directive and the image recipe (workflows/container/Dockerfile).

Snakemake runs jobs in containers only through Apptainer/Singularity (`--sdm apptainer`), which
is not installable on the development machine (not in Debian 12, not on PyPI): no job has run
under `--sdm apptainer` here.  What is checked: every rule gets the config's `container` (and none
without it), and -- where a container engine and a base image are at hand -- the image builds
from the recipe and runs the workflow inside it.
"""

import ast
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.models import REPO, SNAKEMAKE, WORKFLOW_MODELS_PY, write_config
from tests.workflow.test_workflow import snakemake

DOCKERFILE = REPO / "workflows" / "container" / "Dockerfile"

pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install phasic[workflow])")


def _rule_images(tmp_path, **config):
    """``{rule: container image}`` as Snakemake recorded them while parsing the workflow."""
    (tmp_path / "models.py").write_text(WORKFLOW_MODELS_PY)
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(
        f"include: {str(REPO / 'Snakefile')!r}\n\n"
        "print('IMAGES', sorted((r.name, r.container_img or None) for r in workflow.rules))\n"
    )
    spec = write_config(tmp_path / "c.yaml", [{"name": "k", "file": "models.py", "callback": "kingman"}], **config)
    proc = snakemake(tmp_path, "-n", cache=tmp_path / "cache", configfile=spec, snakefile=wrapper)
    assert proc.returncode == 0, proc.output[-3000:]
    line = next(line for line in proc.output.splitlines() if line.startswith("IMAGES "))
    return dict(ast.literal_eval(line[len("IMAGES ") :]))


def test_every_rule_runs_in_the_configured_image(tmp_path):
    images = _rule_images(tmp_path)
    assert set(images) >= {"build_graph", "record_trace", "evaluate", "plot", "plot_sfs", "summary"}
    assert set(images.values()) == {None}
    sif = "/shared/images/phasic-0.1.0.sif"
    images = _rule_images(tmp_path, container=sif)
    assert set(images.values()) == {sif}


def _engine():
    for name in ("podman", "docker"):
        path = shutil.which(name)
        if path and subprocess.run([path, "info"], capture_output=True).returncode == 0:
            return path
    return None


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_image_builds_and_runs_the_workflow(tmp_path):
    """Builds the image from a `git archive` of the checkout on PHASIC_TEST_CONTAINER_BASE (a base
    image the engine has or can pull; extra engine arguments in PHASIC_TEST_CONTAINER_ARGS), then
    runs `phasic --version` and the tiny workflow inside it, as a user without Apptainer would."""
    base = os.environ.get("PHASIC_TEST_CONTAINER_BASE")
    engine = _engine()
    if base is None or engine is None:
        pytest.skip(
            "needs PHASIC_TEST_CONTAINER_BASE (a base image, e.g. docker.io/library/python:3.11-slim-bookworm) "
            f"and a working podman or docker (found: {engine})"
        )
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout (the image is built from git archive HEAD)")
    args = shlex.split(os.environ.get("PHASIC_TEST_CONTAINER_ARGS", ""))
    context = tmp_path / "src"
    context.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(context)], input=archive, check=True)
    # the recipe under test is the working tree's (it may be newer than HEAD)
    (context / "workflows" / "container").mkdir(parents=True, exist_ok=True)
    shutil.copy(DOCKERFILE, context / "workflows" / "container" / "Dockerfile")
    tag = "localhost/phasic-test:latest"
    build = [engine, "build", *args, "--network", "host", "--build-arg", f"BASE={base}", "-f"]
    build += [str(context / "workflows" / "container" / "Dockerfile"), "-t", tag, str(context)]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    def run(*cmd, mounts=()):
        volumes = [x for m in mounts for x in ("-v", f"{m}:{m}")]
        return subprocess.run(
            [engine, "run", "--rm", *args, "--network", "none", *volumes, tag, *cmd],
            capture_output=True,
            text=True,
            timeout=600,
        )

    proc = run("phasic", "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == "phasic 0.1.0", proc.stdout + proc.stderr
    work = tmp_path / "work"
    work.mkdir()
    (work / "models.py").write_text(WORKFLOW_MODELS_PY)
    write_config(work / "c.yaml", [{"name": "k", "file": "models.py", "callback": "kingman", "theta": [[1.0]]}])
    cmd = ["snakemake", "-s", "/opt/phasic-workflow/Snakefile", "-d", str(work), "--cores", "2", "--configfile"]
    cmd += [str(work / "c.yaml"), "--config", f"cache_dir={work / 'cache'}", "--", "results/summary.tsv"]
    proc = run(*cmd, mounts=(work,))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    header, row = Path(work / "results" / "summary.tsv").read_text().splitlines()[:2]
    summary = dict(zip(header.split("\t"), row.split("\t")))
    # Kingman, 4 lineages, rate 1 per pair: E[T] = 2 (1 - 1/4)
    assert float(summary["expectation_min"]) == pytest.approx(1.5, rel=1e-12)
    subprocess.run([engine, "rmi", tag], capture_output=True)
