PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install generate check test lint demo rig bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

generate: $(STAMP)
	$(BIN)/zidl generate idl/ -o generated/

check: $(STAMP)
	$(BIN)/zidl check idl/

lint: $(STAMP)
	$(BIN)/ruff check codegen runtime generated tests examples bench
	$(BIN)/ruff format --check generated tests/fixtures/generated bench/generated
	$(BIN)/mypy codegen runtime generated tests/fixtures/generated bench/generated

test: lint
	$(BIN)/pytest -q

demo: generate
	$(BIN)/python examples/demo.py

rig: generate
	$(BIN)/python examples/demo.py --rig $(RIG)

bench: $(STAMP)
	$(BIN)/python -c 'import Pyro5, msgpack, zerorpc, grpc, grpc_tools' 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-output .mypy_cache .ruff_cache .pytest_cache
