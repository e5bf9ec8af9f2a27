"""Isolation with migration (IM) for two genes, one sampled in each of two populations.

Going back in time the two populations exchange migrants until they merge into one ancestral
population.  To stay phase-type the split time is exponential with rate ``s`` (a common
approximation; a fixed split time is the limit of an Erlang chain).

State ``[a, b, c]``: lineages in population 1 and 2 before the split (``c == 0``), or
``c`` lineages in the ancestral population after it (``a == b == 0``).
``theta = [coal, mig, split]``: pair coalescence rate, per-lineage migration rate, split rate.
"""

from phasic import with_ipv


@with_ipv([1, 1, 0])
def isolation_migration(state):
    a, b, c = state
    if a + b + c <= 1:
        return []
    if c > 0:
        return [[[0, 0, c - 1], [c * (c - 1) / 2, 0.0, 0.0]]]
    edges = []
    if a >= 2:
        edges.append([[a - 1, b, 0], [a * (a - 1) / 2, 0.0, 0.0]])
    if b >= 2:
        edges.append([[a, b - 1, 0], [b * (b - 1) / 2, 0.0, 0.0]])
    if a >= 1:
        edges.append([[a - 1, b + 1, 0], [0.0, float(a), 0.0]])
    if b >= 1:
        edges.append([[a + 1, b - 1, 0], [0.0, float(b), 0.0]])
    edges.append([[0, 0, a + b], [0.0, 0.0, 1.0]])
    return edges
