"""JAX functions: values against the core and against scipy's expm, gradients against
finite differences, jit/vmap, and moments with adjoint gradients."""

import numpy as np
import pytest
import scipy.linalg
import scipy.special

jax = pytest.importorskip("jax")
import jax.numpy as jnp

import phasic
from phasic import (
    ForwardModeError,
    Graph,
    ParameterError,
    moments_from_graph,
    pmf_from_graph,
    with_ipv,
)
from phasic.jax._ops import _TAIL, _jumps_needed, _log_tail, _max_rate_time, _steps_for
from tests.models import dense_moments, random_param_graph, two_island


@pytest.fixture(scope="module")
def graph():
    return Graph(two_island)


def dense_pdf(g, theta, times):
    h = g.copy()
    h.update_weights(theta)
    alpha, S = h.as_matrices()
    s = -S.sum(axis=1)
    return np.array([alpha @ scipy.linalg.expm(S * t) @ s for t in times])


def test_pmf_values_match_expm_and_core(graph):
    f = pmf_from_graph(graph)
    times = np.linspace(0.0, 4.0, 9)
    for theta in ([1.0, 0.5], [2.0, 0.1]):
        got = np.asarray(f(jnp.array(theta), jnp.asarray(times)))
        np.testing.assert_allclose(got, dense_pdf(graph, theta, times), atol=1e-12)
        h = graph.copy()
        h.update_weights(theta)
        np.testing.assert_allclose(got, h.pdf(times), atol=1e-10)
    assert float(f(jnp.array([1.0, 0.5]), jnp.array([-1.0]))[0]) == 0.0


def test_pmf_jit_vmap_grad(graph):
    f = pmf_from_graph(graph)
    times = jnp.linspace(0.2, 3.0, 6)
    thetas = jnp.array([[1.0, 0.5], [1.5, 0.2], [0.8, 1.0]])
    batched = jax.jit(jax.vmap(f, in_axes=(0, None)))(thetas, times)
    for row, th in zip(np.asarray(batched), np.asarray(thetas)):
        np.testing.assert_allclose(row, dense_pdf(graph, th, np.asarray(times)), atol=1e-12)

    def loglik(th):
        return jnp.log(f(th, times)).sum()

    th0 = jnp.array([1.2, 0.4])
    grad = np.asarray(jax.jit(jax.grad(loglik))(th0))
    eps = 1e-6
    fd = [(loglik(th0.at[i].add(eps)) - loglik(th0.at[i].add(-eps))) / (2 * eps) for i in range(2)]
    np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-6)


def test_discrete_pmf():
    g = Graph(state_length=1, discrete=True, theta_dim=1)
    a = g.find_or_create_vertex([1])
    b = g.find_or_create_vertex([2])
    g.add_edge(0, a, 1.0)
    g.add_edge(a, b, 0.0, coefficients=[1.0])  # leave with probability theta
    f = pmf_from_graph(g, max_jumps=20)
    p = 0.3
    k = jnp.arange(0, 8)
    got = np.asarray(f(jnp.array([p]), k))
    ref = np.array([0.0] + [p * (1 - p) ** (j - 1) for j in range(1, 8)])
    np.testing.assert_allclose(got, ref, atol=1e-14)
    assert np.isnan(float(f(jnp.array([p]), jnp.array([25]))[0]))


def random_discrete(seed, n=30, p=2):
    """A random discrete graph with cycles: edge probabilities coef . theta."""
    rng = np.random.default_rng(seed)
    g = Graph(state_length=1, discrete=True, theta_dim=p)
    vs = [g.find_or_create_vertex([i + 1]) for i in range(n)]
    absorb = g.find_or_create_vertex([n + 1])
    g.add_edge(0, vs[0], 0.7)
    g.add_edge(0, vs[3], 0.3)
    for i, v in enumerate(vs):
        for t in set(rng.choice(n, 3, replace=False).tolist()) - {i}:
            g.add_edge(v, vs[t], 0.0, coefficients=rng.uniform(0, 0.1, p))
        g.add_edge(v, absorb, 0.0, coefficients=rng.uniform(0.01, 0.1, p))
    return g


