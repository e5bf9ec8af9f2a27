"""The content-addressed HDF5 store: real files, real processes, real failures."""

import datetime
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from phasic.exceptions import ParameterError, StoreError, UnsafeArchiveError
from phasic.store import STALE_TEMP_SECONDS, Store

REPO = Path(__file__).resolve().parents[2]
ENTRY_RE = re.compile(r"^[0-9a-f]{62}\.h5$")


def K(i):
    return hashlib.sha256(str(i).encode()).hexdigest()


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _sample_arrays():
    rng = np.random.default_rng(1)
    return {
        "states": rng.integers(0, 5, size=(300, 4)).astype(np.int32),
        "edges/indptr": np.arange(301, dtype=np.int64),
        "edges/target": (np.arange(300) % 299 + 1).astype(np.int32),  # a valid graph: checked on reads
        "edges/weight": rng.random(300),
        "big/zeros": np.zeros((20_000, 4), np.int32),  # >= 64 KiB: compressed
        "flags": np.array([True, False, True]),
        "complex": np.array([1 + 2j, -0.5j]),
        "small_uint": np.array([2**64 - 1], dtype=np.uint64),
        "scalar": np.array(3.25),
        "empty": np.zeros((0, 3)),
        "bytes": np.array([b"ab", b"c"]),
        "big_endian": np.arange(5, dtype=">f8"),
    }


# ----------------------------------------------------------------------------- round trip


def test_round_trip_layout_and_attributes(tmp_path):
    store = Store(tmp_path, compression="gzip")
    arrays = _sample_arrays()
    attrs = {
        "discrete": True,
        "theta_dim": 0,
        "ratio": 0.25,
        "name": "x",
        "nothing": None,
        "key_material": '{"a":1}',
        "callback": "mod.fn",
    }
    path = store.put("graphs", K(1), arrays, attrs)
    assert path == tmp_path / "graphs" / K(1)[:2] / f"{K(1)[2:]}.h5"
    got_arrays, got_attrs = store.get("graphs", K(1))
    assert set(got_arrays) == set(arrays)
    for name, a in arrays.items():
        assert got_arrays[name].shape == a.shape and got_arrays[name].dtype.kind == a.dtype.kind
        np.testing.assert_array_equal(got_arrays[name], a)
    assert got_arrays["big_endian"].dtype == np.dtype("=f8")
    for name, value in attrs.items():
        assert got_attrs[name] == value and type(got_attrs[name]) is type(value)
    assert got_attrs["format"] == 2 and got_attrs["key"] == K(1)
    assert datetime.datetime.fromisoformat(got_attrs["created"]).tzinfo is not None
    assert re.fullmatch(r"[0-9a-f]{64}", got_attrs["checksum"])
    # an independent reader sees groups for '/' names and compression only on big datasets
    with h5py.File(path, "r") as f:
        assert isinstance(f["edges"], h5py.Group) and f["edges/indptr"].shape == (301,)
        assert f["big/zeros"].compression == "gzip" and f["big/zeros"].shuffle
        assert f["states"].compression is None
        assert f.attrs["key_material"] == '{"a":1}'
    assert os.path.getsize(path) < arrays["big/zeros"].nbytes / 10
    assert store.contains("graphs", K(1)) and not store.contains("traces", K(1))
    assert store.entries("graphs") == [K(1)] and store.entries("traces") == []
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    plain = Store(tmp_path / "plain").put("graphs", K(1), arrays, attrs)  # the default: no compression
    with h5py.File(plain, "r") as f:
        assert f["big/zeros"].compression is None
    assert os.path.getsize(plain) > arrays["big/zeros"].nbytes


def test_checksum_covers_names_dtypes_shapes_and_bytes(tmp_path):
    store = Store(tmp_path)
    base = {"a": np.arange(6, dtype=np.int64)}
    variants = [
        {"b": np.arange(6, dtype=np.int64)},
        {"a": np.arange(6, dtype=np.int32)},
        {"a": np.arange(6, dtype=np.int64).reshape(2, 3)},
        {"a": np.arange(1, 7, dtype=np.int64)},
    ]
    sums = set()
    for i, arrays in enumerate([base, *variants]):
        store.put("graphs", K(i), arrays, {})
        sums.add(store.get("graphs", K(i))[1]["checksum"])
    assert len(sums) == 5


