# Two entry points, both self-contained on a fresh machine:
#   make test   create .venv, install the pinned stack + the package (editable, test extra), run pytest
#   make demo   the same set-up, then the main job on the embedded default data
#   make wheel  a wheel of this package in dist/, built offline from the clone (what `pip install .` installs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIN    := -c requirements/constraints.txt
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv test demo wheel clean

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

demo: $(STAMP)
	$(PY) scripts/demo.py

# --no-build-isolation: setuptools and wheel come from .venv, so no index is needed (tests/test_packaging.py
# builds the same wheel from a copy of the clone and installs it into a scratch venv).
wheel: $(STAMP)
	$(PIP) wheel -q --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
