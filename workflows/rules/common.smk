# Parse-time set-up shared by the rules: config validation, the model specs, and the store
# paths of their graphs (computed from the specs with phasic's own key function, without
# building anything). Functions only; the rules live in the other .smk files.

import json
import os
import re
import shutil
import sys
from pathlib import Path

from snakemake.utils import validate

import phasic.specs as pm

# Repository root of this workflow (this file is workflows/rules/common.smk); model files
# given relative to it are found also when the workflow runs elsewhere or as a module.
WORKFLOW_DIR = Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parents[1]
RESULTS_DIR = "results"


def _check_models(models, fits=None):
    """Clear errors for malformed model specs before the schema's generic ones. `models` may be
    empty when the config lists fits (a workflow that only fits)."""
    if not isinstance(models, list) or not (models or fits):
        raise pm.ParameterError(
            f"config 'models' must be a non-empty list of model specs (or [] when 'fits' lists fits), "
            f"got {models!r:.100}; see workflows/config/default.yaml"
        )
    for spec in models:
        pm.check_spec(spec)
    names = [spec["name"] for spec in models if "name" in spec]
    if len(names) != len(models):
        missing = [spec for spec in models if "name" not in spec][0]
        raise pm.ParameterError(f"the model spec {missing!r:.100} has no 'name'; give every model a name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise pm.ParameterError(f"model name {dupes[0]!r} is used twice in config 'models'; names must be unique")


def _drop_unasked_examples():
    """The default config's example models and fit come as a set: a config file of one's own
    (--configfile) that lists `models:` but no `fits:` gets no example fit, and one that lists
    `fits:` but no `models:` gets no example models (Snakemake would keep the default list of
    the key the file does not set)."""
    import yaml

    default = (WORKFLOW_DIR / "workflows" / "config" / "default.yaml").resolve()
    given = set()
    for f in workflow.configfiles:
        p = Path(str(f))
        if "source-cache" in p.parts or p.resolve() == default:
            continue
        try:
            data = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError):  # Snakemake itself reports a file it cannot read
            continue
        if isinstance(data, dict):
            given |= set(data)
    if "models" in given and "fits" not in given:
        config["fits"] = []
    elif "fits" in given and "models" not in given:
        config["models"] = []


_drop_unasked_examples()
_check_models(config.get("models"), config.get("fits"))

# relative model files: the config files' directories first (the embedded default config is
# read from Snakemake's source cache, a temporary copy: its models are relative to this
# workflow), then the working directory, then this workflow's directory; `phasic` commands
# given a config file resolve in the same order
SEARCH_DIRS = [
    *dict.fromkeys(
        Path(str(f)).resolve().parent for f in workflow.configfiles if "source-cache" not in Path(str(f)).parts
    ),
    ".",
    WORKFLOW_DIR,
]


