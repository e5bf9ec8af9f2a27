"""The verification tests run with a private PHASIC_CACHE_DIR per module."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _isolated_phasic_cache(isolated_cache):
    """Every verification module uses ``isolated_cache`` (tests/conftest.py)."""
