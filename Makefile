# The two commands a newcomer needs: `make lab` and `make test`.
.PHONY: lab test lint typecheck bootstrap bench

VENV := .venv
BIN := $(VENV)/bin

lab:
	@./scripts/bootstrap.sh
	$(BIN)/t3probe lab

test:
	@./scripts/bootstrap.sh --system
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/pytest

bench:
	@./scripts/bootstrap.sh --system
	$(BIN)/python -m benchmarks.run

bootstrap:
	@./scripts/bootstrap.sh --system
