"""Model specs: the small dictionaries that name a graph in configs and on the command line.

A *model spec* says where a state-space callback lives and how ``Graph`` is called with it::

    name: two_island               # a label (results/<name>/... in the workflow)
    file: workflows/models/two_island.py   # or  module: mypackage.models
    callback: two_island           # the function's name in that file or module
    params: {}                     # keyword parameters of the callback (part of the graph key)
    ipv: [2, 1]                    # optional: overrides the callback's @with_ipv
    discrete: false                # optional Graph options: discrete, theta_dim, max_vertices
    theta_grid: [[1.0], [0.1, 1.0, 10.0]]   # parameter vectors to evaluate (or theta: [[...], ...])

:func:`load_model` turns a spec into ``(callback, kwargs)`` such that
``Graph(callback, **kwargs)`` builds the graph, and :meth:`ModelSpec.from_dict` into the one
object that stands for a model everywhere (the library's Dask builds, the command line, the
Snakemake rules): a callback and ``Graph``'s keyword arguments, with the store key
``Graph(callback, cache=True, **kwargs)`` uses (:attr:`ModelSpec.key`, computed without
building anything) and the entry's path (:meth:`ModelSpec.entry_path`).  The Snakemake workflow and the ``phasic graph build`` /
``phasic trace record`` / ``phasic evaluate`` commands both go through this module, so a graph
built by either one is found by the other and by library calls.

A *Demes model* names a Demes YAML file instead of a callback::

    name: im
    demes: workflows/models/im.yaml    # relative paths are found like `file:`
    samples: {A: 4, B: 4}              # haploid genomes per deme
    state_space: sfs                   # optional: sfs or lineages (default: from_demes' choice)

:func:`resolve_spec` turns it into the callback spec of the graph
``phasic.demography.from_demes(file, samples, cache=True)`` builds (same store key); it takes
no ``theta``/``theta_grid`` (the Demes file holds the parameters).

Relative model files are looked up in each of ``search_dirs`` in order, ``"."`` being the working
directory (see :func:`resolve_spec`): the workflow and the command line both pass the config
file's directory first, then ``"."``, then their own places.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import json
import keyword
import os
import re
import sys
from pathlib import Path

import numpy as np

from phasic.exceptions import ParameterError
from phasic.keys import graph_key, split_graph_kwargs

__all__ = [
    "SPEC_KEYS",
    "SPEC_OPTIONS",
    "DEMES_SPEC_KEYS",
    "read_spec",
    "check_spec",
    "resolve_spec",
    "load_callback",
    "graph_kwargs",
    "load_model",
    "ModelSpec",
    "cache_root",
    "theta_matrix",
    "theta_names",
    "check_theta_dim",
    "reward_vectors",
    "entry_key",
    "spec_json",
    "rewards_reference",
]

#: Every key a model spec may have.
SPEC_KEYS = (
    "name",
    "file",
    "module",
    "callback",
    "params",
    "ipv",
    "discrete",
    "theta_dim",
    "max_vertices",
    "theta",
    "theta_grid",
    "theta_names",
    "rewards",
    "moments",
    "times",
    "sweep",
    "resources",
    "demes",
    "samples",
    "state_space",
)
#: The keys of a Demes model's spec (``demes:`` a Demes YAML file instead of a callback);
#: :func:`resolve_spec` adds the callback keys of the graph :func:`phasic.demography.from_demes`
#: builds (``module``, ``callback``, ``ipv``, ``params``).
DEMES_SPEC_KEYS = ("name", "demes", "samples", "state_space", "moments", "times", "resources")
#: The module of the library callbacks a Demes model's graph is built with.
DEMES_MODULE = "phasic.demography._spaces"
#: Spec keys passed to ``Graph`` as options (``params`` are passed as keyword parameters).
#: The ``Graph`` options a model spec may set (next to its ``params``).
SPEC_OPTIONS = ("ipv", "discrete", "theta_dim", "max_vertices")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ENTRY_RE = re.compile(r"^[0-9a-f]{62}\.h5$")
_LOADED: dict = {}

#: a YAML document may hold at most this many nodes, counting every alias as the copy it
#: stands for (a few hundred bytes of nested aliases can otherwise stand for billions)
MAX_YAML_NODES = 1_000_000
#: the most parameter vectors ``theta``/``theta_grid`` may ask for
MAX_THETAS = 10_000_000


def short_repr(value, limit=120):
    """``repr(value)`` cut to about `limit` characters, without formatting all of a large
    (or alias-expanded) object first.

    Examples
    --------
    >>> short_repr(list(range(100)), 30)
    '[0, 1, 2, 3, 4, 5, ...]'
    """
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 6, 6, 6, 6
    r.maxstring = r.maxother = r.maxlong = max(limit // 2, 12)
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expanded_size(root, source):
    """Nodes of a composed YAML document with every alias counted in full; a ParameterError
    past MAX_YAML_NODES or for an alias inside its own anchor (a cycle)."""
    import yaml

    size = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = (
                node.value
                if isinstance(node, yaml.SequenceNode)
                else [x for kv in node.value for x in kv]
                if isinstance(node, yaml.MappingNode)
                else ()
            )
            total = 1 + sum(size[id(c)] for c in children)
            if total > MAX_YAML_NODES:
                raise ParameterError(
                    f"{source} expands to more than {MAX_YAML_NODES} YAML nodes through its aliases "
                    f"(*name references to &name anchors); refusing it (a YAML alias bomb?)"
                )
            size[key] = total
            continue
        if key in size:
            if size[key] is None:
                raise ParameterError(
                    f"{source} has an alias inside its own anchor (a recursive "
                    f"structure, {node.start_mark}); write the data out"
                )
            continue
        size[key] = None  # in progress
        stack.append((node, True))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((c, False) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((c, False) for kv in node.value for c in kv)
    return size.get(id(root), 0)


def load_yaml(text, source="the YAML text"):
    """``yaml.safe_load(text)`` that refuses documents expanding (through aliases) to more
    than :data:`MAX_YAML_NODES` nodes, recursive aliases and too deep nesting.

    Parameters
    ----------
    text : str
        JSON or YAML text.
    source : str
        What the text is, for messages (``"'models.yaml'"``).

    Raises
    ------
    ParameterError
        For a document that is too large once expanded, recursive or nested too deeply.
    yaml.YAMLError
        For malformed YAML.
    """
    import yaml

    class _BoundedLoader(yaml.SafeLoader):
        def compose_document(self):
            node = super().compose_document()
            if node is not None:
                _expanded_size(node, source)
            return node

    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except RecursionError:
        raise ParameterError(f"{source} is nested too deeply to read") from None


def _label(spec):
    name = spec.get("name") if isinstance(spec, dict) else None
    return f"model {short_repr(name)}" if name else "the model spec"


def read_spec(text, model=None):
    """Parse a model spec given as JSON/YAML text or as ``@path`` to a JSON/YAML file.

    Parameters
    ----------
    text : str
        JSON or YAML text of one spec, or ``@FILE``.  The document may also be a workflow
        config holding ``models: [...]``; ``model`` then picks one by name.
    model : str, optional
        The spec's ``name`` in a ``models`` list.

    Returns
    -------
    dict

    Examples
    --------
    >>> read_spec('{"name": "k", "file": "k.py", "callback": "kingman"}')["callback"]
    'kingman'
    """
    import yaml

    source = "the --spec text"
    if isinstance(text, str) and text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ParameterError(
                f"cannot read the model spec file {str(path)!r}: {exc.strerror or exc}; "
                "give an existing JSON or YAML file"
            ) from None
        source = repr(str(path))
    try:
        doc = load_yaml(text, source)
    except yaml.YAMLError as exc:
        raise ParameterError(
            f"{source} is not valid JSON/YAML ({str(exc)[:400]}); give one model spec "
            'like {"name": "m", "file": "m.py", "callback": "f"}'
        ) from None
    if isinstance(doc, dict) and "models" in doc and "callback" not in doc:
        models = doc["models"]
        if not isinstance(models, list):
            raise ParameterError(f"'models' in {source} must be a list of model specs, got {short_repr(models, 80)}")
        names = [m.get("name") for m in models if isinstance(m, dict)]
        if model is None:
            if len(models) != 1:
                raise ParameterError(f"{source} holds the models {short_repr(names)}; pick one with --model NAME")
            doc = models[0]
        else:
            picked = [m for m in models if isinstance(m, dict) and m.get("name") == model]
            if not picked:
                raise ParameterError(f"no model named {model!r} in {source}; it holds {short_repr(names)}")
            doc = picked[0]
    elif model is not None and isinstance(doc, dict) and doc.get("name") not in (None, model):
        raise ParameterError(f"{source} is the model {doc.get('name')!r}, not {model!r}")
    return check_spec(doc)


def check_spec(spec):
    """Check a spec's shape (types and required keys) and return it as a new dict.

    Raises
    ------
    ParameterError
        Naming the offending key and value and saying what to write instead.
    """
    if not isinstance(spec, dict):
        raise ParameterError(
            f"a model spec must be a mapping with name, file (or module) and callback, got {short_repr(spec, 120)}"
        )
    spec = dict(spec)
    label = _label(spec)
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ParameterError(f"{label}: unknown key {unknown[0]!r}; the keys are {', '.join(SPEC_KEYS)}")
    name = spec.get("name")
    if name is not None and not (isinstance(name, str) and _NAME_RE.match(name)):
        raise ParameterError(
            f"model name {short_repr(name)} must be letters, digits, '_', '-' or '.' (it names the results directory)"
        )
    if "demes" in spec:
        return _check_demes_spec(spec, label)
    if ("file" in spec) == ("module" in spec):
        raise ParameterError(
            f"{label}: give exactly one of 'file' (a .py path) or 'module' "
            f"(an importable module name); got "
            f"{short_repr({k: spec[k] for k in ('file', 'module') if k in spec})}"
        )
    where = spec.get("file", spec.get("module"))
    if not isinstance(where, str) or not where:
        raise ParameterError(f"{label}: 'file'/'module' must be a non-empty string, got {short_repr(where)}")
    cb = spec.get("callback")
    if not (isinstance(cb, str) and cb.isidentifier() and not keyword.iskeyword(cb)):
        raise ParameterError(
            f"{label}: 'callback' must be the name of a function in {short_repr(where)}, got {short_repr(cb)}"
        )
    params = spec.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(k, str) and k.isidentifier() for k in params):
        raise ParameterError(f"{label}: 'params' must map keyword names to values, got {short_repr(params, 120)}")
    spec["params"] = params
    for key, kind in (("discrete", bool), ("theta_dim", int), ("max_vertices", int), ("moments", int)):
        value = spec.get(key)
        if value is not None and (type(value) is not kind or (kind is int and value < 1)):
            what = "true or false" if kind is bool else "a positive integer"
            raise ParameterError(f"{label}: {key!r} must be {what}, got {short_repr(value)}")
    if spec.get("sweep") not in (None, "auto", "batch", "dask"):
        raise ParameterError(f"{label}: 'sweep' must be 'auto', 'batch' or 'dask', got {short_repr(spec['sweep'])}")
    if spec.get("theta") is not None and spec.get("theta_grid") is not None:
        raise ParameterError(
            f"{label}: give 'theta' (a list of vectors) or 'theta_grid' (one list of values per dimension), not both"
        )
    rewards = spec.get("rewards")
    if rewards is not None and not (isinstance(rewards, str) and rewards):
        raise ParameterError(
            f"{label}: 'rewards' must be 'sfs', 'columns' or the name of a function "
            f"in the model file, got {short_repr(rewards)}"
        )
    return spec


def _check_demes_spec(spec, label):
    """check_spec for a Demes model: ``demes`` (a path), ``samples``, ``state_space``; no
    callback keys (except those :func:`resolve_spec` puts there) and no parameter vectors."""
    resolved = spec.get("module") == DEMES_MODULE
    for key in sorted(set(spec) - set(DEMES_SPEC_KEYS)):
        if resolved and key in ("module", "callback", "ipv", "params"):
            continue
        if key == "params" and not spec[key]:  # the schema's default, {}
            continue
        if key in ("theta", "theta_grid", "theta_names"):
            raise ParameterError(
                f"{label}: a Demes model takes no {key!r}: its parameters (sizes, times, migration "
                "rates) come from its Demes file; drop it, or edit the Demes file"
            )
        raise ParameterError(
            f"{label}: {key!r} does not go with 'demes' (the graph is made from the Demes file); "
            f"a Demes model has the keys {', '.join(DEMES_SPEC_KEYS)}"
        )
    demes = spec["demes"]
    if not isinstance(demes, str) or not demes:
        raise ParameterError(f"{label}: 'demes' must be the path of a Demes YAML file, got {short_repr(demes)}")
    check_samples(spec.get("samples"), label)
    if spec.get("state_space") not in (None, "sfs", "lineages"):
        raise ParameterError(
            f"{label}: 'state_space' must be 'sfs' or 'lineages' (or left out), got {short_repr(spec['state_space'])}"
        )
    value = spec.get("moments")
    if value is not None and (type(value) is not int or value < 1):
        raise ParameterError(f"{label}: 'moments' must be a positive integer, got {short_repr(value)}")
    spec.setdefault("params", {})
    return spec


def check_samples(samples, label, error=ParameterError):
    """Refuses (raising `error`, naming `label`) `samples` that are not a non-empty mapping of
    deme names to haploid genome counts (integers >= 0)."""
    if (
        not isinstance(samples, dict)
        or not samples
        or not all(isinstance(k, str) for k in samples)
        or not all(type(v) is int and v >= 0 for v in samples.values())
    ):
        raise error(
            f"{label}: 'samples' must map deme names to numbers of haploid genomes (integers >= 0), "
            f"e.g. {{A: 4, B: 4}}; got {short_repr(samples)}"
        )


def _resolve_demes(spec, search_dirs):
    """A Demes model's spec with its file made absolute and the callback keys of the graph
    ``from_demes(file, samples, state_space, cache=True)`` builds (same graph key)."""
    label = _label(spec)
    found, tried = _search(spec["demes"], search_dirs)
    if found is None:
        raise ParameterError(
            f"{label}: Demes file {spec['demes']!r} not found (looked at {', '.join(map(repr, tried))}); "
            "give a path relative to the config file or the working directory, or an absolute path"
        )
    try:
        from phasic.demography import graph_spec
    except ImportError as exc:  # demes missing
        raise ParameterError(f"{label}: a Demes model needs the demes package ({exc}); pip install demes") from None
    try:
        made = graph_spec(str(found), spec["samples"], spec.get("state_space"))
    except ParameterError as exc:
        try:
            again = type(exc)(f"{label} (Demes file {str(found)!r}): {exc}")
        except Exception:
            again = ParameterError(f"{label} (Demes file {str(found)!r}): {exc}")
        raise again from None
    spec.update(
        demes=str(found),
        state_space=made["state_space"],
        module=made["module"],
        callback=made["callback"].__name__,
        ipv=list(made["ipv"]),
        params=made["params"],
    )
    return spec


def _search(path, search_dirs):
    """``(found or None, places tried)`` for a model file: an absolute path as it is; a relative
    one in each of `search_dirs` in order, ``"."`` standing for the working directory (tried
    first when `search_dirs` does not place it). Each place is tried and listed once."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p if p.is_file() else None, [str(p)]
    dirs = [str(d) for d in (search_dirs or ())]
    if "." not in dirs:
        dirs.insert(0, ".")
    tried = []
    for base in dirs:
        candidate = (Path(base).expanduser() / p).resolve()
        if str(candidate) in tried:
            continue
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate, tried
    return None, tried


