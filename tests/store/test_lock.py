"""Locks and writes of the store never spin, crash or lose data (real mounts, users and processes):
the build lock (phasic/store/_lock.py) with dead, live, foreign and concurrent holders, and the
writes that depend on who and where (full disks, group-shared stores, provenance).

Every scenario that could loop forever on a regression runs in a subprocess with a timeout.
Scenarios that need another user import phasic as root (the virtualenv's interpreter lives
under /root) and then drop to that user with setgid/setuid before touching the store.
"""

import errno
import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from phasic.exceptions import CacheWarning, ParameterError, StoreError
from phasic.store import Store
from tests.models import K

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0

MODEL = textwrap.dedent("""
    import phasic

    @phasic.with_ipv([6])
    def coalescent(state, theta=1.0):
        n = state[0]
        if n <= 1:
            return []
        return [[[n - 1], n * (n - 1) / 2 * theta]]
""")
EXPECTED = (2 / 2.0) * (1 - 1 / 6)  # E[T] of the coalescent above at theta=2

# Runs in a subprocess: imports and warms up everything as the starting user, optionally drops
# to another uid/gid, then makes one call against the store and prints what happened as JSON.
CHILD = textwrap.dedent("""
    import json, os, sys, time, warnings
    args = json.loads(sys.argv[1])
    sys.path.insert(0, args["model_dir"])
    import numpy as np
    import h5py
    import phasic, phasic.cache, phasic.specs, phasic.store._lock, phasic.store._write, phasic.store._entry
    from phasic import Graph
    from phasic.specs import ModelSpec
    from phasic.store import Store
    import model
    os.environ["PHASIC_CACHE_DIR"] = args["scratch"]   # every lazy import happens here, as the caller
    Graph(model.coalescent, theta=3.0, cache=True).expectation()
    Graph(model.coalescent, theta=3.0, cache=True).expectation()
    Store(args["scratch"]).get_or_create("graphs", "0" * 64, lambda: ({"x": np.arange(2)}, {}))
    if args.get("uid") is not None:
        become(args["uid"], args["gid"])
    os.environ["PHASIC_CACHE_DIR"] = args["store"]
    if args.get("lock_timeout") is not None:
        os.environ["PHASIC_CACHE_LOCK_TIMEOUT"] = str(args["lock_timeout"])
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.monotonic(), time.process_time()
        if args["what"] == "graph":
            out["path"] = str(ModelSpec(model.coalescent, theta=2.0).entry_path())
            out["value"] = Graph(model.coalescent, theta=2.0, cache=True).expectation()
        else:
            arrays, attrs = Store(args["store"]).get_or_create(
                "graphs", args["key"], lambda: ({"x": np.arange(7)}, {"who": "child"}))
            out["value"] = arrays["x"].tolist()
            out["attrs"] = {k: v for k, v in attrs.items() if isinstance(v, (str, int, float))}
        out["wall"], out["cpu"] = time.monotonic() - t0, time.process_time() - c0
    out["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
    print(json.dumps(out))
""")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("PHASIC_CACHE_LOCK_TIMEOUT", None)
    env.update(extra)
    return env


@pytest.fixture
def world(world, run_child):
    """The shared ``world`` directory (tests/conftest.py) holding the model, with its child runner."""
    (world / "model").mkdir()
    (world / "model" / "model.py").write_text(MODEL)
    os.chmod(world / "model" / "model.py", 0o644)
    _RUNNER[:] = [run_child]
    return world


_RUNNER = []