def dense_pmf(g, theta, ks):
    """P(tau = k) = alpha T^(k-1) t, from the graph's edges by numpy (written here)."""
    V = g.vertices_length()
    src = np.repeat(np.arange(V), np.diff(g._ll.indptr))
    tv = [v for v in range(1, V) if g._ll.indptr[v + 1] > g._ll.indptr[v]]
    pos = {v: i for i, v in enumerate(tv)}
    w = g._ll.base + g._ll.coef @ np.asarray(theta, float)
    alpha, T, t = np.zeros(len(tv)), np.eye(len(tv)), np.zeros(len(tv))
    for u, z, we in zip(src, g._ll.target, w):
        if u == 0:
            alpha[pos[z]] += we
        elif z in pos:
            T[pos[u], pos[z]] += we
            T[pos[u], pos[u]] -= we
        else:
            t[pos[u]] += we
            T[pos[u], pos[u]] -= we
    return np.array([1 - alpha.sum() if k == 0 else alpha @ np.linalg.matrix_power(T, k - 1) @ t for k in ks])


def test_discrete_pmf_sparse_values_gradients_vmap():
    g = random_discrete(1)
    f = pmf_from_graph(g)
    th = np.array([1.2, 0.8])
    ks = np.arange(0, 80)
    got = np.asarray(f(jnp.asarray(th), jnp.asarray(ks)))
    np.testing.assert_allclose(got, dense_pmf(g, th, ks), rtol=1e-11, atol=1e-17)
    h = g.copy()
    h.update_weights(th)
    np.testing.assert_allclose(got, h.pmf(ks), rtol=1e-11, atol=1e-17)
    data = jnp.array([1, 2, 5, 9, 17, 30])
    grad = np.asarray(jax.grad(lambda t: jnp.log(f(t, data)).sum())(jnp.asarray(th)))
    eps = 1e-6
    fd = [
        (np.log(dense_pmf(g, th + eps * e, data)).sum() - np.log(dense_pmf(g, th - eps * e, data)).sum()) / (2 * eps)
        for e in np.eye(2)
    ]
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    ths = np.array([[1.0, 1.0], [0.5, 1.5], [1.3, 0.2]])
    batched = np.asarray(jax.vmap(lambda t: f(t, data))(jnp.asarray(ths)))
    for row, t in zip(batched, ths):
        np.testing.assert_allclose(row, dense_pmf(g, t, np.asarray(data)), rtol=1e-11)
    # out-probabilities summing over 1 (theta too large) or negative: an error naming theta
    # when it is concrete, NaN when it is traced -- never numbers
    with pytest.raises(ParameterError, match=r"theta \[30.0, 30.0\]: out-probabilities of state \[\d+\] sum to"):
        f(jnp.array([30.0, 30.0]), data)
    with pytest.raises(ParameterError, match=r"theta \[-1.0, 0.5\] gives edge .* must be finite and >= 0"):
        f(np.array([-1.0, 0.5]), data)
    for th in ([30.0, 30.0], [-1.0, 0.5], [np.nan, 0.5]):
        assert np.isnan(np.asarray(jax.jit(f)(jnp.array(th), data))).all()


@pytest.mark.parametrize("method", ["uniformization", "expm"])
def test_pmf_bad_theta_is_an_error_or_nan(graph, method):
    """A theta giving a negative (or NaN) rate: ParameterError naming it when concrete, NaN
    when traced (jit, vmap) -- before, the uniformisation returned numbers for it."""
    h = graph.copy()
    h.update_weights([1.0, 0.5])  # traced theta: steps sized from these weights
    f = pmf_from_graph(h, method=method)
    t = jnp.array([0.5, 1.0, 2.0])
    with pytest.raises(
        ParameterError, match=r"theta \[1.0, -0.5\] gives edge .* the weight -?[\d.]+; weights must be finite and >= 0"
    ):
        f(jnp.array([1.0, -0.5]), t)
    with pytest.raises(ParameterError, match="non-finite"):
        f(np.array([np.nan, 0.5]), t)
    assert np.isnan(np.asarray(jax.jit(lambda th: f(th, t))(jnp.array([1.0, -0.5])))).all()
    out = np.asarray(jax.vmap(f, in_axes=(0, None))(jnp.array([[1.0, 0.5], [1.0, -0.5]]), t))
    np.testing.assert_allclose(out[0], dense_pdf(graph, [1.0, 0.5], np.asarray(t)), rtol=1e-10)
    assert np.isnan(out[1]).all()


