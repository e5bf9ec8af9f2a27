"""``phasic fit``: fit a Demes model to an observed SFS (:func:`phasic.inference.fit`) by
maximum likelihood or SVGD, writing the estimates, the fitted Demes graph, the observed and
expected SFS and (SVGD) the posterior sample."""

from __future__ import annotations

import json
import sys

from phasic.cli._common import atomic_write, usage_error

METHODS = ("mle", "svgd")
UNCERTAINTIES = ("hessian", "godambe")
#: the windows of the block bootstrap when --blocks is not given (inference.fit's default)
BLOCKS = 100
VCF_SUFFIXES = (".vcf", ".vcf.gz", ".bcf")
#: the columns of the estimates table of each method
ESTIMATE_COLUMNS = {"mle": ("estimate", "stderr"), "svgd": ("mean", "sd", "q05", "median", "q95")}


def _observed(data, samples, popmap=None, skipped=None):
    """``(counts, mask, folded)`` of the data as the likelihood reads them (a ``.fs`` file with
    its mask and folding; a ``.trees`` file: the site SFS of each deme's samples; a VCF with
    its popmap: the SFS of its biallelic SNPs, the records skipped counted in `skipped`)."""
    from phasic import inference

    return inference.observed_sfs(data, None, samples, popmap, skipped=skipped)


