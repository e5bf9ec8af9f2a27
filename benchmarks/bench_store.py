"""Graph cache benchmark: build time versus cache-hit time, entry size and load time.

Model: the block-counting coalescent (state = counts of lineages with i
descendants, i = 1..n), which has p(n) vertices (integer partitions of n):
n = 22 -> 1,002, n = 33 -> 10,143, n = 46 -> 105,558 (+ the start vertex).

Columns
-------
build s     ``Graph(model, cache=False)``: the callback-driven build
miss s      ``Graph(model, cache=True)`` on an empty cache: build + key + write
hit ms      ``Graph(model, cache=True)`` again: key + read + verify + Graph (best of 5)
load ms     ``Store.get`` alone (read + checksum verification, best of 5)
key ms      ``graph_key`` alone (best of 5)
file MB     size of the entry on disk; raw MB: bytes of the arrays
build/hit   the speed-up a hit gives (target: >= 100x from 10k vertices)

Usage::

    python benchmarks/bench_store.py                 # n = 22, 33, 46 (the last builds for ~1 min)
    python benchmarks/bench_store.py --sizes 22 33   # quick
    python benchmarks/bench_store.py --compression none
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time


def block_counting(state, n=10):
    """Kingman coalescent in block-counting form: slot i counts lineages with i+1 descendants."""
    out = []
    nonzero = [i for i in range(n) if state[i] > 0]
    for a, i in enumerate(nonzero):
        for j in nonzero[a:]:
            if i == j:
                if state[i] < 2:
                    continue
                rate = state[i] * (state[i] - 1) / 2
            else:
                rate = state[i] * state[j]
            if i + j + 1 >= n:
                continue  # the merger of everything: absorption
            child = list(state)
            child[i] -= 1
            child[j] -= 1
            child[i + j + 1] += 1
            out.append([child, rate])
    return out


def _best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(sizes, compression, keep_dir=None):
    root = keep_dir or tempfile.mkdtemp(prefix="phasic-bench-store-")
    os.environ["PHASIC_CACHE_DIR"] = root
    from phasic import Graph
    from phasic.cache import cached_graph
    from phasic.keys import graph_key
    from phasic.store import Store

    store = Store(root, compression=compression)
    compression = store.compression
    rows = []
    for n in sizes:
        start = [0] * n
        start[0] = n
        ipv = [[start, 1.0]]
        params = {"n": n}

        def cached():
            return cached_graph(block_counting, params=params, ipv=ipv, options={}, store=store,
                                build=lambda: Graph(block_counting, ipv=ipv, n=n))

        t0 = time.perf_counter()
        g = Graph(block_counting, ipv=ipv, n=n)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached()
        miss = time.perf_counter() - t0
        hit = _best(cached)
        key, _ = graph_key(block_counting, params, ipv=ipv)
        load = _best(lambda: store.get("graphs", key))
        keyt = _best(lambda: graph_key(block_counting, params, ipv=ipv))
        arrays, _ = g.to_arrays()
        raw = sum(a.nbytes for a in arrays.values())
        size = store.path("graphs", key).stat().st_size
        assert cached().vertices_length() == g.vertices_length()
        rows.append((n, g.vertices_length(), g.edges_length(), build, miss, hit, load, keyt, size, raw))
    if keep_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return compression, rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[22, 33, 46], help="sample sizes n")
    parser.add_argument("--compression", default=None, choices=("none", "gzip", "lzf"),
                        help="store compression (default: the store's default, none)")
    parser.add_argument("--keep-dir", help="use (and keep) this cache directory")
    args = parser.parse_args(argv)
    compression, rows = run(args.sizes, args.compression, args.keep_dir)
    head = (f"{'n':>3} {'vertices':>9} {'edges':>9} {'build s':>8} {'miss s':>7} {'hit ms':>7} {'load ms':>8} "
            f"{'key ms':>7} {'file MB':>8} {'raw MB':>7} {'build/hit':>10}")
    print(f"block-counting coalescent, store compression={compression}")
    print(head)
    print("-" * len(head))
    for n, v, e, build, miss, hit, load, keyt, size, raw in rows:
        print(f"{n:>3} {v:>9,} {e:>9,} {build:>8.3f} {miss:>7.3f} {hit * 1e3:>7.2f} {load * 1e3:>8.2f} "
              f"{keyt * 1e3:>7.2f} {size / 1e6:>8.3f} {raw / 1e6:>7.2f} {build / hit:>9.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
