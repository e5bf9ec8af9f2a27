"""Maximum-likelihood fit of two parameters of a structured coalescent with jax.grad.

The model: n lineages on two islands; within an island lineages coalesce at rate
theta[0] per pair, and each lineage migrates at rate theta[1]. We simulate times to the
most recent common ancestor at known parameters, then recover them by maximising the
log-likelihood built from `phasic.pmf_from_graph` with gradients from JAX.

The cached path, end to end: the graph is stored (`cache=True`) and its elimination trace
too (`hierarchical=True`); the JAX compilation cache is configured by CompilationConfig.
Run it twice: the second run loads the graph and trace and reuses compiled code.

    python examples/fit_structured_coalescent.py
"""

import time

import numpy as np

import phasic
from phasic import Graph


@phasic.with_ipv([[[4, 0], 1.0]])
def two_island(state):
    a, b = int(state[0]), int(state[1])
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], [a * (a - 1) / 2, 0.0]])
    if b >= 2:
        out.append([[a, b - 1], [b * (b - 1) / 2, 0.0]])
    if a > 0:
        out.append([[a - 1, b + 1], [0.0, a]])
    if b > 0:
        out.append([[a + 1, b - 1], [0.0, b]])
    return out


def main(n_data=1000, steps=200, seed=1):
    from phasic.jax._config import CompilationConfig

    CompilationConfig.balanced().apply()
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    t0 = time.perf_counter()
    g = Graph(two_island, cache=True, hierarchical=True)
    true = np.array([1.0, 0.3])
    g.update_weights(true)
    print(f"graph: {g} ({time.perf_counter() - t0:.3f} s, from the store if cached)")
    print(f"moments at the true parameters (trace replay): {g.moments(2)}")
    data = jnp.asarray(g.sample(n_data, seed=seed))

    f = phasic.pmf_from_graph(g)

    @jax.jit
    def negloglik(log_theta):
        return -jnp.log(f(jnp.exp(log_theta), data)).sum()

    value_and_grad = jax.jit(jax.value_and_grad(negloglik))
    t0 = time.perf_counter()

    def fun(x):
        v, gr = value_and_grad(jnp.asarray(x))
        return float(v), np.asarray(gr, dtype=np.float64)

    res = minimize(fun, x0=np.log([0.5, 1.0]), jac=True, method="L-BFGS-B", options={"maxiter": steps})
    est = np.exp(res.x)
    # standard errors from the observed information: the Hessian of the negative
    # log-likelihood in log-parameters, by central differences of the jitted gradient
    h = 1e-4
    hess = np.array([(fun(res.x + h * e)[1] - fun(res.x - h * e)[1]) / (2 * h) for e in np.eye(2)])
    hess = (hess + hess.T) / 2
    se = est * np.sqrt(np.diag(np.linalg.inv(hess)))  # delta method back to theta
    print(f"fit: {time.perf_counter() - t0:.2f} s, {res.nit} iterations, converged={res.success}")
    print(f"{'parameter':<12}{'true':>8}{'estimate':>10}{'std.err':>9}")
    for name, t, e, s in zip(["coalescence", "migration"], true, est, se):
        print(f"{name:<12}{t:>8.3f}{e:>10.3f}{s:>9.3f}")
    phasic.print_all_cache_info()
    return est, se


if __name__ == "__main__":
    main()
