# Every target sets up .venv on first use, so `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
# torch is installed first and pinned: on a CPU machine 2.13.0 resolves to the CPU build, and the project's own
# `torch>=2.4` requirement is then already met, so pip never pulls the multi-GB CUDA build by itself.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet --editable ".[test]"
	touch $@

demo: $(STAMP)
	$(BIN)/vdgraph run workflows/text2video_zero.json --output-dir out --overwrite --threads 1

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/text2video.py

clean:
	rm -rf $(VENV) out build *.egg-info
