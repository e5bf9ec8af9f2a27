"""Store entries (phasic/store/_entry.py, behind the Store façade): the round trip with its
layout and attributes, checksums, limits and settings, corrupt and newer entries moved aside
or ignored, the format-2 index and its fast path, and the memory layer.  Real files, real
processes, real failures."""

import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from phasic.exceptions import ParameterError
from phasic.store import Store
from tests.models import K, child_env, flip_data_byte


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


# ----------------------------------------------------------------------------- corruption


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "wrong_key"])
def test_corrupt_entry_is_detected_moved_aside_and_rebuilt(tmp_path, damage):
    store = Store(tmp_path)
    arrays = {"x": np.arange(1000, dtype=np.float64), "y": np.arange(5)}
    path = store.put("graphs", K(1), arrays, {})
    if damage == "flip":
        flip_data_byte(path, "x")
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
        [sys.executable, "-c", HIT_CHILD, str(tmp_path), K(1)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
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
