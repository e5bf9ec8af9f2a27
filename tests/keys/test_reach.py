"""The graph key follows the callback into the user's other modules.

Each scenario is a small user project written to ``tmp_path``: a model module whose
callback reaches a helper in another module in one of the ways users write it
(from-import, ``module.attr``, a helper of a helper, a module constant, a class, a
default argument, a closure, an import inside the callback, a relative import in a
package, an editable-style package outside site-packages).  One subprocess computes
every scenario's key and its ``Graph(cache=True)`` expectation with a shared store;
then every helper is edited (a real change, or only comments and formatting) and a
new process runs again.  A real change must give a new key and the new answer (equal
to a build without the cache); a cosmetic edit must keep the key and hit the store.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Each scenario: files (path -> source with {R} for the edited rate and {C} for a
# cosmetic edit) and the module:callback to build.  The callback is a Kingman-like
# chain whose rate at n lineages is n(n-1)/2 times a helper's value.
SCENARIOS = {
    "from_import": {
        "s1_helpers.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s1_model.py": """
            from s1_helpers import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "module_attr": {
        "s2_helpers.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s2_model.py": """
            import s2_helpers

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * s2_helpers.mig_rate(1.0)]]
        """,
    },
    "helper_of_helper": {
        "s3_inner.py": """
            def base(k):{C}
                return {R} * k
        """,
        "s3_helpers.py": """
            from s3_inner import base

            def mig_rate(k):
                return base(k)
        """,
        "s3_model.py": """
            from s3_helpers import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "helper_constant": {
        "s4_helpers.py": """
            SCALE = {R}{C}

            def mig_rate(k):
                return SCALE * k
        """,
        "s4_model.py": """
            from s4_helpers import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "dotted_constant": {
        "s5_helpers.py": """
            SCALE = {R}{C}
        """,
        "s5_model.py": """
            import s5_helpers

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * s5_helpers.SCALE]]
        """,
    },
    "class_method": {
        "s6_helpers.py": """
            class Rates:
                def __init__(self, k):
                    self.k = k

                def mig(self):{C}
                    return {R} * self.k
        """,
        "s6_model.py": """
            from s6_helpers import Rates

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * Rates(1.0).mig()]]
        """,
    },
    "default_argument": {
        "s7_helpers.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s7_model.py": """
            from s7_helpers import mig_rate as _m

            def model(state, rate=_m):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * rate(1.0)]]
        """,
    },
    "closure": {
        "s8_helpers.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s8_model.py": """
            def make():
                from s8_helpers import mig_rate

                def model(state):
                    n = state[0]
                    return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]

                return model

            model = make()
        """,
    },
    "import_in_body": {
        "s9_helpers.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s9_model.py": """
            def model(state):
                from s9_helpers import mig_rate

                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "package_relative": {
        "s10pkg/__init__.py": """
        """,
        "s10pkg/rates.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s10pkg/model.py": """
            from .rates import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "relative_import_in_body": {
        "s11pkg/__init__.py": """
        """,
        "s11pkg/sub/__init__.py": """
        """,
        "s11pkg/sub/rates.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s11pkg/model.py": """
            def model(state):
                from .sub import rates

                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * rates.mig_rate(1.0)]]
        """,
    },
    "dotted_submodule": {
        "s12pkg/__init__.py": """
        """,
        "s12pkg/rates.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s12_model.py": """
            import s12pkg.rates

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * s12pkg.rates.mig_rate(1.0)]]
        """,
    },
    "staticmethod_of_helper_class": {
        "s13_helpers.py": """
            class Table:
                @staticmethod
                def rate(k):{C}
                    return {R} * k
        """,
        "s13_model.py": """
            import s13_helpers

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * s13_helpers.Table.rate(1.0)]]
        """,
    },
    "lambda_in_helper": {
        "s14_helpers.py": """
            mig_rate = lambda k: {R} * k{C}
        """,
        "s14_model.py": """
            from s14_helpers import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "dataclass_enum_namedtuple": {
        "s15_helpers.py": """
            import dataclasses
            import enum
            from typing import NamedTuple

            class Kind(enum.Enum):
                A = 1

            class Scale(NamedTuple):
                x: float = 1.0

            @dataclasses.dataclass(frozen=True)
            class Params:
                scale: float = {R}{C}

                @property
                def rate(self):
                    return self.scale * Kind.A.value * Scale().x
        """,
        "s15_model.py": """
            from s15_helpers import Params

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * Params().rate]]
        """,
    },
    "user_decorator": {
        "s16_deco.py": """
            import functools

            def scaled(f):
                @functools.wraps(f)
                def wrapper(k):
                    return f(k) * {R}{C}
                return wrapper
        """,
        "s16_helpers.py": """
            from s16_deco import scaled

            @scaled
            def mig_rate(k):
                return k
        """,
        "s16_model.py": """
            from s16_helpers import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "singledispatch": {
        "s17_helpers.py": """
            import functools

            @functools.singledispatch
            def mig_rate(k):
                return k

            @mig_rate.register(float)
            def _(k):{C}
                return {R} * k
        """,
        "s17_model.py": """
            from s17_helpers import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "module_getattr": {
        "s18_helpers.py": """
            def __getattr__(name):
                if name == "mig_rate":
                    return lambda k: {R} * k{C}
                raise AttributeError(name)
        """,
        "s18_model.py": """
            import s18_helpers

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * s18_helpers.mig_rate(1.0)]]
        """,
    },
    "metaclass_method": {
        "s19_helpers.py": """
            class Meta(type):
                def mig_rate(cls, k):{C}
                    return {R} * k

            class Rates(metaclass=Meta):
                pass
        """,
        "s19_model.py": """
            from s19_helpers import Rates

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * Rates.mig_rate(1.0)]]
        """,
    },
    "user_module_named_like_stdlib": {
        "colorsys.py": """
            def mig_rate(k):{C}
                return {R} * k
        """,
        "s20_model.py": """
            from colorsys import mig_rate

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * mig_rate(1.0)]]
        """,
    },
    "module_level_instance": {
        "s21_helpers.py": """
            class Rater:
                def __init__(self, scale):
                    self.scale = scale

                def rate(self, k):
                    return self.scale * k

            RATER = Rater({R}){C}
        """,
        "s21_model.py": """
            import s21_helpers

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * s21_helpers.RATER.rate(1.0)]]
        """,
    },
    "lambda_in_a_dict_constant": {
        "s22_helpers.py": """
            RATES = {"mig": lambda k: {R} * k}{C}
        """,
        "s22_model.py": """
            from s22_helpers import RATES

            def model(state):
                n = state[0]
                return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * RATES["mig"](1.0)]]
        """,
    },
}

CALLBACKS = {
    "from_import": "s1_model:model",
    "module_attr": "s2_model:model",
    "helper_of_helper": "s3_model:model",
    "helper_constant": "s4_model:model",
    "dotted_constant": "s5_model:model",
    "class_method": "s6_model:model",
    "default_argument": "s7_model:model",
    "closure": "s8_model:model",
    "import_in_body": "s9_model:model",
    "package_relative": "s10pkg.model:model",
    "relative_import_in_body": "s11pkg.model:model",
    "dotted_submodule": "s12_model:model",
    "staticmethod_of_helper_class": "s13_model:model",
    "lambda_in_helper": "s14_model:model",
    "dataclass_enum_namedtuple": "s15_model:model",
    "user_decorator": "s16_model:model",
    "singledispatch": "s17_model:model",
    "module_getattr": "s18_model:model",
    "metaclass_method": "s19_model:model",
    "user_module_named_like_stdlib": "s20_model:model",
    "module_level_instance": "s21_model:model",
    "lambda_in_a_dict_constant": "s22_model:model",
}

RUNNER = """
import importlib, json, sys, warnings
warnings.simplefilter("error")  # no scenario here may need a warning
import phasic
from phasic.specs import ModelSpec
out = {}
for name, spec in json.loads(sys.argv[1]).items():
    module, attr = spec.split(":")
    cb = getattr(importlib.import_module(module), attr)
    key = ModelSpec(cb, ipv=[6]).key
    cached = phasic.Graph(cb, ipv=[6], cache=True).expectation()
    fresh = phasic.Graph(cb, ipv=[6], cache=False).expectation()
    out[name] = [key, cached, fresh]
