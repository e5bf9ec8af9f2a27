"""The config's `fits:` entries, checked and resolved at parse time (loaded by
workflows/rules/common.smk; plain Python, tested on its own).

Each entry fits a Demes model's parameters to an observed SFS (a .fs file, a .trees file, or a
VCF with a popmap) with `phasic fit`; every error names the entry (``fit 'name': ...``) and the
offending value, before any job runs.
"""

import math
import re
from pathlib import Path

from phasic.specs import check_samples, short_repr

#: the keys of a fit entry (the schema, workflows/schemas/config.schema.yaml, says the types too)
KEYS = (
    "name",
    "model",
    "options",
    "data",
    "samples",
    "mutation_rate",
    "sequence_length",
    "folded",
    "state_space",
    "method",
    "starts",
    "seed",
    "n_particles",
    "n_iterations",
    "popmap",
    "uncertainty",
    "bootstrap",
    "blocks",
    "scan",
    "resources",
)
REQUIRED = ("name", "model", "options", "data", "samples")
METHODS = ("mle", "svgd")
UNCERTAINTIES = ("hessian", "godambe")
#: data files by kind (their endings)
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".bcf")
SVGD_KEYS = ("n_particles", "n_iterations")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: the log-likelihood scan: points per parameter and half-width in standard errors
SCAN_DEFAULTS = {"points": 21, "width": 3.0}


class FitConfigError(ValueError):
    """A `fits:` entry that cannot be run."""


def _short(value):
    return short_repr(value, 100)


