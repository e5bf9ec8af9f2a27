"""evaluate_batch: the batch replay equals the per-vector replay and dense algebra, threads give
the same bits in whole blocks, empty and bad input."""

import numpy as np
import pytest

from phasic import Graph, ParameterError
from phasic.batch import evaluate_batch
from tests.models import dense_moments, random_param_graph, two_island


def test_batch_equals_single(cache_dir):
    g = Graph(two_island)
    thetas = np.random.default_rng(3).uniform(0.1, 3.0, (40, 2))
    batch = evaluate_batch(g, thetas, what="moments", k=3)
    h = g.copy()
    for row, got in zip(thetas, batch):
        h.update_weights(row)
        np.testing.assert_allclose(got, h.moments(3), rtol=1e-13)
        np.testing.assert_allclose(got, dense_moments(h, 3), rtol=1e-12)
    ev = evaluate_batch(g, thetas, what="variance")
    np.testing.assert_allclose(ev, batch[:, 1] - batch[:, 0] ** 2, rtol=1e-12)
    rewards = g.states()[:, 0].astype(float)
    rb = evaluate_batch(g, thetas[:5], what="expectation", rewards=rewards)
    for row, got in zip(thetas[:5], rb):
        h.update_weights(row)
        np.testing.assert_allclose(got, dense_moments(h, 1, rewards)[0], rtol=1e-12)
    pdf = evaluate_batch(g, thetas[:3], what="pdf", times=[0.5, 1.0])
    for row, got in zip(thetas[:3], pdf):
        h.update_weights(row)
        np.testing.assert_allclose(got, h.pdf([0.5, 1.0]), rtol=1e-12)


@pytest.mark.parametrize("B", [1, 13, 1000])
def test_batch_threads_give_the_same_bits(B, cache_dir):
    g = Graph(two_island)
    thetas = np.random.default_rng(B).uniform(0.1, 3.0, (B, 2))
    one = evaluate_batch(g, thetas, k=3)
    for threads in (2, 3, 64):
        np.testing.assert_array_equal(evaluate_batch(g, thetas, k=3, threads=threads), one)
    bad = thetas.copy()
    bad[B // 2, 1] = -5.0  # a negative rate in whichever thread gets that row
    with pytest.raises(ParameterError, match="negative rate"):
        evaluate_batch(g, bad, threads=2)


def test_split_rows_covers_every_row_in_whole_blocks():
    from phasic.batch import _split_rows

    for B in (1, 7, 8, 9, 100, 1000):
        for t in (1, 2, 3, 200):
            parts = _split_rows(B, t)
            assert parts[0][0] == 0 and parts[-1][1] == B and len(parts) <= t
            assert all(a == pb for (_, pb), (a, _) in zip(parts, parts[1:]))
            assert all(a % 8 == 0 for a, _ in parts)


def test_batch_bad_input(cache_dir):
    g = Graph(two_island)
    with pytest.raises(ParameterError, match=r"\(B, 2\)"):
        evaluate_batch(g, np.ones((3, 3)))
    with pytest.raises(ParameterError, match="non-finite"):
        evaluate_batch(g, [[1.0, np.nan]])
    with pytest.raises(ParameterError, match="negative rate"):
        evaluate_batch(g, [[1.0, -1.0]])
    with pytest.raises(ParameterError, match="what="):
        evaluate_batch(g, [[1.0, 1.0]], what="median")
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        evaluate_batch(g, [[1.0, 1.0]], threads=0)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="threads must be an int"):
            evaluate_batch(g, [[1.0, 1.0]], threads=bad)


def test_evaluate_batch_edge_cases():
    g = random_param_graph(1)  # edges added by hand: pending until flushed
    assert evaluate_batch(g, np.ones((3, 3))).shape == (3, 2)
    g.update_weights([1.0, 1.0, 1.0])
    evaluate_batch(g, np.ones((16, 3)))  # compiles the replay plan
    assert evaluate_batch(g, np.zeros((0, 3))).shape == (0, 2)
    assert evaluate_batch(g, np.zeros((0, 3)), what="pdf", times=[1.0, 2.0]).shape == (0, 2)
    with pytest.raises(TypeError, match="phasic.Graph"):
        evaluate_batch(None, np.ones((2, 3)))
