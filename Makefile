# Two commands on a fresh Linux machine with Python 3.11:
#   make demo   set up .venv and run the main job on the embedded synthetic data
#   make test   set up .venv and run the test suite
#   make serve  set up .venv and serve the live page on the shipped model (http://127.0.0.1:8000/)
#   make pi-bundle  dist/kws-pi-<version>.tar.gz: the shipped model and its runtime for a Pi
#   make arm-check  run that bundle on emulated ARM64 (qemu) and check it labels as on x86
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared/data
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONUNBUFFERED = 1

.PHONY: demo test real serve lint setup setup-dev lock clean pi-bundle arm-check

# requirements.txt and requirements-dev.txt are locks generated from the .in files (make lock).
# No pip cache: a copy of every downloaded wheel (hundreds of MB) would sit beside the venv.
PIP_INSTALL := $(PY) -m pip install --quiet --no-cache-dir
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: setup
	$(PY) demo.py

real: setup
	$(PY) real.py --shared $(SHARED)

serve: setup
	$(PY) serve.py $(SERVE_ARGS)

test: setup-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# --check_runtimes loads the model(s) with every runtime the bundle pins (x86 venvs, cached)
BUNDLE_ARGS ?= --check_runtimes
pi-bundle: setup
	$(PY) make_pi_bundle.py $(BUNDLE_ARGS)

# needs apt-get, dpkg and the network on the first run (cached in ~/.cache/kws-arm, kws-pi)
arm-check: setup
	$(PY) arm_check.py $(ARM_ARGS)

lint: setup-dev
	$(PY) -m ruff check .

lock: setup-dev
	$(PY) -m pip install --quiet pip-tools==7.6.2
	$(PY) -m piptools compile -q --no-header --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.txt requirements.in
	$(PY) -m piptools compile -q --no-header --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements-dev.txt requirements-dev.in

clean:
	rm -rf data checkpoints tf_files logs dist