def _search(path, search_dirs):
    """``(absolute path or None, places tried)``: an absolute path as it is, a relative one in
    each of `search_dirs` in order (as model files are found)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return (p if p.is_file() else None), [str(p)]
    tried = []
    for base in search_dirs:
        candidate = (Path(str(base)).expanduser() / p).resolve()
        if str(candidate) in tried:
            continue
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate, tried
    return None, tried


def _int(label, key, value, minimum):
    if type(value) is not int or value < minimum:
        raise FitConfigError(f"{label}: {key!r} must be an integer >= {minimum}, got {_short(value)}")


def _positive(label, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise FitConfigError(f"{label}: {key!r} must be a positive number, got {_short(value)}")


def _file(label, key, entry, search_dirs, what):
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise FitConfigError(f"{label}: {key!r} must be the path of {what}, got {_short(value)}")
    found, tried = _search(value, search_dirs)
    if found is None:
        raise FitConfigError(
            f"{label}: {what} {value!r} not found (looked at {', '.join(map(repr, tried))}); give a path "
            "relative to the config file or the working directory, or an absolute path"
        )
    return str(found)


def _check_model(label, path, samples):
    """The Demes file loads and has every sampled deme."""
    import demes

    try:
        graph = demes.load(path)
    except Exception as exc:  # demes raises several kinds for a file it refuses
        raise FitConfigError(f"{label}: the Demes file {path!r} cannot be read: {exc}") from None
    names = [d.name for d in graph.demes]
    for deme in samples:
        if deme not in names:
            raise FitConfigError(f"{label}: samples name the deme {deme!r}, which {path!r} does not have ({names})")


def _check_options(label, path):
    """The options file is YAML with a non-empty `parameters` list of named entries (phasic fit
    checks the rest: places, bounds, constraints)."""
    import yaml

    try:
        options = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FitConfigError(f"{label}: the options file {path!r} cannot be read: {exc}") from None
    params = options.get("parameters") if isinstance(options, dict) else None
    if not isinstance(params, list) or not params:
        raise FitConfigError(
            f"{label}: the options file {path!r} has no 'parameters' list (moments' Demes options format: "
            "parameters: [{name: ..., values: [...], lower_bound: ..., upper_bound: ...}])"
        )
    for p in params:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise FitConfigError(f"{label}: the options file {path!r} has a parameter without a name: {_short(p)}")


def is_vcf(path):
    return str(path).lower().endswith(VCF_SUFFIXES)


def _check_data(label, path, samples, key="data"):
    """A .fs file's dimensions match the samples (n + 1 per sampled deme, in their order); a
    .trees file (its populations named like the demes) and a VCF (with its popmap) are read by
    the job."""
    if path.endswith(".trees") or is_vcf(path):
        return
    if not path.endswith(".fs"):
        raise FitConfigError(
            f"{label}: {key!r} {path!r} must be a dadi/moments .fs file, a tskit .trees file or a VCF/BCF file "
            "(.vcf, .vcf.gz, .bcf, with a popmap)"
        )
    from phasic.exceptions import PhasicError
    from phasic.inference import read_fs

    try:
        counts, _, _ = read_fs(path)
    except PhasicError as exc:
        raise FitConfigError(f"{label}: {exc}") from None
    shape = tuple(n + 1 for n in samples.values() if n)
    if tuple(counts.shape) != shape:
        raise FitConfigError(
            f"{label}: the SFS in {path!r} has dimensions {tuple(counts.shape)}, the samples {samples} give {shape} "
            "(n + 1 per sampled deme, in the order of 'samples')"
        )


def _check_uncertainty(label, entry, out, search_dirs, samples):
    """`uncertainty`, `bootstrap` (a number of block-bootstrap replicates of .trees data, or a
    list of .fs replicates found like the data file) and `blocks`."""
    method = out["method"]
    uncertainty = entry.get("uncertainty", "hessian")
    if uncertainty not in UNCERTAINTIES:
        raise FitConfigError(
            f"{label}: 'uncertainty' must be one of {', '.join(UNCERTAINTIES)}, got {_short(uncertainty)}"
        )
    if method != "mle":
        for key in ("uncertainty", "bootstrap", "blocks"):
            if key in entry:
                raise FitConfigError(f"{label}: {key!r} goes with method: mle (the method is {method!r})")
        return
    out["uncertainty"] = uncertainty
    bootstrap = entry.get("bootstrap")
    if uncertainty == "godambe" and bootstrap is None:
        raise FitConfigError(
            f"{label}: uncertainty: godambe needs 'bootstrap' (a number of block-bootstrap replicates with .trees "
            "data, or a list of .fs files)"
        )
    if bootstrap is not None and uncertainty != "godambe":
        raise FitConfigError(
            f"{label}: 'bootstrap' goes with uncertainty: godambe (the uncertainty is {uncertainty!r})"
        )
    if type(bootstrap) is int:
        _int(label, "bootstrap", bootstrap, 2)
        if not out["data"].endswith(".trees"):
            raise FitConfigError(
                f"{label}: 'bootstrap' {bootstrap} (block-bootstrap replicates) needs .trees data, the data are "
                f"{entry['data']!r}; give a list of .fs replicates instead"
            )
    elif bootstrap is not None:
        if not isinstance(bootstrap, list) or len(bootstrap) < 2:
            raise FitConfigError(
                f"{label}: 'bootstrap' must be an integer >= 2 or a list of at least 2 .fs files, got {_short(bootstrap)}"
            )
        files = []
        for i, item in enumerate(bootstrap):
            key = f"bootstrap[{i}]"
            path = _file(label, key, {key: item}, search_dirs, "bootstrap replicate")
            if not path.endswith(".fs") or "," in path:
                raise FitConfigError(
                    f"{label}: {key!r} {item!r} must be a dadi/moments .fs file (without ',' in its path)"
                )
            _check_data(label, path, samples, key)
            files.append(path)
        out["bootstrap"] = files
    if "blocks" in entry:
        if type(bootstrap) is not int:
            raise FitConfigError(f"{label}: 'blocks' goes with a number of block-bootstrap replicates ('bootstrap': n)")
        _int(label, "blocks", entry["blocks"], 2)


def extra_inputs(fit):
    """The popmap and bootstrap files of a resolved entry (inputs of its jobs: edits rerun them)."""
    files = [fit["popmap"]] if fit.get("popmap") else []
    if isinstance(fit.get("bootstrap"), list):
        files += fit["bootstrap"]
    return files


def resolve_fit(entry, search_dirs, taken=()):
    """One `fits:` entry checked, with its files made absolute and the defaults filled in."""
    if not isinstance(entry, dict):
        raise FitConfigError(
            f"a fit entry must be a mapping with name, model, options, data, samples; got {_short(entry)}"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise FitConfigError(
            f"the fit entry {_short(entry)} needs a 'name' (letters, digits, '_', '.', '-'; results go to "
            f"results/<name>/), got {_short(name)}"
        )
    label = f"fit {name!r}"
    if name in taken:
        raise FitConfigError(f"{label}: the name is already used by a model or another fit; names must be unique")
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise FitConfigError(f"{label}: unknown key {unknown[0]!r}; the keys of a fit are {', '.join(KEYS)}")
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise FitConfigError(f"{label}: {missing[0]!r} is missing; a fit needs {', '.join(REQUIRED)}")
    samples = entry["samples"]
    check_samples(samples, label, FitConfigError)
    if sum(samples.values()) < 2:
        raise FitConfigError(f"{label}: 'samples' {samples} has fewer than 2 genomes in all")
    out = dict(entry)
    out["model"] = _file(label, "model", entry, search_dirs, "Demes file")
    out["options"] = _file(label, "options", entry, search_dirs, "options file")
    out["data"] = _file(label, "data", entry, search_dirs, "data file")
    _check_model(label, out["model"], samples)
    _check_options(label, out["options"])
    _check_data(label, out["data"], samples)
    if is_vcf(out["data"]) and entry.get("popmap") is None:
        raise FitConfigError(
            f"{label}: the VCF {entry['data']!r} needs a 'popmap' (a file of 'sample deme' lines, found like the data)"
        )
    if entry.get("popmap") is not None:
        if not is_vcf(out["data"]):
            raise FitConfigError(
                f"{label}: 'popmap' goes with VCF data (.vcf, .vcf.gz, .bcf); the data are {entry['data']!r}"
            )
        out["popmap"] = _file(label, "popmap", entry, search_dirs, "popmap file")
    has_mu, has_len = entry.get("mutation_rate") is not None, entry.get("sequence_length") is not None
    if has_mu != has_len:
        raise FitConfigError(
            f"{label}: give both 'mutation_rate' and 'sequence_length' (Poisson likelihood) or neither "
            f"(multinomial); got only {'mutation_rate' if has_mu else 'sequence_length'!r}"
        )
    if has_mu:
        _positive(label, "mutation_rate", entry["mutation_rate"])
        _positive(label, "sequence_length", entry["sequence_length"])
    method = entry.get("method", "mle")
    if method not in METHODS:
        raise FitConfigError(f"{label}: 'method' must be one of {', '.join(METHODS)}, got {_short(method)}")
    out["method"] = method
    _check_uncertainty(label, entry, out, search_dirs, samples)
    for key in SVGD_KEYS:
        if key in entry:
            if method != "svgd":
                raise FitConfigError(f"{label}: {key!r} goes with method: svgd (the method is {method!r})")
            _int(label, key, entry[key], 1)
    if "starts" in entry:
        _int(label, "starts", entry["starts"], 1)
    if entry.get("seed") is not None:
        _int(label, "seed", entry["seed"], 0)
    if "folded" in entry and not isinstance(entry["folded"], bool):
        raise FitConfigError(f"{label}: 'folded' must be true or false, got {_short(entry['folded'])}")
    if entry.get("state_space") not in (None, "sfs", "lineages"):
        raise FitConfigError(
            f"{label}: 'state_space' must be 'sfs' or 'lineages' (or left out), got {_short(entry['state_space'])}"
        )
    scan = entry.get("scan") or {}
    if not isinstance(scan, dict) or set(scan) - set(SCAN_DEFAULTS):
        raise FitConfigError(
            f"{label}: 'scan' takes points and width, e.g. {{points: 21, width: 3}}; got {_short(scan)}"
        )
    scan = {**SCAN_DEFAULTS, **scan}
    _int(label, "scan.points", scan["points"], 3)
    _positive(label, "scan.width", scan["width"])
    out["scan"] = scan
    return out


def resolve_fits(fits, search_dirs, model_names=()):
    """``{name: resolved entry}`` of the config's `fits:` list (None: no fits)."""
    if fits is None:
        return {}
    if not isinstance(fits, list):
        raise FitConfigError(f"config 'fits' must be a list of fit entries, got {_short(fits)}")
    out = {}
    for entry in fits:
        resolved = resolve_fit(entry, search_dirs, taken=[*model_names, *out])
        out[resolved["name"]] = resolved
    return out


