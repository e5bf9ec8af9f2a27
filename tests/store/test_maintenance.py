"""Store maintenance (phasic/store/_maintenance.py and the Store methods over it): stats, clear,
verify, least-recently-used eviction, and cache archives (export, import, merge, malicious
archives refused)."""

import io
import os
import subprocess
import tarfile
import time

import numpy as np
import pytest

from phasic.exceptions import StoreError, UnsafeArchiveError
from phasic.store import STALE_TEMP_SECONDS, Store
from tests.models import K, flip_data_byte

# ----------------------------------------------------------------------------- stats, clear, verify


def test_stats_on_missing_root_create_nothing(tmp_path):
    root = tmp_path / "does" / "not" / "exist"
    store = Store(root)
    for kind in ("graphs", "traces"):
        s = store.stats(kind)
        assert s == {"cache_dir": str(root / kind), "num_entries": 0, "total_bytes": 0, "total_size_mb": 0.0}
        assert store.entries(kind) == [] and not store.contains(kind, K(0)) and store.get(kind, K(0)) is None
    assert store.verify().checked == 0 and store.clear() == 0 and store.evict(1) == []
    assert not (tmp_path / "does").exists()


def test_stats_count_and_clear(tmp_path):
    store = Store(tmp_path)
    for i in range(3):
        store.put("graphs", K(i), {"x": np.arange(10 + i)}, {})
    store.put("traces", K(9), {"ops": np.arange(4)}, {})
    (tmp_path / "graphs" / "README").write_text("not an entry")
    s = store.stats("graphs")
    sizes = [p.stat().st_size for p in (tmp_path / "graphs").rglob("*.h5")]
    assert s["num_entries"] == 3 and s["total_bytes"] == sum(sizes)
    assert s["total_size_mb"] == pytest.approx(sum(sizes) / 2**20)
    assert store.clear("graphs") == 3
    assert store.entries("graphs") == [] and store.entries("traces") == [K(9)]
    assert (tmp_path / "graphs" / "README").exists()


def test_verify_reports_and_moves_bad_entries_and_stale_temps(tmp_path):
    store = Store(tmp_path)
    good = store.put("graphs", K(1), {"x": np.arange(100.0)}, {})
    bad = store.put("traces", K(2), {"x": np.arange(100.0)}, {})
    flip_data_byte(bad, "x")
    stale = good.parent / f".{good.name}.tmp.abc123"
    fresh = good.parent / f".{good.name}.tmp.def456"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"partial")
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    report = store.verify()
    assert report.checked == 2 and report.ok == 1 and not report
    assert [p for p, _ in report.bad] == [str(bad)] and report.bad[0][1].startswith("checksum mismatch")
    assert report.removed_temp == [str(stale)]
    assert not bad.exists() and good.exists() and fresh.exists() and not stale.exists()
    assert store.verify()  # now clean


# ----------------------------------------------------------------------------- eviction


def test_eviction_keeps_store_under_limit_least_recently_used_first(tmp_path):
    rng = np.random.default_rng(3)
    plain = Store(tmp_path, compression="none")
    now = time.time()
    paths = {}
    for i, age in zip("ABC", (300, 200, 100)):
        paths[i] = plain.put("graphs" if i != "C" else "traces", K(i), {"x": rng.random(100_000)}, {})
        os.utime(paths[i], (now - age, now - age))
    size = paths["A"].stat().st_size
    assert plain.get("graphs", K("A")) is not None  # a read makes A the most recently used
    limited = Store(tmp_path, compression="none", max_size_mb=3.1 * size / 2**20)
    paths["D"] = limited.put("graphs", K("D"), {"x": rng.random(100_000)}, {})
    assert not paths["B"].exists()
    assert all(paths[i].exists() for i in "ACD")
    total = sum(p.stat().st_size for p in tmp_path.rglob("*.h5"))
    assert total <= 3.1 * size
    removed = limited.evict(1.1 * size / 2**20)
    assert removed == [paths["C"], paths["A"]] and paths["D"].exists()


# ----------------------------------------------------------------------------- export / import


def _two_entry_store(root):
    store = Store(root)
    store.put("graphs", K(1), {"x": np.arange(10.0)}, {"k": "g"})
    store.put("traces", K(2), {"ops": np.arange(7)}, {"k": "t"})
    return store