print(json.dumps(out))
"""


def _write(root, rate, cosmetic):
    for files in SCENARIOS.values():
        for rel, source in files.items():
            text = textwrap.dedent(source).lstrip("\n")
            text = text.replace("{R}", rate)
            if cosmetic:  # comments, blank lines and spacing only
                text = text.replace("{C}", "  # edited: comments only") + "\n\n# trailing comment\n"
            text = text.replace("{C}", "")
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)


def _run(project, store):
    env = dict(
        os.environ, PHASIC_CACHE_DIR=str(store), PYTHONPATH=f"{project}{os.pathsep}{REPO}", PYTHONDONTWRITEBYTECODE="1"
    )
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(CALLBACKS)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    project = tmp_path_factory.mktemp("project")
    store = tmp_path_factory.mktemp("store")
    _write(project, "0.5", cosmetic=False)
    first = _run(project, store)
    _write(project, "0.5", cosmetic=True)
    cosmetic = _run(project, store)
    _write(project, "5.0", cosmetic=False)
    edited = _run(project, store)
    return first, cosmetic, edited


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_edit_in_another_module_changes_key_and_answer(runs, scenario):
    first, _, edited = runs
    key0, cached0, fresh0 = first[scenario]
    key1, cached1, fresh1 = edited[scenario]
    assert cached0 == pytest.approx(fresh0, rel=1e-12)
    assert fresh1 == pytest.approx(fresh0 / 10, rel=1e-12)  # the rate went from 0.5 to 5.0
    assert key1 != key0, f"{scenario}: the key did not follow the helper's edit"
    assert cached1 == pytest.approx(fresh1, rel=1e-12), f"{scenario}: a stale graph came from the store"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_comment_and_format_edits_keep_the_key(runs, scenario):
    first, cosmetic, _ = runs
    assert cosmetic[scenario][0] == first[scenario][0]


# ------------------------------------------------------------------ in-process checks


def _module(tmp_path, monkeypatch, name, source, load=True):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    importlib.invalidate_caches()
    sys.modules.pop(name, None)
    return importlib.import_module(name) if load else None


def test_installed_distributions_are_recorded_by_name_and_version(tmp_path, monkeypatch):
    import numpy as np

    from phasic.keys import graph_key

    mod = _module(
        tmp_path,
        monkeypatch,
        "k_uses_numpy",
        """
        import numpy as np

        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], float(np.sqrt(n))]]
    """,
    )
    _, material = graph_key(mod.model, {}, ipv=[4])
    assert '"numpy"' in material and json.dumps(np.__version__) in material


def test_stdlib_is_recorded_by_name_only(tmp_path, monkeypatch):
    from phasic.keys import graph_key

    mod = _module(
        tmp_path,
        monkeypatch,
        "k_uses_math",
        """
        import math

        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], math.comb(n, 2)]]
    """,
    )
    _, material = graph_key(mod.model, {}, ipv=[4])
    assert '["named","module","?.math"]' in material  # the encoding keys have always used


def test_cyclic_helpers_are_keyed(tmp_path, monkeypatch):
    from phasic.keys import graph_key, graph_key_material, key_from_material

    _module(
        tmp_path,
        monkeypatch,
        "k_cyc_a",
        """
        import k_cyc_b

        def f(k):
            return 1.0 if k <= 0 else k_cyc_b.g(k - 1)
    """,
        load=False,
    )
    b = _module(
        tmp_path,
        monkeypatch,
        "k_cyc_b",
        """
        import k_cyc_a

        def g(k):
            return 2.0 * k_cyc_a.f(k)

        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], g(n)]]
    """,
    )
    key, text = graph_key(b.model, {}, ipv=[4])
    assert (key, text) == key_from_material(graph_key_material(b.model, {}, ipv=[4]))


def test_unfollowable_constructs_warn_once_and_name_the_construct(tmp_path, monkeypatch):
    from phasic.exceptions import KeyWarning
    from phasic.keys import graph_key

    mod = _module(
        tmp_path,
        monkeypatch,
        "k_dynamic",
        """
        SUFFIX = "_rate"

        def model(state, table=None):
            n = state[0]
            scale = eval("0.5")
            return [] if n <= 1 else [[[n - 1], n * scale]]
    """,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        k0 = graph_key(mod.model, {}, ipv=[4])[0]
        assert graph_key(mod.model, {}, ipv=[4])[0] == k0
    messages = [str(w.message) for w in caught if issubclass(w.category, KeyWarning)]
    assert len(messages) == 1, messages
    assert "eval()" in messages[0] and "k_dynamic.model" in messages[0] and "k_dynamic.py:5" in messages[0]


def test_computed_getattr_on_a_user_module_follows_the_whole_module(tmp_path, monkeypatch):
    import importlib

    from phasic.keys import graph_key

    helpers = _module(
        tmp_path,
        monkeypatch,
        "k_getattr_helpers",
        """
        def rate_fn(n):
            return n * 0.5
    """,
    )
    mod = _module(
        tmp_path,
        monkeypatch,
        "k_getattr_model",
        """
        import k_getattr_helpers

        NAME = "rate"

        def model(state):
            n = state[0]
            fn = getattr(k_getattr_helpers, NAME + "_fn")
            return [] if n <= 1 else [[[n - 1], fn(n)]]
    """,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # followed soundly: no warning
        k0 = graph_key(mod.model, {}, ipv=[4])[0]
    (tmp_path / "k_getattr_helpers.py").write_text("def rate_fn(n):\n    return n * 0.75\n")
    importlib.invalidate_caches()
    importlib.reload(helpers)
    assert graph_key(mod.model, {}, ipv=[4])[0] != k0


def test_getattr_with_a_computed_name_on_a_local_warns(tmp_path, monkeypatch):
    from phasic.exceptions import KeyWarning
    from phasic.keys import graph_key

    mod = _module(
        tmp_path,
        monkeypatch,
        "k_getattr_local",
        """
        def model(state, rates=None):
            n = state[0]
            obj = rates
            which = "x" * n
            return [] if n <= 1 else [[[n - 1], float(getattr(obj, which, 1.0))]]
    """,
    )
    with pytest.warns(KeyWarning, match=r"getattr\(obj, <computed name>\)"):
        graph_key(mod.model, {}, ipv=[4])


def test_helper_edit_in_the_same_process_after_reload_changes_the_key(tmp_path, monkeypatch):
    import importlib

    from phasic.keys import graph_key

    helpers = _module(
        tmp_path,
        monkeypatch,
        "k_reload_helpers",
        """
        def mig_rate(k):
            return 0.5 * k
    """,
    )
    mod = _module(
        tmp_path,
        monkeypatch,
        "k_reload_model",
        """
        import k_reload_helpers

        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], k_reload_helpers.mig_rate(n)]]
    """,
    )
    k0 = graph_key(mod.model, {}, ipv=[4])[0]
    assert graph_key(mod.model, {}, ipv=[4])[0] == k0  # memoised path
    (tmp_path / "k_reload_helpers.py").write_text("def mig_rate(k):\n    return 5.25 * k\n")
    importlib.invalidate_caches()
    importlib.reload(helpers)
    assert graph_key(mod.model, {}, ipv=[4])[0] != k0


INSTALLED_RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])   # a site-packages directory, as an installed package's
sys.path.insert(0, sys.argv[2])   # the user's project, as an editable install's path entry
import model
from phasic.keys import graph_key
from phasic.keys._reach import distribution, module_kind
key, material = graph_key(model.model, {}, ipv=[4])
print(json.dumps([key, module_kind("fancyrates"), distribution("fancyrates"), module_kind("model")]))
"""