def _load_script(name):
    """workflows/scripts/<name>.py (plain Python, tested on its own), also when the workflow
    is used as a module (source_path gives a local copy of a remote workflow's file)."""
    import importlib.util

    path = str(workflow.source_path(f"../scripts/{name}.py"))  # a str subclass: marshal refuses it
    spec = importlib.util.spec_from_file_location(f"phasic_workflow_{name}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


sizing = _load_script("sizing")
fitconf = _load_script("fits")
# the `fits:` entries (workflows/scripts/fits.py): files found like model files, checked
# before the schema so that every error names its fit; results/<fit>/, as models' results/<model>/
FITS = fitconf.resolve_fits(config.get("fits"), SEARCH_DIRS, [m.get("name") for m in config["models"]])
FIT_NAMES = list(FITS)
MLE_FITS = [name for name, fit in FITS.items() if fit["method"] == "mle"]
SVGD_FITS = [name for name, fit in FITS.items() if fit["method"] == "svgd"]
validate(config, "../schemas/config.schema.yaml")


def _ensure_phasic_on_path():
    """Jobs run the `phasic` command: the one installed next to this Python comes first."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if os.path.isfile(os.path.join(bindir, "phasic")) and path.split(os.pathsep)[0] != bindir:
        os.environ.update(PATH=os.pathsep.join([bindir, path]))
    elif shutil.which("phasic") is None:
        raise pm.ParameterError(
            f"the `phasic` command is not on PATH nor next to {sys.executable!r}; "
            "install phasic[workflow] into the environment that runs snakemake"
        )


_ensure_phasic_on_path()


def _deploys(method):
    """Whether Snakemake runs the jobs with `--sdm <method>` (conda, apptainer)."""
    methods = getattr(getattr(workflow, "deployment_settings", None), "deployment_method", ()) or ()
    return any(getattr(m, "name", str(m)).lower() == method for m in methods)


def _set_phasic_source():
    """$PHASIC_SOURCE: where workflows/envs/phasic.yaml has pip install phasic from under
    `--sdm conda` (pip expands it in the env file's `pip:` list). Unset: this workflow's own
    checkout, when it is one; a workflow without phasic's source next to it (used as a module
    from a remote copy) must be told where phasic is."""
    if os.environ.get("PHASIC_SOURCE"):
        return
    if (WORKFLOW_DIR / "pyproject.toml").is_file() and (WORKFLOW_DIR / "phasic" / "__init__.py").is_file():
        os.environ.update(PHASIC_SOURCE=str(WORKFLOW_DIR))
    elif _deploys("conda"):
        raise pm.ParameterError(
            f"--sdm conda installs phasic from $PHASIC_SOURCE, and {WORKFLOW_DIR} is no phasic checkout; "
            "set PHASIC_SOURCE to the absolute path of phasic's source directory or of a phasic wheel"
        )


_set_phasic_source()

CACHE_DIR = str(pm.cache_root(config.get("cache_dir")))
# jobs (also on cluster nodes: the Slurm executor exports this environment) and library calls
# in them use the same store
os.environ.update(PHASIC_CACHE_DIR=CACHE_DIR)
# resources every model gets unless it or the config's top-level `resources` sets them; the
# mem_mb and runtime of record_trace and evaluate follow the graph's size instead (sizing.py)
CONFIG_RESOURCES = config.get("resources") or {}
DEFAULT_RESOURCES = {"mem_mb": 1000, "runtime": 15, "threads": 1, **CONFIG_RESOURCES}
MODELS = {spec["name"]: pm.resolve_spec(spec, SEARCH_DIRS) for spec in config["models"]}
MODEL_NAMES = list(MODELS)
GRAPH_ENTRY = {name: str(pm.ModelSpec.from_dict(spec).entry_path(CACHE_DIR)) for name, spec in MODELS.items()}
# graph key -> the spec that builds it (models with identical specs share one entry)
SPEC_OF_KEY = {pm.entry_key(path)[2]: MODELS[name] for name, path in GRAPH_ENTRY.items()}
SFS_MODELS = [name for name, spec in MODELS.items() if spec.get("rewards") == "sfs"]
# models given by a Demes YAML file (`demes:`): resolve_spec made them the callback spec of the
# graph phasic.demography.from_demes(..., cache=True) builds, so build_graph and record_trace
# treat them as any model; they are evaluated by evaluate_demes (with sfs.tsv) and drawn by
# plot_demes
DEMES_MODELS = [name for name, spec in MODELS.items() if "demes" in spec]
CALLBACK_MODELS = [name for name in MODEL_NAMES if name not in DEMES_MODELS]


def _check_built_models():
    """What can be checked before any job runs: a model whose graph is already in the store
    must be given parameter vectors that fit it (the entry records its parameter count). Done
    once, by the process that plans the run, not again by every job (each re-reads the workflow)."""
    from phasic.store import Store

    if getattr(workflow, "remote_exec", False) or getattr(workflow, "subprocess_exec", False):
        return

    store = Store(CACHE_DIR)
    for name, spec in MODELS.items():
        path = GRAPH_ENTRY[name]
        if name in DEMES_MODELS or not os.path.isfile(path):  # a Demes model: no theta to check
            continue
        found = store.get("graphs", pm.entry_key(path)[2])
        if found is None:  # unreadable or damaged: the build job rebuilds it and reports
            continue
        thetas = pm.theta_matrix(spec)
        source = "theta_grid" if spec.get("theta_grid") is not None else "theta"
        pm.check_theta_dim(thetas, int(found[1].get("theta_dim") or 0), name, source)


_check_built_models()


def _model_regex(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def build_spec(wildcards):
    """Canonical JSON of the spec that builds the graph with key prefix+rest."""
    key = wildcards.prefix + wildcards.rest
    spec = SPEC_OF_KEY.get(key)
    if spec is None:
        raise pm.ParameterError(
            f"no configured model has the graph key {key!r}; the workflow only builds the graphs of "
            "the models in its config"
        )
    keep = ("name", "file", "module", "callback", "params", "ipv", "discrete", "theta_dim", "max_vertices")
    return pm.spec_json({k: spec[k] for k in keep if k in spec})


def model_resource(name, what):
    """A resource of a model: its own `resources`, else the config's, else the default."""
    return MODELS[name].get("resources", {}).get(what, DEFAULT_RESOURCES[what])




def sized_resource(step, what):
    """The resource `what` of the jobs of `step` (record_trace or evaluate), as a callable for
    their `resources`: the model's own `resources`, else the config's top-level `resources`,
    else the size sizing.py computes from the graph's store entry. Snakemake calls it again when the job is ready to run, i.e. once
    build_graph has stored the entry; before that (a dry run from an empty store, or a Slurm
    group job that builds the graph itself) it gives sizing.FLOOR."""

    def resource(wildcards, input):
        name = wildcards.model
        explicit = MODELS[name].get("resources", {}).get(what, CONFIG_RESOURCES.get(what))
        if explicit is not None:
            return explicit
        return sizing.resources(step, MODELS[name], str(input.graph))[what]

    return resource


def key_resource(wildcards, what):
    return model_resource(build_spec_name(wildcards), what)


def build_spec_name(wildcards):
    return json.loads(build_spec(wildcards))["name"]


def build_log(name):
    """The log of model `name`'s build_graph job (the rule's log is named by the graph key, as its
    output is; models with identical specs share one)."""
    key = pm.entry_key(GRAPH_ENTRY[name])[2]
    return f"logs/build_graph/{key[:2]}/{key[2:]}.log"


def model_logs(name):
    """Where model `name`'s logs are: logs/<model>/ (build_graph.log, record_trace.log, ...)."""
    return f"logs/{name}/"


def link_build_logs():
    """logs/<model>/build_graph.log (and .benchmark.tsv) -> the key-named log (and benchmark) of
    the model's build job, for every model whose build ran (so every log of a model is found
    under logs/<model>/)."""
    for name in MODEL_NAMES:
        log = build_log(name)
        for target, link_name in ((log, "build_graph.log"), (log[: -len(".log")] + ".benchmark.tsv", "build_graph.benchmark.tsv")):
            target = Path(target)
            if not target.is_file():
                continue
            link = Path(model_logs(name)) / link_name
            relative = os.path.relpath(target, link.parent)
            if link.is_symlink() and os.readlink(link) == relative:
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(relative)


def graph_entry(wildcards):
    return GRAPH_ENTRY[wildcards.model]


def store_root(path):
    """The store root of an entry path (<root>/graphs/xx/<62 hex>.h5)."""
    return str(pm.entry_key(path)[0])


def evaluation_args(wildcards):
    """The evaluation settings of a model as command-line options (shell-quoted)."""
    import shlex

    spec = MODELS[wildcards.model]
    args = ["--moments", str(spec.get("moments", 2))]
    for key, flag in (("theta", "--theta"), ("theta_grid", "--theta-grid")):
        if spec.get(key) is not None:
            args += [flag, json.dumps(spec[key], separators=(",", ":"))]
    if spec.get("theta_names"):
        args += ["--theta-names", ",".join(spec["theta_names"])]
    rewards = pm.rewards_reference(spec)
    if rewards is not None:
        args += ["--rewards", rewards]
    times = spec.get("times", "auto")
    args += ["--times", times if isinstance(times, str) else json.dumps(times, separators=(",", ":"))]
    args += ["--method", spec.get("sweep", "auto"), "--dask-threshold", str(config.get("dask_threshold", 20000))]
    return " ".join(shlex.quote(a) for a in args)


def demes_args(wildcards):
    """The Demes file, samples and evaluation settings of a Demes model as `phasic evaluate`
    options (shell-quoted)."""
    import shlex

    spec = MODELS[wildcards.model]
    args = ["--demes", spec["demes"], "--samples", json.dumps(spec["samples"], separators=(",", ":"))]
    args += ["--state-space", spec["state_space"], "--moments", str(spec.get("moments", 2))]
    times = spec.get("times", "auto")
    args += ["--times", times if isinstance(times, str) else json.dumps(times, separators=(",", ":"))]
    return " ".join(shlex.quote(a) for a in args)


# the inputs and resources of a fit's jobs (workflows/rules/fit.smk)
def fit_input(key):
    return lambda wildcards: FITS[wildcards.fit][key]


def fit_extra_inputs(wildcards):
    """A fit's popmap and bootstrap files (inputs, so that edits rerun the fit)."""
    return fitconf.extra_inputs(FITS[wildcards.fit])


def fit_resource(what):
    """A fit's own `resources`, else the config's, else the default (1000 MB, 15 minutes)."""
    return lambda wildcards: FITS[wildcards.fit].get("resources", {}).get(what, DEFAULT_RESOURCES[what])


wildcard_constraints:
    model=_model_regex(MODEL_NAMES),
    fit=_model_regex(FIT_NAMES),