@pytest.mark.parametrize(
    "kind,key,arrays,attrs,match",
    [
        ("models", K(0), {}, {}, "'models'"),
        ("graphs", "../../etc", {}, {}, r"'\.\./\.\./etc'"),
        ("graphs", K(0).upper(), {}, {}, "64 lowercase hex"),
        ("graphs", K(0), {"x": np.array([object()])}, {}, r"'x' has dtype"),
        ("graphs", K(0), {"x": np.array(["unicode"])}, {}, r"'x' has dtype"),
        ("graphs", K(0), {"../x": np.zeros(2)}, {}, r"'\.\./x'"),
        ("graphs", K(0), {"a": np.zeros(1), "a/b": np.zeros(1)}, {}, "also the group"),
        ("graphs", K(0), {}, {"bad": [1, 2]}, r"'bad'=\[1, 2\]"),
        ("graphs", K(0), {}, {"checksum": "x"}, "written by the store"),
        ("graphs", K(0), {}, {"huge": 2**70}, "64 bits"),
    ],
)
def test_bad_input_is_rejected_clearly(tmp_path, kind, key, arrays, attrs, match):
    with pytest.raises(ParameterError, match=match):
        Store(tmp_path).put(kind, key, arrays, attrs)
    assert not list(tmp_path.rglob("*.h5"))


def test_bad_limits_and_env(tmp_path, monkeypatch):
    with pytest.raises(ParameterError, match="max_size_mb=-1"):
        Store(tmp_path, max_size_mb=-1)
    monkeypatch.setenv("PHASIC_CACHE_MAX_MB", "lots")
    with pytest.raises(ParameterError, match="PHASIC_CACHE_MAX_MB='lots'"):
        Store(tmp_path)
    monkeypatch.setenv("PHASIC_CACHE_MAX_MB", "1.5")
    assert Store(tmp_path).max_size_mb == 1.5
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "envroot"))
    assert Store().root == tmp_path / "envroot"
    monkeypatch.setenv("PHASIC_CACHE_COMPRESSION", "lzf")
    assert Store().compression == "lzf"
    monkeypatch.setenv("PHASIC_CACHE_COMPRESSION", "zstd")
    with pytest.raises(ParameterError, match="compression='zstd'"):
        Store()


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


# ----------------------------------------------------------------------------- corruption


def _flip_data_byte(path, dataset):
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset + 5] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "wrong_key"])
def test_corrupt_entry_is_detected_moved_aside_and_rebuilt(tmp_path, damage):
    store = Store(tmp_path)
    arrays = {"x": np.arange(1000, dtype=np.float64), "y": np.arange(5)}
    path = store.put("graphs", K(1), arrays, {})
    if damage == "flip":
        _flip_data_byte(path, "x")
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an hdf5 file at all" * 100)
    else:
        other = store.put("graphs", K(2), arrays, {})
        path.write_bytes(other.read_bytes())
    with pytest.warns(RuntimeWarning, match=re.escape(str(path))):
        assert store.get("graphs", K(1)) is None
    assert not path.exists()
    assert len(list((tmp_path / "corrupt").iterdir())) == 1
    builds = []

    def build():
        builds.append(1)
        return arrays, {"rebuilt": True}

    got, attrs = store.get_or_create("graphs", K(1), build)
    assert builds == [1] and attrs["rebuilt"] is True
    np.testing.assert_array_equal(got["x"], arrays["x"])
    assert store.get("graphs", K(1)) is not None


def test_newer_format_is_ignored_not_destroyed(tmp_path):
    """A valid entry (its SHA-256 holds) whose format attribute is newer than this phasic's."""
    from phasic.store._entry import entry_image

    store = Store(tmp_path)
    arrays = {"x": np.arange(3)}
    path = store.path("graphs", K(1))
    path.parent.mkdir(parents=True)
    path.write_bytes(entry_image(arrays, {"format": 99, "key": K(1), "checksum": _reference_checksum(arrays)}))
    before = path.read_bytes()
    with pytest.warns(RuntimeWarning, match="newer store format 99"):
        assert store.get("graphs", K(1)) is None
    assert store.verify().newer == [str(path)]
    assert path.read_bytes() == before


def test_verify_reports_and_moves_bad_entries_and_stale_temps(tmp_path):
    store = Store(tmp_path)
    good = store.put("graphs", K(1), {"x": np.arange(100.0)}, {})
    bad = store.put("traces", K(2), {"x": np.arange(100.0)}, {})
    _flip_data_byte(bad, "x")
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


