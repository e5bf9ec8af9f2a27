# simulated by workflows/data/simulate_expansion.py (msprime 1.4.4, seeds (6, 106))
# truth: N=10000, T=1000, NA=2000; mutation_rate=1.25e-08, sequence_length=1e+07, recombination_rate=1e-07
13 unfolded
0 1916 616 297 267 215 144 171 130 103 98 109 0