def _model_key(world):
    spec = importlib.util.spec_from_file_location("model", world / "model" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from phasic.specs import ModelSpec

    return ModelSpec(module.coalescent, theta=2.0).key


def _child(world, store, what="graph", timeout=30, **args):
    args = dict(args, model_dir=str(world / "model"), scratch=str(world / "scratch"), store=str(store), what=what)
    return _RUNNER[0](CHILD, json.dumps(args), timeout=timeout, cwd="/")


def _dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _lock_of(path):
    return path.parent / f".{path.name}.lock"


def _cache_warnings(result):
    return [msg for cat, msg in result["warnings"] if cat == "CacheWarning"]


def _mount(*argv):
    try:
        out = subprocess.run(["mount", *argv], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command on this machine")
    if out.returncode != 0:
        pytest.skip(f"mount {' '.join(argv)} is not available here: {out.stderr.strip()}")


def _umount(target):
    subprocess.run(["umount", str(target)], capture_output=True, timeout=30)


needs_root = pytest.mark.skipif(not ROOT, reason="needs root (mount, chown, and switching to other users)")


# ----------------------------------------------------------------------------- locks that cannot be removed


@needs_root
def test_dead_holders_lock_on_read_only_mount_builds_in_memory(world):
    src, dst = world / "src", world / "dst"
    src.mkdir()
    dst.mkdir()
    entry = Store(src).path("graphs", _model_key(world))
    entry.parent.mkdir(parents=True)
    lock = _lock_of(entry)
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "time": time.time()}))
    _mount("--bind", "-o", "ro", str(src), str(dst))
    try:
        result = _child(world, dst)
    finally:
        _umount(dst)
    assert result["path"] == str(dst / entry.relative_to(src))  # the lock was where the child looked
    assert result["value"] == pytest.approx(EXPECTED, rel=1e-12)
    msgs = _cache_warnings(result)
    assert len(msgs) == 1, result["warnings"]
    assert str(dst / lock.relative_to(src)) in msgs[0] and "Read-only file system" in msgs[0]
    assert "not cached" in msgs[0]
    assert result["wall"] < 20
    assert lock.exists() and not entry.exists()


@needs_root
def test_another_users_dead_lock_in_sticky_directory(world):
    store = world / "store"
    entry = Store(store).path("graphs", _model_key(world))
    entry.parent.mkdir(parents=True)
    os.chmod(entry.parent, 0o1777)  # like /tmp: anyone may create, only the owner may remove
    lock = _lock_of(entry)
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "time": time.time()}))
    os.chown(lock, 65534, 65534)  # nobody's lock
    result = _child(world, store, uid=1, gid=1)  # read as daemon
    assert result["value"] == pytest.approx(EXPECTED, rel=1e-12)
    msgs = _cache_warnings(result)
    assert len(msgs) == 1, result["warnings"]
    assert str(lock) in msgs[0] and os.strerror(errno.EPERM) in msgs[0]
    assert lock.exists() and lock.stat().st_uid == 65534 and not entry.exists()
    assert sorted(p.name for p in entry.parent.iterdir()) == [lock.name]


# ----------------------------------------------------------------------------- a live holder

HOLDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from phasic.store import Store
    def build():
        print("building", flush=True)
        time.sleep(120)
        return {"x": np.arange(3)}, {}
    Store(sys.argv[1]).get_or_create("graphs", sys.argv[2], build)
""")


def test_live_holder_is_waited_for_with_backoff_then_built_in_memory(world):
    store = world / "store"
    key = K("live")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), key], env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "building"
        lock = _lock_of(Store(store).path("graphs", key))
        held = lock.read_bytes()
        result = _child(world, store, what="store", key=key, lock_timeout=2.0)
        assert result["value"] == list(range(7))
        assert 1.8 < result["wall"] < 15
        assert result["cpu"] < 0.5 * result["wall"]  # it slept, it did not spin
        msgs = _cache_warnings(result)
        assert len(msgs) == 1, result["warnings"]
        assert str(lock) in msgs[0] and f"pid {holder.pid}" in msgs[0]
        assert lock.read_bytes() == held  # the live holder's lock was left alone
        assert not Store(store).path("graphs", key).exists()  # and nothing was stored by the waiter
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_lock_of_a_reused_pid_is_taken_over(world):
    """A lock naming a live pid on this host whose process started after the lock was written
    (the holder died and its pid was reused) is stale, however fresh its mtime."""
    store = world / "store"
    key = K("reused")
    path = Store(store).path("graphs", key)
    path.parent.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.05)
        _lock_of(path).write_text(
            json.dumps({"pid": other.pid, "host": socket.gethostname(), "time": time.time() - 3600})
        )
        result = _child(world, store, what="store", key=key)
    finally:
        other.kill()
        other.wait()
    assert result["value"] == list(range(7)) and not _cache_warnings(result)
    assert Store(store).get("graphs", key)[1]["who"] == "child"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_bad_lock_timeout_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_LOCK_TIMEOUT", "ten minutes")
    with pytest.raises(ParameterError, match="PHASIC_CACHE_LOCK_TIMEOUT='ten minutes'"):
        Store(tmp_path).get_or_create("graphs", K(1), lambda: ({"x": np.arange(2)}, {}))
    monkeypatch.setenv("PHASIC_CACHE_LOCK_TIMEOUT", "-1")
    with pytest.raises(ParameterError, match="PHASIC_CACHE_LOCK_TIMEOUT='-1'"):
        Store(tmp_path).get_or_create("graphs", K(1), lambda: ({"x": np.arange(2)}, {}))


# ----------------------------------------------------------------------------- full disk


@pytest.fixture
def tiny_disk(tmp_path):
    if not ROOT:
        pytest.skip("needs root to mount a tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk))
    try:
        yield disk
    finally:
        _umount(disk)


def _fill(disk, leave_pages=0):
    """Fill the file system at ``disk`` up, then free ``leave_pages`` pages again."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 1024)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    if leave_pages:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - size % 4096 - 4096 * leave_pages))


