# Quick start: `make demo` (main job) and `make test` (test suite, doctests included). Both set up .venv on first
# use. `make test-fast` skips the tests marked slow (servers on sockets, subprocesses, Chromium, training runs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/patchcrypt demo $(DEMO_ARGS)

# The report test renders HTML in headless Chromium; the set-up installs it when it can and says why not.
test: $(STAMP)
	-@test ! -f scripts/setup_chromium.sh || bash scripts/setup_chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
