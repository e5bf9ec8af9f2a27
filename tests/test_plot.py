"""Graph.plot (phasic/plot.py)."""

import pytest

pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_plot_small_graph_writes_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import phasic as _ph

    @_ph.with_ipv([4])
    def kingman(state):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2]]

    g = _ph.Graph(kingman)
    ax = g.plot()
    out = tmp_path / "g.png"
    ax.figure.savefig(out)
    assert out.stat().st_size > 1000
    assert len(ax.texts) >= g.vertices_length()
    big = _ph.Graph(_ph.with_ipv([100])(kingman.__wrapped__))
    with pytest.raises(_ph.ParameterError, match="max_vertices"):
        big.plot()
