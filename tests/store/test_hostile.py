"""The store's read path against damaged and hostile entries (issue 14, "Trust").

Real files, real processes: torn writes, HDF5 files crafted with h5py (external raw
storage, virtual datasets, unwritten huge datasets, variable-length strings) behind a
valid whole-file SHA-256, FIFOs and devices at entry and archive paths, another user's
unreadable entry (read as ``nobody``), a killed import.  Anything that could block or
loop runs in a subprocess with a timeout, so a regression fails instead of hanging.
"""

import io
import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from phasic.exceptions import CacheWarning, UnsafeArchiveError
from phasic.keys import sha256
from phasic.store import Store
from phasic.store._entry import MAGIC, MAGIC_H5, PREFIX, checksum_arrays, entry_image
from tests.models import K

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 90
#: Children read from disk every time (the memory layer would hide what a read does).
NO_MEMORY = {"PHASIC_CACHE_MEMORY_MB": "0"}


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["PHASIC_CACHE_MEMORY_MB"] = "0"
    env.update(extra)
    return env


def _graph_arrays(target=(1, 2), weight=(0.5, 2.0)):
    """A 3-vertex chain 0 -> 1 -> 2 (valid with the defaults)."""
    return {
        "states": np.array([[0], [1], [2]], np.int32),
        "edges/indptr": np.array([0, 1, 2, 2], np.int64),
        "edges/target": np.array(target, np.int32),
        "edges/weight": np.array(weight, np.float64),
    }


def _frame_h5(path, attrs):
    """Put the store's head on an HDF5 file made with a 512-byte userblock: MAGIC_H5, the
    attributes as the index and a valid SHA-256 over everything after it.  The result passes
    every integrity check, whatever the HDF5 part holds (integrity is not authenticity)."""
    data = bytearray(Path(path).read_bytes())
    assert data[512:520] == b"\x89HDF\r\n\x1a\n"
    text = json.dumps({"attrs": attrs}, separators=(",", ":")).encode()
    sizes = (512).to_bytes(8, "little") + len(text).to_bytes(8, "little")
    data[PREFIX:512] = text + bytes(512 - PREFIX - len(text))
    data[16:32] = sizes
    h = sha256(bytes(data[16:32]))
    h.update(bytes(data[PREFIX:]))
    data[32:64] = h.digest()
    data[:16] = MAGIC_H5
    Path(path).write_bytes(bytes(data))


def _crafted(path, key, make, checksum):
    """An entry at ``path`` for ``key`` whose datasets ``make(f)`` creates (valid head and digest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    attrs = {"format": 2, "key": key, "checksum": checksum}
    with h5py.File(path, "w", userblock_size=512) as f:
        make(f)
        f.attrs.update(attrs)
    _frame_h5(path, attrs)


def _archive_of(archive, kind, key, data):
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(f"{kind}/{key[:2]}/{key[2:]}.h5")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _get_warning(store, kind, key):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = store.get(kind, key)
    return found, " | ".join(str(w.message) for w in caught), [w.category for w in caught]


# ----------------------------------------------------------------------------- item 2: torn writes

TORN = """
import json, sys, warnings
from pathlib import Path
from phasic import Graph
from phasic.store import Store
from tests import _keys_helpers as kh

root = Path(sys.argv[1])
want = Graph(kh.coalescent, ipv=[12], theta=2.0, cache=True).variance()
path = next((root / "graphs").rglob("*.h5"))
good = path.read_bytes()
results = []
for start in range(0, len(good), 512):
    data = bytearray(good)
    data[start:start + 512] = bytes(len(data[start:start + 512]))  # a torn write: one block of zeros
    if bytes(data) == good:
        continue
    path.write_bytes(bytes(data))
    report = Store(root).verify()
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = Graph(kh.coalescent, ipv=[12], theta=2.0, cache=True).variance()
    results.append({"start": start, "bad": [p for p, _ in report.bad], "var": got,
                    "warned": any(str(path) in str(w.message) for w in caught)})