def fit_args(fit):
    """The `phasic fit` options of a resolved entry, shell-quoted (the files are the rule's inputs)."""
    import json
    import shlex

    args = ["--samples", json.dumps(fit["samples"], separators=(",", ":")), "--method", fit["method"]]
    if fit.get("mutation_rate") is not None:
        args += ["--mutation-rate", repr(float(fit["mutation_rate"]))]
        args += ["--sequence-length", repr(float(fit["sequence_length"]))]
    if fit.get("folded"):
        args.append("--folded")
    if fit.get("state_space"):
        args += ["--state-space", fit["state_space"]]
    if fit["method"] == "mle":
        args += ["--starts", str(fit.get("starts", 1))]
        args += ["--uncertainty", fit.get("uncertainty", "hessian")]
    if fit.get("popmap"):
        args += ["--popmap", fit["popmap"]]
    bootstrap = fit.get("bootstrap")
    if bootstrap is not None:
        args += ["--bootstrap", str(bootstrap) if type(bootstrap) is int else ",".join(bootstrap)]
    if fit.get("blocks") is not None:
        args += ["--blocks", str(fit["blocks"])]
    if fit.get("seed") is not None:
        args += ["--seed", str(fit["seed"])]
    for key, flag in (("n_particles", "--particles"), ("n_iterations", "--iterations")):
        if fit.get(key) is not None:
            args += [flag, str(fit[key])]
    return " ".join(shlex.quote(a) for a in args)
