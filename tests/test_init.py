"""The package's top level (phasic/__init__.py): the public names, and the submodules a bare
``import phasic`` reaches without importing jax or dask."""

import sys
import textwrap

import pytest

import phasic
from phasic import Graph, with_ipv
from tests.models import run_limited

pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_public_names():
    assert phasic.Graph is Graph and phasic.with_ipv is with_ipv


def test_public_submodules_work_after_a_bare_import_without_importing_jax():
    code = textwrap.dedent("""
        import sys
        import phasic
        assert "jax" not in sys.modules and "dask" not in sys.modules, "import phasic pulled in jax/dask"
        assert {"traces", "distributed", "jax"} <= set(dir(phasic))
        assert callable(phasic.batch.evaluate_batch)
        assert callable(phasic.traces.ensure_trace)
        assert callable(phasic.distributed.build) and callable(phasic.distributed.sweep)
        assert phasic.jax.CompilationConfig is phasic.CompilationConfig
        try:
            phasic.no_such_module
        except AttributeError as exc:
            assert "no_such_module" in str(exc)
        else:
            raise AssertionError("phasic.no_such_module did not raise")
        print("ok")
    """)
    run = run_limited([sys.executable, "-c", code], timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
