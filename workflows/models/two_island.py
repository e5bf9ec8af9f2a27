"""Structured coalescent with two islands (demes) of equal size.

State ``[a, b]``: lineages in island 1 and island 2.  ``theta = [c, m]``: ``c`` is the
coalescence rate of a pair in the same island, ``m`` the migration rate of one lineage.
Absorbing when a single lineage (the MRCA) is left.  The sample is the start state
(``ipv: [a, b]``, default two lineages in each island).
"""

from phasic import with_ipv


@with_ipv([2, 2])
def two_island(state):
    a, b = state
    if a + b <= 1:
        return []
    edges = []
    if a >= 2:
        edges.append([[a - 1, b], [a * (a - 1) / 2, 0.0]])
    if b >= 2:
        edges.append([[a, b - 1], [b * (b - 1) / 2, 0.0]])
    if a >= 1:
        edges.append([[a - 1, b + 1], [0.0, float(a)]])
    if b >= 1:
        edges.append([[a + 1, b - 1], [0.0, float(b)]])
    return edges