print(json.dumps({"path": str(path), "want": want, "results": results}))
"""


def test_torn_write_is_quarantined_and_rebuilt_never_parsed(tmp_path, run_child):
    """Item 2: zeroing any one 512-byte block of an entry: verify and Graph(cache=True) finish,
    move it aside and rebuild the right graph (the damaged bytes never reach h5py)."""
    root = tmp_path / "cache"
    out = run_child(
        TORN,
        root,
        env={**NO_MEMORY, "PHASIC_CACHE_DIR": str(root), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax")},
    )
    assert len(out["results"]) >= 3
    for r in out["results"]:
        assert r["bad"] == [out["path"]], r
        assert r["warned"] and r["var"] == pytest.approx(out["want"], rel=1e-12), r
    assert len(list((root / "corrupt").iterdir())) == 2 * len(out["results"])


# ----------------------------------------------------------------------------- item 4: HDF5 reaching outside


def _external_passwd(f):
    n = os.path.getsize("/etc/passwd")
    f.create_dataset("x", shape=(n,), dtype="u1", external=[("/etc/passwd", 0, n)])


def _virtual(other):
    def make(f):
        layout = h5py.VirtualLayout(shape=(100,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(100,))
        f.create_virtual_dataset("x", layout)

    return make


def _huge(f):
    f.create_dataset("x", shape=(512 << 20,), dtype="u1")  # never written: a few hundred bytes on disk


def _vlen(f):
    f.create_dataset("x", data=np.array(["a", "bc"], dtype=object), dtype=h5py.string_dtype())


@pytest.mark.parametrize("case", ["external_passwd", "virtual", "huge", "vlen_string"])
def test_crafted_hdf5_entries_are_refused_before_reading(tmp_path, case):
    """Items 4 and 10: entries that pass the SHA-256 but whose HDF5 part reads other files
    (external raw storage, a virtual dataset), claims 512 MiB it does not hold, or holds a
    variable-length string dataset: refused by get (moved aside, the warning names the file
    and the reason), by verify and by import -- without reading the other file or the bytes."""
    key = K(case)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(100.0)
    make, checksum, reason = {
        "external_passwd": (
            _external_passwd,
            checksum_arrays({"x": np.fromfile("/etc/passwd", np.uint8)}),
            "external raw storage",
        ),
        "virtual": (_virtual(other), checksum_arrays({"x": np.arange(100.0)}), "virtual dataset"),
        "huge": (_huge, "0" * 64, "claims 536870912 bytes"),
        "vlen_string": (_vlen, "0" * 64, "dtype"),
    }[case]
    store = Store(tmp_path / "a", memory_mb=0)
    path = store.path("traces", key)
    _crafted(path, key, make, checksum)
    data = path.read_bytes()
    tracemalloc.start()
    try:
        found, text, categories = _get_warning(store, "traces", key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found is None and str(path) in text and reason in text, text
    assert CacheWarning in categories and peak < 64 << 20
    assert not path.exists() and len(list((store.root / "corrupt").iterdir())) == 1
    other_store = Store(tmp_path / "b")
    path_b = other_store.path("traces", key)
    path_b.parent.mkdir(parents=True)
    path_b.write_bytes(data)
    report = other_store.verify()
    assert [p for p, _ in report.bad] == [str(path_b)] and reason in report.bad[0][1]
    _archive_of(tmp_path / "x.tar.gz", "traces", key, data)
    with pytest.raises(UnsafeArchiveError, match=reason):
        Store(tmp_path / "c").import_archive(tmp_path / "x.tar.gz")
    assert not list((tmp_path / "c").rglob("*.h5"))


FIFO_CHILD = """
import json, sys, warnings
from phasic.store import Store
root, kind, key, archive = sys.argv[1:5]
store = Store(root, memory_mb=0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = store.get(kind, key)
    text = " | ".join(str(w.message) for w in caught)
report = store.verify()
try:
    Store(root + "-import").import_archive(archive)
    imported = "imported"
except Exception as exc:
    imported = f"{type(exc).__name__}: {exc}"
print(json.dumps({"got": got is None, "warning": text, "bad": report.bad, "import": imported}))
"""


@pytest.mark.parametrize("case", ["external_fifo", "fifo_entry"])
def test_fifos_never_block_a_hit_verify_or_import(tmp_path, case, run_child):
    """Item 4: an entry whose external storage is a FIFO, and a FIFO at the entry path itself:
    get, verify and import answer at once (a bad entry, moved aside) instead of waiting for
    a writer that never comes."""
    key = K(case)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    root = tmp_path / "cache"
    path = Store(root).path("traces", key)
    crafted = tmp_path / "crafted.h5"
    _crafted(
        crafted,
        key,
        lambda f: f.create_dataset("x", shape=(100,), dtype="u1", external=[(str(fifo), 0, 100)]),
        "0" * 64,
    )
    path.parent.mkdir(parents=True)
    if case == "fifo_entry":
        os.mkfifo(path)
    else:
        shutil.copyfile(crafted, path)
    _archive_of(tmp_path / "x.tar.gz", "traces", key, crafted.read_bytes())
    out = run_child(FIFO_CHILD, root, "traces", key, tmp_path / "x.tar.gz", env=NO_MEMORY)
    assert out["got"] and str(path) in out["warning"]
    assert ("FIFO" if case == "fifo_entry" else "external raw storage") in out["warning"]
    assert out["import"].startswith("UnsafeArchiveError") and "external raw storage" in out["import"]
    assert not os.path.lexists(path)  # moved aside by get (verify found nothing left)
    moved = list((root / "corrupt").iterdir())
    assert len(moved) == 1 and (stat.S_ISFIFO(os.lstat(moved[0]).st_mode) == (case == "fifo_entry"))
    # verify on its own finds it too
    os.mkfifo(path) if case == "fifo_entry" else shutil.copyfile(crafted, path)
    out = run_child(
        FIFO_CHILD.replace("got = store.get(kind, key)", "got = None"),
        root,
        "traces",
        key,
        tmp_path / "x.tar.gz",
        env=NO_MEMORY,
    )
    assert [p for p, _ in out["bad"]] == [str(path)]


def test_symlink_at_an_entry_path_is_not_followed(tmp_path):
    """Item 4: a symbolic link at an entry path (here to a valid entry elsewhere) is a bad entry;
    the link is moved aside, its target is untouched."""
    store = Store(tmp_path / "cache", memory_mb=0)
    elsewhere = Store(tmp_path / "elsewhere").put("graphs", K(1), _graph_arrays(), {})
    before = elsewhere.read_bytes()
    path = store.path("graphs", K(1))
    path.parent.mkdir(parents=True)
    os.symlink(elsewhere, path)
    found, text, _ = _get_warning(store, "graphs", K(1))
    assert found is None and "symbolic link" in text and not os.path.lexists(path)
    assert elsewhere.read_bytes() == before


# ----------------------------------------------------------------------------- item 7: permission denied

NOBODY_CHILD = """
import json, os, sys, warnings
from pathlib import Path
root = Path(sys.argv[1])
from phasic import Graph
from phasic.store import Store
import phasic.cache, phasic.store._maintenance, phasic.store._lock, phasic.store._write, h5py
from tests import _keys_helpers as kh

want = Graph(kh.coalescent, ipv=[9], theta=2.0, cache=True).variance()  # built and stored as root
Graph(kh.coalescent, ipv=[9], theta=2.0, cache=True).variance()  # a hit: every module is loaded now
path = next((root / "graphs").rglob("*.h5"))
key = path.parent.name + path.name[:-3]
os.chmod(path, 0o600)  # another user's private entry
for d in (root, root / "graphs", path.parent):
    os.chmod(d, 0o777)  # ... in folders this user may write: quarantining it would be possible
ino = path.stat().st_ino
become(65534, 65534)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = Store(root).get("graphs", key)
    report = Store(root).verify()
    kept = path.stat().st_ino == ino
    var = Graph(kh.coalescent, ipv=[9], theta=2.0, cache=True).variance()
print(json.dumps({"uid": os.getuid(), "got": got is None, "kept": kept, "bad": report.bad,
                  "unreadable": report.unreadable, "corrupt": os.path.exists(root / "corrupt"),
                  "want": want, "var": var, "categories": [w.category.__name__ for w in caught],
                  "warnings": [str(w.message) for w in caught]}))
"""


def test_permission_denied_is_a_miss_never_quarantined(world, run_child):
    """Item 7: an entry this user may not read (another user's, mode 0600; read here as
    ``nobody``) is a miss with a CacheWarning for get and Graph(cache=True), listed as
    unreadable by verify, and never moved aside."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create another user's entry and switch to 'nobody'")
    root = world / "cache"
    out = run_child(
        NOBODY_CHILD,
        root,
        timeout=TIMEOUT,
        env=dict(
            PHASIC_CACHE_DIR=str(root),
            JAX_COMPILATION_CACHE_DIR=str(world / "jax"),
            HOME=str(world),
            PHASIC_CACHE_MEMORY_MB="0",
        ),
    )
    assert out["uid"] == 65534
    assert out["got"] and out["kept"] and out["bad"] == [] and not out["corrupt"], out
    assert len(out["unreadable"]) == 1 and "Permission denied" in out["unreadable"][0][1]
    assert out["var"] == pytest.approx(out["want"], rel=1e-12)
    assert "CacheWarning" in out["categories"] and any("cannot read" in w for w in out["warnings"])
    assert not any("corrupt entry" in w for w in out["warnings"]), out["warnings"]


