# The two set-up commands: `make test` and `make demo`.
# Each creates .venv on first use and reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The CPU torch wheel lies in /opt/wheels on these machines; without it pip would fetch a multi-GB CUDA build.
PIP_FIND := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install lint fmt test test-gpu demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(PIP_FIND) -e '.[dev]'
	touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest -m "not gpu" $(PYTEST_ARGS)

# The whole loop on the embedded default, as the local KFP pipeline, then one served answer (see README).
demo: $(STAMP)
	@command -v espeak-ng >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq espeak-ng >/dev/null 2>&1; } \
		|| echo "note: could not install espeak-ng; the demo runs without spoken questions"
	$(BIN)/audiomcq demo --out out/demo

test-gpu: $(STAMP)
	$(BIN)/pytest -m gpu $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
