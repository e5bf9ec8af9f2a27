# Stage 1: a model's graph, built into the content-addressed store.
#
# The output *is* the store entry <cache>/graphs/<key[:2]>/<key[2:]>.h5, whose key common.smk
# computed from the model spec with phasic's key function (the one Graph(..., cache=True)
# uses). An entry that exists -- built by an earlier run, another workflow or a library call --
# is simply up to date. There are no inputs (the key already changes with the callback's
# code and parameters), so no timestamp makes an entry look stale. update() keeps Snakemake
# from deleting an existing entry before a forced rerun (the command then finds and reuses
# it) and restores it if such a rerun fails; the entry itself is written atomically by phasic,
# so a failing build leaves nothing behind.


rule build_graph:
    output:
        entry=update(f"{CACHE_DIR}/graphs/{{prefix}}/{{rest}}.h5"),
    log:
        "logs/build_graph/{prefix}/{rest}.log",
    benchmark:
        "logs/build_graph/{prefix}/{rest}.benchmark.tsv"
    params:
        spec=build_spec,
        cache_dir=lambda wildcards, output: store_root(output.entry),
    wildcard_constraints:
        prefix="[0-9a-f]{2}",
        rest="[0-9a-f]{62}",
    threads: 1
    resources:
        mem_mb=lambda wildcards: key_resource(wildcards, "mem_mb"),
        runtime=lambda wildcards: key_resource(wildcards, "runtime"),
    conda:
        "../envs/phasic.yaml"
    shell:
        "phasic --cache-dir {params.cache_dir:q} graph build --spec {params.spec:q}"
        " --expect {output.entry:q} --json > {log:q} 2>&1"
