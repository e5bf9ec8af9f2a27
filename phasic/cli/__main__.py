"""``python -m phasic.cli``: the ``phasic`` command."""

import sys

from phasic.cli._main import main

sys.exit(main())