def _state(root):
    return sorted(
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None)
        for p in root.rglob("*")
        if p.name != "filler"
    )


@pytest.mark.parametrize("leave_pages", [0, 1], ids=["full-at-lock", "full-at-write"])
def test_full_disk_builds_in_memory_and_damages_nothing(tiny_disk, leave_pages):
    store = Store(tiny_disk)
    existing = store.put("graphs", K(1)[:2] + K(2)[2:], {"x": np.arange(50.0)}, {"n": 1})
    _fill(tiny_disk, leave_pages)
    before = _state(tiny_disk)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arrays, attrs = store.get_or_create("graphs", K(1), lambda: ({"x": np.arange(9)}, {"n": 2}))
    assert arrays["x"].tolist() == list(range(9)) and attrs["n"] == 2
    msgs = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(msgs) == 1, [str(w.message) for w in caught]
    path = store.path("graphs", K(1))
    assert os.strerror(errno.ENOSPC) in msgs[0] and (str(path) in msgs[0] or str(_lock_of(path)) in msgs[0])
    assert _state(tiny_disk) == before  # no lock, temp file or partial entry left behind
    assert store.get("graphs", existing.parent.name + existing.stem)[1]["n"] == 1
    with pytest.raises(StoreError, match="No space left"):  # an explicit put still raises
        store.put("graphs", K(1), {"x": np.arange(9)}, {"n": 2})
    assert _state(tiny_disk) == before


def test_full_disk_graph_cache_gives_value_and_warning(tiny_disk, monkeypatch):
    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tiny_disk))
    from phasic import Graph

    _fill(tiny_disk)

    @__import__("phasic").with_ipv([5])
    def kingman_full_disk(state, theta=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]

    with pytest.warns(CacheWarning, match="built but not cached.*No space left"):
        g = Graph(kingman_full_disk, theta=1.0, cache=True)
    assert g.expectation() == pytest.approx(2 * (1 - 1 / 5), rel=1e-12)
    assert [name for name, data in _state(tiny_disk) if data is not None] == []  # only empty folders


# ----------------------------------------------------------------------------- a store shared by a group

GROUP = 4242


@needs_root
@pytest.mark.parametrize("shared", ["root", "kind"])
def test_setgid_group_store_gives_new_entries_the_group_and_mode(tmp_path, shared):
    root = tmp_path / "shared"
    top = root if shared == "root" else root / "graphs"
    top.mkdir(parents=True)
    os.chown(top, -1, GROUP)
    os.chmod(top, 0o2775)
    old = os.umask(0o077)
    try:
        store = Store(root)
        path = store.put("graphs", K(5), {"x": np.arange(3)}, {})
        store.get_or_create("graphs", K(6), lambda: ({"x": np.arange(4)}, {}))
    finally:
        os.umask(old)
    made = [path.parent, store.path("graphs", K(6)).parent]
    if shared == "root":
        made.append(root / "graphs")
    for d in made:
        st = d.stat()
        assert st.st_gid == GROUP, d
        assert st.st_mode & 0o2070 == 0o2070, (d, oct(st.st_mode))
    for f in (path, store.path("graphs", K(6))):
        st = f.stat()
        assert st.st_gid == GROUP and st.st_mode & 0o060 == 0o060, (f, oct(st.st_mode))
    assert not [p for p in root.rglob(".*")]


