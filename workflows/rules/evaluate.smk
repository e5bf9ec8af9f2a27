# Stage 3: moments and the pdf/cdf of every parameter vector of a model, by replaying the
# stored trace (`phasic evaluate`: one core call per block of vectors; Dask through
# phasic.distributed.sweep for sweeps of at least `dask_threshold` vectors).


rule evaluate:
    input:
        graph=ancient(graph_entry),
        trace="results/{model}/trace.json",
    output:
        moments=report(
            "results/{model}/moments.tsv",
            category="{model}",
            subcategory="tables",
            caption="../report/moments.rst",
        ),
        distribution=report(
            "results/{model}/distribution.tsv",
            category="{model}",
            subcategory="tables",
            caption="../report/distribution.rst",
        ),
    log:
        "logs/{model}/evaluate.log",
    benchmark:
        "logs/{model}/evaluate.benchmark.tsv"
    wildcard_constraints:
        model=_model_regex(CALLBACK_MODELS),
    params:
        cache_dir=lambda wildcards, input: store_root(input.graph),
        settings=evaluation_args,
    threads: lambda wildcards: model_resource(wildcards.model, "threads")
    resources:
        mem_mb=sized_resource("evaluate", "mem_mb"),
        runtime=sized_resource("evaluate", "runtime"),
    conda:
        "../envs/phasic.yaml"
    shell:
        "phasic --cache-dir {params.cache_dir:q} evaluate {input.graph:q} --trace {input.trace:q} --name {wildcards.model:q}"
        " {params.settings} --moments-out {output.moments:q}"
        " --distribution-out {output.distribution:q} --json > {log:q} 2>&1"


# A Demes model (`demes:` in its config entry): phasic.demography.from_demes(file, samples,
# cache=True) finds the graph and trace built above in the store and evaluates the T_MRCA under
# the demography (moments.tsv, distribution.tsv, in the tables' usual format) and the expected
# SFS (sfs.tsv: one column per sampled deme, the cell, and branch_length).


rule evaluate_demes:
    input:
        graph=ancient(graph_entry),
        trace="results/{model}/trace.json",
        demes=lambda wildcards: MODELS[wildcards.model]["demes"],  # edited sizes/times/rates: rerun
    output:
        moments=report(
            "results/{model}/moments.tsv",
            category="{model}",
            subcategory="tables",
            caption="../report/moments.rst",
        ),
        distribution=report(
            "results/{model}/distribution.tsv",
            category="{model}",
            subcategory="tables",
            caption="../report/distribution.rst",
        ),
        sfs=report(
            "results/{model}/sfs.tsv",
            category="{model}",
            subcategory="tables",
            caption="../report/demes_sfs_table.rst",
        ),
    log:
        "logs/{model}/evaluate.log",
    benchmark:
        "logs/{model}/evaluate.benchmark.tsv"
    wildcard_constraints:
        model=_model_regex(DEMES_MODELS),
    params:
        cache_dir=lambda wildcards, input: store_root(input.graph),
        settings=demes_args,
    threads: 1
    resources:
        mem_mb=sized_resource("evaluate", "mem_mb"),
        runtime=sized_resource("evaluate", "runtime"),
    conda:
        "../envs/phasic.yaml"
    shell:
        "phasic --cache-dir {params.cache_dir:q} evaluate {input.graph:q} --trace {input.trace:q} --name {wildcards.model:q}"
        " {params.settings} --moments-out {output.moments:q} --distribution-out {output.distribution:q}"
        " --sfs-out {output.sfs:q} --json > {log:q} 2>&1"