# ----------------------------------------------------------------------------- item 9: attributes covered


def _chain(V):
    """A valid chain graph on V vertices whose edges/indptr is over 64 KiB (compressed)."""
    return {
        "states": np.arange(V, dtype=np.int32).reshape(V, 1),
        "edges/indptr": np.concatenate([np.arange(V, dtype=np.int64), [V - 1]]),
        "edges/target": np.arange(1, V, dtype=np.int32),
        "edges/weight": np.full(V - 1, 2.0),
    }


def _set_attr(path, name, value):
    with h5py.File(path, "r+") as f:
        f.attrs[name] = value


def test_flipped_discrete_on_a_compressed_entry_is_detected(tmp_path):
    """Item 9: a compressed entry (read with h5py) is covered by the whole-file SHA-256, so an
    attribute edited in place (``discrete``: another distribution) is caught by get and verify."""
    store = Store(tmp_path, compression="gzip", memory_mb=0)
    path = store.put("graphs", K(1), _chain(10_000), {"discrete": False})
    assert path.read_bytes()[:16] == MAGIC_H5
    assert store.get("graphs", K(1))[1]["discrete"] is False
    _set_attr(path, "discrete", True)
    data = path.read_bytes()
    found, text, _ = _get_warning(store, "graphs", K(1))
    assert found is None and "checksum mismatch" in text and str(path) in text
    path.write_bytes(data)
    assert [p for p, _ in store.verify().bad] == [str(path)]


