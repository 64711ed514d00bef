# deepclust: `make demo` and `make test` set everything up on a fresh machine (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch + torchvision (timm, the image encoders, needs torchvision): these two releases lie on disk on
# the project's machines (a CUDA build, ~5.5 GB in the venv, installed in about 30 s there); override
# elsewhere, e.g. TORCH_SPEC="torch torchvision".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Real data for tests and benchmarks (read through the DEEPCLUST_DATA setting, never hard-coded).
DEEPCLUST_DATA ?= $(abspath ../shared/data)
export DEEPCLUST_DATA

.PHONY: setup demo test fashion-mnist chromium bench bench-quick bench-tables clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test,bench,umap,text,images,dask]"
	@# compile UMAP's numba kernels once into their disk cache (deepclust.reduction.cache_umap_kernels),
	@# so that the first `deepclust run` does not spend ~20 s compiling them
	$(PY) -c "import numpy as np; from deepclust.reduction import umap_layout; \
		umap_layout(np.random.default_rng(0).normal(size=(300, 8)).astype('float32'), n_components=5)"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/deepclust run digits --out runs/demo --overwrite --budget 15

# Fashion-MNIST is a Debian package; tests that need it skip when it cannot be installed.
fashion-mnist:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
		|| echo "warning: could not install dataset-fashion-mnist; its tests will be skipped"; fi

# Headless Chromium for the report's browser test (skipped, with its reason, when it cannot be installed).
chromium:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "warning: could not install chromium; the report's browser test will be skipped"; fi

test: setup fashion-mnist chromium
	$(PY) -m pytest

# The CPU benchmarks behind BENCHMARKS.md, rerun from the venv, then its tables regenerated from the
# records (benchmarks/cpu.py). bench: many hours on 2 cores; bench-quick: the cheap part, < 20 minutes.
# ARGS are passed on, e.g. make bench ARGS="--only pic-raw".
bench: setup fashion-mnist
	$(PY) benchmarks/cpu.py $(ARGS)

bench-quick: setup fashion-mnist
	$(PY) benchmarks/cpu.py --quick $(ARGS)

# Only rebuild BENCHMARKS.md's tables from benchmarks/results/ (seconds).
bench-tables: setup
	$(PY) benchmarks/tables.py

clean:
	rm -rf $(VENV) runs
