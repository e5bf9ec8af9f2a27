"""The exact log-likelihood gradient of a Demes model (``Problem.loglik_grad``: reverse mode
through the epochs, the plan's derivatives by differences) against central differences of
the log-likelihood itself, for sizes (constant and exponential), a split time, a migration
rate and a pulse proportion, with the Poisson and multinomial likelihoods, folded or not."""

import demes
import numpy as np
import pytest

from phasic.inference._problem import Problem

OPTIONS = {
    "parameters": [
        {
            "name": "N_anc",
            "values": [{"demes": {"anc": {"epochs": {0: "start_size"}}}}],
            "lower_bound": 100,
            "upper_bound": 1e5,
        },
        {
            "name": "NA0",
            "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}],
            "lower_bound": 100,
            "upper_bound": 1e5,
        },
        {
            "name": "NA1",
            "values": [{"demes": {"A": {"epochs": {0: "end_size"}}}}],
            "lower_bound": 100,
            "upper_bound": 1e5,
        },
        {
            "name": "T",
            "values": [
                {"demes": {"anc": {"epochs": {0: "end_time"}}}},
                {"demes": {"A": "start_time", "B": "start_time"}},
            ],
            "lower_bound": 400,
            "upper_bound": 1e5,
        },
        {"name": "m", "values": [{"migrations": {0: "rate"}}], "lower_bound": 1e-7, "upper_bound": 1e-2},
        {"name": "pulse", "values": [{"pulses": {0: "proportions"}}], "lower_bound": 0.0, "upper_bound": 1},
    ]
}


def model():
    b = demes.Builder(time_units="generations")
    b.add_deme("anc", epochs=[dict(start_size=2000, end_time=1500)])
    b.add_deme("A", ancestors=["anc"], epochs=[dict(start_size=1000, end_size=3000)])
    b.add_deme("B", ancestors=["anc"], epochs=[dict(start_size=500)])
    b.add_migration(source="A", dest="B", rate=2e-4)
    b.add_migration(source="B", dest="A", rate=1e-4)
    b.add_pulse(sources=["A"], dest="B", time=300, proportions=[0.1])
    return b.resolve()


@pytest.mark.parametrize(("theta", "folded"), [(1e-3, False), (None, False), (None, True)])
def test_loglik_gradient_against_differences(theta, folded):
    data = np.random.default_rng(1).poisson(20, (3, 3)).astype(float)
    length = None if theta is None else 1.0
    prob = Problem(model(), OPTIONS, data, {"A": 2, "B": 2}, theta, length, folded, None, False)
    v = np.array(prob.p0) * [1.1, 0.9, 1.2, 1.05, 1.3, 0.8]  # away from the graph's values
    ll, grad = prob.loglik_grad(v)
    assert ll == pytest.approx(prob.loglik(v), rel=1e-13)
    for i, name in enumerate(prob.names):
        h = 1e-5 * v[i]
        up, dn = v.copy(), v.copy()
        up[i] += h
        dn[i] -= h
        fd = (prob.loglik(up) - prob.loglik(dn)) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=2e-5, abs=1e-9 * abs(ll) / v[i]), name


def test_gradient_of_an_impossible_spectrum_is_zero_not_nan():
    data = np.zeros((3, 3))
    data[1, 1] = 5
    prob = Problem(model(), OPTIONS, data, {"A": 2, "B": 2}, 1e-3, 1.0, False, None, False)
    ll, grad = prob.loglik_grad(np.array(prob.p0))
    assert np.isfinite(ll) and np.all(np.isfinite(grad))
