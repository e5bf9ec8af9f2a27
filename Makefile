# Two entry points for a fresh machine (see README.md):
#   make run   - create .venv, build and install phasic, run the example workflow
#   make test  - the same set-up, then the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.phasic-installed

.PHONY: install run test lint docs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# build tools first: the editable install builds without isolation, so that `import phasic`
# rebuilds the compiled core after edits (meson-python's editable mode)
$(STAMP): $(PY) pyproject.toml meson.build csrc/meson.build
	$(PY) -m pip install -q "setuptools>=70.1" wheel "meson-python>=0.15" "meson>=1.2" ninja "cython>=3.0" "numpy>=1.25"
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
	@# the editable install's import hook hides phasic's files from import-linter: the venv's
	@# lint-imports runs it on the source tree instead (scripts/lint_imports.sh)
	printf '#!/usr/bin/env bash\nexec bash "%s/scripts/lint_imports.sh" "$$@"\n' "$(CURDIR)" > $(VENV)/bin/lint-imports
	chmod +x $(VENV)/bin/lint-imports
	touch $(STAMP)

install: $(STAMP)

run: install
	@bash scripts/run_example.sh

test: install
	@bash scripts/install_system_deps.sh
	$(PY) -m pytest -q -p no:cacheprovider

# style: ruff (lint and format, configured in pyproject.toml), cython-lint for the .pyx, and the
# import contracts (import-linter, [tool.importlinter] in pyproject.toml)
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cython-lint --max-line-length 120 csrc/_core.pyx
	bash scripts/lint_imports.sh

# the API reference from the docstrings (Sphinx + numpydoc, docs/api/), warnings are errors;
# the packages are pyproject.toml's docs extra
DOCS_STAMP := $(VENV)/.phasic-docs-installed
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -q "sphinx>=7.2" "numpydoc>=1.6" "myst-parser>=2.0"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf build/docs
	$(PY) -m sphinx -W --keep-going -q -b html docs/api build/docs
	@echo "API reference: build/docs/index.html"

bench: install
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf build $(VENV) results .snakemake
