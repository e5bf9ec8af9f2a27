"""Callbacks and workers shared by the key, store and cache tests (importable by subprocesses)."""

import json
import os
import sys
import time

import numpy as np

from phasic.callbacks import with_ipv

RATE = 1.5
WEIGHTS = {"a": (1, 2.0), "b": [True, None, "x"]}
TABLE = np.array([1.0, 2.0, 3.0])


def _scale(n):
    return n * RATE + TABLE[0]


def coalescent(state, theta=1.0):
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], n * (n - 1) / 2 * theta]]


def uses_helpers(state, theta=1.0):
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], _scale(n) * theta * len(WEIGHTS)]]


@with_ipv([6])
def wrapped(state, theta=1.0):
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], n * theta]]


def make_rate_callback(rate):
    """A factory: the returned callbacks differ only in the captured ``rate``."""

    def captured(state):
        n = state[0]
        if n <= 1:
            return []
        return [[[n - 1], rate * n]]

    return captured


def key_report():
    """Keys of a fixed set of inputs, for the cross-process stability test."""
    from phasic.keys import graph_key
    from phasic.state_indexing import Property, StateIndexer

    indexer = StateIndexer([Property("descendants", max_value=4, min_value=1), Property("population", max_value=1)])
    params = {"theta": 2.0, "tags": {"b", "a", "c"}, "table": {"z": 1, "y": [1.0, 2]}, "arr": np.arange(4)}
    return {
        "coalescent": graph_key(coalescent, {"theta": 2.0}, ipv=[10])[0],
        "helpers": graph_key(uses_helpers, {"theta": 2.0}, ipv=[10])[0],
        "wrapped": graph_key(wrapped, {})[0],
        "captured": graph_key(make_rate_callback(2.5), {}, ipv=[5])[0],
        "mixed": graph_key(
            coalescent,
            params,
            ipv=[[[10], 0.5], [[9], 0.5]],
            indexer=indexer,
            options={"discrete": True, "theta_dim": 2},
        )[0],
    }


# ----------------------------------------------------------------------------- store workers


def race_worker(root, key, marker, go_file, out_file):
    """Wait for ``go_file``, then get_or_create ``key``; the build appends to ``marker``."""
    from phasic.store import Store

    open(out_file + ".ready", "w").close()
    while not os.path.exists(go_file):
        time.sleep(0.005)

    def build():
        with open(marker, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        rng = np.random.default_rng(7)
        return {"data/x": rng.random(50_000), "n": np.arange(10)}, {"who": "race"}

    arrays, attrs = Store(root).get_or_create("graphs", key, build)
    with open(out_file, "w") as fh:
        json.dump({"sum": float(arrays["data/x"].sum()), "n": arrays["n"].tolist(), "who": attrs["who"]}, fh)


# ----------------------------------------------------------------------------- counted callbacks (cache tests)


def counted_coalescent(state, marker="", theta=1.0):
    """Kingman coalescent from the IPV's n lineages; every call appends a line to ``marker``."""
    with open(marker, "a") as fh:
        fh.write("call\n")
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], n * (n - 1) / 2 * theta]]


def counted_parameterised(state, marker=""):
    """The same coalescent with rate n(n-1)/2 * theta given as a coefficient vector."""
    with open(marker, "a") as fh:
        fh.write("call\n")
    n = state[0]
    if n <= 1:
        return []
    return [[[n - 1], [n * (n - 1) / 2]]]


def main():
    """``python -m tests._keys_helpers keys`` prints :func:`key_report` as JSON."""
    if sys.argv[1] == "keys":
        print(json.dumps(key_report(), sort_keys=True))


if __name__ == "__main__":
    main()
