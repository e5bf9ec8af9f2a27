"""The ``phasic`` command itself (phasic/cli/_main.py): ``--version`` and ``--cache-dir`` that
names a regular file or a FIFO.  The command groups are tested in test_cache.py (``phasic
cache``), test_list.py (``phasic cache list``) and test_workflow.py (``phasic evaluate``,
``phasic trace record``)."""

import os

import pytest

from tests.models import one_line_error


def test_version(env):
    import phasic
    from phasic.store import phasic_version

    out = env.run("--version")
    expected = phasic_version() if phasic_version() != "unknown" else phasic.__version__
    assert out.returncode == 0 and out.stdout == f"phasic {expected}\n", out


def test_cache_dir_naming_a_regular_file_is_refused(env):
    afile = env.tmp / "afile"
    afile.write_text("data")
    for args in (
        ("--cache-dir", afile, "cache", "info"),
        ("cache", "list", "--cache-dir", afile),
        ("--cache-dir", afile, "graph", "build", "--file", "m.py", "--callback", "f"),
    ):
        line = one_line_error(env.run(*args))
        assert str(afile) in line and "not a directory" in line
    assert afile.read_text() == "data"


def test_cache_dir_naming_a_fifo_says_what_it_is(tmp_path):
    """Review 15: ``--cache-dir FIFO`` said "is not a directory: it is not a directory either"."""
    from phasic.cli._main import _check_cache_dir

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(Exception) as info:
        _check_cache_dir(str(fifo), "--cache-dir")
    assert "it is a FIFO" in str(info.value) and "either" not in str(info.value)
