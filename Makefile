# One command each, from a fresh clone (needs python3 >= 3.11):
#   make demo   installs into .venv and runs the demo on the embedded SQLite store
#   make test   installs into .venv (with test extras) and runs the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# An editable install leaves the sources uncompiled, and with PYTHONDONTWRITEBYTECODE
# set every run would compile them again (~45 ms of a one-line append): compile once.
install: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python -m compileall -q ledger projections cli service > /dev/null

install-test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m compileall -q ledger projections cli service > /dev/null

demo: install
	$(BIN)/leadledger --db sqlite:///leadledger.db demo

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-test
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) leadledger.db leadledger.db-wal leadledger.db-shm