def resolve_spec(spec, search_dirs=()):
    """Check ``spec`` and make its ``file`` (or ``demes``) absolute.

    A Demes model (``demes: FILE.yaml`` with ``samples`` and optionally ``state_space``) also
    gets the ``module``, ``callback``, ``ipv`` and ``params`` of the graph
    ``phasic.demography.from_demes(FILE, samples, state_space, cache=True)`` builds
    (:func:`phasic.demography.graph_spec`), so its graph key is the one that call uses; its
    ``state_space`` is filled in with ``from_demes``' choice.

    A relative ``file`` is looked up in each of ``search_dirs`` in order (``"."`` is the working
    directory, tried first unless ``search_dirs`` places it): the workflow and the command line
    both pass the config (or spec) file's directory first, then ``"."``, then their own
    places, so a config resolves its models the same way in both.

    Returns
    -------
    dict
        A new spec; ``file`` (``demes``) is an absolute path.

    Raises
    ------
    ParameterError
        For a missing file, or (a Demes model) a Demes file that is not valid, samples naming
        a deme it lacks or too few genomes: the message names the model.
    """
    spec = check_spec(spec)
    if "demes" in spec:
        return _resolve_demes(spec, search_dirs)
    if "file" in spec:
        found, tried = _search(spec["file"], search_dirs)
        if found is None:
            raise ParameterError(
                f"{_label(spec)}: model file {spec['file']!r} not found (looked at "
                f"{', '.join(map(repr, tried))}); give a path relative to the config file or the "
                "working directory, or an absolute path"
            )
        spec["file"] = str(found)
    return spec