def test_put_cleans_stale_temps_in_its_directory(tmp_path):
    store = Store(tmp_path)
    path = store.path("graphs", K(1))
    path.parent.mkdir(parents=True)
    stale = path.parent / f".{K(3)[2:]}.h5.tmp.zzz"
    stale.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    store.put("graphs", K(1), {"x": np.arange(3)}, {})
    assert not stale.exists()


# ----------------------------------------------------------------------------- write failures


def test_write_failure_when_root_is_a_file(tmp_path):
    root = tmp_path / "afile"
    root.write_text("x")
    with pytest.raises(StoreError, match="cannot write store entry.*PHASIC_CACHE_DIR"):
        Store(root).put("graphs", K(1), {"x": np.arange(3)}, {})


FULL_DISK_CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    import numpy as np
    from phasic.store import Store
    from phasic.exceptions import StoreError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # get EFBIG instead of being killed
    store = Store(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    try:
        store.put("graphs", sys.argv[2], {"x": np.random.default_rng(0).random(400_000)}, {})
        print(json.dumps({"ok": True}))
    except StoreError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
""")


def test_full_disk_gives_store_error_and_leaves_store_intact(tmp_path):
    store = Store(tmp_path)
    existing = store.put("graphs", K(1), {"x": np.arange(1000.0)}, {"n": 1})
    before = existing.read_bytes()
    key = K(1)[:2] + K(2)[2:]  # same directory as the existing entry
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path), key],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] == "StoreError"
    assert str(store.path("graphs", key)) in result["message"] and "free disk space" in result["message"]
    assert existing.read_bytes() == before and store.get("graphs", K(1))[1]["n"] == 1
    assert sorted(p.name for p in existing.parent.iterdir()) == [existing.name]


WRITER_CHILD = textwrap.dedent("""
    import sys, hashlib
    import numpy as np
    from phasic.store import Store
    store = Store(sys.argv[1], compression=sys.argv[2])
    rng = np.random.default_rng(int(sys.argv[3]))
    print("ready", flush=True)
    i = 0
    while True:
        key = hashlib.sha256(f"{sys.argv[3]}-{i % 3}".encode()).hexdigest()
        store.put("graphs", key, {"x": rng.random(300_000), "s": np.zeros((50_000, 8), np.int32)}, {"i": i})
        i += 1
""")


def test_sigkilled_writers_never_leave_a_visible_partial_entry(tmp_path):
    rng = np.random.default_rng(2024)
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER_CHILD, str(tmp_path), ("gzip", "none")[round_ % 2], str(round_)],
            env=_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    store = Store(tmp_path)
    visible = [p for p in (tmp_path / "graphs").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert all(ENTRY_RE.match(p.name) for p in visible)
    report = store.verify()
    assert report.bad == [] and report.checked == len(visible)
    for key in store.entries("graphs"):
        arrays, attrs = store.get("graphs", key)
        assert arrays["x"].shape == (300_000,)
    arrays, _ = store.get_or_create("graphs", K(77), lambda: ({"x": np.arange(4)}, {}))
    assert arrays["x"].tolist() == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- concurrency


def test_eight_processes_racing_build_once(tmp_path):
    marker, go = tmp_path / "builds.txt", tmp_path / "go"
    root = tmp_path / "store"
    code = "import sys; from tests._keys_helpers import race_worker; race_worker(*sys.argv[1:])"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(root), K(5), str(marker), str(go), str(tmp_path / f"out{i}.json")],
            cwd=REPO,
            env=_env(),
        )
        for i in range(8)
    ]
    deadline = time.monotonic() + 90
    while not all((tmp_path / f"out{i}.json.ready").exists() for i in range(8)) and time.monotonic() < deadline:
        time.sleep(0.02)
    go.write_text("go")
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    results = [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(8)]
    assert all(r == results[0] for r in results)
    expected = np.random.default_rng(7).random(50_000).sum()
    assert results[0]["sum"] == pytest.approx(expected, rel=0, abs=0) and results[0]["who"] == "race"
    builds = marker.read_text().split()
    assert 1 <= len(builds) <= 2
    files = [p for p in (root / "graphs").rglob("*") if p.is_file()]
    assert [p.name for p in files] == [f"{K(5)[2:]}.h5"]  # no lock or temp file left behind
    assert Store(root).verify().ok == 1


LOCK_HOLDER_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from phasic.store import Store
    def build():
        print("building", flush=True)
        time.sleep(60)
        return {"x": np.arange(3)}, {}
    Store(sys.argv[1]).get_or_create("graphs", sys.argv[2], build)
""")


