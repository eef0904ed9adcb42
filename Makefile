# fpgpt: two commands do everything on a fresh machine (Python 3.11+, g++, make, perl).
#   make demo   set up .venv, then generate text on the simulated accelerator and time GPT-2 on a U280
#   make test   set up .venv, then run the whole test suite (cocotb + Verilator benches included)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fpgpt-installed

.PHONY: demo test setup reports bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fpgpt generate --prompt "The assert statement" --max-new-tokens 64
	$(BIN)/fpgpt simulate --model gpt2-medium --hw u280 --prompt-len 128 --gen-len 128

# The suite runs on every core up to four (pytest-xdist; a file's tests stay on one worker, the
# whole-core Verilator files share one: tests/conftest.py; workers that share any other build
# folder take turns: fpgpt.hw.cosim.build_lock).
TEST_JOBS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --maxprocesses 4 --dist loadgroup tests

reports: $(STAMP)
	$(BIN)/python -m fpgpt.report

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf build .pytest_cache
