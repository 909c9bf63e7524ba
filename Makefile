# The README's two commands: `make demo` (set up, train a small example from scratch, then
# resume the committed built-in study) and `make test`.
# Each creates .venv if missing and installs seedwise with `pip install -e '.[dev]'`.
VENV ?= .venv
PY := $(VENV)/bin/python
SEEDS ?= 5
RESULTS ?= results
# Where the demo's from-scratch study and its report go: never results/, whose studies are
# committed. The demo deletes only the two folders it writes there, so that it trains again.
DEMO ?= demo

# The offline CIFAR-10 copy beside this checkout, when there is one. The package itself knows
# nothing of it: it only reads $SEEDWISE_DATA (or --data, ./data, or downloads).
SHARED_CIFAR := $(abspath ../shared/data/cifar10-jpeg.tar.gz)
ifneq ($(wildcard $(SHARED_CIFAR)),)
export SEEDWISE_DATA ?= $(SHARED_CIFAR)
endif

.PHONY: install demo test test-all lint dry-run paper

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# 1/2: examples/digits (4 arms x 5 seeds of an MLP on scikit-learn's digits, no download) trained
# from scratch, its verdicts, and its report; about a minute on 2 cores.
# 2/2: the built-in CIFAR-10 study committed in results/: it resumes, so it trains only what is
# missing (nothing on a fresh clone) and prints the verdicts of the committed runs.
demo: install
	@echo "== 1/2: a study trained from scratch: examples/digits/spec.toml into $(DEMO)/digits-mlp/"
	rm -rf $(DEMO)/digits-mlp $(DEMO)/report
	$(PY) -m study.run --spec examples/digits/spec.toml --results $(DEMO)
	$(PY) -m analysis.report $(DEMO)/digits-mlp --out $(DEMO)/report
	@echo "== 2/2: the built-in CIFAR-10 study committed in $(RESULTS)/ (resumes: trains only what is missing)"
	$(PY) -m study.run --seeds $(SEEDS) --results $(RESULTS)

dry-run: install
	$(PY) -m study.run --seeds $(SEEDS) --results $(RESULTS) --dry-run

test: install
	$(PY) -m ruff check study analysis tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m pytest

# Every test, the slow ones too (about 40 minutes on 2 cores): what CI runs.
test-all: install
	$(PY) -m ruff check study analysis tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m pytest -m "slow or not slow" --durations=25

lint: install
	$(PY) -m ruff check study analysis tests benchmarks examples
	$(PY) -m mypy

# Regenerate every report and paper/README.md from results/ (writes paper/, and refreshes each
# study's verdict note and dashboard figures in its results/<study>/study.db).
paper: install
	for d in results/*/; do \
	  if [ -f "$$d/runs.csv" ]; then $(PY) -m analysis.report "$$d" || exit 1; fi; \
	done
	$(PY) -m analysis.paper