def test_lock_of_a_killed_builder_is_taken_over(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER_CHILD, str(tmp_path), K(8)], env=_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "building"
    lock = Store(tmp_path).path("graphs", K(8))
    lock = lock.parent / f".{lock.name}.lock"
    assert lock.exists()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    t0 = time.monotonic()
    arrays, _ = Store(tmp_path).get_or_create("graphs", K(8), lambda: ({"x": np.arange(5)}, {}))
    assert time.monotonic() - t0 < 10
    assert arrays["x"].tolist() == list(range(5)) and not lock.exists()


def test_stale_lock_by_age_is_taken_over(tmp_path):
    store = Store(tmp_path, stale_lock_seconds=0.5)
    path = store.path("graphs", K(4))
    path.parent.mkdir(parents=True)
    lock = path.parent / f".{path.name}.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "some-other-host", "time": 0}))
    arrays, _ = store.get_or_create("graphs", K(4), lambda: ({"x": np.arange(2)}, {}))
    assert arrays["x"].tolist() == [0, 1] and not lock.exists()


def test_failed_build_releases_lock(tmp_path):
    store = Store(tmp_path)

    def boom():
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        store.get_or_create("graphs", K(6), boom)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert store.get_or_create("graphs", K(6), lambda: ({"x": np.arange(1)}, {}))[0]["x"].tolist() == [0]


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


