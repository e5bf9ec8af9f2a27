"""The ``phasic`` command (``phasic --help``; ``python -m phasic.cli`` runs it too).

:func:`main` runs it. The modules under it are private: ``_main`` (the parser and error
handling) over the subcommand groups ``_cache``, ``_workflow`` (``graph``, ``trace``,
``evaluate``: what the Snakemake rules call) and ``_build`` (Dask builds from a models file),
over ``_list`` (``cache list``'s table) and ``_common``.
"""

from phasic.cli._main import build_parser, main

__all__ = ["main", "build_parser"]