@needs_root
def test_store_outside_a_setgid_directory_keeps_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        path = Store(tmp_path / "private").put("graphs", K(7), {"x": np.arange(3)}, {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o077 == 0 and path.parent.stat().st_mode & 0o077 == 0


# ----------------------------------------------------------------------------- provenance


def test_every_entry_records_who_wrote_it_where(tmp_path, monkeypatch):
    import getpass

    from phasic import Graph
    from phasic.store import STORE_ATTRS, phasic_version

    store = Store(tmp_path)
    store.put("graphs", K(8), {"x": np.arange(3)}, {})
    _, attrs = store.get("graphs", K(8))
    assert attrs["user"] == getpass.getuser() and attrs["host"] == socket.gethostname()
    assert attrs["phasic_version"] == phasic_version() and attrs["created"]
    assert {"user", "host"} <= set(STORE_ATTRS)
    for name in ("user", "host"):
        with pytest.raises(ParameterError, match=f"attribute '{name}' is written by the store"):
            store.put("graphs", K(9), {"x": np.arange(3)}, {name: "someone"})

    monkeypatch.setenv("PHASIC_CACHE_DIR", str(tmp_path / "graphs_root"))

    @__import__("phasic").with_ipv([4])
    def kingman_provenance(state, theta=1.0):
        n = state[0]
        return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]

    Graph(kingman_provenance, cache=True)
    (entry,) = Store(tmp_path / "graphs_root").entries("graphs")
    attrs = Store(tmp_path / "graphs_root").get("graphs", entry)[1]
    assert attrs["user"] == getpass.getuser() and attrs["host"] == socket.gethostname()


@needs_root
def test_provenance_of_a_user_without_a_name(world):
    store = world / "store"
    store.mkdir()
    os.chmod(store, 0o777)
    result = _child(world, store, what="store", key=K("anon"), uid=54321, gid=54321)
    assert result["value"] == list(range(7)) and not _cache_warnings(result)
    attrs = Store(store).get("graphs", K("anon"))[1]
    assert attrs["user"] == "uid 54321" and attrs["host"] == socket.gethostname()


def test_lock_timeout_is_a_store_argument(tmp_path):
    from phasic.exceptions import ParameterError
    from phasic.store import Store

    assert Store(tmp_path, lock_timeout=5).lock_timeout == 5
    with pytest.raises(ParameterError, match="lock_timeout=-1"):
        Store(tmp_path, lock_timeout=-1)


@needs_root
def test_import_and_quarantine_follow_the_shared_group_rule(tmp_path):
    """Review 4: an import into a setgid group store (and the corrupt/ folder a quarantine
    makes) used plain mkdir/open under a restrictive umask: group members could not read the
    imported entries.  They get the group and its read/write bits now, as written entries do."""
    src = Store(tmp_path / "src")
    src.put("graphs", K(11), {"x": np.arange(3)})
    archive = tmp_path / "a.tar.gz"
    assert src.export(archive) == 1
    root = tmp_path / "shared"
    root.mkdir()
    os.chown(root, -1, GROUP)
    os.chmod(root, 0o2775)
    old = os.umask(0o077)
    try:
        store = Store(root, memory_mb=0)
        assert store.import_archive(archive).imported == 1
        store.put("graphs", K(12), {"x": np.arange(3)})
        bad = store.path("graphs", K(12))
        bad.write_bytes(b"garbage")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert store.get("graphs", K(12)) is None
    finally:
        os.umask(old)
    entry = store.path("graphs", K(11))
    for d in (root / "graphs", entry.parent, root / "corrupt"):
        st = d.stat()
        assert st.st_gid == GROUP and st.st_mode & 0o2070 == 0o2070, (d, oct(st.st_mode))
    st = entry.stat()
    assert st.st_gid == GROUP and st.st_mode & 0o060 == 0o060, oct(st.st_mode)


def test_staging_of_an_import_whose_pid_was_reused_is_stale(tmp_path):
    """Review 9: an import staging folder whose owner pid is alive but started after the record
    was written (the pid was reused) is stale, by the same rule as a lock (it was kept a day)."""
    from phasic.store._maintenance import clean_staging

    store = Store(tmp_path)
    staging = tmp_path / ".import-abc"
    staging.mkdir(parents=True)
    (staging / "owner.json").write_text(
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time() - 3600 * 24 * 30})
    )
    live = tmp_path / ".import-def"
    live.mkdir()
    (live / "owner.json").write_text(
        json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
    )
    assert clean_staging(store) == [str(staging)] and live.exists()


# ----------------------------------------------------------------------------- concurrent builders


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
