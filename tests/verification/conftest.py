"""Shared fixtures for the verification tests: an isolated phasic cache directory."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _isolated_phasic_cache(tmp_path_factory):
    """Point PHASIC_CACHE_DIR at a fresh temporary folder for each test module.

    Module scope (rather than ``monkeypatch``/``tmp_path``) keeps hypothesis'
    function-scoped-fixture health check quiet; the variable is restored after
    the module.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASIC_CACHE_DIR", str(tmp_path_factory.mktemp("phasic_cache")))
        yield
