"""``phasic fit``: fit a Demes model to an observed SFS by maximum likelihood
(:func:`phasic.inference.fit`), writing the estimates and the fitted Demes graph."""

from __future__ import annotations

import json
import sys

from phasic.cli._common import atomic_write, usage_error


def _fit(args):
    from phasic import inference

    try:
        samples = json.loads(args.samples)
    except json.JSONDecodeError as exc:
        raise usage_error(f"--samples {args.samples!r} is not JSON ({exc.msg}); e.g. '{{\"A\": 4}}'") from None
    if not isinstance(samples, dict):
        raise usage_error(f"--samples {args.samples!r} must be a JSON object of deme -> genomes")
    if (args.mutation_rate is None) != (args.sequence_length is None):
        raise usage_error("give both --mutation-rate and --sequence-length (Poisson), or neither (multinomial)")
    res = inference.fit(
        args.model,
        args.options,
        args.data,
        samples=samples,
        mutation_rate=args.mutation_rate,
        sequence_length=args.sequence_length,
        method=args.method,
        starts=args.starts,
        seed=args.seed,
        folded=True if args.folded else None,
    )
    rows = ["parameter\testimate\tstderr"]
    rows += [f"{n}\t{res.params[n]!r}\t{res.stderr[n]!r}" for n in res.names]
    atomic_write(args.out, "\n".join(rows) + "\n")
    if args.fitted_out:
        import demes

        atomic_write(args.fitted_out, demes.dumps(res.to_demes()))
    summary = {
        "params": res.params,
        "stderr": res.stderr,
        "loglik": res.loglik,
        "converged": res.converged,
        "theta": res.theta,
        "evaluations": res.evaluations,
    }
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        state = "converged" if res.converged else f"NOT converged ({res.message})"
        print(f"log-likelihood {res.loglik:.6g}, {state}, {res.evaluations} evaluations", file=sys.stderr)
    return 0 if res.converged else 1


def register(subparsers):
    """Add ``phasic fit`` to the ``phasic`` command."""
    p = subparsers.add_parser(
        "fit",
        help="fit a Demes model to an observed SFS (maximum likelihood)",
        description="Fit the parameters of a Demes model (named in a moments-style options file) to an "
        "observed site frequency spectrum by maximum likelihood, on cached graphs and traces. Exit "
        "status 1 when the optimiser did not converge.",
    )
    p.add_argument("model", help="the Demes YAML file (its values are the starting point)")
    p.add_argument("options", help="the options YAML file (parameters, bounds, constraints; moments' format)")
    p.add_argument("data", help="the observed SFS: a dadi/moments .fs file or a tskit .trees file")
    p.add_argument(
        "--samples", required=True, metavar="JSON", help='haploid genomes per deme, e.g. \'{"A": 4, "B": 4}\''
    )
    p.add_argument("--mutation-rate", type=float, help="per generation (with --sequence-length: Poisson likelihood)")
    p.add_argument("--sequence-length", type=float, help="sites (with --mutation-rate)")
    p.add_argument("--method", default="mle", choices=["mle"], help="the fitting method (this stage: mle)")
    p.add_argument("--starts", type=int, default=1, help="optimisations from random restarts (default 1)")
    p.add_argument("--seed", type=int, help="seed of the restarts")
    p.add_argument("--folded", action="store_true", help="compare folded spectra")
    p.add_argument("--out", default="-", metavar="TSV", help="estimates and standard errors (default: stdout)")
    p.add_argument("--fitted-out", metavar="YAML", help="write the fitted Demes graph here")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_fit)
