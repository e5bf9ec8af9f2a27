"""Shared pytest set-up: the single-node Slurm fixture (`slurm`) and a private cache root."""
import pytest

pytest_plugins = ["tests.slurm_cluster"]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh PHASIC_CACHE_DIR for one test."""
    root = tmp_path / "phasic_cache"
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
    return root
