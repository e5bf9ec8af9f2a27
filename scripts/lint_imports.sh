#!/usr/bin/env bash
# Check the import contracts in pyproject.toml ([tool.importlinter]) with import-linter.
# The editable install's import hook gives `phasic` a virtual search path that import-linter
# cannot walk, so this runs without site's .pth hooks (-S), finding phasic in the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
exec "$py" -S -c "
import sys
sys.path[:0] = ['$PWD', '$site']
sys.argv = ['lint-imports', '--no-cache']
from importlinter.cli import lint_imports_command
sys.exit(lint_imports_command())"
