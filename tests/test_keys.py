"""Graph-cache keys: canonical, stable across processes and hash seeds, sensitive to every input."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from phasic.exceptions import UnhashableError
from phasic.keys import (GRAPH_OPTIONS, canonical_json, encode_value, graph_key, split_graph_kwargs)
from phasic.state_indexing import Property, StateIndexer
from tests import _keys_helpers as kh

REPO = Path(__file__).resolve().parents[1]


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(cb, params=None, **kw):
    return graph_key(cb, params or {}, **kw)[0]


# ----------------------------------------------------------------------------- stability


def test_key_is_sha256_of_the_returned_material():
    import hashlib

    key, material = graph_key(kh.coalescent, {"theta": 2.0}, ipv=[10])
    assert key == hashlib.sha256(material.encode()).hexdigest()
    doc = json.loads(material)
    assert doc["format"] == 1 and "coalescent" in json.dumps(doc["callback"])


def test_keys_stable_across_processes_and_hash_seeds():
    here = kh.key_report()
    seen = []
    for seed in ("0", "1", "4242"):
        out = subprocess.run([sys.executable, "-m", "tests._keys_helpers", "keys"], cwd=REPO, env=_env(PYTHONHASHSEED=seed),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        seen.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert all(report == here for report in seen)
    assert len(set(here.values())) == len(here)


def test_same_inputs_same_key_and_dict_set_order_irrelevant():
    a = _key(kh.coalescent, {"theta": 2.0, "opts": {"x": 1, "y": {3, 1, 2}}}, ipv=[10])
    b = _key(kh.coalescent, {"opts": {"y": {2, 3, 1}, "x": 1}, "theta": 2.0}, ipv=[10])
    assert a == b


def test_script_run_as_main_and_imported_give_the_same_key(tmp_path):
    script = tmp_path / "model_script.py"
    script.write_text(textwrap.dedent("""
        import sys
        from phasic.keys import graph_key
        def model(state, theta=1.0):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], n * theta]]
        if __name__ == "__main__":
            print(graph_key(model, {"theta": 3.0}, ipv=[4])[0])
    """))
    out = subprocess.run([sys.executable, str(script)], env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    module = _load_module(script, "model_script")
    assert out.stdout.strip() == _key(module.model, {"theta": 3.0}, ipv=[4])


# ----------------------------------------------------------------------------- sensitivity

SOURCE = '''
def model(state, theta=1.0):
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], n * (n - 1) / 2 * theta]]
'''


def _variant(tmp_path, name, source):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return _load_module(path, name).model


def test_source_change_changes_key_but_comments_and_formatting_do_not(tmp_path):
    base = _key(_variant(tmp_path, "v_base", SOURCE), ipv=[5])
    commented = SOURCE.replace("    n = state[0]\n", "    # the number of lineages\n    n = state[0]  # first slot\n\n")
    reformatted = SOURCE.replace("n * (n - 1) / 2 * theta", "n*(n-1)/2*theta").replace("return []", "return [ ]")
    decorated = "import functools\n@functools.lru_cache(maxsize=None)\n" + SOURCE.lstrip()
    changed = SOURCE.replace("/ 2", "/ 3")
    assert _key(_variant(tmp_path, "v_comment", commented), ipv=[5]) == base
    assert _key(_variant(tmp_path, "v_format", reformatted), ipv=[5]) == base
    assert _key(_variant(tmp_path, "v_decorated", decorated), ipv=[5]) == base
    assert _key(_variant(tmp_path, "v_changed", changed), ipv=[5]) != base


def test_closure_values_change_the_key():
    k1 = _key(kh.make_rate_callback(1.0), ipv=[5])
    k2 = _key(kh.make_rate_callback(2.0), ipv=[5])
    k1_again = _key(kh.make_rate_callback(1.0), ipv=[5])
    k_int = _key(kh.make_rate_callback(1), ipv=[5])
    assert k1 == k1_again
    assert len({k1, k2, k_int}) == 3


def test_parameters_ipv_options_change_the_key():
    base = _key(kh.coalescent, {"theta": 1.0}, ipv=[10])
    assert _key(kh.coalescent, {"theta": 2.0}, ipv=[10]) != base
    assert _key(kh.coalescent, {"theta": 1}, ipv=[10]) != base  # 1 != 1.0
    assert _key(kh.coalescent, {"theta": True}, ipv=[10]) != base
    assert _key(kh.coalescent, {"theta": np.float64(1.0)}, ipv=[10]) != base
    assert _key(kh.coalescent, {"theta": 1.0}, ipv=[11]) != base
    assert _key(kh.coalescent, {"theta": 1.0}, ipv=[[[10], 1.0]]) == base
    assert _key(kh.coalescent, {"theta": 1.0}, ipv=[[[10], 0.5], [[9], 0.5]]) != base
    assert _key(kh.coalescent, {"theta": 1.0}, ipv=[10], options={"discrete": True}) != base
    assert _key(kh.coalescent, {"theta": 1.0}, ipv=[10], options={"theta_dim": 1}) != base
    # switches that do not change the graph are not part of the key; defaults equal "not given"
    same = {"cache": True, "graph_cache": True, "max_vertices": 50, "hierarchical": True, "discrete": False,
            "theta_dim": None}
    assert _key(kh.coalescent, {"theta": 1.0}, ipv=[10], options=same) == base


def test_numpy_array_parameters_are_keyed_by_content():
    base = _key(kh.coalescent, {"w": np.arange(4.0)}, ipv=[3])
    assert _key(kh.coalescent, {"w": np.arange(4.0)}, ipv=[3]) == base
    assert _key(kh.coalescent, {"w": np.arange(4)}, ipv=[3]) != base  # dtype
    assert _key(kh.coalescent, {"w": np.arange(4.0).reshape(2, 2)}, ipv=[3]) != base  # shape
    assert _key(kh.coalescent, {"w": np.array([0.0, 1.0, 2.0, 3.5])}, ipv=[3]) != base  # bytes


def test_to_dict_objects_are_keyed_by_their_fields():
    def ix(m):
        return StateIndexer([Property("descendants", max_value=m, min_value=1), Property("population", max_value=1)])

    base = _key(kh.coalescent, {}, ipv=[3], indexer=ix(4))
    assert _key(kh.coalescent, {}, ipv=[3], indexer=ix(4)) == base
    assert _key(kh.coalescent, {}, ipv=[3], indexer=ix(5)) != base
    assert _key(kh.coalescent, {}, ipv=[3], model=ix(4)) != base


def test_wrapped_callback_keys_the_wrapped_source_and_its_ipv():
    assert kh.wrapped.__wrapped__ is not kh.wrapped
    assert _key(kh.wrapped) == _key(kh.wrapped.__wrapped__, ipv=[6])
    assert _key(kh.wrapped) != _key(kh.wrapped.__wrapped__, ipv=[7])


def test_module_constant_and_helper_changes_between_runs(tmp_path):
    module = tmp_path / "const_model.py"
    script = ("import json, const_model\nfrom phasic.keys import graph_key\n"
              "print(graph_key(const_model.model, {}, ipv=[4])[0])\n")
    template = textwrap.dedent('''
        import numpy as np
        RATE = {rate}
        SHAPE = np.array([1.0, {w}])
        def helper(n):
            return n * {h}
        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], helper(n) * RATE * SHAPE[1]]]
    ''')

    def run(rate, w="2.0", h="2"):
        module.write_text(template.format(rate=rate, w=w, h=h))
        out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(PYTHONDONTWRITEBYTECODE="1"),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    k1 = run("1.0")
    assert run("2.0") != k1
    assert run("1.0", w="3.0") != k1
    assert run("1.0", h="3") != k1
    assert run("1.0") == k1


def test_encoding_is_type_tagged_and_exact():
    encodings = {canonical_json(v) for v in (1, 1.0, True, "1", np.int64(1), np.float32(1.0), [1], (1,), None)}
    assert len(encodings) == 9
    assert canonical_json(0.1) != canonical_json(float(np.nextafter(0.1, 1.0)))
    assert encode_value(0.1) == ["float", (0.1).hex()]


# ----------------------------------------------------------------------------- errors


def test_lambda_gives_clear_error():
    with pytest.raises(UnhashableError, match="define the callback with def in a file"):
        graph_key(lambda state: [], {}, ipv=[1])


def test_callback_without_source_gives_clear_error():
    namespace = {}
    exec("def dynamic(state):\n    return []\n", namespace)
    with pytest.raises(UnhashableError, match="define it with def in a file") as info:
        graph_key(namespace["dynamic"], {}, ipv=[1])
    assert "dynamic" in str(info.value)


def test_parameter_object_without_to_dict_gives_clear_error():
    class Opaque:
        pass

    class Half:
        def to_dict(self):
            return {}

    with pytest.raises(UnhashableError, match=r"'p'.*test_keys.*Opaque|Opaque.*'p'") as info:
        graph_key(kh.coalescent, {"p": Opaque()}, ipv=[2])
    assert "to_dict() and from_dict()" in str(info.value)
    with pytest.raises(UnhashableError, match=r"no from_dict\(\).*give the class to_dict\(\) and from_dict\(\)"):
        graph_key(kh.coalescent, {"p": Half()}, ipv=[2])


def test_unsupported_global_is_named(tmp_path):
    path = tmp_path / "bad_global.py"
    path.write_text("import threading\nLOCK = threading.Lock()\n"
                    "def model(state):\n    with LOCK:\n        return []\n")
    with pytest.raises(UnhashableError, match=r"'LOCK'.*keyword parameter"):
        graph_key(_load_module(path, "bad_global").model, {}, ipv=[1])


def test_not_a_function():
    with pytest.raises(UnhashableError, match="built-in function"):
        graph_key(len, {}, ipv=[1])


def test_split_graph_kwargs_matches_graph_signature():
    import inspect

    from phasic import Graph

    sig = inspect.signature(Graph.__init__)
    own = {n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert own == set(GRAPH_OPTIONS)
    options, params = split_graph_kwargs({"theta": 1, "cache": True, "ipv": [3], "n": 4})
    assert options == {"cache": True, "ipv": [3]} and params == {"theta": 1, "n": 4}
