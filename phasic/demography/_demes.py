"""Demes models as epoch schedules on the standard state spaces.

Units (Demes): sizes are diploid individuals, so a pair of lineages in a deme of size N
coalesces at 1 / (2 N) per generation; a migration rate m (the fraction of the destination
made of migrants from the source, per generation) moves each lineage in the destination to the
source at rate m, backwards in time; times are in the graph's ``time_units``, and rates are
per that unit (divided by ``generation_time`` when the units are not generations).

Exponential (and linear) size changes become pieces of constant size. Each piece has the
average pair rate of its stretch, ``(1/du) int 1/(2 N(t)) dt``, so the cumulative coalescence
intensity is exact at every piece boundary; a piece spans at most a factor ``exp(delta)`` of
size change (``growth_tolerance``, default 0.01), so within it every rate is within a factor
``exp(delta)`` of the exact one. The error is second order in ``delta`` (measured against
``moments`` solving the growth itself, tests/verification/test_demography.py): relative SFS
errors of about 5e-7 (8-fold growth) to 6e-6 (2-fold decline) at the default, up to ~1e-4 for
100-fold changes and ~3e-3 for a 1000-fold decline over 2000 generations; ``delta = 1e-3``
makes them about 100 times smaller (and the pieces 10 times more).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phasic.exceptions import ParameterError

#: the rate of the edges that carry lineages of an ended deme into its ancestors in the
#: epochs after it ended (no lineage is there then: the split's map moved them at the split
#: time; the edges make every state reach the MRCA, which the elimination needs)
DRAIN_RATE = 1.0


@dataclass
class Plan:
    """What a Demes graph becomes: demes, parameter layout, epochs and maps."""

    demes: list
    sampled: list  # deme indices
    sample_sizes: list
    moves: list  # (from, to) deme index pairs, one parameter each
    breaks: list = field(default_factory=list)
    thetas: list = field(default_factory=list)
    events: list = field(default_factory=list)  # per break: [(deme, [(to, prob), ...]), ...]
    time_units: str = "generations"
    single_deme: bool = False  # the lineage-counting route of one panmictic ancestry
    pieces: int = 0  # constant pieces made from size changes

    @property
    def n_demes(self):
        return len(self.demes)


def load(graph):
    """A resolved ``demes.Graph`` from a graph, a path or a YAML string."""
    import demes

    if isinstance(graph, demes.Graph):
        return graph
    if isinstance(graph, dict):
        return demes.Graph.fromdict(graph)
    if isinstance(graph, (str, Path)):
        text = str(graph)
        if "\n" in text:
            return demes.loads(text)
        path = Path(text)
        if not path.is_file():
            raise ParameterError(f"Demes file {text!r} not found (looked at {str(path.resolve())!r})")
        try:
            return demes.load(path)
        except Exception as exc:  # demes raises several types for malformed files
            raise ParameterError(f"Demes file {text!r} is not a valid Demes model: {exc}") from exc
    raise ParameterError(f"expected a demes.Graph, a Demes YAML path or text, got {type(graph).__name__}")


def _samples(g, samples):
    names = [d.name for d in g.demes]
    if not isinstance(samples, dict) or not samples:
        raise ParameterError(f"samples must be a dict of deme name -> number of genomes, got {samples!r}")
    sampled, sizes = [], []
    for name, n in samples.items():
        if name not in names:
            raise ParameterError(f"samples name deme {name!r}, which the Demes model does not have (demes: {names})")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ParameterError(f"samples[{name!r}] = {n!r}; expected a number of haploid genomes (int >= 0)")
        if n == 0:
            continue
        d = g[name]
        if d.end_time != 0:
            raise ParameterError(
                f"deme {name!r} ends at time {d.end_time!r} before the present; samples are taken at time 0 "
                "(ancient samples are not supported yet)"
            )
        sampled.append(names.index(name))
        sizes.append(int(n))
    if sum(sizes) < 2:
        raise ParameterError(f"samples {samples!r} have fewer than 2 genomes in all; a genealogy needs 2")
    return sampled, sizes


def _pair_rate_average(epoch, lo, hi, gen):
    """Average of 1/(2 N(t) gen) over [lo, hi] inside a Demes epoch (times backwards)."""
    n0, n1 = float(epoch.start_size), float(epoch.end_size)  # at start_time (old), end_time (young)
    if epoch.size_function == "constant" or n0 == n1:
        return 1.0 / (2.0 * n1 * gen)
    span = float(epoch.start_time - epoch.end_time)
    a, b = (lo - float(epoch.end_time)) / span, (hi - float(epoch.end_time)) / span
    if epoch.size_function == "exponential":
        # N(x) = n1 (n0/n1)^x, x in [0, 1]: int 1/N dx = (r^-a - r^-b) / (n1 ln r)
        r = math.log(n0 / n1)
        integral = (math.exp(-a * r) - math.exp(-b * r)) / (n1 * r) if r != 0 else (b - a) / n1
        return integral / ((b - a) * 2.0 * gen)
    if epoch.size_function == "linear":
        # N(x) = n1 + (n0 - n1) x: int 1/N dx = ln(N(b) / N(a)) / (n0 - n1)
        na, nb = n1 + (n0 - n1) * a, n1 + (n0 - n1) * b
        return math.log(nb / na) / ((n0 - n1) * (b - a) * 2.0 * gen)
    raise ParameterError(f"size function {epoch.size_function!r} is not supported (constant, exponential, linear)")


def _epoch_at(deme, lo, hi):
    for e in deme.epochs:
        if e.end_time <= lo and hi <= e.start_time:
            return e
    return None


def _growth_pieces(epoch, lo, hi, delta):
    if epoch.size_function == "constant" or epoch.start_size == epoch.end_size or not math.isfinite(hi):
        return 1
    span = float(epoch.start_time - epoch.end_time)
    change = abs(math.log(epoch.start_size / epoch.end_size)) * (hi - lo) / span
    return max(1, math.ceil(change / delta))


def _ancestry(g, d):
    """Deme indices in the ancestry of deme index d (itself included)."""
    names = [x.name for x in g.demes]
    seen, stack = set(), [d]
    while stack:
        x = stack.pop()
        if x in seen:
            continue
        seen.add(x)
        stack.extend(names.index(a) for a in g.demes[x].ancestors)
    return seen


def one_panmictic_ancestry(g, sampled):
    """Whether one sampled deme's ancestry is one panmictic line: no migration or pulse touches
    it and every deme in it has at most one ancestor (then lineage counting gives the exact SFS)."""
    if len(sampled) != 1:
        return False
    names = [x.name for x in g.demes]
    anc = _ancestry(g, sampled[0])
    if any(len(g.demes[x].ancestors) > 1 for x in anc):
        return False
    for m in g.migrations:
        if names.index(m.dest) in anc or names.index(m.source) in anc:
            return False
    for p in g.pulses:
        if names.index(p.dest) in anc or any(names.index(s) in anc for s in p.sources):
            return False
    return True


def compile_plan(g, samples, single_deme, growth_tolerance=0.01):
    """The :class:`Plan` of Demes graph `g` for `samples` (see the module docstring)."""
    if not (isinstance(growth_tolerance, (int, float)) and 0 < growth_tolerance <= 1):
        raise ParameterError(f"growth_tolerance must be in (0, 1], got {growth_tolerance!r}")
    names = [d.name for d in g.demes]
    sampled, sizes = _samples(g, samples)
    gen = 1.0 if g.time_units == "generations" else float(g.generation_time or 1.0)
    times = set()
    for d in g.demes:
        for e in d.epochs:
            times.update((float(e.start_time), float(e.end_time)))
    for m in g.migrations:
        times.update((float(m.start_time), float(m.end_time)))
    for p in g.pulses:
        times.add(float(p.time))
    cuts = sorted(t for t in times if 0 < t < math.inf)
    bounds = [0.0, *cuts, math.inf]

    if single_deme:
        line = sorted(_ancestry(g, sampled[0]), key=lambda x: g.demes[x].end_time)
        plan = Plan([names[sampled[0]]], [0], sizes, [], time_units=g.time_units, single_deme=True)
    else:
        moves = {}
        for m in g.migrations:
            moves.setdefault((names.index(m.dest), names.index(m.source)), None)
        for i, d in enumerate(g.demes):
            for a in d.ancestors:
                moves.setdefault((i, names.index(a)), None)
        for p in g.pulses:
            for s in p.sources:
                moves.setdefault((names.index(p.dest), names.index(s)), None)
        plan = Plan(names, sampled, sizes, list(moves), time_units=g.time_units)
    move_index = {pair: i for i, pair in enumerate(plan.moves)}
    D = plan.n_demes

    thetas, breaks, events = [], [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if single_deme:
            alive = [x for x in line if g.demes[x].end_time <= lo and hi <= g.demes[x].start_time]
            epochs = [(0, _epoch_at(g.demes[alive[0]], lo, hi))]
        else:
            alive = [i for i, d in enumerate(g.demes) if d.end_time <= lo and hi <= d.start_time]
            epochs = [(i, _epoch_at(g.demes[i], lo, hi)) for i in alive]
        pieces = max(_growth_pieces(e, lo, hi, growth_tolerance) for _, e in epochs)
        plan.pieces += pieces - 1
        edges = [lo + (hi - lo) * j / pieces for j in range(pieces)] + [hi] if pieces > 1 else [lo, hi]
        for a, b in zip(edges[:-1], edges[1:]):
            th = np.zeros(D + len(plan.moves))
            for slot, e in epochs:
                th[slot] = _pair_rate_average(e, a, b, gen)
            if not single_deme:
                for m in g.migrations:
                    if m.end_time <= lo and hi <= m.start_time:
                        th[D + move_index[(names.index(m.dest), names.index(m.source))]] += float(m.rate) / gen
                for i, d in enumerate(g.demes):
                    if d.ancestors and lo >= d.start_time:  # ended: carry strays to the ancestors
                        for anc, prop in zip(d.ancestors, d.proportions):
                            th[D + move_index[(i, names.index(anc))]] += DRAIN_RATE * float(prop)
            thetas.append(th)
            if b != hi:
                breaks.append(b)
                events.append([])
        if math.isfinite(hi):
            breaks.append(hi)
            ev = []
            if not single_deme:
                # backwards in time at hi: the pulses at hi (last listed first), then the demes that start at hi
                for p in reversed([p for p in g.pulses if float(p.time) == hi]):
                    ev.append(
                        (names.index(p.dest), [(names.index(s), float(f)) for s, f in zip(p.sources, p.proportions)])
                    )
                for i, d in enumerate(g.demes):
                    if d.ancestors and float(d.start_time) == hi:
                        ev.append((i, [(names.index(a), float(f)) for a, f in zip(d.ancestors, d.proportions)]))
            events.append(ev)
    if not single_deme:
        _check_last_epoch(g, names, thetas[-1], plan)
    # merge neighbouring epochs with equal rates and no event between them
    merged_t, merged_b, merged_e = [thetas[0]], [], []
    for th, b, ev in zip(thetas[1:], breaks, events):
        if not ev and np.array_equal(th, merged_t[-1]):
            continue
        merged_t.append(th)
        merged_b.append(b)
        merged_e.append(ev)
    plan.thetas, plan.breaks, plan.events = merged_t, merged_b, merged_e
    return plan


def _check_last_epoch(g, names, theta, plan):
    """The demes alive at the oldest time must form one class that migration connects, or
    lineages in two of them never meet (the T_MRCA would be infinite)."""
    D = plan.n_demes
    alive = [i for i, d in enumerate(g.demes) if math.isinf(d.start_time)]
    if len(alive) <= 1:
        return
    reach = {i: {i} for i in alive}
    for _ in alive:
        for (a, b), rate in zip(plan.moves, theta[D:]):
            if rate > 0 and a in reach and b in reach:
                reach[a] |= reach[b]
    for i in alive:
        if not set(alive) <= reach[i]:
            other = next(j for j in alive if j not in reach[i])
            raise ParameterError(
                f"demes {names[i]!r} and {names[other]!r} exist for all time and no migration connects them "
                "at the oldest times: lineages in the two never meet (the T_MRCA is infinite)"
            )


def scatter(state, layout, events):
    """Where the mass of `state` goes at a breakpoint: each lineage in deme ``d`` of an event
    ``(d, [(to, p), ...])`` moves to ``to`` with probability ``p`` (independently), events in
    order. `layout`: ``(n_demes, B)`` (B = 1 for lineage counting). Returns ``[(state, p)]``."""
    D, B = layout
    dist = {tuple(int(x) for x in state): 1.0}
    for d, dests in events:
        stay = 1.0 - sum(p for _, p in dests)
        options = [(d, stay), *dests]
        nxt = {}
        for s, ps in dist.items():
            parts = [{(): 1.0}]
            for t in range(B):
                c = s[d * B + t]
                if c == 0:
                    continue
                # multinomial split of the c lineages of type t among the options
                split = {}
                for combo in itertools.combinations_with_replacement(range(len(options)), c):
                    counts = [combo.count(j) for j in range(len(options))]
                    pr = math.factorial(c)
                    for j, k in enumerate(counts):
                        pr = pr / math.factorial(k) * options[j][1] ** k
                    if pr > 0:
                        split[(t, tuple(counts))] = pr
                parts.append(split)
            outcomes = [{}]
            probs = [ps]
            for split in parts[1:]:
                new_o, new_p = [], []
                for o, q in zip(outcomes, probs):
                    for (t, counts), pr in split.items():
                        o2 = dict(o)
                        o2[t] = counts
                        new_o.append(o2)
                        new_p.append(q * pr)
                outcomes, probs = new_o, new_p
            for o, q in zip(outcomes, probs):
                s2 = list(s)
                for t, counts in o.items():
                    s2[d * B + t] = 0
                    for (to, _), k in zip(options, counts):
                        s2[to * B + t] += k
                key = tuple(s2)
                nxt[key] = nxt.get(key, 0.0) + q
        dist = nxt
    return [(list(s), p) for s, p in dist.items()]
