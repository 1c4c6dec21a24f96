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
	rm -rf $(VENV) $(VENV_CP4) $(DEMO_OUT) *.egg-info

# --- CellProfiler 4.2.8 (Python 3.9): `make test-cp4`, not part of `make test`. Recipe: docs/CELLPROFILER4.md ---
PYTHON39 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3.9) python3.9)
CP4_JAVA_HOME ?= /usr/lib/jvm/java-17-openjdk-amd64
# PyPI has no CPU-only Linux build of PyTorch: 2.8.0 (the newest for Python 3.9) brings its CUDA 12 libraries.
CP4_TORCH ?= torch==2.8.0
VENV_CP4 := .venv-cp4
PY_CP4 := $(VENV_CP4)/bin/python
PIP_CP4 := $(PY_CP4) -m pip --disable-pip-version-check -q
STAMP_CP4 := $(VENV_CP4)/.installed
CP4_DEPS := numpy scipy scikit-image h5py pyzmq matplotlib centrosome prokaryote docutils sentry-sdk inflect \
	scikit-learn tifffile boto3 mahotas Pillow imageio joblib Jinja2 requests six psutil future

.PHONY: test-cp4

$(STAMP_CP4): setup.cfg constraints-cp4.txt
	test -f $(CP4_JAVA_HOME)/include/jni.h || { apt-get update && apt-get install -y openjdk-17-jdk-headless; }
	test -x $(PY_CP4) || $(PYTHON39) -m venv $(VENV_CP4)
	$(PIP_CP4) install -c constraints-cp4.txt --upgrade pip setuptools wheel cython
	$(PIP_CP4) install -c constraints-cp4.txt $(CP4_DEPS)
	JAVA_HOME=$(CP4_JAVA_HOME) $(PIP_CP4) install --no-build-isolation -c constraints-cp4.txt python-javabridge
	$(PIP_CP4) install --no-deps -c constraints-cp4.txt python-bioformats cellprofiler-core cellprofiler
	$(PIP_CP4) install -c constraints-cp4.txt $(CP4_TORCH) safetensors imageio tqdm opencv-python-headless pyyaml \
		dask distributed dask-jobqueue pytest hypothesis
	$(PIP_CP4) install --no-deps -e .
	touch $(STAMP_CP4)

# tests/cp4 (plugins, pipelines and headless runs in CellProfiler 4.2.8) and the library's unit tests on 4.2.8's
# pins; the main suite's `cellprofiler` tests are written for CellProfiler 5, and training runs in the main venv.
test-cp4: $(STAMP_CP4)
	JAVA_HOME=$(CP4_JAVA_HOME) $(PY_CP4) -m pytest -q -rs -p no:cacheprovider -W ignore::DeprecationWarning \
		-m "not cellprofiler" --ignore-glob="tests/test_training_*.py" tests

# --- `make test-cluster`, not part of `make test`: a single-node SLURM on this machine (Debian's slurm-wlm and
# munge, 127.0.0.1 only; needs root), `cellcount batch --cluster slurm` through dask-jobqueue, then SLURM stopped.
.PHONY: test-cluster

test-cluster: $(STAMP)
	tests/cluster/start_slurm.sh
	CELLCOUNT_TEST_CLUSTER=slurm $(PY) -m pytest -q -rs -s tests/test_batch_slurm.py; \
		status=$$?; tests/cluster/stop_slurm.sh; exit $$status