def test_export_import_round_trip_and_merge(tmp_path):
    src = _two_entry_store(tmp_path / "src")
    archive = tmp_path / "cache.tar.gz"
    assert src.export(archive) == 2
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [f"graphs/{K(1)[:2]}/{K(1)[2:]}.h5", f"traces/{K(2)[:2]}/{K(2)[2:]}.h5"]
    dst = Store(tmp_path / "dst")
    existing = dst.put("graphs", K(1), {"x": np.arange(10.0)}, {"k": "mine"})
    inode = existing.stat().st_ino
    report = dst.import_archive(archive)
    assert (report.imported, report.skipped) == (1, 1)
    assert existing.stat().st_ino == inode and dst.get("graphs", K(1))[1]["k"] == "mine"
    assert dst.get("traces", K(2))[0]["ops"].tolist() == list(range(7))
    assert src.export(tmp_path / "g.tar.gz", kinds=("graphs",)) == 1


def test_import_replaces_a_corrupt_local_entry(tmp_path):
    src = _two_entry_store(tmp_path / "src")
    src.export(tmp_path / "a.tar.gz")
    dst = Store(tmp_path / "dst")
    path = dst.path("graphs", K(1))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"junk")
    assert dst.import_archive(tmp_path / "a.tar.gz").imported == 2
    assert dst.get("graphs", K(1))[1]["k"] == "g"


@pytest.mark.parametrize("names", [["graphs/", "traces/"], ["./graphs", "./traces"]])
def test_plain_tar_of_the_cache_dir_imports(tmp_path, names):
    src = _two_entry_store(tmp_path / "src")
    (src.path("graphs", K(1)).parent / f".{K(9)[2:]}.h5.tmp.abc").write_bytes(b"leftover")
    archive = tmp_path / "plain.tar.gz"
    subprocess.run(["tar", "-czf", str(archive), *names], cwd=src.root, check=True)
    dst = Store(tmp_path / "dst")
    assert dst.import_archive(archive).imported == 2
    assert dst.entries("graphs") == [K(1)] and dst.entries("traces") == [K(2)]
    assert not list(dst.root.rglob(".*tmp*"))


def _tar_with(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize(
    "case",
    [
        "traversal",
        "absolute",
        "symlink",
        "hardlink",
        "fifo",
        "key_mismatch",
        "not_an_entry",
        "bad_content",
        "dir_elsewhere",
    ],
)
def test_malicious_archives_are_refused(tmp_path, case):
    src = _two_entry_store(tmp_path / "src")
    good = src.path("graphs", K(1)).read_bytes()
    good_name = f"graphs/{K(1)[:2]}/{K(1)[2:]}.h5"
    target = tmp_path / "outside.h5"
    if case == "traversal":
        bad = _file(f"graphs/{K(3)[:2]}/../../../outside.h5", good)
    elif case == "absolute":
        bad = _file(str(target), good)
    elif case == "symlink":
        info = tarfile.TarInfo(f"graphs/{K(3)[:2]}/{K(3)[2:]}.h5")
        info.type, info.linkname = tarfile.SYMTYPE, str(target)
        bad = (info, None)
    elif case == "hardlink":
        info = tarfile.TarInfo(f"graphs/{K(3)[:2]}/{K(3)[2:]}.h5")
        info.type, info.linkname = tarfile.LNKTYPE, good_name
        bad = (info, None)
    elif case == "fifo":
        info = tarfile.TarInfo(f"graphs/{K(3)[:2]}/{K(3)[2:]}.h5")
        info.type = tarfile.FIFOTYPE
        bad = (info, None)
    elif case == "key_mismatch":
        bad = _file(f"graphs/{K(3)[:2]}/{K(3)[2:]}.h5", good)
    elif case == "not_an_entry":
        bad = _file("graphs/README", b"hello")
    elif case == "bad_content":
        bad = _file(f"graphs/{K(3)[:2]}/{K(3)[2:]}.h5", b"phasic-store-v2\n" + b"0" * 500)
    else:
        info = tarfile.TarInfo("etc")
        info.type = tarfile.DIRTYPE
        bad = (info, None)
    archive = tmp_path / "evil.tar.gz"
    _tar_with(archive, [_file(good_name, good), bad])
    dst = Store(tmp_path / "dst")
    with pytest.raises(UnsafeArchiveError) as info:
        dst.import_archive(archive)
    assert repr(bad[0].name) in str(info.value)
    assert dst.entries("graphs") == [] and not target.exists()
    assert not [p for p in (tmp_path / "dst").rglob("*") if p.is_file()]
    assert not list((tmp_path / "dst").glob(".import-*"))


def test_import_of_missing_or_non_tar_file(tmp_path):
    store = Store(tmp_path / "s")
    with pytest.raises(StoreError, match="does not exist"):
        store.import_archive(tmp_path / "missing.tar.gz")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"definitely not a tarball")
    with pytest.raises(StoreError, match="not a readable tar archive"):
        store.import_archive(junk)
