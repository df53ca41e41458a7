# Two commands on a fresh Linux machine with Python 3.11:
#   make demo   set up .venv and run the main job on the embedded synthetic data
#   make test   set up .venv and run the test suite
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SHARED ?= ../shared/data
export TF_CPP_MIN_LOG_LEVEL ?= 3
export PYTHONUNBUFFERED = 1

.PHONY: demo test real lint setup clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) demo.py

real: setup
	$(PY) real.py --shared $(SHARED)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check .

clean:
	rm -rf data checkpoints tf_files logs
