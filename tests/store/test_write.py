"""Writing store entries (phasic/store/_write.py): bad arrays and attributes are refused before
anything is written; a write that fails (root is a file, full disk, a writer killed) leaves no
visible partial entry and the store intact; stale temporary files are cleaned; entries are
readable by others on a shared cache."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from phasic.exceptions import ParameterError, StoreError
from phasic.store import Store
from tests.models import K, child_env

ENTRY_RE = re.compile(r"^[0-9a-f]{62}\.h5$")


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
        env=child_env(),
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
            env=child_env(),
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


def test_entries_are_readable_by_others_on_a_shared_cache(tmp_path):
    old = os.umask(0o022)
    try:
        path = Store(tmp_path).put("graphs", K(1), {"x": np.arange(3)}, {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