def _import_file(path):
    path = Path(path).resolve()
    module = _LOADED.get(path)
    if module is not None:
        return module
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_phasic_model_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ParameterError(f"cannot import {str(path)!r} as Python code; a model file must be a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ParameterError(
            f"importing the model file {str(path)!r} failed: {type(exc).__name__}: {exc}; "
            "fix the file (try: python " + str(path) + ")"
        ) from exc
    _LOADED[path] = module
    return module


def _module_of(spec, search_dirs=()):
    spec = resolve_spec(spec, search_dirs)
    if "file" in spec:
        return _import_file(spec["file"]), spec["file"]
    try:
        return importlib.import_module(spec["module"]), spec["module"]
    except ImportError as exc:
        raise ParameterError(
            f"{_label(spec)}: cannot import module {spec['module']!r} ({exc}); "
            "install it or put it on PYTHONPATH, or use file: path/to/model.py"
        ) from exc


def load_callback(spec, search_dirs=()):
    """The callback function a spec names (its file or module is imported once per process).

    Raises
    ------
    ParameterError
        When the file/module is missing or fails to import, or has no such function.
    """
    module, where = _module_of(spec, search_dirs)
    name = spec["callback"]
    func = getattr(module, name, None)
    if func is None or not callable(func):
        defined = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )
        problem = "is not defined" if func is None else f"is {type(func).__name__!r}, not a function"
        raise ParameterError(
            f"{_label(spec)}: callback {short_repr(name)} {problem} in {short_repr(where)} "
            f"(its functions: {', '.join(defined) or 'none'}); fix 'callback'"
        )
    return func