def test_flipped_discrete_on_a_format_1_entry_is_never_used(tmp_path):
    """Item 9: a format-1 entry's attributes are covered by nothing, so it is never read: a
    hit is a miss and the rebuilt entry carries the true ``discrete``."""
    arrays = _graph_arrays()
    store = Store(tmp_path, memory_mb=0)
    path = store.path("graphs", K(1))
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a)
        f.attrs.update({"format": 1, "key": K(1), "checksum": checksum_arrays(arrays), "discrete": False})
    _set_attr(path, "discrete", True)  # still matches its (arrays-only) checksum
    assert store.get("graphs", K(1)) is None
    assert store.verify().legacy == [str(path)]
    _, attrs = store.get_or_create("graphs", K(1), lambda: (arrays, {"discrete": False}))
    assert attrs["discrete"] is False and store.get("graphs", K(1))[1]["discrete"] is False


# ----------------------------------------------------------------------------- item 10: dtypes in the index


def test_object_dtype_in_a_valid_index_is_refused(tmp_path, run_child):
    """Item 10: an indexed entry whose index (behind a valid SHA-256) declares an object dtype
    would make numpy read raw bytes as pointers; it is refused and moved aside."""
    store = Store(tmp_path, memory_mb=0)
    path = store.put("traces", K(1), {"x": np.arange(4, dtype=np.int64)}, {})
    data = bytearray(path.read_bytes())
    length = int.from_bytes(data[24:32], "little")
    text = bytes(data[PREFIX : PREFIX + length])
    assert b'"<i8"' in text
    text = text.replace(b'"<i8"', b'"|O8"')
    data[PREFIX : PREFIX + length] = text
    h = sha256(bytes(data[16:32]))
    h.update(bytes(data[PREFIX:]))
    data[32:64] = h.digest()
    path.write_bytes(bytes(data))
    out = run_child(
        """
        import json, sys, warnings
        from phasic.store import Store
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found = Store(sys.argv[1], memory_mb=0).get("traces", sys.argv[2])
        print(json.dumps({"none": found is None, "text": " | ".join(str(w.message) for w in caught)}))
    """,
        tmp_path,
        K(1),
        env=NO_MEMORY,
    )  # (in a subprocess: reading pointers from a file could crash the interpreter)
    assert out["none"] and "dtype" in out["text"] and str(path) in out["text"]
    assert not path.exists()


# ----------------------------------------------------------------------------- items 8 and 11: invalid graphs


