"""inference.fit on a real Dask LocalCluster (2 single-threaded worker processes): several MLE
starts as tasks, SVGD iterations as tasks over chunks of particles; both give what the
in-process run gives, and the tasks use the client's store (not the workers' own)."""

import numpy as np
import pytest

demes = pytest.importorskip("demes")
distributed = pytest.importorskip("distributed")

from phasic import demography, inference  # noqa: E402
from phasic.exceptions import ParameterError  # noqa: E402
from tests.dask_cluster import decoy_cluster  # noqa: E402
from tests.inference.test_fit import OPTIONS, model  # noqa: E402

pytestmark = pytest.mark.timeout(180)
MU, N, L = 1e-8, 10, 5e7


@pytest.fixture(scope="module")
def client(decoy):
    with decoy_cluster(decoy) as lc, distributed.Client(lc, set_as_default=False) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
    return root


def data():
    e = demography.from_demes(model(20000, 1000, 5000), {"A": N}).expected_sfs() * MU * L
    return np.random.default_rng(7).poisson(e).astype(float)


def fit(client=None, **kw):
    return inference.fit(
        model(10000, 3000, 10000),
        OPTIONS,
        data(),
        samples={"A": N},
        mutation_rate=MU,
        sequence_length=L,
        client=client,
        **kw,
    )


def test_starts_as_dask_tasks_match_the_in_process_ones(client, store):
    here = fit(starts=4, seed=3)
    there = fit(client, starts=4, seed=3)
    assert len(there.starts) == 4
    for (ll_a, ok_a, p_a), (ll_b, ok_b, p_b) in zip(here.starts, there.starts):
        assert ll_b == pytest.approx(ll_a, rel=1e-9) and ok_a == ok_b
        assert p_b == pytest.approx(p_a, rel=1e-6)
    # the best start is the one kept
    assert there.loglik == pytest.approx(max(s[0] for s in there.starts), rel=1e-12)
    assert there.params == pytest.approx(here.params, rel=1e-6)
    assert there.stderr == pytest.approx(here.stderr, rel=1e-4)
    assert there.evaluations > 4
    # the workers read and wrote the client's store
    assert any(p.suffix == ".h5" for p in store.rglob("*"))


def test_svgd_iterations_as_dask_tasks_match_the_in_process_ones(client, store):
    kw = dict(method="svgd", n_particles=8, n_iterations=15, seed=2)
    here = fit(**kw)
    there = fit(client, **kw)
    assert there.samples == pytest.approx(here.samples, rel=1e-8)
    assert there.trace == pytest.approx(here.trace, rel=1e-6)
    assert there.evaluations == here.evaluations
    # one Problem per worker process, built once and reused for every chunk
    built = client.run(lambda: len(__import__("phasic.inference._tasks", fromlist=["_CACHE"])._CACHE))
    assert sum(built.values()) >= 1 and all(v <= 2 for v in built.values())


def test_bad_client_is_named(store):
    with pytest.raises(ParameterError, match="client must be a dask.distributed.Client or 'local', got 'remote'"):
        fit("remote", starts=2)
    with pytest.raises(ParameterError, match="client must be a dask.distributed.Client or 'local', got 42"):
        fit(42, starts=2)
