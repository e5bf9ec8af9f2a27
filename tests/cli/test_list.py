"""``phasic cache list`` (phasic/cli/_list.py): model, parameters, vertices, size, dates and
provenance of every entry; damaged, legacy, compressed and newer entries are marked, what is not
a file is skipped, and a listing moves nothing.

Every check runs the real ``phasic`` console script (or ``python -m phasic.cli``) in a
subprocess through the ``env`` fixture (tests/cli/conftest.py), with ``PHASIC_CACHE_DIR``,
``JAX_COMPILATION_CACHE_DIR`` and ``HOME`` pointing into the test's temporary directory."""

import json
import os
from pathlib import Path

import numpy as np

from phasic.store import Store
from tests.models import store_two_graphs_and_a_trace


def test_list_shows_model_params_vertices_size_dates_and_provenance(env):
    env.build("""
        from phasic import Graph
        from phasic.traces import ensure_trace
        import models_cli
        Graph(models_cli.coalescent, theta=2.0, cache=True)
        g = Graph(models_cli.chain, n=4, rate=0.25, label="pop A", ipv=[[[0], 1.0]], cache=True)
        ensure_trace(g)
    """)
    store = Store(env.cache)
    assert len(store.entries("graphs")) == 2 and len(store.entries("traces")) == 1
    out = env.run("cache", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    graphs = {r["callback"]: r for r in rows if r["kind"] == "graphs"}
    assert set(graphs) == {"coalescent", "chain"}
    coal, chain = graphs["coalescent"], graphs["chain"]
    assert coal["params"] == {"theta": 2.0} and coal["vertices"] == 5
    assert chain["params"] == {"n": 4, "rate": 0.25, "label": "pop A"} and chain["vertices"] == 6
    for r in rows:
        path = Path(r["path"])
        assert r["status"] == "ok" and r["bytes"] == path.stat().st_size
        assert r["created"].startswith("20") and r["last_used"].startswith("20")
        assert r["phasic_version"] != "-" and r["module"] and r["user"] and r["host"]
    trace = [r for r in rows if r["kind"] == "traces"][0]
    assert trace["vertices"] == 6 and trace["params"] is None
    out = env.run("cache", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    header, body = lines[0], lines[1:]
    for column in ("KIND", "MODEL", "PARAMS", "VERTICES", "SIZE", "CREATED", "LAST USED", "BY", "PHASIC"):
        assert column in header
    assert len(body) == 3
    line = [x for x in body if "coalescent" in x][0]
    assert "theta=2.0" in line and coal["phasic_version"] in line.split()
    assert f"{coal['user']}@{coal['host']}" in line.split() or coal["user"] == coal["host"] == "-"
    assert coal["last_used"] >= coal["created"]
    assert "label='pop A' n=4 rate=0.25" in [x for x in body if "chain" in x][0]


def test_list_marks_damaged_entries_and_skips_what_is_not_a_file(env):
    store, trace = store_two_graphs_and_a_trace(env.cache)
    bad = store.path("graphs", "a" * 64)
    bad.write_bytes(bad.read_bytes()[:300])
    fifo_dir = env.cache / "graphs" / "dd"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / ("d" * 62 + ".h5"))  # would block a reader that opens it
    legacy = env.cache / "graphs" / "ee" / ("e" * 62 + ".h5")  # format 1: plain HDF5, no store head
    legacy.parent.mkdir()
    import h5py

    with h5py.File(legacy, "w") as f:
        f["states"] = np.zeros((4, 1))
        f.attrs["key"] = "e" * 64
    compressed = "f" * 64  # a gzip entry: its index has the attributes only
    Store(env.cache, compression="gzip").put("traces", compressed, {"xinit": np.zeros(20000)}, {"n": 1})
    out = env.run("cache", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["key"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"a" * 64, "b" * 64, "e" * 64, compressed, trace}
    assert rows["a" * 64]["status"].startswith("damaged") and rows["b" * 64]["status"] == "ok"
    assert rows["e" * 64]["status"].startswith("legacy") and rows["e" * 64]["vertices"] is None
    assert rows[compressed]["status"] == "ok" and rows[compressed]["vertices"] == 20000
    assert rows["b" * 64]["vertices"] == Store(env.cache).get("graphs", "b" * 64)[0]["states"].shape[0]
    assert rows["b" * 64]["module"] == "-" and rows["b" * 64]["params"] is None
    out = env.run("cache", "list")
    assert out.returncode == 0 and "damaged" in [x for x in out.stdout.splitlines() if "aaaaaaaa" in x][0].lower()
    assert store.entries("graphs") == ["a" * 64, "b" * 64, "e" * 64]  # listing moves nothing


def test_list_shows_a_damaged_compressed_entry_and_a_newer_one(tmp_path):
    """Review 2: ``cache list`` showed a compressed entry that fails its check as "ok"; it is
    DAMAGED with the reason now, and an entry of a newer store format is NEWER (as verify
    says), not DAMAGED.  (entry_info/format_listing in-process: what the command prints.)"""
    import numpy as np

    from phasic.cli._list import entry_info, format_listing
    from phasic.store import Store

    store = Store(tmp_path, compression="gzip", memory_mb=0)
    V = 10_000
    arrays = {
        "states": np.arange(V, dtype=np.int32).reshape(V, 1),
        "edges/indptr": np.concatenate([np.arange(V, dtype=np.int64), [V - 1]]),
        "edges/target": np.arange(1, V, dtype=np.int32),
        "edges/weight": np.full(V - 1, 2.0),
    }
    key, newer = "ab" * 32, "cd" * 32
    path = store.put("graphs", key, arrays)
    assert path.read_bytes()[:16] == b"phasic-store-h2\n"
    assert entry_info(store, "graphs", key)["vertices"] == V
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the compressed HDF5 part: the whole-file SHA-256 fails
    path.write_bytes(bytes(data))
    row = entry_info(store, "graphs", key)
    assert row["status"].startswith("damaged: checksum mismatch"), row
    other = store.put("graphs", newer, {"x": np.arange(3)})
    head = bytearray(other.read_bytes())
    head[:16] = b"phasic-store-v7\n"
    other.write_bytes(bytes(head))
    row2 = entry_info(store, "graphs", newer)
    assert row2["status"] == "newer: newer store format 7 (this phasic reads 2)", row2
    text = format_listing([row, row2])
    assert "DAMAGED: checksum mismatch" in text and "NEWER: newer store format 7" in text
    assert path.exists() and other.exists()  # a listing never moves anything
