"""Demes models for tests/verification/test_demography.py.

Each builder returns ``(demes.Graph, samples)``: a resolved Demes model (sizes diploid, times
in generations unless stated) and the haploid sample counts per deme that the tests use. The
samples are small so that the block-counting state spaces stay small (a few hundred to about a
thousand vertices) and a test that simulates them with msprime stays fast.

The models are plain Demes; phasic, msprime and moments each read them independently
(``phasic.demography.from_demes``, ``msprime.Demography.from_demes``, ``moments.Demes.SFS``).
"""

from __future__ import annotations

import demes


def _builder(**kw):
    return demes.Builder(time_units=kw.pop("time_units", "generations"), **kw)


def constant(N=1000, n=5):
    """One deme of constant size ``N``."""
    b = _builder()
    b.add_deme("A", epochs=[dict(start_size=N)])
    return b.resolve(), {"A": n}


def two_epoch(N_recent=1000, N_ancient=300, T=500, n=2):
    """One deme: size ``N_ancient`` before ``T`` generations ago, ``N_recent`` since."""
    b = _builder()
    b.add_deme("A", epochs=[dict(start_size=N_ancient, end_time=T), dict(start_size=N_recent)])
    return b.resolve(), {"A": n}


def three_epoch(n=6):
    """One deme with piecewise-constant sizes: 2000, a bottleneck of 500 (800 to 200
    generations ago), then 3000."""
    b = _builder()
    b.add_deme(
        "A",
        epochs=[
            dict(start_size=2000, end_time=800),
            dict(start_size=500, end_time=200),
            dict(start_size=3000),
        ],
    )
    return b.resolve(), {"A": n}


def growth(n=6):
    """One deme: constant 1000, then exponential growth to 8000 over the last 400 generations."""
    b = _builder()
    b.add_deme("A", epochs=[dict(start_size=1000, end_time=400), dict(start_size=1000, end_size=8000)])
    return b.resolve(), {"A": n}


def decline(n=6):
    """One deme: constant 1000, then exponential decline to 500 over the last 400 generations."""
    b = _builder()
    b.add_deme("A", epochs=[dict(start_size=1000, end_time=400), dict(start_size=1000, end_size=500)])
    return b.resolve(), {"A": n}


def split(time_units="generations", scale=1.0, samples=(4, 3)):
    """X splits into A and B 600 generations ago, no migration; B had a size change 150
    generations ago. ``time_units="years"`` with ``scale`` = the generation time gives the
    same model with its times in years."""
    kw = dict(time_units=time_units)
    if time_units != "generations":
        kw["generation_time"] = scale
    b = _builder(**kw)
    b.add_deme("X", epochs=[dict(start_size=1000, end_time=600 * scale)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=500)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=2000, end_time=150 * scale), dict(start_size=300)])
    return b.resolve(), {"A": samples[0], "B": samples[1]}


def isolation_migration(m_AB=1e-3, m_BA=3e-4, samples=(3, 3)):
    """Isolation with asymmetric migration: X splits into A (800) and B (1500) 500 generations
    ago; since then a fraction ``m_AB`` of B per generation are migrants from A, and
    ``m_BA`` of A are migrants from B (Demes: source -> dest, forwards in time)."""
    b = _builder()
    b.add_deme("X", epochs=[dict(start_size=1000, end_time=500)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=800)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=1500)])
    b.add_migration(source="A", dest="B", rate=m_AB)
    b.add_migration(source="B", dest="A", rate=m_BA)
    return b.resolve(), {"A": samples[0], "B": samples[1]}


def pulse(samples=(3, 3)):
    """X splits into A (600) and B (1200) 800 generations ago; 200 generations ago a pulse
    makes 30% of A migrants from B."""
    b = _builder()
    b.add_deme("X", epochs=[dict(start_size=1000, end_time=800)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=600)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=1200)])
    b.add_pulse(sources=["B"], dest="A", proportions=[0.3], time=200)
    return b.resolve(), {"A": samples[0], "B": samples[1]}


def admixture(samples=(3, 3)):
    """X splits into A and B 800 generations ago; C is founded 100 generations ago by 60% A
    and 40% B (two ancestors); samples from C and B."""
    b = _builder()
    b.add_deme("X", epochs=[dict(start_size=1000, end_time=800)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=600)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=1200)])
    b.add_deme("C", ancestors=["A", "B"], proportions=[0.6, 0.4], start_time=100, epochs=[dict(start_size=400)])
    return b.resolve(), {"C": samples[0], "B": samples[1]}


def split_growth(samples=(3, 3)):
    """X splits into A (800, constant) and B 300 generations ago; B grows exponentially from
    200 to 4000 since, no migration."""
    b = _builder()
    b.add_deme("X", epochs=[dict(start_size=1000, end_time=300)])
    b.add_deme("A", ancestors=["X"], epochs=[dict(start_size=800)])
    b.add_deme("B", ancestors=["X"], epochs=[dict(start_size=200, end_size=4000)])
    return b.resolve(), {"A": samples[0], "B": samples[1]}