def graph_kwargs(spec):
    """Keyword arguments of ``Graph(callback, **kwargs)`` for a spec: its params and options."""
    spec = check_spec(spec)
    kwargs = dict(spec["params"])
    clash = sorted(
        set(kwargs) & set(SPEC_OPTIONS + ("cache", "graph_cache", "hierarchical", "model", "indexer", "state_length"))
    )
    if clash:
        raise ParameterError(
            f"{_label(spec)}: params may not contain the Graph option {clash[0]!r}; "
            "give it as a key of the model spec itself"
        )
    for key in SPEC_OPTIONS:
        if spec.get(key) is not None:
            kwargs[key] = spec[key]
    return kwargs


def load_model(spec, search_dirs=()):
    """``(callback, kwargs)`` such that ``Graph(callback, **kwargs)`` builds the spec's graph.

    Examples
    --------
    ::

        cb, kw = load_model({"file": "workflows/models/kingman.py", "callback": "kingman"})
        g = phasic.Graph(cb, cache=True, **kw)
    """
    spec = resolve_spec(spec, search_dirs)  # a Demes model: its callback keys
    return load_callback(spec, search_dirs), graph_kwargs(spec)


def cache_root(cache_dir=None):
    """Absolute store root: ``cache_dir``, else ``$PHASIC_CACHE_DIR``, else ``~/.phasic_cache``."""
    from phasic.store import default_root

    root = Path(cache_dir).expanduser() if cache_dir else default_root()
    return Path(os.path.abspath(root))