@pytest.mark.parametrize("bad", ["target_out_of_range", "nan_rate", "negative_rate"])
def test_graph_entry_with_valid_checksum_but_invalid_arrays(tmp_path, monkeypatch, bad):
    """Items 8 and 11: a graph entry whose checksums hold but whose arrays are not a graph:
    verify reports it, a Graph(cache=True) hit moves it aside (the warning names the file and
    the edge) and rebuilds the right graph, and import refuses it."""
    from phasic import Graph
    from phasic.specs import ModelSpec
    from tests import _keys_helpers as kh

    root = tmp_path / "cache"
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(root))
    monkeypatch.setenv("PHASIC_CACHE_MEMORY_MB", "0")
    want = Graph(kh.coalescent, ipv=[6], theta=2.0).variance()
    path = ModelSpec(kh.coalescent, ipv=[6], theta=2.0).entry_path()
    key = path.parent.name + path.name[:-3]
    arrays = {
        "target_out_of_range": _graph_arrays(target=(1, 7)),
        "nan_rate": _graph_arrays(weight=(np.nan, 1.0)),
        "negative_rate": _graph_arrays(weight=(0.5, -1.0)),
    }[bad]
    store = Store(root)
    store.put("graphs", key, arrays, {"discrete": False})
    data = path.read_bytes()
    message = {
        "target_out_of_range": "edge 1 targets vertex 7",
        "nan_rate": "edge 0 has weight nan",
        "negative_rate": "edge 1 has weight -1.0",
    }[bad]
    report = store.verify()
    assert [p for p, _ in report.bad] == [str(path)] and message in report.bad[0][1]
    path.write_bytes(data)
    with pytest.warns(CacheWarning, match=message) as caught:
        g = Graph(kh.coalescent, ipv=[6], theta=2.0, cache=True)
    assert any(str(path) in str(w.message) for w in caught)
    assert g.variance() == pytest.approx(want, rel=1e-12)
    assert Graph(kh.coalescent, ipv=[6], theta=2.0, cache=True).variance() == pytest.approx(want, rel=1e-12)
    _archive_of(tmp_path / "x.tar.gz", "graphs", key, data)
    with pytest.raises(UnsafeArchiveError, match=message):
        Store(tmp_path / "dst").import_archive(tmp_path / "x.tar.gz")


def test_import_reports_provenance(tmp_path):
    """Item 8: import says what it merged and what the entries claim about their origin."""
    src = Store(tmp_path / "src")
    src.put("graphs", K(1), _graph_arrays(), {"callback": "models.chain", "discrete": False})
    src.put("traces", K(2), {"code": np.arange(3, dtype=np.uint8)}, {})
    src.export(tmp_path / "a.tar.gz")
    dst = Store(tmp_path / "dst")
    report = dst.import_archive(tmp_path / "a.tar.gz")
    assert report.imported == 2
    prov = {p["key"]: p for p in report.provenance}
    assert set(prov) == {K(1), K(2)}
    assert prov[K(1)]["kind"] == "graphs" and prov[K(1)]["callback"] == "models.chain"
    assert prov[K(1)]["path"] == str(dst.path("graphs", K(1)))
    for p in prov.values():
        assert {"phasic_version", "created"} <= set(p)
        for name in ("user", "host"):  # written by newer phasic versions; reported when present
            attrs = dst.get(p["kind"], p["key"])[1]
            assert p.get(name) == attrs.get(name)
    assert dst.import_archive(tmp_path / "a.tar.gz").provenance == []  # all present: nothing imported


# ----------------------------------------------------------------------------- item 12: killed imports

KILLED_IMPORT = """
import shutil, sys, time
from phasic.store import Store
copy = shutil.copyfileobj

def slow(*args, **kwargs):
    copy(*args, **kwargs)
    print("staged", flush=True)
    time.sleep(120)

shutil.copyfileobj = slow
Store(sys.argv[1]).import_archive(sys.argv[2])
"""


@pytest.mark.parametrize("op", ["import", "verify", "clear"])
def test_staging_folders_of_a_killed_import_are_removed(tmp_path, op):
    """Item 12: an import killed mid-way leaves ``<root>/.import-*``; the next import, verify
    or clear removes it (and a live import's folder is left alone)."""
    src = Store(tmp_path / "src")
    src.put("graphs", K(1), _graph_arrays(), {})
    src.export(tmp_path / "a.tar.gz")
    root = tmp_path / "dst"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_IMPORT), str(root), str(tmp_path / "a.tar.gz")],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "staged"
        live = list(root.glob(".import-*"))
        assert len(live) == 1
        Store(root).verify()  # a live import's folder is not touched
        assert live[0].exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert live[0].exists()
    store = Store(root)
    if op == "import":
        assert store.import_archive(tmp_path / "a.tar.gz").imported == 1
    elif op == "verify":
        assert str(live[0]) in store.verify().removed_temp
    else:
        store.clear()
    assert not list(root.glob(".import-*"))


# ----------------------------------------------------------------------------- item 13: export targets


