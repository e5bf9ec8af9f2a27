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
    try:
        with open(p) as fh:
            out = yaml.safe_load(fh)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{what} {str(obj)!r} is not valid YAML: {exc}") from None
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
        if kind in ("demes", "migrations", "pulses") and not (isinstance(spec, dict) and spec):
            raise ParameterError(f"parameter {name!r}: the place {v!r} must map {kind} to what the parameter sets")
        if kind == "demes":
            for deme, what in spec.items():
                if isinstance(what, str):
                    out.append(("deme", deme, None, _field(name, what)))
                elif isinstance(what, dict) and set(what) == {"epochs"} and isinstance(what["epochs"], dict):
                    for i, field in what["epochs"].items():
                        out.append(("epoch", deme, _index(name, "epoch", i), _field(name, field)))
                else:
                    raise ParameterError(f"parameter {name!r}: cannot read the place {v!r}")
        elif kind in ("migrations", "pulses"):
            for i, field in spec.items():
                out.append((kind[:-1], None, _index(name, kind[:-1], i), _field(name, field)))
        else:
            raise ParameterError(f"parameter {name!r}: unknown place {kind!r} (demes, migrations, pulses)")
    return out


def _index(name, what, i):
    """A non-negative integer index (YAML may give it as a string of digits)."""
    if isinstance(i, str) and i.strip().isdigit():
        return int(i)
    if isinstance(i, bool) or not isinstance(i, int) or i < 0:
        raise ParameterError(f"parameter {name!r}: {what} index {i!r} must be a non-negative integer")
    return i


def _field(name, field):
    if not isinstance(field, str) or not field or field == "name":
        raise ParameterError(f"parameter {name!r}: {field!r} is not a field of the Demes graph a value can set")
    return field


def _bound(p, key, default):
    x = p.get(key, default)
    try:
        if isinstance(x, bool):
            raise TypeError
        x = float(x)
    except (TypeError, ValueError):
        raise ParameterError(f"parameter {p['name']!r}: {key} {x!r} is not a number") from None
    if math.isnan(x):
        raise ParameterError(f"parameter {p['name']!r}: {key} is {x!r}")
    return x


def read_options(options):
    """``(parameters, constraints)`` from an options file (path or mapping)."""
    o = _load_yaml(options, "options file")
    params = []
    plist = o.get("parameters") or []
    if not isinstance(plist, list):
        raise ParameterError(f"the options file's 'parameters' must be a list, got {plist!r}")
    for p in plist:
        if not isinstance(p, dict) or "name" not in p:
            raise ParameterError(f"an options parameter {p!r} has no name")
        if not isinstance(p["name"], str) or not p["name"]:
            raise ParameterError(f"an options parameter's name must be a non-empty string, got {p['name']!r}")
        lo = _bound(p, "lower_bound", 0.0)
        hi = _bound(p, "upper_bound", math.inf)
        if lo > hi or lo == math.inf or hi == -math.inf:
            raise ParameterError(f"parameter {p['name']!r}: lower_bound {lo!r} and upper_bound {hi!r} leave no values")
        params.append(Parameter(str(p["name"]), _places(p["name"], p.get("values")), lo, hi))
    if not params:
        raise ParameterError("the options file lists no parameters")
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ParameterError(f"the options file names a parameter twice: {names}")
    constraints = []
    clist = o.get("constraints") or []
    if not isinstance(clist, list):
        raise ParameterError(f"the options file's 'constraints' must be a list, got {clist!r}")
    for c in clist:
        pair = c.get("params") if isinstance(c, dict) else None
        if not isinstance(pair, list) or len(pair) != 2 or c.get("constraint") not in ("greater_than", "less_than"):
            raise ParameterError(f"constraint {c!r}: expected params [a, b] and greater_than or less_than")
        a, b = pair
        for x in (a, b):
            if x not in names:
                raise ParameterError(f"constraint {c!r} names {x!r}, which is not a parameter ({names})")
        if a == b:
            raise ParameterError(f"constraint {c!r} compares {a!r} with itself")
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
            got = get_value(graph_dict, pl)
        except ParameterError:
            if resolved is None:
                raise
            got = get_value(resolved, pl)
        try:
            if isinstance(got, bool):
                raise TypeError
            return float(got)
        except (TypeError, ValueError):
            where = ".".join(str(x) for x in pl if x is not None)
            raise ParameterError(f"the Demes graph's {where} is {got!r}, not a number a parameter can set") from None

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
