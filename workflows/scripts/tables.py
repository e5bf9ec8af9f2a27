"""Reading the TSV tables `phasic evaluate` writes (shared by the plot and summary scripts)."""

import csv


def read_table(path):
    """``(header, rows)`` of a TSV file; rows are lists of strings."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        header = next(reader)
        return header, [row for row in reader if row]


def split_moments(path):
    """Moments table as ``(theta_names, {theta tuple: {reward: {column: float}}})`` (ordered)."""
    header, rows = read_table(path)
    r = header.index("reward")
    names = header[:r]
    out = {}
    for row in rows:
        theta = tuple(float(x) for x in row[:r])
        out.setdefault(theta, {})[row[r]] = {h: float(v) for h, v in zip(header[r + 1 :], row[r + 1 :])}
    return names, out


def split_distribution(path):
    """Distribution table as ``(theta_names, time column, density column, {theta: (t, dens, cdf)})``."""
    header, rows = read_table(path)
    tcol = "k" if "k" in header else "t"
    i = header.index(tcol)
    names = header[:i]
    out = {}
    for row in rows:
        theta = tuple(float(x) for x in row[:i])
        t, d, c = out.setdefault(theta, ([], [], []))
        t.append(float(row[i]))
        d.append(float(row[i + 1]))
        c.append(float(row[i + 2]))
    return names, tcol, header[i + 1], out


def theta_label(names, theta):
    return ", ".join(f"{n}={v:g}" for n, v in zip(names, theta)) or "fixed rates"


def pick(items, n):
    """At most ``n`` items, evenly spaced, first and last included."""
    items = list(items)
    if len(items) <= n:
        return items
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]