def test_entries_are_readable_by_others_on_a_shared_cache(tmp_path):
    old = os.umask(0o022)
    try:
        path = Store(tmp_path).put("graphs", K(1), {"x": np.arange(3)}, {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------- format 2: index, fast path, memory

MAGIC = b"phasic-store-v2\n"


def _reference_checksum(arrays):
    """The documented ``checksum`` attribute, written out independently of phasic."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name], order="C")
        header = json.dumps([name, a.dtype.str, list(a.shape)]).encode()
        h.update(len(header).to_bytes(8, "little") + header + a.nbytes.to_bytes(8, "little") + a.tobytes())
    return h.hexdigest()


def _parse_index(data):
    """Decode the userblock index by the layout documented in phasic.store._entry."""
    assert data[:16] == MAGIC
    userblock = int.from_bytes(data[16:24], "little")
    length = int.from_bytes(data[24:32], "little")
    assert userblock >= 512 and userblock & (userblock - 1) == 0 and 64 + length <= userblock
    assert hashlib.sha256(data[16:32] + data[64:]).digest() == data[32:64]
    assert data[userblock : userblock + 8] == b"\x89HDF\r\n\x1a\n"
    return userblock, json.loads(data[64 : 64 + length])


def test_index_layout_matches_the_documented_format(tmp_path):
    arrays = _sample_arrays()
    native = {name: a.astype(a.dtype.newbyteorder("=")) for name, a in arrays.items()}  # what the store keeps
    attrs = {"ratio": float("inf"), "note": "héllo", "n": -(2**62), "flag": False, "nothing": None}
    path = Store(tmp_path).put("graphs", K(1), arrays, attrs)
    data = path.read_bytes()
    userblock, index = _parse_index(data)
    with h5py.File(path, "r") as f:  # an ordinary HDF5 file with a userblock, for every other tool
        assert f.userblock_size == userblock
        stored = {name: f[name][()] for name in arrays}
        h5_attrs = dict(f.attrs)
    assert index["attrs"]["checksum"] == _reference_checksum(native) == h5_attrs["checksum"]
    assert index["attrs"]["format"] == 2 and index["attrs"]["key"] == K(1)
    for name, value in attrs.items():
        assert index["attrs"][name] == value
    table = {row[0]: row[1:] for row in index["arrays"]}
    assert set(table) == set(arrays)
    for name, a in native.items():
        dtype, shape, offset, nbytes = table[name]
        assert np.dtype(dtype) == a.dtype and tuple(shape) == a.shape and nbytes == a.nbytes
        if nbytes:
            assert offset % 16 == 0
            raw = np.frombuffer(data, a.dtype, count=a.size, offset=offset).reshape(a.shape)
            np.testing.assert_array_equal(raw, a)
        np.testing.assert_array_equal(stored[name], a)


HIT_CHILD = textwrap.dedent("""
    import json, sys, time
    from phasic.store import Store
    before = set(sys.modules)
    arrays, attrs = Store(sys.argv[1]).get("graphs", sys.argv[2])
    new = set(sys.modules) - before
    print(json.dumps({"h5py": "h5py" in new, "hashlib": "hashlib" in new, "loaded_before": "h5py" in before,
                      "x": arrays["x"].tolist(), "w": arrays["edges/w"].tolist(), "note": attrs["note"]}))
""")


def test_a_hit_in_a_fresh_process_needs_neither_h5py_nor_hashlib(tmp_path):
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    w = np.linspace(0.0, 1.0, 5)
    Store(tmp_path).put("graphs", K(1), {"x": x, "edges/w": w}, {"note": "n"})
    out = subprocess.run(
        [sys.executable, "-c", HIT_CHILD, str(tmp_path), K(1)], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["x"] == x.tolist() and got["w"] == w.tolist() and got["note"] == "n"
    assert not got["loaded_before"]  # (else this test would show nothing)
    assert not got["h5py"] and not got["hashlib"]  # importing them costs ~50 ms and ~5-20 ms


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["index", "padding", "hdf5_superblock", "data", "end"])
def test_a_flipped_byte_anywhere_is_detected(tmp_path, where):
    store = Store(tmp_path)
    arrays = {"x": np.arange(50.0), "y": np.arange(7)}
    path = store.put("graphs", K(1), arrays, {"note": "abc"})
    data = path.read_bytes()
    userblock, index = _parse_index(data)
    length = int.from_bytes(data[24:32], "little")
    offset = {
        "index": 64 + length // 2,
        "padding": 64 + length + 1,
        "hdf5_superblock": userblock + 20,
        "data": {r[0]: r[3] for r in index["arrays"]}["x"] + 3,
        "end": len(data) - 1,
    }[where]
    assert offset < len(data)
    assert store.get("graphs", K(1)) is not None  # the good file first (and into the memory layer)
    _flip(path, offset)
    with pytest.warns(RuntimeWarning, match="corrupt entry"):
        assert store.get("graphs", K(1)) is None
    assert not path.exists() and len(list((tmp_path / "corrupt").iterdir())) == 1


def test_attribute_edited_in_place_is_detected(tmp_path):
    store = Store(tmp_path)
    path = store.put("graphs", K(1), {"x": np.arange(3)}, {"note": "original"})
    with h5py.File(path, "r+") as f:
        f.attrs["note"] = "edited!!"
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        assert store.get("graphs", K(1)) is None
    assert not path.exists()


def test_newer_index_version_is_ignored_not_destroyed(tmp_path):
    store = Store(tmp_path)
    path = store.put("graphs", K(1), {"x": np.arange(3)}, {})
    with h5py.File(path, "r+") as f:
        f.attrs["format"] = 3
    data = bytearray(path.read_bytes())
    data[:16] = b"phasic-store-v3\n"
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="newer store format 3"):
        assert store.get("graphs", K(1)) is None
    report = store.verify()
    assert report.newer == [str(path)] and report.bad == [] and report.ok == 0
    assert path.read_bytes() == bytes(data)


def test_format_1_entries_are_misses_rebuilt_and_never_parsed(tmp_path):
    """An entry as format 1 wrote it (no userblock, built here with h5py directly): no checksum
    covers its attributes (a flipped ``discrete`` would go unnoticed), so it is never trusted:
    a hit is a miss that rebuilds and replaces it; verify lists it and leaves it alone."""
    arrays = {"states": np.arange(6, dtype=np.int32).reshape(3, 2), "edges/weight": np.array([0.5, 2.0])}
    path = Store(tmp_path).path("graphs", K(1))
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            f.create_dataset(name, data=a)
        f.attrs.update(
            {
                "format": 1,
                "key": K(1),
                "key_material": "{}",
                "phasic_version": "0.1.0",
                "created": "2026-01-01T00:00:00+00:00",
                "checksum": _reference_checksum(arrays),
                "discrete": False,
            }
        )
    store = Store(tmp_path)
    assert store.get("graphs", K(1)) is None and path.exists()
    report = store.verify()
    assert report.legacy == [str(path)] and report.ok == 0 and report.bad == [] and path.exists()
    assert store.export(tmp_path / "a.tar.gz") == 0  # not exported either
    graph = {
        "states": np.array([[0], [1], [2]], np.int32),
        "edges/indptr": np.array([0, 1, 2, 2]),
        "edges/target": np.array([1, 2], np.int32),
        "edges/weight": np.array([0.5, 2.0]),
    }
    got, attrs = store.get_or_create("graphs", K(1), lambda: (graph, {"discrete": False}))
    assert attrs["format"] == 2 and path.read_bytes()[:16] == MAGIC
    assert store.get("graphs", K(1))[0]["edges/weight"].tolist() == [0.5, 2.0]


def test_compressed_entries_are_checked_whole_then_read_with_h5py(tmp_path):
    from phasic.store._entry import MAGIC_H5

    store = Store(tmp_path, compression="gzip")
    big = np.tile(np.arange(100.0), 200)  # >= 64 KiB: compressed
    path = store.put("graphs", K(1), {"big": big, "small": np.arange(3)}, {})
    assert path.read_bytes()[:16] == MAGIC_H5
    with h5py.File(path, "r") as f:  # still a plain HDF5 file to every HDF5 tool
        assert f["big"].compression == "gzip"
    got, attrs = store.get("graphs", K(1))
    np.testing.assert_array_equal(got["big"], big)
    assert attrs["format"] == 2
    small = store.put("graphs", K(2), {"small": np.arange(3)}, {})  # nothing to compress: indexed
    assert small.read_bytes()[:16] == MAGIC
    _flip(path, path.stat().st_size - 1)  # any byte: the whole-file SHA-256 catches it before h5py
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        assert store.get("graphs", K(1)) is None


def test_memory_layer_hands_out_copies_and_notices_every_change(tmp_path):
    store = Store(tmp_path)
    path = store.put("graphs", K(1), {"x": np.arange(5.0)}, {"v": 1})
    a, attrs = store.get("graphs", K(1))
    a["x"][:] = -1.0  # the caller's arrays are its own
    attrs["v"] = 99
    b, attrs_b = store.get("graphs", K(1))
    assert b["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and attrs_b["v"] == 1
    b["x"][0] = 7.0
    assert store.get("graphs", K(1))[0]["x"][0] == 0.0
    # replaced by a new file (another inode) right after a hit: the new content is read
    store.put("graphs", K(1), {"x": np.arange(5.0) * 2}, {"v": 2})
    got, attrs = store.get("graphs", K(1))
    assert got["x"].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0] and attrs["v"] == 2
    # rewritten in place (same inode, same size) right after a hit: read and verified again
    other = store.put("graphs", K(2), {"x": np.arange(5.0) * 3}, {"v": 3})
    inode = path.stat().st_ino
    with open(path, "r+b") as fh:
        fh.write(other.read_bytes())
    assert path.stat().st_ino == inode
    with pytest.warns(RuntimeWarning, match="does not match the file name"):
        assert store.get("graphs", K(1)) is None
    # removed: a miss, whatever was remembered
    store.put("graphs", K(3), {"x": np.arange(2)}, {})
    store.get("graphs", K(3))
    store.clear()
    assert store.get("graphs", K(3)) is None


def test_memory_layer_can_be_turned_off_or_misconfigured(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_MEMORY_MB", "lots")
    with pytest.raises(ParameterError, match="PHASIC_CACHE_MEMORY_MB='lots'"):
        Store(tmp_path)
    monkeypatch.setenv("PHASIC_CACHE_MEMORY_MB", "-3")
    with pytest.raises(ParameterError, match="PHASIC_CACHE_MEMORY_MB='-3'"):
        Store(tmp_path)
    with pytest.raises(ParameterError, match="memory_mb='x'"):
        Store(tmp_path, memory_mb="x")
    monkeypatch.setenv("PHASIC_CACHE_MEMORY_MB", "0")
    store = Store(tmp_path)
    assert store.memory_mb == 0.0
    path = store.put("graphs", K(1), {"x": np.arange(4)}, {})
    assert store.get("graphs", K(1))[0]["x"].tolist() == [0, 1, 2, 3]
    _flip(path, path.stat().st_size - 1)  # with no memory layer every hit reads the file
    with pytest.warns(RuntimeWarning, match="corrupt entry"):
        assert store.get("graphs", K(1)) is None


def test_hits_touch_the_mtime_at_most_once_a_minute(tmp_path):
    store = Store(tmp_path)
    path = store.put("graphs", K(1), {"x": np.arange(3)}, {})
    written = path.stat().st_mtime
    assert time.time() - 10 < written <= time.time()
    store.get("graphs", K(1))
    assert path.stat().st_mtime == written  # recent: not touched again
    old = time.time() - 3600
    os.utime(path, (old, old))
    store.get("graphs", K(1))
    touched = path.stat().st_mtime
    assert time.time() - 10 < touched <= time.time()
    store.get("graphs", K(1))
    assert path.stat().st_mtime == touched
