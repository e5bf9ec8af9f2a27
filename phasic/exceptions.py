"""Exceptions raised by phasic.

Every phasic error derives from :class:`PhasicError`; most also derive from the
builtin that fits (``ValueError``, ``TypeError``, ``OSError``) so callers that
catch the builtin keep working.
"""


class PhasicError(Exception):
    """Base class of every error raised by phasic."""


class GraphConstructionError(PhasicError, ValueError):
    """A callback returned something that cannot become a graph (bad edge, state, rate, IPV)."""


class StateTypeError(GraphConstructionError, TypeError):
    """A state or edge has the wrong type (e.g. a non-integer state entry)."""


class StateSpaceTooLarge(GraphConstructionError):
    """The state space grew past ``max_vertices``."""


class ParameterError(PhasicError, ValueError):
    """A parameter vector (theta), reward vector or time grid is malformed."""


class ForwardModeError(PhasicError, TypeError):
    """A JAX function with reverse-mode derivatives only was differentiated in forward mode
    (``jax.jvp``, ``jax.jacfwd``)."""


class UnhashableError(PhasicError, TypeError):
    """The inputs of a cached computation cannot be turned into a stable key."""


class StoreError(PhasicError, OSError):
    """The content-addressed store could not read or write an entry."""


class CorruptEntryError(StoreError):
    """A store entry failed verification (bad checksum, truncated, wrong key)."""


class UnsafeArchiveError(StoreError, ValueError):
    """A cache archive holds a member that must not be extracted."""


class TraceError(PhasicError, ValueError):
    """A trace cannot be recorded or replayed for the given graph or parameters."""


class DistributedError(PhasicError, RuntimeError):
    """A Dask task failed; the message names the model spec and the cause."""


class CompilationConfigError(PhasicError, ValueError):
    """A :class:`phasic.CompilationConfig` field, preset name or config file is invalid."""


class JaxCacheError(PhasicError, ValueError):
    """A JAX cache directory argument is unusable (wrong type, or a directory that must not be
    emptied: ``/``, the home directory, ...)."""


class PhasicWarning(UserWarning):
    """Base class of every warning issued by phasic."""


class CacheWarning(PhasicWarning, RuntimeWarning):
    """A cache could not be used as intended (a lock or a write failed, an entry was unreadable);
    the result was computed in memory instead and is correct, but it was not stored.

    Also a ``RuntimeWarning``, the category these warnings had before this class existed.
    """


class KeyWarning(PhasicWarning):
    """A callback uses a construct the graph key cannot follow (``exec``, ``eval``, a computed
    ``getattr``, a ``global`` statement, ...): an edit reached only through it does not change
    the key.  Issued once per callback; make the dependency explicit (a parameter, a plain
    import) to silence it."""


def user_stacklevel():
    """The ``stacklevel`` for :func:`warnings.warn` that points at the first caller outside the
    phasic package (so a warning names the user's line, however deep inside phasic it is raised)."""
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame, level = frame.f_back, level + 1
    return level
