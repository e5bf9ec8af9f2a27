"""A real Dask LocalCluster whose workers' own store is a decoy (a pytest plugin, loaded by
tests/conftest.py): `decoy` is that store, `decoy_cluster(decoy)` the cluster. Tasks must use
the store of the client that sent them; the cluster checks on closing that none wrote to the
decoy."""

import contextlib
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def decoy(tmp_path_factory):
    """The store the workers' own environment points at: tasks must never use it."""
    return tmp_path_factory.mktemp("decoy-store")


@contextlib.contextmanager
def decoy_cluster(decoy):
    """Two single-threaded worker processes whose environment names `decoy` as the store."""
    import distributed

    old = os.environ.get("PHASIC_CACHE_DIR")
    os.environ["PHASIC_CACHE_DIR"] = str(decoy)  # inherited by the worker processes
    try:
        with distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": ":0"},
        ) as lc:
            yield lc
    finally:
        if old is None:
            os.environ.pop("PHASIC_CACHE_DIR", None)
        else:
            os.environ["PHASIC_CACHE_DIR"] = old
    assert not any(p.is_file() for p in Path(decoy).rglob("*")), "a task used the workers' own cache dir"