def entry_key(path):
    """``(store root, kind, key)`` of an entry path ``<root>/<kind>/<xx>/<62 hex>.h5``."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    if not (
        _ENTRY_RE.match(p.name)
        and re.fullmatch(r"[0-9a-f]{2}", p.parent.name)
        and p.parent.parent.name in ("graphs", "traces")
    ):
        raise ParameterError(
            f"{str(path)!r} is not a store entry path; expected <cache>/graphs/<2 hex digits>/<62 hex digits>.h5"
        )
    return p.parents[2], p.parent.parent.name, p.parent.name + p.name[:-3]


# ------------------------------------------------------------------ evaluation settings
def _axis(values, label, i):
    if isinstance(values, dict):
        unknown = sorted(set(values) - {"start", "stop", "num"})
        if unknown or "stop" not in values:
            raise ParameterError(
                f"{label}: theta_grid axis {i} {short_repr(values)} must be a list of numbers or {{start, stop, num}}"
            )
        start, stop, num = values.get("start", 0.0), values["stop"], values.get("num", 10)
        if not (isinstance(num, int) and not isinstance(num, bool) and 1 <= num <= MAX_THETAS):
            raise ParameterError(
                f"{label}: theta_grid axis {i} has num={short_repr(num)}; give a positive integer up to {MAX_THETAS}"
            )
        return np.linspace(float(start), float(stop), num)
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        return np.array([float(values)])
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1 or arr.size == 0 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arr):
        raise ParameterError(f"{label}: theta_grid axis {i} {short_repr(values)} must be a non-empty list of numbers")
    return np.asarray(values, dtype=np.float64)


def theta_matrix(spec=None, theta=None, theta_grid=None):
    """The parameter vectors a spec asks for, as a ``(B, p)`` array, or None when it has none.

    ``theta`` is a list of vectors (a single vector is one row); ``theta_grid`` has one list of
    values (or ``{start, stop, num}``) per dimension and means their Cartesian product, the
    first dimension varying slowest.

    Examples
    --------
    >>> theta_matrix(theta_grid=[[1.0], [0.5, 2.0]]).tolist()
    [[1.0, 0.5], [1.0, 2.0]]
    """
    spec = spec or {}
    label = _label(spec)
    theta = spec.get("theta") if theta is None else theta
    theta_grid = spec.get("theta_grid") if theta_grid is None else theta_grid
    if theta is not None and theta_grid is not None:
        raise ParameterError(f"{label}: give theta or theta_grid, not both")
    if theta_grid is not None:
        if not isinstance(theta_grid, (list, tuple)) or not theta_grid:
            raise ParameterError(
                f"{label}: theta_grid {short_repr(theta_grid)} must be a non-empty list with one "
                "list of values per parameter"
            )
        axes = [_axis(a, label, i) for i, a in enumerate(theta_grid)]
        total = 1
        for a in axes:
            total *= a.size
        if total > MAX_THETAS:
            raise ParameterError(
                f"{label}: theta_grid {short_repr(theta_grid)} is the product of "
                f"{[a.size for a in axes]} values, {total} parameter vectors; at most "
                f"{MAX_THETAS} are evaluated, give fewer values per axis"
            )
        return np.array(list(itertools.product(*axes)), dtype=np.float64).reshape(-1, len(axes))
    if theta is None:
        return None
    try:
        arr = np.array(theta, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(
            f"{label}: theta {short_repr(theta, 120)} must be a list of equally long lists of numbers"
        ) from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.size == 0:
        raise ParameterError(f"{label}: theta {short_repr(theta, 120)} must be a list of parameter vectors")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{label}: theta {short_repr(theta, 120)} has non-finite entries")
    return arr


def check_theta_dim(thetas, p, name, source):
    """Refuse parameter vectors that do not fit a graph with `p` parameters.

    Parameters
    ----------
    thetas : numpy.ndarray or None
        ``(B, q)`` parameter vectors (:func:`theta_matrix`), or None when none were given.
    p : int
        The graph's parameter count (0 for a graph of numbers).
    name : str
        The model's name, for the message.
    source : {"theta", "theta_grid", "--theta", "--theta-grid"}
        Where the vectors came from: a key of the model's config entry or a command-line flag,
        so the message says what to change.

    Raises
    ------
    ParameterError
        Naming the model, both sizes and the key or flag to fix.

    Examples
    --------
    >>> import numpy as np
    >>> check_theta_dim(np.ones((3, 1)), 2, "islands", "theta_grid")
    Traceback (most recent call last):
    ...
    phasic.exceptions.ParameterError: model 'islands': theta vectors have length 1, its graph has 2 parameters; set `theta_grid` with 2 axes (one list of values per parameter)
    """
    fix = {
        "theta": f"set `theta` to vectors of {p} numbers",
        "theta_grid": f"set `theta_grid` with {p} axes (one list of values per parameter)",
        "--theta": f"give --theta vectors of {p} numbers",
        "--theta-grid": f"give --theta-grid {p} lists of values",
    }
    if p and thetas is None:
        where = "`theta` or `theta_grid`" if not source.startswith("-") else "--theta or --theta-grid"
        raise ParameterError(
            f"model {name!r}: its graph has {p} parameters (coefficient edges) and no parameter "
            f"vectors are given; set {where}"
        )
    if not p and thetas is not None:
        raise ParameterError(
            f"model {name!r}: its graph has no coefficient edges, so it takes no theta (got "
            f"{thetas.tolist()!r:.80} from {source}); its rates are fixed by the callback's params"
        )
    if p and thetas.shape[1] != p:
        raise ParameterError(
            f"model {name!r}: theta vectors have length {thetas.shape[1]}, its graph has {p} parameters; {fix[source]}"
        )


def theta_names(spec, p):
    """Column names of the parameter vector: the spec's ``theta_names`` or ``theta_1..theta_p``."""
    names = (spec or {}).get("theta_names")
    if names is None:
        return [f"theta_{i + 1}" for i in range(p)]
    if (
        not isinstance(names, (list, tuple))
        or len(names) != p
        or not all(isinstance(n, str) and _NAME_RE.match(n) for n in names)
    ):
        raise ParameterError(
            f"{_label(spec)}: theta_names {short_repr(names)} must be {p} distinct names "
            "(letters, digits, '_'), one per parameter"
        )
    if len(set(names)) != p:
        raise ParameterError(f"{_label(spec)}: theta_names {short_repr(names)} repeat a name")
    return list(names)


