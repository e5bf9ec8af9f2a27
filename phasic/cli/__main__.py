"""``python -m phasic.cli``: the ``phasic`` command."""

import sys

from phasic.cli._main import main

if __name__ == "__main__":  # Dask's worker processes may import this module again
    sys.exit(main())
