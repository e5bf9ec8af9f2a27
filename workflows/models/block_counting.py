"""Block-counting coalescent: the state-space behind the site frequency spectrum (SFS).

State ``s`` of length n: ``s[i]`` is the number of lineages ancestral to exactly ``i + 1``
of the n sampled genes.  Two lineages of sizes i and j merge into one of size i + j; every
pair coalesces at rate 1.  The total time spent with reward ``s[i]`` is the total length of
branches subtending ``i + 1`` leaves, so ``E[xi_i] = (mutation rate) * E[L_i]`` is the expected
SFS; with the rewards ``sfs`` (columns 1..n-1) the workflow computes ``E[L_i]`` (= 2/i).
The sample is the start state ``[n, 0, ..., 0]`` (``ipv:`` in the model spec; default n = 5).
"""

from phasic import with_ipv


@with_ipv([5, 0, 0, 0, 0])
def block_counting(state):
    n = len(state)
    if sum(state) <= 1:
        return []
    edges = []
    for i in range(n):
        for j in range(i, n):
            if i == j:
                pairs = state[i] * (state[i] - 1) / 2
            else:
                pairs = state[i] * state[j]
            if pairs <= 0:
                continue
            child = list(state)
            child[i] -= 1
            child[j] -= 1
            child[i + j + 1] += 1
            edges.append([child, pairs])
    return edges
