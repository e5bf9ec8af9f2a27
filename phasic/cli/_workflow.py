"""The ``phasic graph build``, ``phasic trace record`` and ``phasic evaluate`` commands.

These are the steps of the Snakemake workflow (``workflows/rules/*.smk``), usable by hand as
well.  A model is named by a *model spec* (see :mod:`phasic.specs`): ``--spec`` with JSON/YAML
text or ``@file.yaml`` (a spec, or a workflow config plus ``--model NAME``), or the flags
``--file``/``--module``, ``--callback`` and ``--param KEY=VALUE``.  ``trace record`` and
``evaluate`` also take a graph's store entry path instead.  Every command prints a JSON object
with ``--json`` and shows progress on stderr when that is a terminal.  ``evaluate`` prints its
moments as an aligned table on standard output unless ``--moments-out`` or ``--json`` is given.
Wherever a file is taken, ``-`` means standard output (``--moments-out``,
``--distribution-out``, ``--out``) or standard input (``--spec @-``, ``--trace``); the summary
line then goes to standard error.

Examples
--------
::

    phasic graph build --file workflows/models/kingman.py --callback kingman --ipv '[20]' --json
    phasic trace record ~/.phasic_cache/graphs/ab/cdef....h5 --out trace.json
    phasic evaluate --spec @workflows/config/default.yaml --model two_island \\
        --moments-out moments.tsv --distribution-out distribution.tsv
    phasic evaluate --demes workflows/models/im.yaml --samples '{"A": 2, "B": 2}' \\
        --moments-out moments.tsv --distribution-out distribution.tsv --sfs-out sfs.tsv

``evaluate --demes FILE --samples JSON`` evaluates a Demes model
(:func:`phasic.demography.from_demes` with ``cache=True``: its graph and trace come from the
store when present): the T_MRCA's moments and pdf/cdf, and with ``--sfs-out`` the expected
SFS as a table with one column per sampled deme (the cell's index: how many of that deme's
genomes are below the branch) and ``branch_length`` (the expected total length of such
branches, in the model's time units; the corners are 0).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

from phasic._progress import Progress
from phasic.cli._common import atomic_write

__all__ = ["register"]


#: Most points a time grid (``--times``) may have.
MAX_TIME_POINTS = 1_000_000
#: Most (parameter vector, time) rows of a distribution table (pdf and cdf are 16 bytes each in memory).
MAX_DISTRIBUTION_ROWS = 100_000_000

STDIO = "-"


# ------------------------------------------------------------------------ arguments
def _add_spec_args(p, entry=False):
    if entry:
        p.add_argument(
            "entry",
            nargs="?",
            metavar="ENTRY",
            help="a graph's store entry (<cache>/graphs/xx/....h5) instead of a model spec",
        )
    g = p.add_argument_group("model spec")
    g.add_argument(
        "--spec",
        metavar="SPEC",
        help="model spec as JSON/YAML text, or @FILE (a spec, "
        "or a config with 'models:' plus --model; @- reads standard input)",
    )
    g.add_argument("--model", metavar="NAME", help="the model's name in a config's 'models' list")
    g.add_argument("--file", metavar="PATH", help="Python file defining the callback")
    g.add_argument("--module", metavar="NAME", help="importable module defining the callback")
    g.add_argument("--callback", metavar="NAME", help="the callback's function name")
    g.add_argument(
        "--param",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="callback keyword parameter; VALUE is read as YAML (10 is an int, 10.0 a float)",
    )
    g.add_argument("--ipv", metavar="JSON", help="initial distribution, e.g. '[10]' or '[[[2,0],0.5],[[1,1],0.5]]'")
    g.add_argument("--discrete", action="store_true", default=None, help="a discrete phase-type graph")
    g.add_argument("--theta-dim", type=int, metavar="P", help="parameter dimension of coefficient edges")
    g.add_argument("--max-vertices", type=int, metavar="N", help="fail when the state space grows past N")
    g.add_argument(
        "--search-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="where relative model files are looked for after the spec file's directory and the working directory",
    )


def _add_output_args(p):
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _json_arg(text, flag):
    from phasic.exceptions import ParameterError

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{flag} {text!r} is not valid JSON ({exc.msg}); e.g. {flag} '[1.0, 2.0]'") from None


def _spec_from_args(args, required=True):
    """The model spec the arguments describe, or None (when not required and none given)."""
    import yaml

    from phasic.exceptions import ParameterError
    from phasic.specs import check_spec, read_spec

    flags = {
        k: getattr(args, k)
        for k in ("file", "module", "callback", "discrete", "theta_dim", "max_vertices")
        if getattr(args, k, None) is not None
    }
    if getattr(args, "ipv", None) is not None:
        flags["ipv"] = _json_arg(args.ipv, "--ipv")
    params = {}
    for item in getattr(args, "param", []) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ParameterError(f"--param {item!r} must be KEY=VALUE with KEY a Python name, e.g. --param n=10")
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            params[key] = value
    if args.spec is None and not flags and not params and args.model is None:
        if required:
            raise ParameterError("no model given: use --spec SPEC (or @FILE) or --file/--module with --callback")
        return None
    if args.spec == "@" + STDIO:  # the spec (or config) from standard input; files relative to the cwd
        args.spec = sys.stdin.read()
    spec = read_spec(args.spec, model=args.model) if args.spec is not None else {}
    # relative model files: the spec (config) file's directory first, as in the workflow, then
    # the working directory, then --search-dir
    first = [str(Path(args.spec[1:]).expanduser().resolve().parent)] if (args.spec or "").startswith("@") else []
    args.search_dir = [*first, ".", *args.search_dir]
    if args.spec is None and args.model is not None:
        spec["name"] = args.model
    if "file" in flags or "module" in flags:
        spec.pop("file", None)
        spec.pop("module", None)
    spec.update(flags)
    if params:
        spec["params"] = {**(spec.get("params") or {}), **params}
    return check_spec(spec)


def _store(args, root=None):
    """The store: ``--cache-dir`` when given, else ``root`` (an entry's store), else the default."""
    from phasic.store import Store

    if getattr(args, "cache_dir", None) or root is None:
        return Store()
    os.environ["PHASIC_CACHE_DIR"] = str(root)  # library defaults (e.g. trace lookups) agree
    return Store(root)


def _load_graph(args, build_missing=True):
    """``(graph, info, spec, store)`` from an ENTRY argument or a model spec."""
    from phasic.exceptions import ParameterError, StoreError
    from phasic.graph import Graph
    from phasic.specs import entry_key, resolve_spec

    spec = _spec_from_args(args, required=args.entry is None)
    if spec is not None:
        spec = resolve_spec(spec, args.search_dir)  # relative files become absolute
    if args.entry is not None:
        root, kind, key = entry_key(args.entry)
        if kind != "graphs":
            raise ParameterError(f"{args.entry!r} is a {kind} entry; give a graph entry (<cache>/graphs/...)")
        store = _store(args, root)
        found = store.get("graphs", key)
        if found is None:
            raise StoreError(
                f"no valid graph entry at {args.entry!r} (missing, or moved to the corrupt/ folder "
                "after failing verification); build it with: phasic graph build ..."
            )
        info = {"graph_key": key, "graph_entry": str(store.path("graphs", key)), "built": False}
        return Graph.from_arrays(*found), info, spec, store
    store = _store(args)
    g, info = _build(spec, args, store, build_missing)
    return g, info, spec, store


def _build(spec, args, store, build_missing=True):
    from phasic.exceptions import StoreError
    from phasic.graph import Graph
    from phasic.specs import ModelSpec, load_model

    callback, kwargs = load_model(spec, args.search_dir)
    key = ModelSpec(callback, **kwargs).key
    path = store.path("graphs", key)
    existed = path.is_file()
    if not build_missing and not path.is_file():
        raise StoreError(
            f"the graph of {spec.get('name') or spec['callback']!r} is not in {str(store.root)!r}; "
            "build it first with: phasic graph build"
        )
    quiet = getattr(args, "quiet", False)
    with Progress(f"graph {spec.get('name') or spec['callback']}", enabled=None if not quiet else False):
        g = Graph.cached(callback, store=store, **kwargs)
    if not path.is_file():
        raise StoreError(
            f"the graph was built but could not be stored at {str(path)!r} (see the warning "
            "above); check that the cache directory is writable and has space"
        )
    return g, {"graph_key": key, "graph_entry": str(path), "built": not existed}


def _load_graph_or_fail(args):
    """`_load_graph(args)`, or the exit code after reporting a failing model callback."""
    from phasic.exceptions import PhasicError

    try:
        return _load_graph(args)
    except PhasicError:
        raise
    except Exception as exc:
        return _callback_failure(_spec_from_args(args, required=False), exc)


def _graph_info(g):
    return {
        "vertices": g.vertices_length(),
        "edges": g.edges_length(),
        "state_length": g.state_length,
        "theta_dim": g.theta_dim or 0,
        "discrete": g.discrete,
    }


def _emit(args, result, human):
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(human)


_atomic_write = atomic_write


def _callback_failure(spec, exc):
    """One clear line for a callback that raised (the traceback is printed above it)."""
    traceback.print_exc()
    notes = "; ".join(str(n).removeprefix("phasic: ") for n in getattr(exc, "__notes__", []) or [])
    name = (spec.get("name") or spec.get("callback")) if spec else "the model"
    print(
        f"phasic: error: building {name!r} failed: {type(exc).__name__}: {exc}"
        + (f" ({notes})" if notes else "")
        + "; nothing was stored — fix the callback and run again",
        file=sys.stderr,
    )
    return 1


# ------------------------------------------------------------------------ graph build
def _graph_build(args):
    from phasic.exceptions import ParameterError, PhasicError
    from phasic.store import Store

    spec = _spec_from_args(args)
    store = Store()
    t0 = time.perf_counter()
    if args.expect:
        from phasic.specs import ModelSpec

        expected = ModelSpec.from_dict(spec, args.search_dir).entry_path(store.root)
        if os.path.abspath(args.expect) != str(expected):
            raise ParameterError(
                f"--expect {args.expect!r} is not where this model's graph is stored ({str(expected)!r}): "
                "the workflow computed the key with a different phasic, Python or model file; "
                "use the same environment for the workflow and its jobs"
            )
    try:
        g, info = _build(spec, args, store)
    except PhasicError:
        raise
    except Exception as exc:  # the user's callback raised
        return _callback_failure(spec, exc)
    result = {"name": spec.get("name"), **info, **_graph_info(g), "seconds": round(time.perf_counter() - t0, 6)}
    verb = "built" if info["built"] else "found (not rebuilt)"
    _emit(
        args,
        result,
        f"{verb} graph {spec.get('name') or spec['callback']!r}: {result['vertices']} vertices, "
        f"{result['edges']} edges -> {info['graph_entry']}",
    )
    return 0


# ------------------------------------------------------------------------ trace record
def _trace_record(args):
    from phasic.traces import ensure_trace, trace_key

    t0 = time.perf_counter()
    loaded = _load_graph_or_fail(args)
    if isinstance(loaded, int):
        return loaded
    g, info, spec, store = loaded
    key = trace_key(g)
    existed = store.contains("traces", key)
    with Progress("trace", enabled=None if not args.quiet else False):
        ensure_trace(g, store)
    result = {
        "name": (spec or {}).get("name"),
        **info,
        **_graph_info(g),
        "trace_key": key,
        "trace_entry": str(store.path("traces", key)),
        "recorded": not existed,
        "seconds": round(time.perf_counter() - t0, 6),
    }
    if args.out:
        _atomic_write(args.out, json.dumps(result, indent=2, sort_keys=True) + "\n")
    verb = "recorded" if not existed else "found (not re-recorded)"
    human = f"{verb} trace {key[:12]}... of graph {info['graph_key'][:12]}... -> {result['trace_entry']}"
    if args.out == STDIO:  # the JSON went to stdout already
        print(human, file=sys.stderr)
    else:
        _emit(args, result, human)
    return 0


# ------------------------------------------------------------------------ evaluate
def _parse_times(text, discrete):
    """``("auto", num)`` or an explicit grid from ``auto``, ``auto:N``, ``START:STOP:NUM`` or JSON."""
    import numpy as np

    from phasic.exceptions import ParameterError

    if text is None or isinstance(text, dict) or isinstance(text, list):
        value = text
    elif text.startswith("auto"):
        num = text[5:] if text.startswith("auto:") else ""
        if text not in ("auto",) and not (text.startswith("auto:") and num.isdigit() and int(num) >= 2):
            raise ParameterError(f"--times {text!r}: write auto, auto:N (N >= 2 points), START:STOP:NUM or a JSON list")
        return ("auto", _check_num(int(num), text) if num else 100)
    elif text.count(":") == 2 and not text.lstrip().startswith(("[", "{")):
        try:
            start, stop, num = text.split(":")
            value = {"start": float(start), "stop": float(stop), "num": int(num)}
        except ValueError:
            raise ParameterError(f"--times {text!r}: START:STOP:NUM needs two numbers and an integer") from None
        _check_num(value["num"], text)
    else:
        value = _json_arg(text, "--times")
    if value is None or value == "auto":
        return ("auto", 100)
    if isinstance(value, dict):
        unknown = set(value) - {"start", "stop", "num"}
        num = value.get("num", 100)
        if unknown or not isinstance(num, int) or isinstance(num, bool) or num < 2:
            raise ParameterError(
                f"times {value!r:.200} must be {{start, stop, num}} with num >= 2 "
                "(stop omitted: chosen from the moments)"
            )
        _check_num(num, value)
        if "stop" not in value:
            return ("auto", num)
        grid = np.linspace(float(value.get("start", 0.0)), float(value["stop"]), num)
    else:
        try:
            grid = np.asarray(value, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise ParameterError(f"times {value!r:.100} must be a flat list of numbers") from None
        _check_num(grid.size, f"a list of {grid.size} times")
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0) or np.any(np.diff(grid) < 0):
        raise ParameterError(f"times {value!r:.100} must be finite, non-negative and increasing")
    if discrete:
        if not np.all(grid == np.round(grid)):
            raise ParameterError(f"times {value!r:.100} must be whole numbers for a discrete graph")
    return grid


def _check_num(num, text):
    """`num` (points of a time grid), or a ParameterError naming it when it is over the bound."""
    from phasic.exceptions import ParameterError

    if num > MAX_TIME_POINTS:
        shown = text if isinstance(text, str) else f"{text!r:.200}"
        raise ParameterError(
            f"--times {shown!r}: {num} time points is too many; at most {MAX_TIME_POINTS} "
            "(a grid is evaluated and written in full for every parameter vector)"
        )
    return num


def _auto_grid(mean, sd, num, discrete):
    import numpy as np

    from phasic.exceptions import ParameterError

    stop = float(np.max(mean + 5.0 * sd))
    if not math.isfinite(stop) or stop <= 0:
        stop = 1.0
    if discrete:
        if stop >= MAX_TIME_POINTS:
            raise ParameterError(
                f"the automatic grid of this discrete graph runs to mean + 5 sd = {stop:.6g} "
                f"jumps, more than {MAX_TIME_POINTS} points; give --times explicitly, "
                "e.g. --times 0:1000:1001"
            )
        return np.arange(0, int(math.ceil(stop)) + 1, dtype=np.float64)
    return np.linspace(0.0, stop, num)


def _fmt(x):
    return repr(float(x))


def _write_table(path, header, rows):
    """A TSV table to `path` (``-``: standard output)."""
    lines = ["\t".join(header)]
    lines += ["\t".join(r) for r in rows]
    _atomic_write(path, "\n".join(lines) + "\n")


def _readable(x):
    """A number of a table printed for reading (12 significant digits; the TSV files keep all 17)."""
    return f"{float(x):.12g}"


def _print_table(header, rows):
    """An aligned table on standard output."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    for cells in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    sys.stdout.flush()


def _chunks(B, progress):
    step = max(1, math.ceil(B / 50)) if progress.enabled else B
    for s in range(0, B, step):
        yield slice(s, min(B, s + step))


def _evaluate_thetas(g, thetas, k, vectors, times, progress):
    """Moments ``(R, B, k)`` and distribution ``(2, B, T)`` for a parameterised graph."""
    import numpy as np

    from phasic.batch import evaluate_batch

    B = thetas.shape[0]
    R = 1 if vectors is None else vectors.shape[0]
    mom = np.empty((R, B, k))
    dist = None if times is None else np.empty((2, B, times.size))
    for sl in _chunks(B, progress):
        for r in range(R):
            rew = None if vectors is None else vectors[r]
            mom[r, sl] = evaluate_batch(g, thetas[sl], "moments", k=k, rewards=rew)
        if times is not None:
            if g.discrete:
                h = g.copy()
                for i in range(sl.start, sl.stop):
                    h.update_weights(thetas[i])
                    dist[0, i], dist[1, i] = h.pmf(times.astype(np.int64)), h.cdf(times.astype(np.int64))
            else:
                dist[0, sl] = evaluate_batch(g, thetas[sl], "pdf", times=times)
                dist[1, sl] = evaluate_batch(g, thetas[sl], "cdf", times=times)
        progress.update(sl.stop - sl.start)
    return mom, dist


def _distribution_per_theta(g, thetas, grids, progress):
    """``[(density, cdf)]`` per parameter vector, each on its own time grid (``grids[b]``)."""
    import numpy as np

    from phasic.batch import evaluate_batch

    out = []
    h = g.copy() if g.discrete else None
    for b, grid in enumerate(grids):
        if g.discrete:
            h.update_weights(thetas[b])
            steps = grid.astype(np.int64)
            out.append((h.pmf(steps), h.cdf(steps)))
        else:
            row = thetas[b : b + 1]
            out.append((evaluate_batch(g, row, "pdf", times=grid)[0], evaluate_batch(g, row, "cdf", times=grid)[0]))
        progress.update(1)
    return out


def _evaluate_plain(g, k, vectors, times):
    import numpy as np

    R = 1 if vectors is None else vectors.shape[0]
    mom = np.empty((R, 1, k))
    for r in range(R):
        mom[r, 0] = np.asarray(g.moments(k, rewards=None if vectors is None else vectors[r]), dtype=np.float64)[:k]
    dist = None
    if times is not None:
        if g.discrete:
            kk = times.astype(np.int64)
            dist = np.array([[g.pmf(kk)], [g.cdf(kk)]], dtype=np.float64)
        else:
            dist = np.array([[g.pdf(times)], [g.cdf(times)]], dtype=np.float64)
    return mom, dist


def _use_stored_trace(g, store):
    """Replay the stored trace instead of re-recording it (a pure speed-up)."""
    from phasic import traces

    traces.attach_trace(g, store)


def _sweep_dask(info, store, thetas, k, vectors, times, progress=False):
    """Large sweeps through :func:`phasic.distributed.sweep` (Dask workers read the stored graph).
    `progress`: Dask's progress bar (on stdout: never with ``--json`` or ``--quiet``)."""
    import numpy as np

    from phasic.distributed import sweep

    key, root = info["graph_key"], str(store.root)
    R = 1 if vectors is None else vectors.shape[0]
    mom = np.empty((R, thetas.shape[0], k))
    for r in range(R):
        mom[r] = np.asarray(
            sweep(
                key,
                thetas,
                what="moments",
                k=k,
                cache_dir=root,
                rewards=None if vectors is None else vectors[r],
                progress=progress,
            )
        ).reshape(-1, k)
    dist = None
    if times is not None:
        dist = np.stack(
            [
                np.asarray(sweep(key, thetas, what=w, times=times, cache_dir=root, progress=progress))
                for w in ("pdf", "cdf")
            ]
        )
    return mom, dist


def _check_pointer(args, graph_key):
    """The trace pointer of ``--trace`` must belong to the graph `graph_key`."""
    from phasic.exceptions import TraceError

    if not args.trace:
        return
    try:
        pointer = json.loads(sys.stdin.read() if args.trace == STDIO else Path(args.trace).read_text())
    except (OSError, ValueError) as exc:
        raise TraceError(f"cannot read the trace pointer {args.trace!r} ({exc}); run phasic trace record") from None
    if pointer.get("graph_key") != graph_key:
        raise TraceError(
            f"the trace pointer {args.trace!r} belongs to graph {pointer.get('graph_key')!r}, "
            f"not {graph_key!r}; record it again with phasic trace record"
        )


def _demes_grid(model, times, mean, sd):
    """The T_MRCA time grid: explicit `times`, or ("auto", num): from 0 to where the cdf
    reaches 0.999 (starting at E[T] + 5 sd, doubled until it does, at most 40 times)."""
    import numpy as np

    if not isinstance(times, tuple):
        return times
    stop = float(mean + 5.0 * sd)
    if not math.isfinite(stop) or stop <= 0:
        stop = 1.0
    for _ in range(40):
        if float(np.asarray(model.cdf(np.array([stop])))[0]) >= 0.999:
            break
        stop *= 2.0
    return np.linspace(0.0, stop, times[1])


def _evaluate_demes(args):
    """``phasic evaluate --demes FILE --samples JSON``: a Demes model's T_MRCA moments and
    distribution, and its expected SFS."""
    import numpy as np

    from phasic.demography import from_demes
    from phasic.exceptions import ParameterError
    from phasic.specs import ModelSpec, entry_key, resolve_spec

    t0 = time.perf_counter()
    for flag in ("spec", "file", "module", "callback", "ipv", "theta", "theta_grid", "theta_names", "rewards"):
        if getattr(args, flag, None) is not None:
            raise ParameterError(
                f"--{flag.replace('_', '-')} does not go with --demes: a Demes model's graph and parameters "
                "come from its Demes file and --samples"
            )
    if args.samples is None:
        raise ParameterError('--demes needs --samples, e.g. --samples \'{"A": 4, "B": 4}\'')
    name = args.name or Path(args.demes).stem
    spec = {"name": name, "demes": args.demes, "samples": _json_arg(args.samples, "--samples")}
    if args.state_space is not None:
        spec["state_space"] = args.state_space
    spec = resolve_spec(spec, [".", *args.search_dir])  # checks it; names the model in errors
    key = ModelSpec.from_dict(spec).key
    if args.entry is not None and entry_key(args.entry)[2] != key:
        raise ParameterError(
            f"{args.entry!r} is not the graph of the Demes model {name!r} (its key is {key}); "
            "give that model's entry, or none"
        )
    _check_pointer(args, key)
    store = _store(args, entry_key(args.entry)[0] if args.entry is not None else None)
    existed = store.path("graphs", key).is_file()
    with Progress(f"demes {name}", enabled=None if not args.quiet else False):
        model = from_demes(spec["demes"], spec["samples"], spec["state_space"], cache=True)
    g = model.graph
    k = args.moments if args.moments is not None else 2
    if k < 1:
        raise ParameterError(f"--moments {k!r} must be a positive integer")
    mom = np.asarray(model.moments(max(k, 2)), dtype=np.float64)
    mean, sd = mom[0], math.sqrt(max(mom[1] - mom[0] ** 2, 0.0))
    mom = mom[:k]
    header = ["reward"] + [f"moment_{i + 1}" for i in range(k)] + (["variance"] if k >= 2 else [])
    row = ["time"] + [_fmt(x) for x in mom] + ([_fmt(mom[1] - mom[0] ** 2)] if k >= 2 else [])
    if args.moments_out:
        _write_table(args.moments_out, header, [row])
    elif not args.json:
        _print_table(header, [[row[0]] + [_readable(x) for x in row[1:]]])
    grid = None
    if args.distribution_out:
        grid = _demes_grid(model, _parse_times(args.times, False), mean, sd)
        pdf, cdf = np.asarray(model.pdf(grid)), np.asarray(model.cdf(grid))
        rows = [[_fmt(t), _fmt(d), _fmt(c)] for t, d, c in zip(grid, pdf, cdf)]
        _write_table(args.distribution_out, ["t", "pdf", "cdf"], rows)
    demes_sampled = list(model.samples)
    sfs = None
    if args.sfs_out:
        sfs = np.asarray(model.expected_sfs(), dtype=np.float64)
        rows = [[str(i) for i in idx] + [_fmt(sfs[idx])] for idx in np.ndindex(sfs.shape)]
        _write_table(args.sfs_out, demes_sampled + ["branch_length"], rows)
    info = {"graph_key": key, "graph_entry": str(store.path("graphs", key)), "built": not existed}
    result = {
        "name": name,
        **info,
        **_graph_info(g),
        "demes": spec["demes"],
        "samples": model.samples,
        "state_space": model.state_space,
        "time_units": model.time_units,
        "n_theta": 0,
        "theta_names": [],
        "rewards": ["time"],
        "moments": k,
        "expectation": [float(mom[0])],
        "times": None if grid is None else [float(grid[0]), float(grid[-1]), int(grid.size)],
        "moments_out": args.moments_out,
        "distribution_out": args.distribution_out,
        "sfs_out": args.sfs_out,
        "seconds": round(time.perf_counter() - t0, 6),
    }
    outs = [x for x in (args.moments_out, args.distribution_out, args.sfs_out) if x]
    human = f"evaluated the Demes model {name!r}: E[T_MRCA] = {float(mom[0]):.6g} {model.time_units}" + (
        f" -> {', '.join(_where(x) for x in outs)}" if outs else ""
    )
    if STDIO in outs or (not args.moments_out and not args.json):
        print(human, file=sys.stderr)
    else:
        _emit(args, result, human)
    return 0


def _evaluate(args):
    import numpy as np

    from phasic.exceptions import ParameterError
    from phasic.specs import check_theta_dim, reward_vectors, rewards_reference, theta_matrix, theta_names

    t0 = time.perf_counter()
    to_stdout = [f for f in ("moments_out", "distribution_out", "sfs_out") if getattr(args, f, None) == STDIO]
    if args.json and to_stdout:
        flag = "--" + to_stdout[0].replace("_", "-")
        raise ParameterError(f"{flag} - and --json both write to standard output; give {flag} a file or drop --json")
    if args.demes is not None:
        return _evaluate_demes(args)
    for flag in ("samples", "state_space", "sfs_out"):
        if getattr(args, flag) is not None:
            raise ParameterError(f"--{flag.replace('_', '-')} is for a Demes model: give --demes FILE with it")
    loaded = _load_graph_or_fail(args)
    if isinstance(loaded, int):
        return loaded
    g, info, spec, store = loaded
    spec = spec or {}
    if spec.get("demes") is not None:  # --spec naming a Demes model: its own route
        import argparse
        import json

        demes_args = argparse.Namespace(**vars(args))
        demes_args.spec = None
        demes_args.demes = str(spec["demes"])
        demes_args.samples = json.dumps(spec["samples"])
        demes_args.state_space = spec.get("state_space")
        demes_args.name = args.name or spec.get("name")
        if demes_args.moments is None:
            demes_args.moments = spec.get("moments")
        return _evaluate_demes(demes_args)
    name = args.name or spec.get("name") or spec.get("callback") or info["graph_key"][:12]
    _check_pointer(args, info["graph_key"])
    k = args.moments if args.moments is not None else spec.get("moments", 2)
    if not isinstance(k, int) or k < 1:
        raise ParameterError(f"--moments {k!r} must be a positive integer")
    theta = _json_arg(args.theta, "--theta") if args.theta is not None else None
    grid = _json_arg(args.theta_grid, "--theta-grid") if args.theta_grid is not None else None
    if theta is not None or grid is not None:
        thetas = theta_matrix(theta=theta, theta_grid=grid)
        source = "--theta-grid" if grid is not None else "--theta"
        if args.name:  # the workflow: the flags carry the model's config entry
            source = source.lstrip("-").replace("-", "_")
    else:
        thetas = theta_matrix(spec)
        source = ("theta_grid" if spec.get("theta_grid") is not None else "theta") if spec else "--theta"
    p = g.theta_dim or 0
    check_theta_dim(thetas, p, name, source)
    names = args.theta_names.split(",") if args.theta_names else None
    names = theta_names({**spec, "theta_names": names} if names else spec, p) if p else []
    rewards = args.rewards if args.rewards is not None else rewards_reference(spec)
    module = None
    if rewards not in (None, "sfs", "columns") and ":" not in rewards and spec.get("callback"):
        from phasic.specs import _module_of

        module = _module_of(spec, args.search_dir)[0]
    labels, vectors = reward_vectors(rewards, g, module, label=f"model {name!r}")
    times = _parse_times(args.times if args.times is not None else spec.get("times"), g.discrete)
    want_dist = args.distribution_out is not None
    method = args.method or spec.get("sweep") or "auto"
    B = 1 if thetas is None else thetas.shape[0]
    if method == "auto":
        method = "dask" if (thetas is not None and B >= args.dask_threshold and _have_dask_sweep()) else "batch"
    if method == "dask" and not _have_dask_sweep():
        raise ParameterError(
            "--method dask needs phasic.distributed.sweep and dask[distributed]; "
            "install phasic[dask] or use --method batch"
        )
    _use_stored_trace(g, store)
    auto = isinstance(times, tuple)
    progress = Progress(f"evaluate {name}", total=B, enabled=None if not args.quiet else False)
    with progress:
        if thetas is None:
            mom, _ = _evaluate_plain(g, k, vectors, None)
        elif method == "dask":
            mom, _ = _sweep_dask(info, store, thetas, k, vectors, None, _dask_progress(args))
        else:
            mom, _ = _evaluate_thetas(g, thetas, k, vectors, None, Progress("", enabled=False))
        grid_t = None
        if want_dist:
            if auto:
                if vectors is None and k >= 2:
                    tm = mom[0]
                else:
                    tm = (
                        _evaluate_plain(g, 2, None, None)[0][0]
                        if thetas is None
                        else _evaluate_thetas(g, thetas, 2, None, None, Progress("", enabled=False))[0][0]
                    )
                sd = np.sqrt(np.maximum(tm[:, 1] - tm[:, 0] ** 2, 0.0))
                if thetas is not None and method != "dask":  # each vector's own peak and tail
                    grids = [_auto_grid(tm[b : b + 1, 0], sd[b : b + 1], times[1], g.discrete) for b in range(B)]
                else:  # one grid (a Dask sweep evaluates every vector on the same times)
                    grids = [_auto_grid(tm[:, 0], sd, times[1], g.discrete)] * B
            else:
                grids = [times] * B
            grid_t = grids[0]
            total = sum(x.size for x in grids)
            if total > MAX_DISTRIBUTION_ROWS:
                raise ParameterError(
                    f"the distribution table would have {B} parameter vectors x {total // B} "
                    f"times = {total} rows; at most {MAX_DISTRIBUTION_ROWS}: use fewer "
                    "times (--times) or split the parameter vectors"
                )
            if thetas is not None and method != "dask" and any(x is not grid_t for x in grids):
                curves = _distribution_per_theta(g, thetas, grids, progress)
            else:
                if thetas is None:
                    _, dist = _evaluate_plain(g, 1, None, grid_t)
                elif method == "dask":
                    _, dist = _sweep_dask(info, store, thetas, 1, None, grid_t, _dask_progress(args))
                else:
                    _, dist = _evaluate_thetas(g, thetas, 1, None, grid_t, progress)
                curves = [(dist[0, b], dist[1, b]) for b in range(B)]
        else:
            progress.update(B)
    theta_rows = [[]] if thetas is None else [[_fmt(x) for x in row] for row in thetas]
    header = names + ["reward"] + [f"moment_{i + 1}" for i in range(k)] + (["variance"] if k >= 2 else [])

    def moment_rows(fmt):
        rows = []
        for b in range(B):
            for r, label in enumerate(labels):
                m = mom[r, b]
                rows.append(
                    ([fmt(x) for x in thetas[b]] if thetas is not None else [])
                    + [label]
                    + [fmt(x) for x in m]
                    + ([fmt(m[1] - m[0] ** 2)] if k >= 2 else [])
                )
        return rows

    stdout_used = False
    if args.moments_out:
        _write_table(args.moments_out, header, moment_rows(_fmt))
        stdout_used = args.moments_out == STDIO
    elif not args.json:  # the default: a table to read
        _print_table(header, moment_rows(_readable))
        stdout_used = True
    if want_dist:
        tcol, dcol = ("k", "pmf") if g.discrete else ("t", "pdf")
        rows = []
        for b in range(B):
            for j, t in enumerate(grids[b]):
                tv = str(int(t)) if g.discrete else _fmt(t)
                rows.append(theta_rows[b] + [tv, _fmt(curves[b][0][j]), _fmt(curves[b][1][j])])
        if args.distribution_out == STDIO:
            if stdout_used:
                print()
            stdout_used = True
        _write_table(args.distribution_out, names + [tcol, dcol, "cdf"], rows)
    result = {
        "name": spec.get("name"),
        **info,
        **_graph_info(g),
        "n_theta": B if thetas is not None else 0,
        "theta_names": names,
        "rewards": labels,
        "moments": k,
        "method": method,
        "expectation": [float(x) for x in mom[0, :, 0]],
        "times": None
        if grid_t is None
        else [float(min(x[0] for x in grids)), float(max(x[-1] for x in grids)), int(grid_t.size)],
        "moments_out": args.moments_out,
        "distribution_out": args.distribution_out,
        "seconds": round(time.perf_counter() - t0, 6),
    }
    human = (
        f"evaluated {name!r} at {B} parameter vector(s)"
        + (f" -> {_where(args.moments_out)}" if args.moments_out else "")
        + (f", {_where(args.distribution_out)}" if want_dist else "")
    )
    if stdout_used:  # keep standard output for the tables
        print(human, file=sys.stderr)
    else:
        _emit(args, result, human)
    return 0


def _where(path):
    return "standard output" if path == STDIO else path


def _dask_progress(args):
    """Dask's bar writes to stdout: shown only where stdout is a terminal for a reader (not with
    --json, whose JSON goes there, nor with --quiet)."""
    return False if (args.quiet or args.json) else None


def _have_dask_sweep():
    """Whether Dask's distributed scheduler is installed (phasic.distributed.sweep runs on it)."""
    import importlib.util

    return importlib.util.find_spec("distributed") is not None


# ------------------------------------------------------------------------ registration
def register(subparsers):
    """Add the ``graph``, ``trace`` and ``evaluate`` groups to the ``phasic`` command."""
    graph = subparsers.add_parser("graph", help="build a model's graph into the store")
    sub = graph.add_subparsers(dest="graph_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "build",
        help="build the graph of a model spec (nothing is done when it is stored)",
        description="Build the graph of a model spec into the content-addressed store, "
        "under the key Graph(callback, cache=True, ...) uses; an existing entry "
        "is reused.",
    )
    _add_spec_args(p)
    p.add_argument("--expect", metavar="PATH", help="fail unless the entry lands at PATH (used by the workflow)")
    _add_output_args(p)
    p.set_defaults(func=_graph_build)

    trace = subparsers.add_parser("trace", help="record elimination traces into the store")
    sub = trace.add_subparsers(dest="trace_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "record",
        help="record a graph's elimination trace (nothing is done when it is stored)",
        description="Record the elimination trace of a graph (given by its store entry or a "
        "model spec) into the store next to the graph.",
    )
    _add_spec_args(p, entry=True)
    p.add_argument(
        "--out",
        metavar="FILE",
        help="also write the JSON result to FILE (atomically; '-': "
        "standard output, the summary line then goes to standard error)",
    )
    _add_output_args(p)
    p.set_defaults(func=_trace_record)

    p = subparsers.add_parser(
        "evaluate",
        help="moments and pdf/cdf of a graph over parameter vectors",
        description="Evaluate moments (and the pdf/cdf on a time grid) of a graph "
        "for every parameter vector, by replaying its elimination trace.",
    )
    _add_spec_args(p, entry=True)
    p.add_argument("--theta", metavar="JSON", help="parameter vectors, e.g. '[[1.0, 0.5], [2.0, 0.5]]'")
    p.add_argument(
        "--theta-grid",
        metavar="JSON",
        help="one list of values per parameter (Cartesian product), e.g. '[[1.0], [0.1, 1, 10]]'",
    )
    p.add_argument("--theta-names", metavar="A,B", help="column names of the parameters")
    p.add_argument(
        "--name",
        metavar="NAME",
        help="the model's name in its config: errors name it and its config keys (theta, theta_grid) instead of "
        "flags; the workflow passes it",
    )
    p.add_argument("--moments", type=int, metavar="K", help="number of moments (default 2)")
    p.add_argument("--rewards", metavar="R", help="'sfs', 'columns' or FILE.py:function (per-vertex rewards)")
    p.add_argument("--times", metavar="GRID", help="auto, auto:N, START:STOP:NUM or a JSON list (default auto)")
    p.add_argument(
        "--method",
        choices=("auto", "batch", "dask"),
        help="sweep with the core's batch replay or Dask (auto: Dask from --dask-threshold vectors on, when installed)",
    )
    p.add_argument("--dask-threshold", type=int, default=20000, metavar="N", help="default 20000")
    p.add_argument(
        "--trace", metavar="FILE", help="trace pointer from 'phasic trace record --out' to check ('-': standard input)"
    )
    p.add_argument(
        "--moments-out",
        metavar="TSV",
        help="write the moments table here ('-': standard output; "
        "default: an aligned table on standard output, none with --json)",
    )
    p.add_argument(
        "--distribution-out", metavar="TSV", help="write the pdf/cdf (pmf/cdf) table here ('-': standard output)"
    )
    g = p.add_argument_group("Demes model (instead of a model spec)")
    g.add_argument("--demes", metavar="FILE", help="a Demes YAML file: evaluate from_demes(FILE, samples, cache=True)")
    g.add_argument("--samples", metavar="JSON", help='haploid genomes per deme, e.g. \'{"A": 4, "B": 4}\'')
    g.add_argument("--state-space", choices=("sfs", "lineages"), help="default: from_demes' choice")
    g.add_argument(
        "--sfs-out",
        metavar="TSV",
        help="write the expected SFS here: one column per sampled deme (the cell) and branch_length",
    )
    _add_output_args(p)
    p.set_defaults(func=_evaluate)
    return graph
