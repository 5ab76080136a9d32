# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DOCS_BUILT := docs/_build docs/_generated docs/generated docs/jupyter_execute

.PHONY: demo test lint bench study clean profile-tests kernels docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	$(MAKE) -s kernels
	touch $@ $(VENV)/.installed

# numba's CPU kernels compiled into their cache beside the sources, as installing the
# test environment's last step: the warm-up measures two small simulated sensors under
# every preset (about 20 s once per checkout; a kernel's source that changes is compiled
# again where it is first used)
kernels:
	shared=$$(mktemp -d) && GPUPTC_TEST_SHARED=$$shared $(BIN)/python tests/warm_up.py; \
	status=$$?; rm -rf "$$shared"; exit $$status

demo: $(VENV)/.installed
	$(BIN)/gpuptc demo

XDIST := -n auto --dist loadfile --no-loadscope-reorder
# one process per core, whole files per process, in the order of conftest's HEAVIEST_FIRST

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q $(XDIST)

profile-tests: $(VENV)/.installed-test
	rm -rf .suite-profile
	SUITE_PROFILE_DIR=.suite-profile PYTHONPATH=benchmarks $(BIN)/python -m pytest -q $(XDIST) -p suite_profile
	$(BIN)/python benchmarks/suite_profile.py .suite-profile

$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $@

# the site into docs/_build/html, every warning an error; the tutorial is executed
docs: $(VENV)/.installed-docs
	rm -rf $(DOCS_BUILT)
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks conftest.py docs/conf.py
	$(BIN)/ruff format --check src tests benchmarks conftest.py docs/conf.py

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/io_readers.py

study: $(VENV)/.installed
	$(BIN)/python benchmarks/gain_methods.py

clean:
	rm -rf $(VENV) gpuptc-demo .pytest_cache .ruff_cache $(DOCS_BUILT)
