"""Bad input to the inference API: a ParameterError naming the offending value, never a
numpy/yaml/AttributeError traceback or a silently wrong number."""

import numpy as np
import pytest

demes = pytest.importorskip("demes")

from phasic import inference  # noqa: E402
from phasic.exceptions import ParameterError  # noqa: E402

DATA = np.array([0, 40, 20, 13, 0.0])
SAMPLES = {"A": 4}


@pytest.fixture(scope="module")
def graph():
    b = demes.Builder(time_units="generations")
    b.add_deme("A", epochs=[dict(start_size=1000)])
    return b.resolve()


def _opt(**kw):
    p = {"name": "N", "values": [{"demes": {"A": {"epochs": {0: "start_size"}}}}], "lower_bound": 10}
    p.update(kw)
    return {"parameters": [p]}


def _lik(graph, options=None, data=DATA, samples=SAMPLES, **kw):
    return inference.likelihood(graph, options or _opt(), data, samples=samples, cache=False, **kw)


@pytest.mark.parametrize(
    "options, named",
    [
        (_opt(values=[{"demes": {"A": {"epochs": {"x": "start_size"}}}}]), "'x'"),
        (_opt(values=[{"demes": {"A": {"epochs": {-1: "start_size"}}}}]), "-1"),
        (_opt(values=[{"demes": {"A": "name"}}]), "'name'"),
        (_opt(values=[{"demes": "A"}]), "'A'"),
        (_opt(values=[{"migrations": [0]}]), "[0]"),
        (_opt(lower_bound="abc"), "'abc'"),
        (_opt(lower_bound=None), "None"),
        (_opt(lower_bound=float("nan")), "nan"),
        (_opt(lower_bound=1e5, upper_bound=10), "100000.0"),
        (_opt(name=None), "None"),
        ({"parameters": "N"}, "'N'"),
        ({**_opt(), "constraints": [{"params": ["N", "Q"], "constraint": "greater_than"}]}, "'Q'"),
        ({**_opt(), "constraints": [{"params": ["N", "N", "N"], "constraint": "greater_than"}]}, "'N', 'N', 'N'"),
        ({**_opt(), "constraints": ["N > Q"]}, "'N > Q'"),
        ({**_opt(), "constraints": [{"params": ["N", "N"], "constraint": "greater_than"}]}, "itself"),
    ],
)
def test_bad_options(graph, options, named):
    with pytest.raises(ParameterError, match=None) as exc:
        _lik(graph, options)
    assert named in str(exc.value)


def test_options_file_not_yaml(graph, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("parameters: [\n")
    with pytest.raises(ParameterError, match="not valid YAML") as exc:
        _lik(graph, str(p))
    assert str(p) in str(exc.value)


@pytest.mark.parametrize(
    "data, named",
    [
        (["a", "b", "c", "d", "e"], "'a'"),
        ([[0, 1], [2]], "[[0, 1], [2]]"),
        ({"a": 1}, "{'a': 1}"),
        (None, "None"),
        (np.array([0, 1j, 2, 3, 0]), "array"),
        ([0, -1, 2, 3, 0], "-1.0 at cell (1,)"),
        ([0, np.nan, 2, 3, 0], "nan at cell (1,)"),
    ],
)
def test_bad_sfs_array(graph, data, named):
    with pytest.raises(ParameterError) as exc:
        _lik(graph, data=data)
    assert named in str(exc.value)


@pytest.mark.parametrize(
    "content, named",
    [
        (b"5\n0 40 20 13 0\n0 1 x 0 1\n", "'x'"),
        (b"5\n0 40 20 13 0\n0 1 2 0 1\n", "'2'"),
        (b"\xff\xfe\x00garbage", "not a text file"),
        (b"0\n\n1\n", "(0,)"),
    ],
)
def test_bad_fs_file(graph, tmp_path, content, named):
    p = tmp_path / "x.fs"
    p.write_bytes(content)
    with pytest.raises(ParameterError) as exc:
        _lik(graph, data=str(p))
    assert named in str(exc.value) and str(p) in str(exc.value)


@pytest.mark.parametrize(
    "samples, named", [(["A"], "['A']"), (None, "None"), ({"A": 4.0}, "4.0"), ({"A": True}, "True"), ({"A": -4}, "-4")]
)
def test_bad_samples(graph, samples, named):
    with pytest.raises(ParameterError) as exc:
        _lik(graph, samples=samples)
    assert named in str(exc.value)


@pytest.mark.parametrize("folded", ["no", "false", 1])
def test_folded_not_bool(graph, folded):
    # bool("no") is True: a string would silently fold the spectrum
    with pytest.raises(ParameterError) as exc:
        _lik(graph, folded=folded)
    assert repr(folded) in str(exc.value)


def test_mutation_rate_not_a_number(graph):
    with pytest.raises(ParameterError, match="'x'"):
        _lik(graph, mutation_rate="x", sequence_length=1e6)


@pytest.mark.parametrize("values, named", [("abc", "'abc'"), ({"N": "abc"}, "'abc'"), ({"N": float("nan")}, "nan")])
def test_bad_values(graph, values, named):
    with pytest.raises(ParameterError) as exc:
        _lik(graph)(values)
    assert named in str(exc.value)


def test_batch_not_numbers(graph):
    with pytest.raises(ParameterError, match="'a'"):
        _lik(graph).batch([["a"]])


@pytest.mark.parametrize("params, named", [({"N": "x"}, "'x'"), ([1000.0], "[1000.0]")])
def test_loglik_bad_params(graph, params, named):
    with pytest.raises(ParameterError) as exc:
        inference.loglik(graph, _opt(), DATA, samples=SAMPLES, params=params, cache=False)
    assert named in str(exc.value)


@pytest.mark.parametrize("kw, named", [({"seed": "abc"}, "'abc'"), ({"seed": 1.5}, "1.5"), ({"maxiter": "x"}, "'x'")])
def test_fit_bad_arguments(graph, kw, named):
    with pytest.raises(ParameterError) as exc:
        inference.fit(graph, _opt(), DATA, samples=SAMPLES, cache=False, **kw)
    assert named in str(exc.value)
