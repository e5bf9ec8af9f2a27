"""``phasic build MODELS.yaml``: build many models' graphs and traces as Dask tasks.

``MODELS.yaml`` holds model specs in the format of :mod:`phasic.specs` (the workflow's
config format): a list of specs, or a mapping with a ``models:`` list (keys such as
``theta_grid`` that only concern evaluation are ignored here)::

    models:
      - name: kingman
        module: mypackage.models     # or  file: models/kingman.py (relative to MODELS.yaml)
        callback: kingman
        params: {theta: 2.0}
      - name: islands
        file: models/two_island.py
        callback: two_island
        ipv: [6, 6]

The Dask client is chosen as documented in :mod:`phasic.distributed`; ``--scheduler`` and
``--cluster slurm --jobs N`` override the environment and config.

Examples
--------
::

    phasic build models.yaml
    phasic build models.yaml --scheduler tcp://host:8786 --json
    phasic build models.yaml --cluster slurm --jobs 10
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["register", "read_models"]


def read_models(path, names=None):
    """The :class:`~phasic.distributed.ModelSpec` and name of every model in a YAML/JSON file.

    Parameters
    ----------
    path : path-like
        A list of model specs, or a mapping with a ``models`` list.
    names : list of str, optional
        Only these models (by ``name``).

    Returns
    -------
    list of (str, ModelSpec)

    Raises
    ------
    ParameterError
        Unreadable file, malformed YAML or spec (naming the entry), unknown name.
    """
    import yaml

    from phasic.distributed import ModelSpec
    from phasic.exceptions import ParameterError
    from phasic.specs import load_yaml, short_repr

    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParameterError(
            f"cannot read the models file {str(path)!r}: {exc.strerror or exc}; give an existing YAML or JSON file"
        ) from None
    try:
        doc = load_yaml(text, repr(str(path)))
    except yaml.YAMLError as exc:
        raise ParameterError(f"{str(path)!r} is not valid YAML/JSON ({str(exc)[:400]})") from None
    models = doc.get("models") if isinstance(doc, dict) else doc
    if not isinstance(models, list) or not models:
        raise ParameterError(
            f"{str(path)!r} must hold a non-empty list of model specs, or a mapping "
            f"with a 'models' list; got {short_repr(doc)}"
        )
    out = []
    for i, spec in enumerate(models):
        name = spec.get("name") if isinstance(spec, dict) else None
        if names and name not in names:
            continue
        try:
            out.append((name or f"model-{i}", ModelSpec.from_dict(spec, search_dirs=[str(path.parent), "."])))
        except ParameterError as exc:
            raise ParameterError(f"{str(path)!r}, models[{i}]: {exc}") from None
    missing = sorted(set(names or ()) - {name for name, _ in out})
    if missing:
        known = [m.get("name") for m in models if isinstance(m, dict)]
        raise ParameterError(f"no model named {short_repr(missing[0])} in {str(path)!r}; it holds {short_repr(known)}")
    return out


def _positive(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _run(args):
    from phasic.distributed import build, connect
    from phasic.store import Store

    models = read_models(args.models, args.model or None)
    specs = [spec for _, spec in models]
    progress = False if args.quiet else None
    store = Store()
    scheduler = args.scheduler
    cluster = args.cluster
    if args.jobs is not None and cluster != "slurm":
        from phasic.exceptions import ParameterError

        raise ParameterError(f"--jobs {args.jobs} needs --cluster slurm")
    if scheduler is None and cluster is None:
        infos = build(
            specs,
            retries=args.retries,
            trace=not args.no_trace,
            progress=progress,
            performance_report=args.performance_report,
            details=True,
        )
    else:
        if cluster == "slurm" and args.jobs is None:
            args.jobs = min(len(specs), 10)
        with connect(scheduler=scheduler, cluster=cluster, jobs=args.jobs) as conn:
            infos = build(
                specs,
                client=conn.client,
                retries=args.retries,
                trace=not args.no_trace,
                progress=progress,
                performance_report=args.performance_report,
                details=True,
            )
    rows = []
    for (name, spec), info in zip(models, infos):
        rows.append(
            {
                "name": name,
                "label": spec.label,
                "key": info["key"],
                "graph": str(store.path("graphs", info["key"])),
                "trace_key": info["trace_key"],
                "built": info["built"],
                "vertices": info["vertices"],
                "edges": info["edges"],
                "seconds": round(info["seconds"], 6),
                "slurm_job": info.get("slurm_job"),
            }
        )
    n_built = len({r["key"] for r in rows if r["built"]})
    if args.json:
        print(json.dumps({"cache_dir": os.path.abspath(store.root), "built": n_built, "models": rows}, indent=2))
    else:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            state = "built " if r["built"] else "stored"
            print(
                f"{r['name']:<{width}}  {state}  {r['key'][:16]}  {r['vertices']:>8} vertices  "
                f"{r['edges']:>9} edges  {r['seconds']:8.3f}s"
            )
        print(
            f"{n_built} built, {len(rows) - n_built} already stored, in {os.path.abspath(store.root)}", file=sys.stderr
        )
    return 0


def register(subparsers):
    """Add ``phasic build MODELS.yaml``."""
    p = subparsers.add_parser(
        "build",
        help="build many models' graphs and traces as Dask tasks",
        description="Build the graphs and elimination traces of the models in a "
        "YAML file as Dask tasks (one per distinct model; stored models "
        "are skipped).",
    )
    p.add_argument("models", metavar="MODELS.yaml", help="model specs: a list, or a mapping with 'models:'")
    p.add_argument("--model", metavar="NAME", action="append", help="only this model (repeatable)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDR", help="address of a running Dask scheduler")
    where.add_argument(
        "--cluster",
        choices=("slurm", "local"),
        help="start this cluster (slurm: dask-jobqueue, jobqueue.slurm.* config)",
    )
    p.add_argument("--jobs", type=_positive, metavar="N", help="SLURM jobs to start (default: min(models, 10))")
    p.add_argument("--retries", type=int, default=2, metavar="N", help="retries of a failed task (default 2)")
    p.add_argument("--no-trace", action="store_true", help="build graphs only, no elimination traces")
    p.add_argument("--performance-report", metavar="FILE.html", help="write Dask's HTML performance report")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
    return p