@pytest.mark.parametrize("what", ["fifo", "symlink", "device"])
def test_export_refuses_anything_but_a_new_or_regular_file(tmp_path, what):
    """Item 13: exporting onto a FIFO, a symbolic link or a device fails with a clear error
    naming the path, and leaves it as it was."""
    store = Store(tmp_path / "cache")
    store.put("graphs", K(1), _graph_arrays(), {})
    target = tmp_path / "out.tar.gz"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if what == "fifo":
        os.mkfifo(target)
    elif what == "symlink":
        os.symlink(victim, target)
    else:
        try:
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a null device of our own
        except PermissionError:
            pytest.skip("mknod is not permitted here (no CAP_MKNOD)")
    mode = os.lstat(target).st_mode
    with pytest.raises(UnsafeArchiveError, match=str(target).replace(".", r"\.")):
        store.export(target)
    assert os.lstat(target).st_mode == mode and victim.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cache", "out.tar.gz", "victim.txt"])
    regular = tmp_path / "ok.tar.gz"
    regular.write_bytes(b"old archive")
    assert store.export(regular) == 1 and tarfile.is_tarfile(regular)


def test_indexed_entries_still_hit_without_h5py_after_the_checks(tmp_path, run_child):
    """The checks cost nothing on the fast path: a graph hit in a fresh process loads
    neither h5py nor the archive code."""
    store = Store(tmp_path)
    store.put("graphs", K(1), _graph_arrays(), {"discrete": False})
    assert store.path("graphs", K(1)).read_bytes()[:16] == MAGIC
    out = run_child(
        """
        import json, sys
        from phasic.store import Store
        arrays, attrs = Store(sys.argv[1]).get("graphs", sys.argv[2])
        print(json.dumps({"h5py": "h5py" in sys.modules, "archive": "phasic.store._maintenance" in sys.modules,
                          "w": arrays["edges/weight"].tolist()}))
    """,
        tmp_path,
        K(1),
        env=NO_MEMORY,
    )
    assert out == {"h5py": False, "archive": False, "w": [0.5, 2.0]}


def test_entry_image_round_trips_every_dtype_compressed(tmp_path):
    """The compressed (h5py-read) form reads back what was written, bounds and all."""
    arrays = {
        "z": np.zeros((50_000, 4), np.int32),
        "f": np.linspace(0, 1, 20_000),
        "b": np.array([True, False]),
        "s": np.array([b"ab", b"c"]),
        "c": np.array([1 + 2j]),
        "e": np.zeros((0, 3)),
    }
    store = Store(tmp_path, compression="gzip", memory_mb=0)
    path = store.put("traces", K(1), arrays, {"n": None})
    assert path.read_bytes()[:16] == MAGIC_H5
    got, attrs = store.get("traces", K(1))
    for name, a in arrays.items():
        assert got[name].dtype == a.dtype and got[name].shape == a.shape
        np.testing.assert_array_equal(got[name], a)
    assert attrs["n"] is None and store.verify().ok == 1
    assert entry_image({"x": np.arange(3)}, {"format": 2, "key": K(2), "checksum": "0"})[:16] == MAGIC


# ----------------------------------------------------------------------------- review and probe findings


def _indexed_entry(path, key, rows_edit):
    """A valid indexed entry at ``path`` whose index rows ``rows_edit(table)`` changes, re-framed
    with a valid SHA-256 (integrity checks pass; only the index's claims are hostile)."""
    data = bytearray(
        entry_image(
            {"x": np.arange(4.0)}, {"format": 2, "key": key, "checksum": checksum_arrays({"x": np.arange(4.0)})}
        )
    )
    userblock = int.from_bytes(data[16:24], "little")
    length = int.from_bytes(data[24:32], "little")
    index = json.loads(bytes(data[PREFIX : PREFIX + length]))
    rows_edit(index["arrays"])
    text = json.dumps(index, separators=(",", ":")).encode()
    assert PREFIX + len(text) <= userblock
    data[PREFIX:userblock] = text + bytes(userblock - PREFIX - len(text))
    data[24:32] = len(text).to_bytes(8, "little")
    h = sha256(bytes(data[16:32]))
    h.update(bytes(data[PREFIX:]))
    data[32:64] = h.digest()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("shape", [[0, 2**63], [0, 2**62, 4], [2**40]])
