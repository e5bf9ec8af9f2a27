"""Simulate the observed SFS of the example fit (workflows/data/expansion.fs) with msprime.

One population ("pop") of 2000 diploids grew to 10000 diploids 1000 generations ago; 12 haploid
genomes are sampled over 10 Mb (recombination 1e-7, mutation 1.25e-8 per bp per generation,
binary mutations, infinite sites). Fixed seeds: rerunning this script writes the same file.

    .venv/bin/python workflows/data/simulate_expansion.py [OUT.fs]

The example fit (`expansion` in workflows/config/default.yaml) starts from
workflows/models/expansion.yaml and should find these values again (within a few standard
errors: sites on one chromosome are linked, which the standard errors ignore).
"""

import sys
from pathlib import Path

import demes
import msprime

TRUTH = {"N": 10000.0, "T": 1000.0, "NA": 2000.0}  # now, growth time, before
MUTATION_RATE = 1.25e-8
SEQUENCE_LENGTH = 1e7
RECOMBINATION_RATE = 1e-7
SAMPLES = 12
SEEDS = (6, 106)  # ancestry, mutations


def model(N, T, NA):
    b = demes.Builder(time_units="generations")
    b.add_deme("pop", epochs=[dict(start_size=NA, end_time=T), dict(start_size=N)])
    return b.resolve()


def simulate():
    ts = msprime.sim_ancestry(
        samples=[msprime.SampleSet(SAMPLES, population="pop", ploidy=1)],
        demography=msprime.Demography.from_demes(model(**TRUTH)),
        ploidy=2,
        sequence_length=SEQUENCE_LENGTH,
        recombination_rate=RECOMBINATION_RATE,
        random_seed=SEEDS[0],
    )
    ts = msprime.sim_mutations(
        ts, rate=MUTATION_RATE, random_seed=SEEDS[1], model=msprime.BinaryMutationModel(), discrete_genome=False
    )
    return ts.allele_frequency_spectrum(mode="site", polarised=True, span_normalise=False)


def main(out):
    sfs = simulate()
    truth = ", ".join(f"{k}={v:g}" for k, v in TRUTH.items())
    lines = [
        f"# simulated by workflows/data/simulate_expansion.py (msprime {msprime.__version__}, seeds {SEEDS})",
        f"# truth: {truth}; mutation_rate={MUTATION_RATE:g}, sequence_length={SEQUENCE_LENGTH:g}, "
        f"recombination_rate={RECOMBINATION_RATE:g}",
        f"{SAMPLES + 1} unfolded",
        " ".join(str(int(x)) for x in sfs),
    ]
    Path(out).write_text("\n".join(lines) + "\n")
    print(f"wrote {out}: {int(sfs.sum())} segregating sites")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("expansion.fs"))