def test_discrete_pmf_beyond_the_dense_limit():
    """A chain of 6000 states (over MAX_DENSE_STATES), each left with probability q per
    step: tau is negative binomial, P(tau = k) = C(k-1, n-1) q^n (1-q)^(k-n)."""
    n, q = 6000, 0.9
    g = Graph(state_length=1, discrete=True, theta_dim=1)
    vs = [g.find_or_create_vertex([i + 1]) for i in range(n)]
    absorb = g.find_or_create_vertex([n + 1])
    g.add_edge(0, vs[0], 1.0)
    for a, b in zip(vs[:-1], vs[1:]):
        g.add_edge(a, b, 0.0, coefficients=[1.0])
    g.add_edge(vs[-1], absorb, 0.0, coefficients=[1.0])
    assert n > phasic.jax._ops.MAX_DENSE_STATES
    f = pmf_from_graph(g, max_jumps=7000)
    ks = np.array([6000, 6300, 6600, 6800])
    got = np.asarray(f(jnp.array([q]), jnp.asarray(ks)))
    logp = (
        scipy.special.gammaln(ks)
        - scipy.special.gammaln(n)
        - scipy.special.gammaln(ks - n + 1)
        + n * np.log(q)
        + (ks - n) * np.log1p(-q)
    )
    np.testing.assert_allclose(got, np.exp(logp), rtol=1e-9)


