# Two commands for a fresh machine: `make demo` and `make test`.
# Each creates or updates .venv and installs everything itself.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARCH    := $(shell uname -m)
# torch/torchvision pairs known to install and import together here (README, "Set-up on a fresh machine").
ifeq ($(ARCH),aarch64)
TORCH_PINS := torch==2.9.1 torchvision==0.24.1
else
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
endif
DEMO_OUT ?= demo-out

.PHONY: venv test test-all demo lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]' $(TORCH_PINS)
	touch $(STAMP)

# The second run repeats the core tests with numba's bounds checks on (numba checks none by
# default, so an index bug reads or writes out of bounds silently or kills the interpreter). It
# has its own numba cache: the cache does not key on NUMBA_BOUNDSCHECK and would otherwise hand
# back unchecked code; test_numba_bounds_checks_are_on fails if the checks are not really on.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q
	NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=build/numba-boundscheck \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_mergetree.py tests/test_graph.py

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m ''

lint: $(STAMP)
	$(BIN)/ruff format --check sampletopo tests benchmarks
	$(BIN)/ruff check sampletopo tests benchmarks
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/sampletopo demo --out $(DEMO_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache build/numba-boundscheck
