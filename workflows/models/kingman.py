"""Kingman coalescent: time to the most recent common ancestor of a sample.

State ``[n]``: the number of lineages.  Every pair coalesces at rate ``theta[0]`` (the
coalescence rate, 1/N in units of generations), so the edge ``n -> n-1`` has the coefficient
``n(n-1)/2``: the rate is ``n(n-1)/2 * theta[0]``.  The sample size is the start state, set
with ``ipv: [n]`` in the model spec (default 10).
"""

from phasic import with_ipv


@with_ipv([10])
def kingman(state):
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], [n * (n - 1) / 2]]]
