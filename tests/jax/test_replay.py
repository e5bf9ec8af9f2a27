"""Pure-JAX trace replay (moments_from_graph(..., backend="jax")): the level schedule keeps
the program's meaning, values equal the core backend and evaluate_batch, jit/vmap work,
gradients equal the core's adjoint gradients and finite differences, bad input fails."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

import phasic  # noqa: E402
from phasic import (  # noqa: E402
    Graph,
    ParameterError,
    moments_from_graph,
)
from phasic._csr import reward_vector  # noqa: E402
from phasic.batch import evaluate_batch  # noqa: E402
from phasic.jax import _replay as jax_replay  # noqa: E402
from tests.models import random_param_graph, two_island_graph  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="module")
def island():
    return two_island_graph(14)


@pytest.fixture(scope="module")
def cyclic():
    g = random_param_graph(5, n=40, p=3, extra=3)
    g._ll.flush()
    return g


def _thetas(p, n, seed):
    return np.random.default_rng(seed).uniform(0.3, 2.5, (n, p))


# ------------------------------------------------------------------------ level schedule
def _sequential(xi, xj, m, x):
    x = x.copy()
    for i, j, s in zip(xi, xj, m):
        if j >= 0:
            x[i] += s * x[j]
        else:
            x[i] *= s
    return x


def _by_level(xi, xj, m, x, lev, after):
    """The level schedule as the JAX replay runs it: per level one gather (values from
    before the level) and one scatter-add, x[i] += (s - 1) x[i] + sum (s m) x[j]."""
    x = x.copy()
    jj = np.where(xj >= 0, xj, xi)
    s = np.where(after >= 0, m[np.maximum(after, 0)], 1.0)
    mm = np.where(xj >= 0, m * s, m - 1.0)
    for lv in range(lev.max() + 1):
        k = lev == lv
        g = x[jj[k]]
        np.add.at(x, xi[k], mm[k] * g)
    return x


@pytest.mark.parametrize("seed", range(5))
def test_program_levels_keep_meaning(seed):
    """Random programs over few slots (many read/write conflicts, repeated targets)."""
    rng = np.random.default_rng(seed)
    n, X = 300, 7
    xi = rng.integers(0, X, n)
    xj = np.where(rng.random(n) < 0.25, -1, rng.integers(0, X, n))
    xj = np.where(xj == xi, -1, xj)
    m = rng.uniform(0.5, 1.5, n)
    x = rng.uniform(-1, 1, X)
    lev, after = jax_replay.program_levels(xi, xj, X)
    np.testing.assert_allclose(_by_level(xi, xj, m, x, lev, after), _sequential(xi, xj, m, x), rtol=1e-12)
    assert lev.max() + 1 < n and (after >= 0).any()  # updates share levels, adds get scaled


def test_tape_levels_and_buckets():
    code = np.array([0, 0, 1, 3, 4, 5, 0, 6], np.uint8)
    a = np.array([0, 1, 0, 2, 3, 2, 2, 5])
    b = np.array([-1, -1, 1, -1, 2, 4, -1, -1])
    c = np.array([-1, -1, -1, -1, -1, 6, -1, -1])
    np.testing.assert_array_equal(jax_replay.tape_levels(code, a, b, c), [0, 0, 1, 2, 3, 4, 0, 5])
    # a wide level among narrow ones gets its own bucket; the narrow tail shares one
    widths = [1000, 3000, 3000, 20, 20, 19, 3, 2, 1]
    runs = [(lo, hi) for lo, hi, _ in jax_replay.buckets(widths)]
    assert runs == [(0, 1), (1, 3), (3, 9)]


# ------------------------------------------------------------------------------- values
# one jax function per graph (compiled once per transformation), with rewards, k = 3
@pytest.fixture(scope="module")
def fns(island, cyclic):
    out = {}
    for name, g in (("island", island), ("cyclic", cyclic)):
        rw = np.random.default_rng(1).uniform(0.0, 2.0, g.vertices_length())
        out[name] = (g, rw, moments_from_graph(g, 3, rewards=rw, backend="jax"), moments_from_graph(g, 3, rewards=rw))
    return out


@pytest.mark.parametrize("which", ["island", "cyclic"])
def test_values_equal_core(which, fns):
    g, rw, fj, fc = fns[which]
    thetas = _thetas(g._ll.coef.shape[1], 5, 7)
    batch = np.asarray(jax.jit(jax.vmap(fj))(thetas))
    np.testing.assert_allclose(batch, evaluate_batch(g, thetas, k=3, rewards=rw), rtol=1e-12)
    for th, got in zip(thetas[:3], batch):
        np.testing.assert_allclose(np.asarray(fj(th)), got, rtol=1e-14)
        np.testing.assert_allclose(got, np.asarray(fc(th)), rtol=1e-12)
        h = g.copy()
        h.update_weights(th)
        np.testing.assert_allclose(got, h.moments(3, rw), rtol=1e-12)


def test_jit_and_vmap_without_rewards(cyclic):
    f = moments_from_graph(cyclic, 2, backend="jax")
    thetas = _thetas(3, 37, 3)
    ref = evaluate_batch(cyclic, thetas, k=2)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(thetas[5])), ref[5], rtol=1e-12)
    # jit(vmap) with the batch split into blocks of 8, the last one partial
    small = jax_replay.replay_moments(cyclic, 2, reward_vector(cyclic, None), jnp.float64, block=8)
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(small))(thetas)), ref, rtol=1e-12)
    info = f.replay_info
    assert info["program_levels"] <= info["updates"] and info["tape_levels"] < info["ops"]


def test_hierarchical_trace(cache_dir, monkeypatch):
    monkeypatch.setattr(phasic.traces, "HIERARCHICAL_MIN_SCC", 2)  # splice stored components
    monkeypatch.setattr(phasic.traces, "SCC_STORE_GAIN", 0.0)
    g = random_param_graph(2, n=30, extra=2)
    g._ll.flush()
    g._ll.hierarchical = True
    th = np.array([0.7, 1.3, 0.4])
    h = g.copy()
    h.update_weights(th)
    np.testing.assert_allclose(np.asarray(moments_from_graph(g, 3, backend="jax")(th)), h.moments(3), rtol=1e-12)


# ---------------------------------------------------------------------------- gradients
WTS = np.array([1.0, -0.3, 0.02])


@pytest.mark.parametrize("which", ["island", "cyclic"])
def test_grad_equals_core_and_finite_differences(which, fns):
    g, rw, fj, fc = fns[which]
    p = g._ll.coef.shape[1]
    thetas = _thetas(p, 3, 5)
    gj = np.asarray(jax.jit(jax.vmap(jax.grad(lambda th: (fj(th) * WTS).sum())))(thetas))
    grad_c = jax.grad(lambda th: (fc(th) * WTS).sum())
    for th, got in zip(thetas, gj):
        np.testing.assert_allclose(got, np.asarray(grad_c(jnp.asarray(th))), rtol=1e-9)

        def dense(t):
            h = g.copy()
            h.update_weights(t)
            return float(np.asarray(h.moments(3, rw)) @ WTS)

        eps = 1e-6
        fd = [(dense(th + eps * e) - dense(th - eps * e)) / (2 * eps) for e in np.eye(p)]
        np.testing.assert_allclose(got, fd, rtol=1e-6)


def test_grad_of_batched_sum(fns):
    g, rw, fj, fc = fns["cyclic"]
    thetas = _thetas(3, 4, 9)
    total = jax.grad(lambda T: jax.vmap(fj)(T)[:, 1].sum())(jnp.asarray(thetas))
    for th, got in zip(thetas, np.asarray(total)):
        ref = jax.grad(lambda t: fc(t)[1])(jnp.asarray(th))
        np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-9)


# ---------------------------------------------------------------------------- bad input
def test_bad_input(fns):
    g, rw, f, fc = fns["island"]
    with pytest.raises(ParameterError, match="backend"):
        moments_from_graph(g, 2, backend="numpy")
    with pytest.raises(ParameterError, match="positive integer"):
        moments_from_graph(g, 0, backend="jax")
    d = Graph(state_length=1, discrete=True)
    with pytest.raises(ParameterError, match="continuous"):
        moments_from_graph(d, 2, backend="jax")
    with pytest.raises(ParameterError, match=r"expected \(2,\)"):
        f(jnp.ones(3))
    with pytest.raises(ParameterError, match=r"expected \(2,\)"):
        jax.jit(f)(jnp.ones((1, 2)))
    with pytest.raises(ParameterError, match=r"expected \(2,\)"):
        fc(jnp.ones(3))  # the core backend checks the length too
    # values are not checked inside JAX: a negative or NaN rate gives NaN moments
    assert np.all(np.isnan(np.asarray(f(jnp.array([1.0, -0.5])))))
    assert np.all(np.isnan(np.asarray(f(jnp.array([np.nan, 0.5])))))
    batch = np.asarray(jax.vmap(f)(jnp.array([[1.0, 0.5], [-1.0, 0.5], [1.2, 0.4], [1.0, 0.5], [1.3, 0.2]])))
    assert np.all(np.isfinite(batch[0])) and np.all(np.isnan(batch[1]))
