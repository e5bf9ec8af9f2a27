"""Model callbacks and independent dense-matrix references for the verification tests.

Everything here is written from the textbook definitions (Bladt & Nielsen 2017,
Navarro 2019, Røikjer, Hobolth & Munch 2022) and never calls phasic's numerical
routines: references are built from the model's own transition function or edge
list with numpy/scipy, so a test compares two independent computations.
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction

import numpy as np
import scipy.linalg

from phasic import Graph, with_ipv
from tests.models import block_counting_transitions

# ---------------------------------------------------------------------------
# model callbacks
# ---------------------------------------------------------------------------


def make_coalescent(n):
    """Kingman coalescent from ``n`` lineages: k -> k-1 at rate C(k,2)*theta."""

    @with_ipv([n])
    def coalescent(state, theta=1.0):
        k = int(state[0])
        if k <= 1:
            return []
        return [[[k - 1], k * (k - 1) / 2 * theta]]

    return coalescent


def coalescent_param(state):
    """Kingman coalescent with a parameterised rate: C(k,2) * theta[0]."""
    k = int(state[0])
    if k <= 1:
        return []
    return [[[k - 1], [k * (k - 1) / 2]]]


def make_block_counting(n):
    """Block-counting coalescent callback for sample size ``n`` (with_ipv-wrapped)."""
    start = [n] + [0] * (n - 1)
    return with_ipv([[start, 1.0]])(block_counting_transitions)


def make_chain(rates, exit_probs=None):
    """Coxian / hypoexponential chain: phase i is state [i] (1-based), absorbing [m+1].

    From phase i the process moves to phase i+1 at rate ``rates[i] * p_i`` and is
    absorbed at rate ``rates[i] * (1 - p_i)`` (p_m = 0).  In a discrete graph the
    same numbers are jump probabilities (missing mass = self-loop).
    """
    m = len(rates)
    probs = list(exit_probs) if exit_probs is not None else [1.0] * (m - 1)
    probs = probs + [0.0]

    @with_ipv([1])
    def chain(state):
        i = int(state[0])
        if i > m:
            return []
        lam, p = rates[i - 1], probs[i - 1]
        out = []
        if p > 0:
            out.append([[i + 1], lam * p])
        if p < 1:
            out.append([[m + 1], lam * (1 - p)])
        return out

    return chain


# ---------------------------------------------------------------------------
# random sparse graphs with cycles
# ---------------------------------------------------------------------------


class RandomModel:
    """A seeded random phase-type model with cycles, kept as an explicit edge list.

    States are ``(s, s % 5)`` for s = 1..n (transient) and n+1..n+n_abs (absorbing).
    A chain through a random permutation guarantees absorption from every state;
    extra random edges create cycles.  ``edges[s]`` maps target -> weight, or ->
    coefficient vector when ``theta_dim`` > 0 (with ``mixed=True`` about half the
    edges of a parameterised model keep a constant rate).
    """

    def __init__(
        self,
        seed,
        n,
        extra=2,
        exit_fraction=0.2,
        n_start=1,
        defect=0.0,
        n_absorbing=1,
        discrete=False,
        theta_dim=0,
        mixed=False,
        rate_range=(0.2, 5.0),
    ):
        rng = np.random.default_rng(seed)
        self.n, self.discrete, self.theta_dim = n, discrete, theta_dim
        self.absorbing = [n + 1 + i for i in range(n_absorbing)]
        lo, hi = rate_range

        def draw():
            if theta_dim and not (mixed and rng.random() < 0.5):
                c = rng.uniform(0.0, 1.0, theta_dim) * (rng.random(theta_dim) < 0.7)
                c[rng.integers(theta_dim)] += rng.uniform(0.2, 1.0)  # keep c.theta > 0
                return c
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

        edges = {s: {} for s in range(1, n + 1)}
        perm = [int(x) + 1 for x in rng.permutation(n)]
        for a, b in zip(perm[:-1], perm[1:]):
            edges[a][b] = draw()
        edges[perm[-1]][int(rng.choice(self.absorbing))] = draw()
        for s in range(1, n + 1):
            for _ in range(extra):
                t = int(rng.integers(1, n + 1))
                if t != s:
                    edges[s][t] = draw()
            if rng.random() < exit_fraction:
                edges[s][int(rng.choice(self.absorbing))] = draw()
        if discrete:  # turn rates into probabilities leaving a random self-loop mass
            for s, out in edges.items():
                total = sum(out.values())
                keep = rng.uniform(0.3, 1.0)
                edges[s] = {t: w / total * keep for t, w in out.items()}
        self.edges = edges
        # the chain's first state is always a start state, so every state is reachable
        others = perm[1:]
        starts = [perm[0]] + [int(x) for x in rng.choice(others, size=min(n_start, n) - 1, replace=False)]
        probs = rng.dirichlet(np.ones(len(starts))) * (1.0 - defect)
        self.ipv = [[self.state(s), float(p)] for s, p in zip(starts, probs)]

    @staticmethod
    def state(s):
        return [int(s), int(s) % 5]

    def rates(self, theta=None):
        """Edge list {s: {t: rate}} with parameterised weights evaluated at ``theta``."""
        if not self.theta_dim:
            return self.edges
        th = np.asarray(theta, dtype=float)
        return {
            s: {t: (float(np.dot(c, th)) if np.ndim(c) else c) for t, c in out.items()} for s, out in self.edges.items()
        }

    def callback(self, theta=None, with_ipv_wrapper=True):
        """A phasic callback over this edge list (coefficient lists if theta is None)."""
        evaluated = self.theta_dim and theta is not None
        table = self.rates(theta) if evaluated else self.edges

        def transitions(state):
            s = int(state[0])
            out = table.get(s, {})
            return [[self.state(t), (list(map(float, w)) if np.ndim(w) else float(w))] for t, w in out.items()]

        return with_ipv(self.ipv)(transitions) if with_ipv_wrapper else transitions

    def build_manual(self, theta=None, seed=0):
        """Build the graph with the manual API, creating vertices in a shuffled order."""
        g = Graph(
            state_length=2,
            discrete=self.discrete,
            **({"theta_dim": self.theta_dim} if self.theta_dim and theta is None else {}),
        )
        order = list(range(1, self.n + 1)) + self.absorbing
        np.random.default_rng(seed).shuffle(order)
        idx = {s: g.find_or_create_vertex(self.state(s)) for s in order}
        for st, p in self.ipv:
            g.add_edge(g.starting_vertex(), idx[st[0]], p)
        table = self.rates(theta) if (self.theta_dim and theta is not None) else self.edges
        for s, out in table.items():
            for t, w in out.items():
                if np.ndim(w):
                    g.add_edge(idx[s], idx[t], 0.0, coefficients=list(map(float, w)))
                else:
                    g.add_edge(idx[s], idx[t], float(w))
        return g

    def dense(self, theta=None):
        """(alpha, S or T) over transient states 1..n in that order, from the edge list."""
        table = self.rates(theta)
        n = self.n
        M = np.zeros((n, n))
        for s, out in table.items():
            for t, w in out.items():
                if t <= n:
                    M[s - 1, t - 1] += w
            if self.discrete:
                M[s - 1, s - 1] += 1.0 - sum(out.values())
            else:
                M[s - 1, s - 1] -= sum(out.values())
        alpha = np.zeros(n)
        for st, p in self.ipv:
            alpha[st[0] - 1] += p
        return alpha, M

    def dense_states(self):
        return [tuple(self.state(s)) for s in range(1, self.n + 1)]


# ---------------------------------------------------------------------------
# building dense references from a transition function or a graph's CSR arrays
# ---------------------------------------------------------------------------


def normalise_ipv(ipv):
    """IPV in either accepted form -> list of (state tuple, prob)."""
    ipv = list(ipv)
    if ipv and all(isinstance(x, (int, np.integer)) for x in ipv):
        return [(tuple(int(x) for x in ipv), 1.0)]
    return [(tuple(int(x) for x in st), float(p)) for st, p in ipv]


def dense_from_transitions(transitions, ipv, discrete=False, **params):
    """Independent BFS over ``transitions`` -> (states, alpha, S/T) over transient states."""
    ipv = normalise_ipv(ipv)
    seen, order, queue, out = set(), [], deque(), {}
    for st, _ in ipv:
        if st not in seen:
            seen.add(st)
            queue.append(st)
    while queue:
        st = queue.popleft()
        order.append(st)
        out[st] = [(tuple(int(x) for x in ns), float(w)) for ns, w in transitions(list(st), **params)]
        for ns, _ in out[st]:
            if ns not in seen:
                seen.add(ns)
                queue.append(ns)
    transient = [st for st in order if out[st]]
    pos = {st: i for i, st in enumerate(transient)}
    m = len(transient)
    M = np.zeros((m, m))
    for st in transient:
        i = pos[st]
        for ns, w in out[st]:
            if ns in pos:
                M[i, pos[ns]] += w
        M[i, i] += (1.0 - sum(w for _, w in out[st])) if discrete else -sum(w for _, w in out[st])
    alpha = np.zeros(m)
    for st, p in ipv:
        if st in pos:
            alpha[pos[st]] += p
    return transient, alpha, M


def matrices_from_csr(g):
    """(transient vertex indices, alpha, S/T) rebuilt from ``g.edges()`` alone."""
    indptr, target, weight = g.edges()
    V = len(indptr) - 1
    outdeg = np.diff(indptr)
    transient = [v for v in range(1, V) if outdeg[v] > 0]
    pos = {v: i for i, v in enumerate(transient)}
    m = len(transient)
    M = np.zeros((m, m))
    for v in transient:
        i = pos[v]
        lo, hi = indptr[v], indptr[v + 1]
        for t, w in zip(target[lo:hi], weight[lo:hi]):
            if int(t) in pos:
                M[i, pos[int(t)]] += w
        tot = float(np.sum(weight[lo:hi]))
        M[i, i] += (1.0 - tot) if g.discrete else -tot
    alpha = np.zeros(m)
    for t, w in zip(target[indptr[0] : indptr[1]], weight[indptr[0] : indptr[1]]):
        if int(t) in pos:
            alpha[pos[int(t)]] += w
    return np.array(transient, dtype=int), alpha, M


def vertex_index(g):
    """Map state tuple -> vertex index, from ``g.states()``."""
    return {tuple(int(x) for x in row): i for i, row in enumerate(np.asarray(g.states()))}


# ---------------------------------------------------------------------------
# dense formulas
# ---------------------------------------------------------------------------


class Solver:
    """LU of A with one step of extended-precision iterative refinement."""

    def __init__(self, A):
        self.A = np.asarray(A, dtype=float)
        self.Al = self.A.astype(np.longdouble)
        self.lu = scipy.linalg.lu_factor(self.A)

    def solve(self, b, trans=False):
        A = self.Al.T if trans else self.Al
        x = scipy.linalg.lu_solve(self.lu, b, trans=1 if trans else 0)
        for _ in range(2):
            r = np.asarray(b, dtype=np.longdouble) - A @ x.astype(np.longdouble)
            x = x + scipy.linalg.lu_solve(self.lu, r.astype(float), trans=1 if trans else 0)
        return x


def ph_reward_moments(alpha, S, k, r=None):
    """E[Y^j] = j! alpha (U diag r)^j 1, j = 1..k, U = (-S)^-1."""
    sol = Solver(-np.asarray(S))
    m = len(alpha)
    r = np.ones(m) if r is None else np.asarray(r, dtype=float)
    v = np.ones(m)
    out = []
    for j in range(1, k + 1):
        v = sol.solve(r * v)
        out.append(math.factorial(j) * float(alpha @ v))
    return np.array(out)


def ph_covariance(alpha, S, r1, r2):
    """Cov(Y1, Y2) = aU(R1)U(R2)e + aU(R2)U(R1)e - (aU(R1)e)(aU(R2)e)."""
    sol = Solver(-np.asarray(S))
    e = np.ones(len(alpha))
    u1, u2 = sol.solve(r1 * e), sol.solve(r2 * e)
    cross = alpha @ sol.solve(r1 * u2) + alpha @ sol.solve(r2 * u1)
    return float(cross - (alpha @ u1) * (alpha @ u2))


def ph_sojourn(alpha, S):
    """Expected total time in each transient state: alpha U."""
    return Solver(-np.asarray(S)).solve(np.asarray(alpha, dtype=float), trans=True)


def ph_pdf(alpha, S, t):
    s = -np.asarray(S) @ np.ones(len(alpha))
    return np.array([float(alpha @ scipy.linalg.expm(S * ti) @ s) for ti in np.atleast_1d(t)])


def ph_cdf(alpha, S, t):
    e = np.ones(len(alpha))
    return np.array([1.0 - float(alpha @ scipy.linalg.expm(S * ti) @ e) for ti in np.atleast_1d(t)])


def ph_reward_transform(alpha, S, r):
    """Bladt & Nielsen Thm 8.1.1: (alpha', S') of Y = int r(X_t) dt (r >= 0).

    Returns the kept (r > 0) positions and the transformed alpha', S'.
    """
    r = np.asarray(r, dtype=float)
    P, Z = np.flatnonzero(r > 0), np.flatnonzero(r == 0)
    Spp, Spz, Szp, Szz = S[np.ix_(P, P)], S[np.ix_(P, Z)], S[np.ix_(Z, P)], S[np.ix_(Z, Z)]
    if len(Z):
        Q = np.linalg.solve(-Szz, Szp)
        Snew = Spp + Spz @ Q
        anew = alpha[P] + alpha[Z] @ Q
    else:
        Snew, anew = Spp.copy(), alpha[P].copy()
    return P, anew, Snew / r[P][:, None]


def dph_pmf(pi, T, kmax):
    """P(tau = k), k = 1..kmax: pi T^(k-1) t with t = 1 - T1."""
    t = 1.0 - T @ np.ones(len(pi))
    v, out = np.asarray(pi, dtype=float), []
    for _ in range(kmax):
        out.append(float(v @ t))
        v = v @ T
    return np.array(out)


def dph_moments(pi, T, r=None):
    """(E[Y], E[Y^2]) of the reward-weighted DPH (Navarro 2019)."""
    sol = Solver(np.eye(len(pi)) - T)
    e = np.ones(len(pi))
    r = e if r is None else np.asarray(r, dtype=float)
    u1 = sol.solve(r * e)
    m1 = float(pi @ u1)
    m2 = float(2 * pi @ sol.solve(r * u1) - pi @ sol.solve(r * r * e))
    return m1, m2


def dph_raw_moments3(pi, T):
    """E[tau], E[tau^2], E[tau^3] from factorial moments k! pi T^(k-1) U^k 1."""
    sol = Solver(np.eye(len(pi)) - T)
    v = np.ones(len(pi))
    F = []
    for k in range(1, 4):
        v = sol.solve(v)
        F.append(math.factorial(k) * float(pi @ np.linalg.matrix_power(T, k - 1) @ v))
    return np.array([F[0], F[1] + F[0], F[2] + 3 * F[1] + F[0]])


# ---------------------------------------------------------------------------
# exact closed forms
# ---------------------------------------------------------------------------


def hypoexp_moments_exact(rates, k):
    """Exact raw moments of a sum of independent Exp(rates) (Fractions), via cumulants."""
    rates = [Fraction(x) for x in rates]
    kappa = [None] + [sum(Fraction(math.factorial(m - 1)) / lam**m for lam in rates) for m in range(1, k + 1)]
    mu = [Fraction(1)]
    for n in range(1, k + 1):
        mu.append(sum(math.comb(n - 1, m - 1) * kappa[m] * mu[n - m] for m in range(1, n + 1)))
    return mu[1:]


def hypoexp_pdf(rates, t):
    """Density of a sum of independent exponentials with distinct rates."""
    rates = np.asarray(rates, dtype=float)
    t = np.asarray(t, dtype=float)
    out = np.zeros_like(t)
    for i, li in enumerate(rates):
        c = np.prod([lj / (lj - li) for j, lj in enumerate(rates) if j != i])
        out += c * li * np.exp(-li * t)
    return out


def hypoexp_cdf(rates, t):
    rates = np.asarray(rates, dtype=float)
    t = np.asarray(t, dtype=float)
    out = np.ones_like(t)
    for i, li in enumerate(rates):
        c = np.prod([lj / (lj - li) for j, lj in enumerate(rates) if j != i])
        out -= c * np.exp(-li * t)
    return out
