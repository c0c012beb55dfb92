# Every target sets up .venv on first use, so `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
# torch is installed first and pinned: on a CPU machine 2.13.0 resolves to the CPU build, and the project's own
# `torch>=2.4` requirement is then already met, so pip never pulls the multi-GB CUDA build by itself.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --editable ".[test]"
	touch $@

demo: $(STAMP)
	$(BIN)/vdgraph run workflows/text2video_zero.json --output-dir out --overwrite --threads 1

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The browser tests (tests/test_server_browser.py) drive Debian's chromium with Playwright (never a downloaded
# browser). Installed here when missing and we are root with apt-get (CI); otherwise those tests skip, saying why.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
			echo "note: chromium could not be installed: the browser tests will skip"; \
	else \
		echo "note: no $(CHROMIUM) and not root: the browser tests will skip (apt-get install chromium)"; \
	fi

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/text2video.py
	$(BIN)/python bench/server.py

clean:
	rm -rf $(VENV) out build *.egg-info
