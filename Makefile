# The README's commands. Each makes its own virtual environment (.venv, Python 3.11) when missing.
PYTHON_BASE ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
CP_VERSION := 5.0.0.dev784
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_output

.PHONY: install demo test test-fast clean

install: $(STAMP)

# CellProfiler 5 nightly, headless: its wxPython and MySQL requirements are skipped on purpose.
$(STAMP): setup.cfg constraints.txt
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools<81" wheel
	$(PIP) install -c constraints.txt cellprofiler-core-nightly==$(CP_VERSION) cellprofiler-library-nightly==$(CP_VERSION)
	$(PIP) install --no-deps cellprofiler-nightly==$(CP_VERSION)
	$(PIP) install -c constraints.txt "docutils==0.15.2" Jinja2 "sentry-sdk~=2.8.0" rapidfuzz centrosome
	$(PIP) install -c constraints.txt -e ".[train,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cellcount_cellprofiler.demo --output $(DEMO_OUT) $(if $(IMAGES),--images $(IMAGES))

test: $(STAMP)
	$(PY) -m pytest -q -rs

test-fast: $(STAMP)
	$(PY) -m pytest -q -rs -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_OUT) *.egg-info
