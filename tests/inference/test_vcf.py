"""VCF/BCF data for phasic.inference (read by cyvcf2 with a population map): the joint SFS of an
msprime simulation written by tskit equals tskit's own, plain, gzipped and as BCF; INFO/AA
polarisation; skipped sites (not biallelic SNPs, missing genotypes, unknown ancestral allele);
ploidy; the errors; and the popmap reaching the likelihood."""

import gzip
import shutil

import numpy as np
import pytest

msprime = pytest.importorskip("msprime")
cyvcf2 = pytest.importorskip("cyvcf2")

from phasic import inference  # noqa: E402
from phasic.exceptions import ParameterError  # noqa: E402
from phasic.inference._data import read_vcf  # noqa: E402

SAMPLES = {"A": 6, "B": 4}  # haploid genomes: 3 and 2 diploid individuals


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Two demes split 1000 generations ago, diploid individuals, binary mutations on a
    discrete genome (distinct positions: one VCF record per site)."""
    base = tmp_path_factory.mktemp("vcf")
    dem = msprime.Demography()
    dem.add_population(name="A", initial_size=1e4)
    dem.add_population(name="B", initial_size=5e3)
    dem.add_population(name="anc", initial_size=1e4)
    dem.add_population_split(time=1000, derived=["A", "B"], ancestral="anc")
    ts = msprime.sim_ancestry(
        samples={"A": 3, "B": 2},
        demography=dem,
        sequence_length=2e5,
        recombination_rate=1e-8,
        random_seed=5,
    )
    ts = msprime.sim_mutations(ts, rate=2e-8, random_seed=6, model=msprime.BinaryMutationModel(), discrete_genome=True)
    assert ts.num_sites > 50 and ts.num_sites == len(set(ts.tables.sites.position))
    path = base / "data.vcf"
    with open(path, "w") as f:
        ts.write_vcf(f, position_transform=lambda x: 1 + np.asarray(x))  # VCF positions start at 1
    with open(path, "rb") as src, gzip.open(base / "data.vcf.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    # a BCF copy written by cyvcf2 (htslib)
    reader = cyvcf2.VCF(str(path))
    writer = cyvcf2.Writer(str(base / "data.bcf"), reader, mode="wb")
    for var in reader:
        writer.write_record(var)
    writer.close()
    reader.close()
    # tskit names individuals tsk_0, tsk_1, ... in the order of the individuals table
    popmap = {}
    for ind in ts.individuals():
        popmap[f"tsk_{ind.id}"] = ts.population(ts.node(ind.nodes[0]).population).metadata["name"]
    names = {p.metadata["name"]: p.id for p in ts.populations()}
    sets = [ts.samples(population=names[d]) for d in SAMPLES]
    ref = ts.allele_frequency_spectrum(sample_sets=sets, polarised=True, span_normalise=False, mode="site")
    return {"base": base, "ts": ts, "popmap": popmap, "ref": ref, "vcf": path}


@pytest.mark.parametrize("name", ["data.vcf", "data.vcf.gz", "data.bcf"])
def test_sfs_equals_tskit(sim, name):
    counts, mask, folded = inference.observed_sfs(sim["base"] / name, None, SAMPLES, sim["popmap"])
    assert counts.shape == (7, 5) and not folded and not mask.any()
    np.testing.assert_array_equal(counts, sim["ref"])
    assert counts.sum() == sim["ts"].num_sites


def test_axes_follow_samples_and_popmap_file(sim, tmp_path):
    """The axes in the order of `samples`; a popmap file (tabs or spaces, comments)."""
    lines = ["# sample deme"] + [
        f"{s}\t{d}" if i % 2 else f"{s}   {d}" for i, (s, d) in enumerate(sim["popmap"].items())
    ]
    (tmp_path / "pops.txt").write_text("\n".join(lines) + "\n\n")
    swapped = {"B": 4, "A": 6}
    counts, _, _ = inference.observed_sfs(str(sim["vcf"]), (5, 7), swapped, str(tmp_path / "pops.txt"))
    np.testing.assert_array_equal(counts, sim["ref"].T)


def test_unmapped_samples_are_left_out(sim):
    """Samples of the file that the popmap does not name do not count: one deme alone."""
    only_a = {s: d for s, d in sim["popmap"].items() if d == "A"}
    counts, _, _ = inference.observed_sfs(sim["vcf"], (7,), {"A": 6}, only_a)
    np.testing.assert_array_equal(counts, sim["ref"].sum(axis=1))


HEADER = """\
##fileformat=VCFv4.2
##INFO=<ID=AA,Number=1,Type=String,Description="Ancestral allele">
##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">
##contig=<ID=1,length=1000>
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\ts4
"""
# s1, s2 in deme P (diploid), s3 diploid and s4 haploid in deme Q: 4 and 3 genomes
RECORDS = [
    ("A", "C", ".", "0/1\t1/1\t0/0\t1"),  # ALT derived: P 3, Q 1
    ("A", "C", "AA=A", "0/1\t1/1\t0/0\t1"),  # AA = REF: the same, P 3, Q 1
    ("A", "C", "AA=c|||", "0/1\t1/1\t0/0\t1"),  # AA = ALT (lower case, Ensembl style): REF derived, P 1, Q 2
    ("G", "T", "AA=C", "0/1\t0/0\t0/1\t0"),  # AA neither: skipped
    ("G", "T", "AA=N", "0/1\t0/0\t0/1\t0"),  # unknown: skipped
    ("G", "T", ".", "0/1\t./.\t0/1\t0"),  # a missing genotype: skipped
    ("G", "T", ".", "0/1\t0/0\t0/.\t0"),  # half missing: skipped
    ("G", "T,C", ".", "0/1\t0/0\t0/2\t0"),  # multiallelic: skipped
    ("GA", "G", ".", "0/1\t0/0\t0/1\t0"),  # an indel: skipped
    ("G", "T", ".", "0|0\t0|0\t1|1\t1"),  # P 0, Q 3
]


def _write(path, records, header=HEADER):
    rows = [f"1\t{i + 1}\t.\t{ref}\t{alt}\t.\tPASS\t{info}\tGT\t{gt}" for i, (ref, alt, info, gt) in enumerate(records)]
    path.write_text(header + "\n".join(rows) + "\n")
    return path


POPMAP = {"s1": "P", "s2": "P", "s3": "Q", "s4": "Q"}


def test_ancestral_allele_polarises_and_skipped_sites(tmp_path):
    path = _write(tmp_path / "aa.vcf", RECORDS)
    counts, skipped = read_vcf(path, POPMAP, {"P": 4, "Q": 3})
    want = np.zeros((5, 4))
    want[3, 1] = 2  # ALT derived, twice (no AA; AA = REF)
    want[1, 2] = 1  # AA = ALT: the REF allele counted
    want[0, 3] = 1
    np.testing.assert_array_equal(counts, want)
    assert skipped == {
        "records": 10,
        "used": 4,
        "not_biallelic_snp": 2,
        "missing_genotype": 2,
        "ancestral_unknown": 2,
    }


def test_errors(sim, tmp_path):
    vcf, popmap = sim["vcf"], sim["popmap"]
    with pytest.raises(ParameterError, match=r"needs a popmap"):
        inference.observed_sfs(vcf, None, SAMPLES)
    with pytest.raises(ParameterError, match=r"popmap names sample 'nobody', which the VCF"):
        inference.observed_sfs(vcf, None, SAMPLES, {**popmap, "nobody": "A"})
    with pytest.raises(ParameterError, match=r"to deme 'C', which is not in samples \(\['A', 'B'\]"):
        inference.observed_sfs(vcf, None, SAMPLES, {**popmap, "tsk_0": "C"})
    with pytest.raises(ParameterError, match=r"to deme 'B', which has 0 genomes in samples"):
        inference.observed_sfs(vcf, None, {"A": 6, "B": 0}, popmap)
    with pytest.raises(ParameterError, match=r"has 6 genomes of deme 'A' at 1:\d+ .*samples says 8"):
        inference.observed_sfs(vcf, None, {"A": 8, "B": 4}, popmap)
    with pytest.raises(ParameterError, match=r"popmap maps no sample to deme 'B'"):
        inference.observed_sfs(vcf, None, SAMPLES, {s: d for s, d in popmap.items() if d == "A"})
    with pytest.raises(ParameterError, match=r"the observed SFS has shape \(7, 5\), the model's samples give \(5, 7\)"):
        inference.observed_sfs(vcf, (5, 7), SAMPLES, popmap)
    with pytest.raises(ParameterError, match=r"VCF file '.*missing.vcf' not found"):
        inference.observed_sfs(tmp_path / "missing.vcf", None, SAMPLES, popmap)
    with pytest.raises(ParameterError, match=r"popmap goes with VCF data"):
        inference.observed_sfs(np.zeros(7), None, {"A": 6}, popmap)
    (tmp_path / "three.txt").write_text("tsk_0 A extra\n")
    with pytest.raises(ParameterError, match=r"line 1: 'tsk_0 A extra' is not two columns"):
        inference.observed_sfs(vcf, None, SAMPLES, str(tmp_path / "three.txt"))
    with pytest.raises(ParameterError, match=r"popmap file '.*nope.txt' not found"):
        inference.observed_sfs(vcf, None, SAMPLES, tmp_path / "nope.txt")
    (tmp_path / "twice.txt").write_text("tsk_0 A\ntsk_0 B\n")
    with pytest.raises(ParameterError, match=r"maps sample 'tsk_0' to both 'A' and 'B'"):
        inference.observed_sfs(vcf, None, SAMPLES, tmp_path / "twice.txt")


def test_popmap_reaches_the_likelihood(sim):
    """loglik and likelihood read the VCF with the popmap: the same value as the array."""
    demes = pytest.importorskip("demes")
    b = demes.Builder(time_units="generations")
    b.add_deme("A", epochs=[dict(start_size=1e4)])
    graph = b.resolve()
    options = {
        "parameters": [
            {
                "name": "N",
                "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}],
                "lower_bound": 10,
                "upper_bound": 1e6,
            }
        ]
    }
    only_a = {s: d for s, d in sim["popmap"].items() if d == "A"}
    array = sim["ref"].sum(axis=1)
    kw = {"samples": {"A": 6}, "cache": False}
    want = inference.loglik(graph, options, array, **kw)
    assert inference.loglik(graph, options, str(sim["vcf"]), popmap=only_a, **kw) == pytest.approx(want, rel=1e-12)
    prob = inference.likelihood(graph, options, sim["base"] / "data.bcf", popmap=only_a, **kw)
    np.testing.assert_array_equal(prob.counts, array)
    with pytest.raises(ParameterError, match="needs a popmap"):
        inference.loglik(graph, options, str(sim["vcf"]), **kw)