def reward_vectors(rewards, graph, module=None, label="the model"):
    """Labelled per-vertex reward vectors.

    Parameters
    ----------
    rewards : str or None
        ``"sfs"`` (state columns 1..d-1 of a block-counting coalescent, labelled ``xi_1``..),
        ``"columns"`` (every state column, ``state_1``..), ``"FILE.py:function"``,
        ``"package.module:function"`` or ``"function"`` (looked up in ``module``): ``function(states) -> dict label -> (V,)``
        array or a ``(R, V)`` array.
    graph : Graph
    module : module, optional

    Returns
    -------
    labels : list of str
    vectors : ndarray (R, V) float64, or ``(["time"], None)`` when ``rewards`` is None.
    """
    if rewards is None:
        return ["time"], None
    states = np.asarray(graph.states(), dtype=np.float64)
    V, d = states.shape
    if rewards == "sfs":
        if d < 2:
            raise ParameterError(
                f"{label}: rewards 'sfs' needs block-counting states of length >= 2, the graph's states have length {d}"
            )
        return [f"xi_{i + 1}" for i in range(d - 1)], states[:, : d - 1].T.copy()
    if rewards == "columns":
        return [f"state_{i + 1}" for i in range(d)], states.T.copy()
    if ":" in rewards:
        where, fname = rewards.rsplit(":", 1)
        if where.endswith(".py"):
            module = _import_file(where)
        else:
            try:
                module = importlib.import_module(where)
            except ImportError as exc:
                raise ParameterError(
                    f"{label}: cannot import {short_repr(where)} for rewards {short_repr(rewards)} ({exc})"
                ) from None
    else:
        fname = rewards
    func = getattr(module, fname, None) if module is not None else None
    if not callable(func):
        raise ParameterError(
            f"{label}: rewards {short_repr(rewards)} is not 'sfs', 'columns' or a function of the "
            "model file (give FILE.py:function on the command line)"
        )
    out = func(graph.states())
    if isinstance(out, dict):
        labels = [str(k) for k in out]
        vectors = [np.asarray(v, dtype=np.float64) for v in out.values()]
    else:
        arr = np.asarray(out, dtype=np.float64)
        arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
        labels, vectors = [f"reward_{i + 1}" for i in range(arr.shape[0])], list(arr)
    if not vectors or any(v.shape != (V,) or not np.all(np.isfinite(v)) for v in vectors):
        raise ParameterError(
            f"{label}: rewards function {fname!r} must return finite per-vertex arrays "
            f"of length {V} (one value per vertex)"
        )
    return labels, np.vstack(vectors)


