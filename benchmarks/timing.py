"""Timing helper shared by the benchmark scripts and the drivers they run under the
published package's interpreter (plain Python: no phasic import)."""
import time


def best_of(fn, setup=None, reps=5, budget=2.0):
    """(min seconds, last result) over up to `reps` runs, stopping after `budget` seconds."""
    best, spent, out = float("inf"), 0.0, None
    for _ in range(reps):
        arg = setup() if setup else None
        t0 = time.perf_counter()
        res = fn(arg) if setup else fn()
        dt = time.perf_counter() - t0
        out = res  # the previous result is freed here, outside the timed region
        best, spent = min(best, dt), spent + dt
        if spent >= budget:
            break
    return best, out
