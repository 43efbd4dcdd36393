# Set-up and everyday commands. Two commands do all the set-up on a fresh machine:
#   make demo   -- create .venv, install anomon, run the demo on the embedded broker
#   make test   -- create .venv, install anomon, run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint clean-venv

$(STAMP): pyproject.toml setup.py streams/_speedups.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/anomon demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

bench: $(STAMP)
	mkdir -p bench-results
	$(VENV)/bin/anomon bench vrae --json bench-results/vrae.json
	$(VENV)/bin/anomon bench streaming --json bench-results/streaming.json

clean-venv:
	rm -rf $(VENV)
