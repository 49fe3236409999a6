# Two entry points, both self-contained on a fresh machine:
#   make test   create .venv, install the pinned stack + the package (editable, test extra), run pytest
#   make demo   the same set-up, then the main job on the embedded default data
#   make wheel  a wheel of this package in dist/, built offline from the clone (what `pip install .` installs)
#   make test-floor  create .venv-floor with the oldest supported stack (requirements/floor.txt), run pytest there
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIN    := -c requirements/constraints.txt
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv test demo wheel clean gpu-wheels gpu-check-dry venv-floor test-floor

venv: $(STAMP)

# torch/torchvision (and setuptools/wheel) go in first so that basicsr's sdist, whose setup.py imports
# torch, and this package build without pip's isolated build environment: ~7 s instead of ~3 min.
$(STAMP): setup.cfg setup.py pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(PIN) torch torchvision setuptools wheel
	$(PIP) install -q --no-build-isolation $(PIN) -e '.[test,mm]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The floor tier: the same suite on the oldest stack the package supports, pinned in requirements/floor.txt, on
# the oldest Python it supports (3.9: python3.9, or pyenv's; without one, $(PYTHON), and the tier says so).
FLOOR_VENV   := .venv-floor
FLOOR_PY     := $(FLOOR_VENV)/bin/python
FLOOR_PIN    := -c requirements/floor.txt
FLOOR_STAMP  := $(FLOOR_VENV)/.installed
FLOOR_PYTHON ?= $(firstword $(foreach p,python3.9 $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.9*/bin/python3.9),\
                  $(shell $(p) -c 'print("$(p)")' 2>/dev/null)) $(PYTHON))

venv-floor: $(FLOOR_STAMP)

$(FLOOR_STAMP): setup.cfg setup.py pyproject.toml requirements/floor.txt
	test -x $(FLOOR_PY) || $(FLOOR_PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PY) -m pip install -q $(FLOOR_PIN) torch torchvision numpy 'setuptools>=64' wheel
	$(FLOOR_PY) -m pip install -q --no-build-isolation $(FLOOR_PIN) -e '.[test,mm]'
	touch $(FLOOR_STAMP)

test-floor: $(FLOOR_STAMP)
	@$(FLOOR_PY) -c 'import sys, torch, torchvision, numpy; print("floor tier: Python %s, torch %s, torchvision %s, numpy %s" % (sys.version.split()[0], torch.__version__, torchvision.__version__, numpy.__version__))'
	$(FLOOR_PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) scripts/demo.py

# --no-build-isolation: setuptools and wheel come from .venv, so no index is needed (tests/test_packaging.py
# builds the same wheel from a copy of the clone and installs it into a scratch venv).
wheel: $(STAMP)
	$(PIP) wheel -q --no-deps --no-build-isolation -w dist .

# Wheels that a CUDA + PyTorch machine without network lacks, for its Python (CPython 3.12, manylinux x86-64):
# scripts/gpu_check.sh installs the ones that do not import there. .whl/ is ignored by git: copy it to the GPU
# machine with the clone (a few MB). basicsr 1.4.2 is an sdist on PyPI: built here into a pure wheel.
GPU_WHEELS   := .whl
GPU_PYTHON   ?= 3.12
GPU_PLATFORM := --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
GPU_PINS     := yacs==0.1.8 resize-right==0.0.2 lmdb==3.0.0

gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PIP) download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	    $(GPU_PLATFORM) -d $(GPU_WHEELS) $(GPU_PINS)
	$(PIP) wheel -q --no-deps --no-build-isolation -w $(GPU_WHEELS) basicsr==1.4.2
	$(PIP) install -q --dry-run --no-index --no-deps --ignore-installed --target /tmp/gpu-wheels-check \
	    --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp $(GPU_PLATFORM) $(GPU_WHEELS)/*.whl
	ls -l $(GPU_WHEELS); du -sh $(GPU_WHEELS)

# scripts/gpu_check.sh end to end on this (CPU) machine: CUDA tests skipped, benchmarks in tiny mode.
gpu-check-dry: $(STAMP)
	scripts/gpu_check.sh gpu_check_dry --dry-run

clean:
	rm -rf $(VENV) $(FLOOR_VENV) build dist *.egg-info .pytest_cache