def _bootstrap(text):
    """``--bootstrap``: a number of block-bootstrap replicates, or a comma-separated list of
    ``.fs`` files."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    files = [f.strip() for f in text.split(",")]
    if not all(files):
        raise usage_error(f"--bootstrap {text!r}: an empty file name in the list")
    bad = [f for f in files if not f.endswith(".fs")]
    if bad:
        raise usage_error(
            f"--bootstrap {text!r}: {bad[0]!r} is not a .fs file; give a number of block-bootstrap "
            "replicates (tree-sequence data) or a comma-separated list of .fs files"
        )
    return files


def _used_cells(shape, mask, folded):
    """Cells the likelihood compares: not a corner (monomorphic), not masked, and on the kept
    side of a folded spectrum (as phasic.inference's likelihoods do)."""
    import numpy as np

    used = ~np.asarray(mask, bool)
    used[(0,) * len(shape)] = False
    used[tuple(n - 1 for n in shape)] = False
    if folded:
        used &= np.indices(shape).sum(axis=0) <= (sum(shape) - len(shape)) / 2
    return used


def sfs_table(graph, data, samples, mutation_rate, sequence_length, folded, state_space):
    """The observed SFS and the one expected under the fitted Demes `graph`, cell by cell, as
    the likelihood compares them (both folded for folded data), as TSV text.

    Columns: one per sampled deme (the cell), ``observed``, ``expected`` (theta x E[branch
    lengths]; theta = mutation rate x sequence length, else its maximum-likelihood value given
    the data), ``used`` (1: the cell enters the likelihood; 0: monomorphic, masked or folded
    away)."""
    import numpy as np

    from phasic import inference
    from phasic.demography import from_demes

    samples = {k: v for k, v in samples.items() if v}
    counts, mask, file_folded = _observed(data, samples)
    folded = file_folded if folded is None else bool(folded)
    e = from_demes(graph, samples, state_space, cache=True).expected_sfs()
    if e.shape != counts.shape:
        raise usage_error(
            f"the observed SFS {str(data)!r} has shape {counts.shape}, the samples {samples} give {e.shape}"
        )
    if mutation_rate is not None:
        theta = float(mutation_rate) * float(sequence_length)
    else:
        theta = inference.theta_mle(e, counts, mask, folded)
    observed, expected = (inference.fold(counts), inference.fold(theta * e)) if folded else (counts, theta * e)
    used = _used_cells(counts.shape, mask, folded)
    rows = ["\t".join([*samples, "observed", "expected", "used"])]
    for cell in np.ndindex(counts.shape):
        rows.append(
            "\t".join(
                [
                    *(str(c) for c in cell),
                    repr(float(observed[cell])),
                    repr(float(expected[cell])),
                    str(int(used[cell])),
                ]
            )
        )
    return "\n".join(rows) + "\n", theta, folded


def _estimates(res, method):
    """The estimates table: MLE estimate and standard error, or the posterior's summary."""
    cols = ESTIMATE_COLUMNS[method]
    rows = ["\t".join(("parameter", *cols))]
    if method == "mle":
        rows += [f"{n}\t{res.params[n]!r}\t{res.stderr[n]!r}" for n in res.names]
    else:
        for row in res.summary():
            name, *values = row
            rows.append("\t".join([str(name), *(repr(float(v)) for v in values)]))
    return "\n".join(rows) + "\n"


def _posterior(res):
    """The posterior sample: one row per particle, one column per parameter."""
    rows = ["\t".join(res.names)]
    rows += ["\t".join(repr(float(v)) for v in particle) for particle in res.samples]
    return "\n".join(rows) + "\n"


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
    svgd_only = {"--particles": args.particles, "--iterations": args.iterations, "--posterior-out": args.posterior_out}
    if args.method != "svgd":
        given = [flag for flag, value in svgd_only.items() if value is not None]
        if given:
            raise usage_error(f"{given[0]} goes with --method svgd (the method is {args.method!r})")
    for flag, value in (("--particles", args.particles), ("--iterations", args.iterations), ("--starts", args.starts)):
        if value is not None and value < 1:
            raise usage_error(f"{flag} must be a positive integer, got {value!r}")
    kwargs = {}
    uncertainty = args.uncertainty or "hessian"
    if args.method != "mle":
        given = [f for f, v in (("--uncertainty", args.uncertainty), ("--bootstrap", args.bootstrap)) if v is not None]
        given += ["--blocks"] if args.blocks is not None else []
        if given:
            raise usage_error(f"{given[0]} goes with --method mle (the method is {args.method!r})")
    if uncertainty == "godambe" and args.bootstrap is None:
        raise usage_error(
            "--uncertainty godambe needs --bootstrap (a number of block-bootstrap replicates with .trees data, "
            "or a comma-separated list of .fs replicates)"
        )
    if args.bootstrap is not None:
        if uncertainty != "godambe":
            raise usage_error("--bootstrap goes with --uncertainty godambe")
        kwargs["bootstrap"] = _bootstrap(args.bootstrap)
    if args.blocks is not None:
        if not isinstance(kwargs.get("bootstrap"), int):
            raise usage_error("--blocks goes with --bootstrap N (block-bootstrap replicates of .trees data)")
        if args.blocks < 2:
            raise usage_error(f"--blocks must be an integer of at least 2, got {args.blocks!r}")
        kwargs["blocks"] = args.blocks
    if args.method == "mle":
        kwargs["uncertainty"] = uncertainty
    data, sites = args.data, None
    if args.popmap is None and str(args.data).lower().endswith(VCF_SUFFIXES):
        raise usage_error(f"the VCF {args.data!r} needs --popmap FILE (one 'sample deme' line per sample)")
    if args.popmap is not None:
        # a VCF is read once, here: its SFS goes to the fit and the SFS table; what it gave (records
        # used and skipped) to the log and the JSON
        sites = {}
        data, _, _ = _observed(args.data, samples, args.popmap, sites)
        print(
            f"VCF: {sites['used']} of {sites['records']} records used; skipped: {sites['not_biallelic_snp']} not "
            f"biallelic SNPs, {sites['missing_genotype']} with a missing genotype, {sites['ancestral_unknown']} "
            "whose INFO/AA is neither REF nor ALT",
            file=sys.stderr,
        )
    if args.method == "svgd":
        kwargs.update(
            {k: v for k, v in (("n_particles", args.particles), ("n_iterations", args.iterations)) if v is not None}
        )
    folded = True if args.folded else None
    res = inference.fit(
        args.model,
        args.options,
        data,
        samples=samples,
        mutation_rate=args.mutation_rate,
        sequence_length=args.sequence_length,
        method=args.method,
        starts=args.starts,
        seed=args.seed,
        folded=folded,
        state_space=args.state_space,
        **kwargs,
    )
    converged = bool(getattr(res, "converged", True))
    atomic_write(args.out, _estimates(res, args.method))
    fitted = res.to_demes()
    if args.fitted_out:
        import demes

        atomic_write(args.fitted_out, demes.dumps(fitted))
    if args.posterior_out:
        atomic_write(args.posterior_out, _posterior(res))
    summary = {"method": args.method, "names": list(res.names), "loglik": res.loglik, "converged": converged}
    if args.method == "mle":
        summary.update(
            params=res.params,
            stderr=res.stderr,
            theta=res.theta,
            evaluations=res.evaluations,
            uncertainty=res.uncertainty,
        )
        if args.bootstrap is not None:
            b = kwargs["bootstrap"]
            summary.update(bootstrap=b if isinstance(b, int) else len(b))
            if isinstance(b, int):
                summary.update(blocks=kwargs.get("blocks", BLOCKS))
    else:
        summary.update(
            stationarity=getattr(res, "stationarity", None),
            map_params=dict(res.map_params),
            summary={row[0]: dict(zip(ESTIMATE_COLUMNS["svgd"], map(float, row[1:]))) for row in res.summary()},
            n_particles=len(res.samples),
        )
    if sites is not None:
        summary.update(vcf_records=sites)
    if args.sfs_out:
        text, theta, used_folded = sfs_table(
            fitted, data, samples, args.mutation_rate, args.sequence_length, folded, args.state_space
        )
        atomic_write(args.sfs_out, text)
        summary.update(theta=theta, folded=used_folded)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    if args.method == "mle":
        state = "converged" if converged else f"NOT converged ({getattr(res, 'message', '')})"
        print(f"log-likelihood {res.loglik:.6g}, {state}, {res.evaluations} evaluations", file=sys.stderr)
        return 0 if converged else 1
    # a sampler run for a fixed number of iterations: its particles are written either way
    state = "the particles settled" if converged else "warning: the particles had NOT settled (more iterations?)"
    print(
        f"log-likelihood {res.loglik:.6g} at the MAP particle, {len(res.samples)} particles, {state}", file=sys.stderr
    )
    return 0


def register(subparsers):
    """Add ``phasic fit`` to the ``phasic`` command."""
    p = subparsers.add_parser(
        "fit",
        help="fit a Demes model to an observed SFS (maximum likelihood or SVGD)",
        description="Fit the parameters of a Demes model (named in a moments-style options file) to an "
        "observed site frequency spectrum, on cached graphs and traces: by maximum likelihood (estimates "
        "and standard errors) or by Stein variational gradient descent (a posterior sample and its "
        "summary). Exit status 1 when the optimiser did not converge.",
    )
    p.add_argument("model", help="the Demes YAML file (its values are the starting point)")
    p.add_argument("options", help="the options YAML file (parameters, bounds, constraints; moments' format)")
    p.add_argument(
        "data",
        help="the observed SFS: a dadi/moments .fs file, a tskit .trees file, or a VCF/BCF file (.vcf, .vcf.gz, "
        ".bcf; with --popmap)",
    )
    p.add_argument(
        "--samples", required=True, metavar="JSON", help='haploid genomes per deme, e.g. \'{"A": 4, "B": 4}\''
    )
    p.add_argument("--mutation-rate", type=float, help="per generation (with --sequence-length: Poisson likelihood)")
    p.add_argument("--sequence-length", type=float, help="sites (with --mutation-rate)")
    p.add_argument("--method", default="mle", choices=METHODS, help="maximum likelihood (default) or SVGD")
    p.add_argument("--starts", type=int, default=1, help="mle: optimisations from random restarts (default 1)")
    p.add_argument("--seed", type=int, help="seed of the restarts (mle) or of the particles (svgd)")
    p.add_argument("--particles", type=int, metavar="N", help="svgd: the number of particles")
    p.add_argument("--iterations", type=int, metavar="N", help="svgd: the number of iterations")
    p.add_argument("--folded", action="store_true", help="compare folded spectra")
    p.add_argument(
        "--popmap",
        metavar="FILE",
        help="VCF data: the deme of each sample, one 'sample deme' line each (whitespace or tab separated)",
    )
    p.add_argument(
        "--uncertainty",
        choices=UNCERTAINTIES,
        help="mle: standard errors from the observed information (hessian, default) or the Godambe information "
        "for linked sites (godambe, with --bootstrap)",
    )
    p.add_argument(
        "--bootstrap",
        metavar="N_OR_FILES",
        help="godambe: a number of block-bootstrap replicates of .trees data, or a comma-separated list of .fs "
        "files (bootstrap replicates of the data)",
    )
    p.add_argument(
        "--blocks",
        type=int,
        metavar="N",
        help=f"--bootstrap N: equal windows of the tree sequence resampled (default {BLOCKS})",
    )
    p.add_argument("--state-space", choices=("sfs", "lineages"), help="the model's state space (default: automatic)")
    p.add_argument(
        "--out",
        default="-",
        metavar="TSV",
        help="the estimates (default: stdout): parameter, estimate, stderr (mle); parameter, mean, sd, q05, "
        "median, q95 (svgd)",
    )
    p.add_argument("--fitted-out", metavar="YAML", help="write the fitted Demes graph here")
    p.add_argument(
        "--sfs-out",
        metavar="TSV",
        help="write the observed and the fitted expected SFS here (one row per cell: the cell, observed, "
        "expected, used)",
    )
    p.add_argument(
        "--posterior-out", metavar="TSV", help="svgd: write the posterior sample here (one row per particle)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_fit)