def test_hostile_shapes_are_bad_entries_not_tracebacks(tmp_path, shape):
    """Probe 12: an index row claiming a huge shape (numpy cannot even allocate the empty one)
    is a bad entry: get quarantines it with a warning and the key is usable again; verify
    reports it instead of crashing."""
    store = Store(tmp_path, memory_mb=0)
    path = store.path("graphs", K(1))

    def edit(table):
        table[0][2] = shape
        table[0][4] = math.prod(shape) * 8

    _indexed_entry(path, K(1), edit)
    found, text, cats = _get_warning(store, "graphs", K(1))
    assert found is None and CacheWarning in cats and "more than" in text and str(path) in text
    assert not path.exists()
    store.put("graphs", K(1), {"x": np.arange(3)})
    assert store.get("graphs", K(1))[0]["x"].tolist() == [0, 1, 2]
    _indexed_entry(path, K(1), edit)
    report = store.verify()
    assert [p for p, _ in report.bad] == [str(path)]


def test_a_sparse_terabyte_entry_is_bad_without_allocating(tmp_path):
    """Probe 12: a real entry grown to 1 TiB (sparse) is refused before any buffer is
    allocated: a bad entry moved aside, and Graph(cache=True)-style rebuilds work again."""
    store = Store(tmp_path, memory_mb=0)
    path = store.put("graphs", K(2), _graph_arrays())
    os.truncate(path, 1 << 40)
    found, text, cats = _get_warning(store, "graphs", K(2))
    assert found is None and "PHASIC_CACHE_MAX_ENTRY_MB" in text and not path.exists()
    assert store.get_or_create("graphs", K(2), lambda: (_graph_arrays(), {}))[0]["states"].shape == (3, 1)
    os.truncate(path, 1 << 40)
    assert [p for p, _ in store.verify().bad] == [str(path)]


def test_symlink_swapped_in_between_lstat_and_open_is_a_bad_entry(tmp_path):
    """Review 1: when the entry becomes a symlink between the reader's lstat and its open
    (O_NOFOLLOW gives ELOOP), the reader reports a bad entry with the link's stat; it used to
    raise AttributeError out of Store.get.  The race is made deterministic by swapping the
    file from within os.open, right before the real call."""
    from phasic.store import _entry as store_entry

    store = Store(tmp_path, memory_mb=0)
    path = store.put("graphs", K(3), _graph_arrays())
    real_open = os.open

    def swapping_open(p, flags, *a):
        if os.fspath(p) == str(path) and os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            os.symlink("/dev/null", path)
        return real_open(p, flags, *a)

    store_entry.os.open = swapping_open
    try:
        found, text, cats = _get_warning(store, "graphs", K(3))
    finally:
        store_entry.os.open = real_open
    assert found is None and "symbolic link" in text and not os.path.lexists(path)


def test_discard_leaves_a_file_a_writer_put_in_place(tmp_path):
    """Review 5: discard is given the stat of the file that was read; a good entry a writer put
    in place since then is left alone (it used to be moved to corrupt/)."""
    store = Store(tmp_path, memory_mb=0)
    path = store.put("graphs", K(4), _graph_arrays())
    before = os.stat(path)
    store.put("graphs", K(4), _graph_arrays(weight=(1.0, 3.0)))  # a new inode, renamed over it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.discard("graphs", K(4), "not a graph", before)
    assert not caught and path.exists() and not (tmp_path / "corrupt").exists()
    store.discard("graphs", K(4), "not a graph", os.stat(path))
    assert not path.exists() and len(list((tmp_path / "corrupt").iterdir())) == 1


def test_export_archives_exactly_the_bytes_it_verified(tmp_path, run_child):
    """Review 6: export reads each entry once; the archived member is the buffer that passed
    the checks (counted by the reads of the entry file)."""
    import tracemalloc  # noqa: F401 (imported by the module already)

    store = Store(tmp_path / "s", memory_mb=0)
    path = store.put("graphs", K(5), _graph_arrays())
    out = run_child(
        """
        import json, os, sys
        from phasic.store import Store
        import phasic.store._maintenance, phasic.store._entry, phasic._csr, tarfile
        path, root, tar = sys.argv[1:4]
        opened = []
        real = os.open
        def counting(p, *a, **k):
            if os.fspath(p) == path:
                opened.append(1)
            return real(p, *a, **k)
        os.open = counting
        n = Store(root).export(tar)
        os.open = real
        with tarfile.open(tar) as t:
            data = t.extractfile(t.getmembers()[0]).read()
        print(json.dumps({"n": n, "opens": len(opened), "same": data == open(path, "rb").read()}))
    """,
        path,
        tmp_path / "s",
        tmp_path / "a.tar.gz",
        env=NO_MEMORY,
    )
    assert out == {"n": 1, "opens": 1, "same": True}