def test_moments_values_and_gradients(graph):
    m = moments_from_graph(graph, 3)
    th0 = np.array([1.3, 0.6])
    h = graph.copy()
    h.update_weights(th0)
    np.testing.assert_allclose(np.asarray(m(jnp.asarray(th0))), dense_moments(h, 3), rtol=1e-12)
    w = jnp.array([1.0, -0.2, 0.05])

    def obj(th):
        return (m(th) * w).sum()

    grad = np.asarray(jax.grad(obj)(jnp.asarray(th0)))

    def dense_obj(th):
        k = graph.copy()
        k.update_weights(th)
        return float(dense_moments(k, 3) @ np.asarray(w))

    eps = 1e-6
    fd = np.array([(dense_obj(th0 + eps * e) - dense_obj(th0 - eps * e)) / (2 * eps) for e in np.eye(2)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
    batched = jax.jit(jax.vmap(m))(jnp.array([[1.0, 0.5], [2.0, 0.1]]))
    assert batched.shape == (2, 3)


def test_moments_with_rewards_gradient(graph):
    rewards = graph.states()[:, 0] + 0.5
    m = moments_from_graph(graph, 2, rewards=rewards)
    th0 = np.array([0.9, 0.7])
    grad = np.asarray(jax.grad(lambda th: m(th)[1])(jnp.asarray(th0)))

    def second(th):
        k = graph.copy()
        k.update_weights(th)
        return dense_moments(k, 2, rewards)[1]

    eps = 1e-6
    fd = np.array([(second(th0 + eps * e) - second(th0 - eps * e)) / (2 * eps) for e in np.eye(2)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_moments_vmap_is_one_batch_with_the_same_values(graph):
    """backend="core" under vmap: one callback replays the batch (blocks of 8); values and
    gradients are bitwise those of one theta at a time, also nested, and jacrev works."""
    m = moments_from_graph(graph, 2)
    rng = np.random.default_rng(5)
    ths = rng.uniform(0.3, 2.0, (19, 2))
    single = np.array([np.asarray(m(jnp.asarray(t))) for t in ths])
    batched = np.asarray(jax.jit(jax.vmap(m))(jnp.asarray(ths)))
    assert np.array_equal(batched, single)
    h = graph.copy()
    h.update_weights(ths[3])
    np.testing.assert_allclose(batched[3], dense_moments(h, 2), rtol=1e-12)
    nested = np.asarray(jax.vmap(jax.vmap(m))(jnp.asarray(ths[:18]).reshape(3, 6, 2)))
    assert np.array_equal(nested.reshape(18, 2), single[:18])

    def obj(th):
        return m(th) @ jnp.array([1.0, -0.3])

    g_single = np.array([np.asarray(jax.grad(obj)(jnp.asarray(t))) for t in ths])
    g_batched = np.asarray(jax.jit(jax.vmap(jax.grad(obj)))(jnp.asarray(ths)))
    assert np.array_equal(g_batched, g_single)
    jac = np.asarray(jax.jacrev(m)(jnp.asarray(ths[0])))
    rows = [np.asarray(jax.grad(lambda t, i=i: m(t)[i])(jnp.asarray(ths[0]))) for i in range(2)]
    assert np.array_equal(jac, np.array(rows))
    with pytest.raises(Exception, match="negative"):
        jax.vmap(m)(jnp.array([[1.0, 0.5]] * 8 + [[-1.0, 0.5]]))


def test_errors(graph):
    g = Graph(phasic.with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 1.0]]))
    with pytest.raises(ParameterError, match="parameterised"):
        moments_from_graph(g, 2)
    d = Graph(state_length=1, discrete=True)
    with pytest.raises(ParameterError, match="continuous"):
        moments_from_graph(d, 2)


# ------------------------------------------------------------------ uniformisation
def hub_graph(n=30, seed=0):
    """A hub linked both ways to n states: degrees too uneven for padded rows."""
    rng = np.random.default_rng(seed)
    g = Graph(state_length=1, theta_dim=2)
    hub = g.find_or_create_vertex([1])
    vs = [g.find_or_create_vertex([i + 2]) for i in range(n)]
    absorb = g.find_or_create_vertex([n + 2])
    g.add_edge(0, hub, 1.0)
    for v in vs:
        g.add_edge(hub, v, 0.0, coefficients=[rng.uniform(0.1, 1), 0.0])
        g.add_edge(v, hub, 0.0, coefficients=[0.0, rng.uniform(0.1, 1)])
        g.add_edge(v, absorb, 0.0, coefficients=[rng.uniform(0.1, 1), 0.0])
    return g


CASES = {  # graph, two thetas
    "two_island": (lambda: Graph(two_island), [[1.0, 0.5], [2.0, 0.1]]),
    "random_cyclic": (lambda: random_param_graph(1, n=25), [[0.5, 1.0, 1.5], [2.0, 0.3, 0.7]]),
    "hub": (hub_graph, [[1.0, 0.5], [0.3, 2.0]]),
}


def core_pdf(g, theta, times):
    h = g.copy()
    h.update_weights(theta)
    return h.pdf(times)


def top_rate(g, theta):
    h = g.copy()
    h.update_weights(theta)
    return float(-np.diag(h.as_matrices()[1]).min())


@pytest.mark.parametrize("case", ["two_island", "random_cyclic"])
def test_uniformization_matches_expm_and_core(case):
    make, thetas = CASES[case]
    g = make()
    times = np.array([0.0, 0.05, 0.3, 1.0, 2.5, 6.0])
    fu, fe = pmf_from_graph(g, method="uniformization"), pmf_from_graph(g, method="expm")
    for th in thetas:
        got = np.asarray(fu(jnp.asarray(th), times))
        np.testing.assert_allclose(got, core_pdf(g, th, times), rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(got, np.asarray(fe(jnp.asarray(th), times)), rtol=1e-10, atol=1e-15)


def fd_loglik_grad(g, th, times, eps=1e-6):
    """Central differences of the core's log-likelihood."""

    def ll(t):
        return np.log(core_pdf(g, t, times)).sum()

    return np.array([(ll(th + eps * e) - ll(th - eps * e)) / (2 * eps) for e in np.eye(len(th))])


@pytest.mark.parametrize("case", ["random_cyclic", "hub"])
def test_uniformization_values_and_gradient(case):
    make, thetas = CASES[case]
    g = make()
    g.update_weights(thetas[0])  # sizes the steps for a traced theta
    f = pmf_from_graph(g, method="uniformization")
    times = np.array([0.0, 0.1, 0.7, 1.5, 3.0])
    th = np.asarray(thetas[1], float)
    if case == "hub":  # the other graphs' values are checked above
        np.testing.assert_allclose(np.asarray(f(th, times)), core_pdf(g, th, times), rtol=1e-10)
    grad = jax.jit(jax.grad(lambda t: jnp.log(f(t, times[1:])).sum()))(jnp.asarray(th))
    np.testing.assert_allclose(np.asarray(grad), fd_loglik_grad(g, th, times[1:]), rtol=1e-6, atol=1e-8)


def test_uniformization_jit_vmap_and_time_derivative():
    g = Graph(two_island)
    g.update_weights([1.0, 0.5])
    f = pmf_from_graph(g)
    times = np.linspace(0.2, 3.0, 6)
    thetas = jnp.array([[1.0, 0.5], [1.5, 0.2], [0.8, 1.0]])
    batched = np.asarray(jax.jit(jax.vmap(lambda th: f(th, times)))(thetas))
    for row, th in zip(batched, np.asarray(thetas)):
        np.testing.assert_allclose(row, core_pdf(g, th, times), rtol=1e-10)

    # gradients under vmap: each batch member needs a different number of steps
    grads = jax.jit(jax.vmap(jax.grad(lambda th: jnp.log(f(th, times)).sum())))(thetas)
    for row, th in zip(np.asarray(grads), np.asarray(thetas)):
        np.testing.assert_allclose(row, fd_loglik_grad(g, th, times), rtol=1e-6)

    # traced times need max_jumps; d pdf / dt against central differences of the core
    fk = pmf_from_graph(g, max_jumps=256)
    th = np.array([1.0, 0.5])
    dt = np.asarray(jax.grad(lambda t: fk(th, t).sum())(jnp.asarray(times)))
    eps = 1e-6
    fd = (core_pdf(g, th, times + eps) - core_pdf(g, th, times - eps)) / (2 * eps)
    np.testing.assert_allclose(dt, fd, rtol=1e-6, atol=1e-9)
    with pytest.raises(ParameterError, match="max_jumps"):
        jax.jit(pmf_from_graph(g, method="uniformization"))(th, times)


def test_uniformization_gradient_with_many_times():
    """More times than states: the backward pass recomputes the Poisson weights instead of
    keeping the forward pass's (see _poisson_mixture)."""
    g = Graph(two_island)
    g.update_weights([1.0, 0.5])
    f = pmf_from_graph(g, method="uniformization")
    times, th = np.linspace(0.05, 3.0, 80), np.array([1.3, 0.6])
    grad = jax.jit(jax.grad(lambda t: jnp.log(f(t, times)).sum()))(jnp.asarray(th))
    np.testing.assert_allclose(np.asarray(grad), fd_loglik_grad(g, th, times), rtol=1e-6)


def test_uniformization_forward_mode_error_and_hessian():
    g = Graph(two_island)
    g.update_weights([1.0, 0.5])
    f, fe = pmf_from_graph(g, method="uniformization"), pmf_from_graph(g, method="expm")
    th, times = jnp.array([1.2, 0.4]), np.array([0.3, 1.0, 2.5])
    with pytest.raises(ForwardModeError, match="forward mode .*jax.jacrev"):
        jax.jvp(lambda t: f(t, times), (th,), (jnp.ones(2),))
    with pytest.raises(TypeError, match="forward mode"):
        jax.jit(jax.jacfwd(lambda t: f(t, times)))(th)

    # forward over reverse works: the Hessian of the log-likelihood against expm's, and
    # against central differences of the (finite-difference-checked) gradient
    def hess(fn):
        return np.asarray(jax.hessian(lambda t: jnp.log(fn(t, times)).sum())(th))

    H = hess(f)
    np.testing.assert_allclose(H, hess(fe), rtol=1e-8, atol=1e-10)
    grad = jax.grad(lambda t: jnp.log(f(t, times)).sum())
    eps = 1e-5
    fd = np.array([(grad(th + eps * e) - grad(th - eps * e)) / (2 * eps) for e in jnp.eye(2)])
    np.testing.assert_allclose(H, fd, rtol=1e-5)


def test_uniformization_nan_beyond_its_steps():
    g = Graph(two_island)
    th = np.array([1.0, 0.5])
    f = pmf_from_graph(g, max_jumps=64)
    reach = _max_rate_time(64) / top_rate(g, th)  # the last time 64 steps cover
    times = np.array([0.5, 0.99 * reach, 1.01 * reach, 50.0])
    got = np.asarray(f(th, times))
    np.testing.assert_allclose(got[:2], core_pdf(g, th, times[:2]), rtol=1e-10)
    assert np.isnan(got[2:]).all()

    # traced theta: steps sized for twice the graph's current rates
    g.update_weights(th)
    f = pmf_from_graph(g)
    times = np.array([0.3, 2.0])
    far = 5 * th  # rates 5x the graph's: the largest time is out of reach
    got = np.asarray(jax.jit(lambda t: f(t, times))(far))
    np.testing.assert_allclose(got[0], core_pdf(g, far, times[:1])[0], rtol=1e-10)
    assert np.isnan(got[1])
    # concrete theta: sized for that theta
    np.testing.assert_allclose(np.asarray(f(far, times)), core_pdf(g, far, times), rtol=1e-10)


def test_auto_uses_expm_past_the_step_cap(graph):
    th = np.array([1.0, 0.5])
    times = np.array([1.0, 1.1 * _max_rate_time(20_000) / top_rate(graph, th)])  # > 20,000 steps
    got = np.asarray(pmf_from_graph(graph)(th, times))  # no NaN: expm takes over
    np.testing.assert_allclose(got, core_pdf(graph, th, times), rtol=1e-10, atol=1e-300)


def test_step_bounds():
    for x in [0.3, 7.0, 50.0, 333.3, 1712.2, 19000.0]:
        K = _jumps_needed(x)
        k = np.arange(K + 1, K + 2000)
        log_pmf = k * np.log(x) - x - scipy.special.gammaln(k + 1)
        true_tail = np.logaddexp.reduce(log_pmf)  # log P(N > K), N ~ Poisson(x)
        assert true_tail <= _log_tail(K, x) <= np.log(_TAIL)  # a true upper bound
        assert _max_rate_time(K) >= x
        assert _log_tail(int(np.ceil(_steps_for(x))), x) <= np.log(_TAIL)  # the run-time rule
    assert _log_tail(_jumps_needed(100.0), 150.0) > np.log(_TAIL)


def test_pmf_bad_arguments(graph):
    with pytest.raises(ParameterError, match="'bogus'"):
        pmf_from_graph(graph, method="bogus")
    with pytest.raises(ParameterError, match="max_jumps"):
        pmf_from_graph(graph, max_jumps=0)


def test_graph_method_spelling(graph):
    f = graph.pmf_from_graph()
    np.testing.assert_allclose(
        np.asarray(f(jnp.array([1.0, 0.5]), jnp.array([1.0]))), dense_pdf(graph, [1.0, 0.5], [1.0]), atol=1e-12
    )


@pytest.mark.parametrize("method", ["expm", "auto"])
def test_stiff_rates_with_expm(method):
    """A fast stage (rate a = 1e6) then a slow one (b = 1): a t far beyond the uniformisation
    step cap, so "auto" uses expm. JAX's expm gave NaN past 16 squarings; the density is the
    hypoexponential a b / (a - b) (exp(-b t) - exp(-a t))."""
    g = Graph(state_length=1, theta_dim=1)
    a_, b_, c_ = (g.find_or_create_vertex([i]) for i in (1, 2, 3))
    g.add_edge(0, a_, 1.0)
    g.add_edge(a_, b_, 0.0, coefficients=[1.0])
    g.add_edge(b_, c_, 1.0)
    g.update_weights([1e6])
    f = pmf_from_graph(g, method=method)
    t = np.array([0.5, 1.0, 5.0, 30.0])
    a, b = 1e6, 1.0
    want = a * b / (a - b) * (np.exp(-b * t) - np.exp(-a * t))
    np.testing.assert_allclose(np.asarray(f(jnp.array([a]), jnp.asarray(t))), want, rtol=1e-9)
    # d/da log pdf = 1/a - 1/(a - b) (the exp(-a t) term vanishes here), summed over t
    grad = float(jax.grad(lambda th: jnp.log(f(th, jnp.asarray(t))).sum())(jnp.array([a]))[0])
    assert grad == pytest.approx(t.size * (1 / a - 1 / (a - b)), rel=1e-5)


# --------------------------------------------------- errors raised eagerly


def test_jax_functions_raise_parameter_errors_eagerly():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from phasic import moments_from_graph, pmf_from_graph

    g = Graph(two_island)
    g.update_weights([1.0, 0.5])
    m = moments_from_graph(g, 2)
    with pytest.raises(ParameterError, match=r"theta \[-1.0, 0.5\] gives edge"):
        m(jnp.array([-1.0, 0.5]))  # was a JaxRuntimeError from the callback
    with pytest.raises(ParameterError, match="never left"):
        m(jnp.array([0.0, 0.0]))
    assert np.isfinite(np.asarray(jax.grad(lambda t: m(t).sum())(jnp.array([1.0, 0.5])))).all()
    f = pmf_from_graph(g)
    with pytest.raises(ParameterError, match="NaN or infinite"):
        f(jnp.array([1.0, 0.5]), jnp.array([np.nan, 1.0]))  # a NaN time gave 0.0
    with pytest.raises(ParameterError, match="weight inf"):
        f(np.array([1e308, 1e308]), np.array([1.0]))
    gd = Graph(with_ipv([3])(lambda s: [] if s[0] <= 1 else [[[s[0] - 1], 0.5]]), discrete=True)
    with pytest.raises(ParameterError, match="must be integers"):
        pmf_from_graph(gd)(jnp.zeros(0), jnp.array([2.5]))  # was truncated to 2
