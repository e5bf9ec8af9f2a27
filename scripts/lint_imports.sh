#!/usr/bin/env bash
# Check the import contracts in pyproject.toml ([tool.importlinter]) with import-linter.
# The editable install's import hook gives `phasic` a virtual search path that import-linter
# cannot walk, so this runs without site's .pth hooks (-S) on a copy of the source tree. The copy
# has an empty phasic/_core.py in place of the compiled extension: without it, import-linter
# reads `from phasic import _core` as an import of the package itself (of phasic/__init__.py and
# so of everything it imports), and every module would seem to import everything.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$PWD/.venv/bin/python
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
find phasic -name '*.py' -not -path '*/__pycache__/*' | while read -r f; do
    mkdir -p "$tree/$(dirname "$f")" && cp "$f" "$tree/$f"
done
: > "$tree/phasic/_core.py"
cp pyproject.toml "$tree/"
cd "$tree"
"$py" -S -c "
import sys
sys.path[:0] = ['$tree', '$site']
sys.argv = ['lint-imports', '--no-cache']
from importlinter.cli import lint_imports_command
sys.exit(lint_imports_command())"