FIFO_LOCK = """
import json, os, sys, warnings
import numpy as np
from phasic.store import Store
root, kind_of_lock = sys.argv[1:3]
store = Store(root, memory_mb=0, lock_timeout=5)
key = "ab" * 32
path = store.path("graphs", key)
lock = path.parent / f".{path.name}.lock"
path.parent.mkdir(parents=True)
if kind_of_lock == "fifo":
    os.mkfifo(lock)
else:
    os.symlink("/dev/zero", lock)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    arrays, _ = store.get_or_create("graphs", key, lambda: ({"x": np.arange(3)}, {}))
stored = store.get("graphs", key) is not None
if kind_of_lock == "fifo":
    os.mkfifo(lock)
else:
    os.symlink("/dev/zero", lock)
other = lock.with_name(lock.name.replace(".lock", ".tmp.x"))
os.mkfifo(other)
report = store.verify()
left = sorted(p.name for p in path.parent.iterdir())
print(json.dumps({"x": arrays["x"].tolist(), "stored": stored, "warnings": [str(w.message) for w in caught],
                  "removed": len(report.removed_temp), "left": left}))
"""


@pytest.mark.parametrize("kind_of_lock", ["fifo", "symlink-to-dev-zero"])
def test_a_fifo_or_device_link_at_a_lock_path_never_hangs(tmp_path, kind_of_lock, run_child):
    """Probe 11: a FIFO (or a symlink to /dev/zero) at a build-lock path used to block the
    waiter forever (or read until MemoryError); it is a stale lock, removed, and the entry is
    built and stored; verify removes non-regular files at lock and temp names."""
    out = run_child(FIFO_LOCK, tmp_path / "s", kind_of_lock, timeout=60, env=NO_MEMORY)
    assert out["x"] == [0, 1, 2] and out["stored"] and out["warnings"] == []
    assert out["removed"] == 2 and out["left"] == [Store(tmp_path / "s").path("graphs", "ab" * 32).name]


def _forged_lock(store, key, **info):
    path = store.path("graphs", key)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    lock.write_text(json.dumps(dict({"pid": 1, "host": __import__("socket").gethostname()}, **info)))
    return lock


@pytest.mark.parametrize("forged", ["untouched for two days", "time in the future"])
def test_a_forged_lock_naming_a_live_pid_does_not_block_the_key(tmp_path, forged):
    """Probe 13: a lock naming a live local pid (pid 1) that was not touched for longer than
    stale_lock_seconds, or whose time lies in the future, is stale: the key is built and
    stored at once (it used to wait lock_timeout and build in memory); verify removes it."""
    import time

    store = Store(tmp_path, memory_mb=0, lock_timeout=30)
    if forged == "untouched for two days":
        lock = _forged_lock(store, K(6), time=time.time() - 2 * 86400)
        os.utime(lock, (time.time() - 2 * 86400,) * 2)
    else:
        lock = _forged_lock(store, K(6), time=1e10)
    assert store._lock_is_stale(lock)
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arrays, _ = store.get_or_create("graphs", K(6), lambda: ({"x": np.arange(2)}, {}))
    assert time.monotonic() - t0 < 5 and store.get("graphs", K(6)) is not None and not lock.exists()
    lock = _forged_lock(store, K(6), time=1e10)
    assert lock.as_posix() in store.verify().removed_temp and not lock.exists()


def test_clear_removes_every_lock_file(tmp_path):
    """Probe 13: clearing (all kinds, or the kind) removes lock files, even a live one."""
    import time

    store = Store(tmp_path, memory_mb=0)
    store.put("graphs", K(7), {"x": np.arange(2)})
    lock = _forged_lock(store, K(7), pid=os.getpid(), time=time.time())  # this live process
    assert not store._lock_is_stale(lock)
    store.clear("graphs")
    assert not lock.exists()


@pytest.mark.parametrize("error", [KeyboardInterrupt, MemoryError, ModuleNotFoundError])
def test_no_empty_lock_is_left_by_an_interrupt_while_it_is_written(tmp_path, monkeypatch, error):
    """Probe 14: an exception that is no OSError between creating the lock and writing its JSON
    (here raised by the shared-group step) removes the lock instead of leaving an empty one,
    which would block the key for every later builder."""
    import phasic.store._write

    store = Store(tmp_path, memory_mb=0)

    def boom(fd, directory):
        raise error("interrupted")

    monkeypatch.setattr(phasic.store._write, "share_file", boom)
    with pytest.raises(error):
        store.get_or_create("graphs", K(8), lambda: ({"x": np.arange(2)}, {}))
    path = store.path("graphs", K(8))
    assert sorted(p.name for p in path.parent.iterdir()) == []