def spec_json(spec):
    """Canonical JSON text of a spec (sorted keys), e.g. for a command line."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def rewards_reference(spec):
    """The spec's ``rewards`` as a self-contained reference (``FILE.py:function`` or
    ``module:function`` for a function of the model), or None/``"sfs"``/``"columns"``."""
    rewards = spec.get("rewards")
    if rewards in (None, "sfs", "columns") or ":" in rewards:
        return rewards
    return f"{spec.get('file') or spec.get('module')}:{rewards}"


# ---------------------------------------------------------------------- the model object
#: Options that make no sense for a stored model (build always stores; manual graphs have no callback).
_DROPPED = ("cache", "graph_cache", "hierarchical")


class ModelSpec:
    """A model to build: a callback plus the keyword arguments ``Graph`` would get.

    Parameters
    ----------
    callback : callable
        The state-space callback.  It is pickled *by reference* to reach the workers, so it
        must be a module-level function of a module the workers can import.
    **kwargs
        ``Graph`` options (``ipv``, ``theta_dim``, ``discrete``, ``model``, ``indexer``,
        ``max_vertices``) and callback parameters, exactly as for
        ``Graph(callback, **kwargs)``.  ``cache``/``hierarchical`` are ignored: built graphs
        are always stored, and the stored trace is the flat one.

    Attributes
    ----------
    key : str
        The store key of the graph (:func:`phasic.keys.graph_key`); equal to the key
        ``Graph(callback, cache=True, **kwargs)`` uses.
    label : str
        ``module.qualname(k=v, ...)``, used in messages.

    Examples
    --------
    ::

        from phasic.specs import ModelSpec
        spec = ModelSpec(coalescent, theta=2.0)
        len(spec.key)
        # 64
    """

    def __init__(self, callback, /, **kwargs):
        if not callable(callback):
            raise ParameterError(f"ModelSpec callback {callback!r} is not callable; pass the model's function")
        if "state_length" in kwargs:
            raise ParameterError(
                f"ModelSpec got state_length={kwargs['state_length']!r}: manual graphs have no callback to "
                "build on a worker; build them locally and pass the Graph to sweep()"
            )
        self.callback = callback
        self.kwargs = {k: v for k, v in kwargs.items() if k not in _DROPPED}
        self._key = None
        self._material = None

    def _compute_key(self):
        if self._key is None:
            options, params = split_graph_kwargs(self.kwargs)
            self._key, self._material = graph_key(self.callback, params, options=options)
        return self._key, self._material

    @property
    def key(self):
        return self._compute_key()[0]

    @property
    def material(self):
        """The canonical key material (JSON text) hashed into :attr:`key`."""
        return self._compute_key()[1]

    def entry_path(self, cache_dir=None):
        """Path of the graph's entry in the store at ``cache_dir`` (default: ``$PHASIC_CACHE_DIR``
        or ``~/.phasic_cache``); nothing is built, read or created."""
        from phasic.store import Store

        return Store(cache_root(cache_dir)).path("graphs", self.key)

    @property
    def label(self):
        cb = self.callback
        name = f"{getattr(cb, '__module__', '?')}.{getattr(cb, '__qualname__', repr(cb))}"
        args = ", ".join(f"{k}={short_repr(v, 60)}" for k, v in self.kwargs.items())
        return f"{name}({args})"

    def __repr__(self):
        return f"ModelSpec({self.label})"

    @classmethod
    def from_dict(cls, spec, search_dirs=()):
        """The ModelSpec of a model spec mapping (a config's or a models file's entry).

        Callbacks from a ``file:`` are sent to Dask workers by value (the file need not be
        importable there); ``module:`` callbacks by reference.
        """
        callback, kwargs = load_model(spec, search_dirs)
        return cls(callback, **kwargs)

    def _by_reference(self):
        """Whether the callback reaches the workers by reference (importable by name)."""
        cb = self.callback
        module = getattr(cb, "__module__", None) or "__main__"
        if module == "__main__" or module.startswith("_phasic_model_"):
            return False
        return "<locals>" not in getattr(cb, "__qualname__", "<locals>")

    def _payload(self):
        """The callback as the build task gets it: itself, or cloudpickle bytes when by value.

        (Dask pickles task arguments with plain pickle first, which would send a function
        from a model file by a module name the workers cannot import.)
        """
        if self._by_reference():
            return self.callback
        import cloudpickle

        module = sys.modules.get(getattr(self.callback, "__module__", None) or "")
        if module is not None and module.__name__.startswith("_phasic_model_"):
            cloudpickle.register_pickle_by_value(module)  # a model file: its code travels too
        return cloudpickle.dumps(self.callback)

    def __eq__(self, other):
        return isinstance(other, ModelSpec) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __getstate__(self):
        return {"callback": self.callback, "kwargs": self.kwargs, "_key": self._key, "_material": self._material}

    def __setstate__(self, state):
        self.__dict__.update(state)
