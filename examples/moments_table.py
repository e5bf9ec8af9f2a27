"""Prints a table of moments for the example models (the `make run` fallback)."""

import phasic
from phasic import Graph


@phasic.with_ipv([10])
def kingman(state, theta=1.0):
    n = state[0]
    return [] if n <= 1 else [[[n - 1], n * (n - 1) / 2 * theta]]


@phasic.with_ipv([[[5, 5], 1.0]])
def two_island(state, m=0.5):
    a, b = state
    if a + b <= 1:
        return []
    out = []
    if a >= 2:
        out.append([[a - 1, b], a * (a - 1) / 2])
    if b >= 2:
        out.append([[a, b - 1], b * (b - 1) / 2])
    if a > 0:
        out.append([[a - 1, b + 1], a * m])
    if b > 0:
        out.append([[a + 1, b - 1], b * m])
    return out


if __name__ == "__main__":
    print(f"{'model':<12}{'vertices':>10}{'E[T]':>14}{'Var[T]':>14}{'E[T^3]':>14}")
    for name, g in [("kingman", Graph(kingman, theta=2.0)), ("two_island", Graph(two_island, m=0.5))]:
        m = g.moments(3)
        print(f"{name:<12}{g.vertices_length():>10}{m[0]:>14.6f}{m[1] - m[0] ** 2:>14.6f}{m[2]:>14.6f}")
