# Set-up and main commands. Every target creates the virtual environment on first use.
#   make run    train the main model on the embedded synthetic dataset, write results/
#   make test   run the test suite
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of torch; pick another build (e.g. a CUDA one) with TORCH=...
TORCH ?= torch==2.13.0
MODEL ?= LDA
DATASET ?= synthetic
ARGS ?=
BIN := $(VENV)/bin

.PHONY: setup run test bench mutate
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

run: setup
	$(BIN)/python run_recbole_lda.py --model=$(MODEL) --dataset=$(DATASET) \
		--results_file=results/$(MODEL)-$(DATASET).json \
		--predictions_file=results/$(MODEL)-$(DATASET)-test.csv $(ARGS)

test: setup
	$(BIN)/python -m pytest -q

# Mutation testing of the numerical core against the fast unit tests (slow; not part of CI):
# metrics, OT, LDA's loss, the baselines. Survivors and scores go to results/mutants.txt.
# MUTATE_ARGS="--targets metrics ot" runs some targets; tools/mutate.py --help says more.
MUTMUT ?= mutmut==3.8.1
MUTATE_ARGS ?=
mutate: setup
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install --quiet "$(MUTMUT)"
	$(BIN)/python tools/mutate.py $(MUTATE_ARGS)
