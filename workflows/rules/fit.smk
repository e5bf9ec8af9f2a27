# Fits (config `fits:`): a Demes model's parameters (named in a moments-style options file)
# fitted to an observed SFS (.fs, .trees, or a VCF with a popmap) by `phasic fit`, by maximum
# likelihood (fit_mle; standard errors from the Hessian or, with bootstrap replicates, the
# Godambe information) or SVGD (fit_svgd); the log-likelihood scanned along each parameter around the estimate
# (scan_fit, through phasic.inference.loglik); plots (plot_fit, plot_posterior). The fit's
# graph and trace are found in (or written to) the store by the library (from_demes with
# cache=True): a rerun, another fit of the same model or a scan replays the stored trace.
# Everything goes to results/<fit>/ and the fit's own section of the report.


rule fit_mle:
    input:
        model=fit_input("model"),
        options=fit_input("options"),
        data=fit_input("data"),
        extra=fit_extra_inputs,
    output:
        estimates=report(
            "results/{fit}/estimates.tsv",
            category="{fit}",
            subcategory="tables",
            caption="../report/fit_estimates.rst",
        ),
        fitted=report(
            "results/{fit}/fitted.yaml", category="{fit}", subcategory="tables", caption="../report/fit_fitted.rst"
        ),
        sfs=report(
            "results/{fit}/sfs.tsv", category="{fit}", subcategory="tables", caption="../report/fit_sfs_table.rst"
        ),
        summary="results/{fit}/fit.json",
    log:
        "logs/{fit}/fit.log",
    benchmark:
        "logs/{fit}/fit.benchmark.tsv"
    wildcard_constraints:
        fit=_model_regex(MLE_FITS),
    params:
        cache_dir=CACHE_DIR,
        settings=lambda wildcards: fitconf.fit_args(FITS[wildcards.fit]),
    threads: 1
    resources:
        mem_mb=fit_resource("mem_mb"),
        runtime=fit_resource("runtime"),
    conda:
        "../envs/phasic.yaml"
    shell:
        "phasic --cache-dir {params.cache_dir:q} fit {input.model:q} {input.options:q} {input.data:q} {params.settings}"
        " --out {output.estimates:q} --fitted-out {output.fitted:q} --sfs-out {output.sfs:q}"
        " --json > {output.summary:q} 2> {log:q}"


rule fit_svgd:
    input:
        model=fit_input("model"),
        options=fit_input("options"),
        data=fit_input("data"),
        extra=fit_extra_inputs,
    output:
        estimates=report(
            "results/{fit}/estimates.tsv",
            category="{fit}",
            subcategory="tables",
            caption="../report/fit_estimates.rst",
        ),
        fitted=report(
            "results/{fit}/fitted.yaml", category="{fit}", subcategory="tables", caption="../report/fit_fitted.rst"
        ),
        sfs=report(
            "results/{fit}/sfs.tsv", category="{fit}", subcategory="tables", caption="../report/fit_sfs_table.rst"
        ),
        posterior=report(
            "results/{fit}/posterior.tsv",
            category="{fit}",
            subcategory="tables",
            caption="../report/fit_posterior_table.rst",
        ),
        summary="results/{fit}/fit.json",
    log:
        "logs/{fit}/fit.log",
    benchmark:
        "logs/{fit}/fit.benchmark.tsv"
    wildcard_constraints:
        fit=_model_regex(SVGD_FITS),
    params:
        cache_dir=CACHE_DIR,
        settings=lambda wildcards: fitconf.fit_args(FITS[wildcards.fit]),
    threads: 1
    resources:
        mem_mb=fit_resource("mem_mb"),
        runtime=fit_resource("runtime"),
    conda:
        "../envs/phasic.yaml"
    shell:
        "phasic --cache-dir {params.cache_dir:q} fit {input.model:q} {input.options:q} {input.data:q} {params.settings}"
        " --out {output.estimates:q} --fitted-out {output.fitted:q} --sfs-out {output.sfs:q}"
        " --posterior-out {output.posterior:q} --json > {output.summary:q} 2> {log:q}"


# The log-likelihood along each parameter, the others at the estimate (a conditional slice, not
# a profile that re-maximises the others): `points` values over estimate +- width x standard
# error (svgd: the posterior median +- width x sd), within the options' bounds.


rule scan_fit:
    input:
        estimates="results/{fit}/estimates.tsv",
        sfs="results/{fit}/sfs.tsv",
        model=fit_input("model"),
        options=fit_input("options"),
        data=fit_input("data"),
    output:
        scan=report(
            "results/{fit}/loglik.tsv", category="{fit}", subcategory="tables", caption="../report/fit_scan_table.rst"
        ),
    log:
        "logs/{fit}/scan_fit.log",
    benchmark:
        "logs/{fit}/scan_fit.benchmark.tsv"
    params:
        fit=lambda wildcards: FITS[wildcards.fit],
        cache_dir=CACHE_DIR,
    threads: 1
    resources:
        mem_mb=fit_resource("mem_mb"),
        runtime=fit_resource("runtime"),
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/scan_fit.py"


rule plot_fit:
    input:
        estimates="results/{fit}/estimates.tsv",
        sfs="results/{fit}/sfs.tsv",
        scan="results/{fit}/loglik.tsv",
        fitted="results/{fit}/fitted.yaml",
        summary="results/{fit}/fit.json",
    output:
        sfs=report("results/{fit}/sfs.png", category="{fit}", subcategory="plots", caption="../report/fit_sfs.rst"),
        scan=report(
            "results/{fit}/loglik.png", category="{fit}", subcategory="plots", caption="../report/fit_scan.rst"
        ),
        demes=report(
            "results/{fit}/demes.png", category="{fit}", subcategory="plots", caption="../report/fit_demes.rst"
        ),
    log:
        "logs/{fit}/plot_fit.log",
    params:
        samples=lambda wildcards: FITS[wildcards.fit]["samples"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/plot_fit.py"


rule plot_posterior:
    input:
        posterior="results/{fit}/posterior.tsv",
        estimates="results/{fit}/estimates.tsv",
    output:
        pairs=report(
            "results/{fit}/posterior.png",
            category="{fit}",
            subcategory="plots",
            caption="../report/fit_posterior.rst",
        ),
    log:
        "logs/{fit}/plot_posterior.log",
    wildcard_constraints:
        fit=_model_regex(SVGD_FITS),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/phasic.yaml"
    script:
        "../scripts/plot_posterior.py"
