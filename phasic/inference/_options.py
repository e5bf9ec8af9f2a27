"""Parameters of a Demes model, in the options-file format of moments' Demes inference.

An options file (YAML) lists ``parameters``, each with a ``name``, optional ``lower_bound`` /
``upper_bound`` and ``values``: the places in the Demes graph the parameter sets, e.g.

```yaml
parameters:
- name: T
  values:
  - demes: {anc: {epochs: {0: end_time}}}
  - demes: {A: start_time, B: start_time}
- name: N_A
  values:
  - demes: {A: {epochs: {0: start_size}}}
  lower_bound: 100
  upper_bound: 100000
- name: m
  values:
  - migrations: {0: rate}
constraints:
- params: [T, T2]
  constraint: greater_than
```
``demes.<deme>.epochs.<i>.<field>``, ``demes.<deme>.<field>`` (``start_time``),
``migrations.<i>.<field>`` and ``pulses.<i>.<field>`` (``time``; ``proportions`` sets the first
proportion) are the places understood, in the graph as written (its simplified form: what
demes fills in, such as a child's start time at its ancestor's end, follows a change); a
constant epoch written with both sizes keeps them equal. The values in the graph file are the
starting point.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

from phasic.exceptions import ParameterError


@dataclass
class Parameter:
    name: str
    places: list  # (kind, key, index or None, field)
    lower: float = 0.0
    upper: float = math.inf


def _load_yaml(obj, what):
    if isinstance(obj, dict):
        return obj
    import yaml

    p = Path(str(obj))
    if not p.is_file():
        raise ParameterError(f"{what} {str(obj)!r} not found")
    with open(p) as fh:
        out = yaml.safe_load(fh)
    if not isinstance(out, dict):
        raise ParameterError(f"{what} {str(obj)!r} is not a YAML mapping")
    return out


def _places(name, values):
    out = []
    if not isinstance(values, list) or not values:
        raise ParameterError(f"parameter {name!r}: 'values' must be a non-empty list of places in the graph")
    for v in values:
        if not isinstance(v, dict) or len(v) != 1:
            raise ParameterError(f"parameter {name!r}: a value {v!r} must name one of demes, migrations, pulses")
        ((kind, spec),) = v.items()
        if kind == "demes":
            for deme, what in spec.items():
                if isinstance(what, str):
                    out.append(("deme", deme, None, what))
                elif isinstance(what, dict) and set(what) == {"epochs"}:
                    for i, field in what["epochs"].items():
                        out.append(("epoch", deme, int(i), field))
                else:
                    raise ParameterError(f"parameter {name!r}: cannot read the place {v!r}")
        elif kind in ("migrations", "pulses"):
            for i, field in spec.items():
                out.append((kind[:-1], None, int(i), field))
        else:
            raise ParameterError(f"parameter {name!r}: unknown place {kind!r} (demes, migrations, pulses)")
    return out


def read_options(options):
    """``(parameters, constraints)`` from an options file (path or mapping)."""
    o = _load_yaml(options, "options file")
    params = []
    for p in o.get("parameters") or []:
        if "name" not in p:
            raise ParameterError(f"an options parameter {p!r} has no name")
        lo = float(p.get("lower_bound", 0.0))
        hi = float(p.get("upper_bound", math.inf))
        params.append(Parameter(str(p["name"]), _places(p["name"], p.get("values")), lo, hi))
    if not params:
        raise ParameterError("the options file lists no parameters")
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ParameterError(f"the options file names a parameter twice: {names}")
    constraints = []
    for c in o.get("constraints") or []:
        a, b = c.get("params", [None, None])
        if a not in names or b not in names or c.get("constraint") not in ("greater_than", "less_than"):
            raise ParameterError(f"constraint {c!r}: expected params [a, b] and greater_than or less_than")
        constraints.append((names.index(a), names.index(b), c["constraint"]))
    return params, constraints


def _deme(d, name):
    for x in d["demes"]:
        if x["name"] == name:
            return x
    raise ParameterError(f"the options name deme {name!r}, which the Demes graph does not have")


def get_value(d, place):
    kind, key, i, field = place
    try:
        if kind == "deme":
            return _deme(d, key)[field]
        if kind == "epoch":
            return _deme(d, key)["epochs"][i][field]
        v = d[kind + "s"][i][field]
        return v[0] if field == "proportions" else v
    except (KeyError, IndexError):
        raise ParameterError(f"the Demes graph has no {'.'.join(str(x) for x in place if x is not None)}") from None


def set_value(d, place, value):
    kind, key, i, field = place
    if kind == "deme":
        _deme(d, key)[field] = value
    elif kind == "epoch":
        ep = _deme(d, key)["epochs"][i]
        if field == "start_size" and "end_size" in ep and ep["end_size"] == ep.get("start_size"):
            ep["end_size"] = value  # a constant epoch written with both sizes stays constant
        ep[field] = value
    elif field == "proportions":
        d[kind + "s"][i][field][0] = value
    else:
        d[kind + "s"][i][field] = value


def starting_values(graph_dict, params, resolved=None):
    """Each parameter's value in `graph_dict`; a place the graph as written leaves to demes
    (a child's start time) is read from the `resolved` form."""

    def value(pl):
        try:
            return float(get_value(graph_dict, pl))
        except ParameterError:
            if resolved is None:
                raise
            return float(get_value(resolved, pl))

    vals = []
    for p in params:
        got = [value(pl) for pl in p.places]
        if len(set(got)) > 1:
            raise ParameterError(f"parameter {p.name!r} starts at different values in the graph: {got}")
        vals.append(got[0])
    return vals


def with_values(graph_dict, params, values):
    """A copy of `graph_dict` with each parameter's places set to its value."""
    d = copy.deepcopy(graph_dict)
    for p, v in zip(params, values):
        for pl in p.places:
            set_value(d, pl, float(v))
    return d