def test_installed_code_is_keyed_by_version_and_editable_user_code_by_source(tmp_path):
    site = tmp_path / "venv" / "lib" / "site-packages"
    (site / "fancyrates").mkdir(parents=True)
    (site / "fancyrates" / "__init__.py").write_text("def rate(n):\n    return 0.5 * n\n")
    dist = site / "Fancy_Rates-1.0.dist-info"  # the distribution's name differs from the import name
    dist.mkdir()
    (dist / "top_level.txt").write_text("fancyrates\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.py").write_text(
        textwrap.dedent("""
        import fancyrates

        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], fancyrates.rate(n)]]
    """)
    )

    def run():
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(
            [sys.executable, "-c", INSTALLED_RUNNER, str(site), str(project)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout)

    key, lib_kind, found, user_kind = run()
    assert (lib_kind, found, user_kind) == ("lib", ["Fancy_Rates", "1.0"], "user")
    # editing installed code without a new version keeps the key (it is keyed by version) ...
    (site / "fancyrates" / "__init__.py").write_text("def rate(n):\n    return 5.0 * n\n")
    assert run()[0] == key
    # ... a new version changes it, and so does an edit of the user's own module
    dist.rename(site / "Fancy_Rates-1.1.dist-info")
    key2 = run()[0]
    assert key2 != key
    (project / "model.py").write_text(
        (project / "model.py").read_text().replace("fancyrates.rate(n)", "2 * fancyrates.rate(n)")
    )
    assert run()[0] != key2


def test_an_installed_module_imported_in_the_body_is_keyed_without_importing_it(tmp_path, monkeypatch):
    from phasic.keys import graph_key

    mod = _module(
        tmp_path,
        monkeypatch,
        "k_body_import",
        """
        def model(state):
            from yaml import safe_load
            import json

            n = state[0]
            return [] if n <= 1 else [[[n - 1], float(safe_load("0.5")) * n]]
    """,
    )
    had_yaml = "yaml" in sys.modules
    sys.modules.pop("yaml", None)
    try:
        key, material = graph_key(mod.model, {}, ipv=[4])
        assert "yaml" not in sys.modules  # keyed from its location and version, not imported
        assert '"libmodule","yaml","pyyaml"' in material.lower() and '"?.json"' in material
        import yaml

        assert graph_key(mod.model, {}, ipv=[4])[0] == key  # the same key once it is imported
    finally:
        if had_yaml:
            import yaml  # noqa: F401


def test_class_docstrings_do_not_count(tmp_path, monkeypatch):
    from phasic.keys import graph_key

    source = """
        class Rates:
            {DOC}
            def mig(self, k):
                {DOC}
                return 0.5 * k

        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], Rates().mig(n)]]
    """
    keys = []
    for i, doc in enumerate(['"""One docstring."""', '"""Another, longer docstring."""']):
        mod = _module(tmp_path, monkeypatch, f"k_doc{i}", source.replace("{DOC}", doc))
        keys.append(graph_key(mod.model, {}, ipv=[4])[0])
    assert keys[0] == keys[1]


def test_sys_modules_lookup_warns(tmp_path, monkeypatch):
    from phasic.exceptions import KeyWarning
    from phasic.keys import graph_key

    mod = _module(
        tmp_path,
        monkeypatch,
        "k_sysmod",
        """
        import sys

        def model(state):
            n = state[0]
            return [] if n <= 1 else [[[n - 1], sys.modules["math"].sqrt(n)]]
    """,
    )
    with pytest.warns(KeyWarning, match=r"sys\.modules\[\.\.\.\]"):
        graph_key(mod.model, {}, ipv=[4])


DOTTED_RUNNER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import model
from phasic.keys import graph_key
key, material = graph_key(model.model, {}, ipv=[4])
print(json.dumps([key, "heavypkg" in sys.modules, os.path.exists(sys.argv[3])]))
"""


def test_installed_dotted_import_in_the_body_imports_nothing(tmp_path):
    """``import jax.numpy`` inside a callback must not import jax at key time (a cache hit)."""
    site = tmp_path / "lib" / "site-packages"
    (site / "heavypkg").mkdir(parents=True)
    marker = tmp_path / "imported"
    (site / "heavypkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (site / "heavypkg" / "sub.py").write_text("def f(n):\n    return n\n")
    (site / "heavypkg-2.0.dist-info").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.py").write_text(
        textwrap.dedent("""
        def model(state):
            import heavypkg.sub as s

            n = state[0]
            return [] if n <= 1 else [[[n - 1], s.f(n)]]
    """)
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-c", DOTTED_RUNNER, str(site), str(project), str(marker)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    key, imported, marker_made = json.loads(proc.stdout)
    assert not imported and not marker_made


def test_namespace_packages_are_keyed_by_the_distribution_of_their_sub_package(tmp_path):
    site = tmp_path / "lib" / "site-packages"
    (site / "nsroot" / "rates").mkdir(parents=True)  # nsroot has no __init__.py: a namespace package
    (site / "nsroot" / "rates" / "__init__.py").write_text("def f(n):\n    return n\n")
    dist = site / "nsroot_rates-3.1.dist-info"
    dist.mkdir()
    (dist / "RECORD").write_text("nsroot/rates/__init__.py,,\n")
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from phasic.keys._reach import distribution; print(json.dumps(distribution('nsroot.rates')))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code, str(site)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == ["nsroot_rates", "3.1"]
