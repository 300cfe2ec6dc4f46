# The three commands users live by: `make verilog`, `make test`, `make bitstream BOARD=...`.
# The virtual environment is created on first use; every tool in it comes from PyPI.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Config knobs for `make verilog` (empty = the default configuration).
OUT ?= build/default
KNOBS := $(if $(ROWS),--rows $(ROWS)) $(if $(COLS),--cols $(COLS)) \
         $(if $(DATAFLOW),--dataflow $(DATAFLOW)) $(if $(INPUT_WIDTH),--input-width $(INPUT_WIDTH)) \
         $(if $(WEIGHT_WIDTH),--weight-width $(WEIGHT_WIDTH)) $(if $(ACC_WIDTH),--acc-width $(ACC_WIDTH)) \
         $(if $(SCRATCHPAD_KIB),--scratchpad-kib $(SCRATCHPAD_KIB)) \
         $(if $(ACCUMULATOR_KIB),--accumulator-kib $(ACCUMULATOR_KIB)) \
         $(if $(DMA_DATA_WIDTH),--dma-data-width $(DMA_DATA_WIDTH))

# pytest workers: both cores by default.
JOBS ?= 2
PYTEST_ARGS ?=

.PHONY: all verilog test lint demo bench formal fuzz bitstream program board-check clean distclean venv help

all: verilog

help:
	@echo "make verilog [ROWS=.. COLS=.. DATAFLOW=ws|os|both ...]  emit RTL into $(OUT)/"
	@echo "make test                                              run everything CI runs"
	@echo "make lint                                              verilator --lint-only of the RTL"
	@echo "make demo                                              int8 MLP on the digits set, golden vs RTL"
	@echo "make bench [BENCH_ARGS=--quick]                        utilization / generator benchmarks -> build/bench/"
	@echo "make formal                                            SymbiYosys proofs of the bus interfaces"
	@echo "make fuzz [N=200 FUZZ_SEED=1]                           random programs, RTL vs golden"
	@echo "make bitstream BOARD=icebreaker|ulx3s|orangecrab       bitstream + report -> build/BOARD/"
	@echo "make program BOARD=...                                 load build/BOARD onto the board"
	@echo "make clean | distclean                                 remove build/ (and .venv/)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

verilog: $(STAMP)
	$(PY) -m hw verilog --out $(OUT) $(KNOBS)

lint: verilog
	$(PY) -m hw lint $(OUT)/tensor_core.v

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist loadgroup $(PYTEST_ARGS)

# Optional extras are installed on first use of the target that needs them.
$(VENV)/.demo: $(STAMP)
	$(PY) -m pip install --quiet -e '.[demo]'
	@touch $@

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	@touch $@

demo: $(VENV)/.demo verilog
	$(PY) -m sw.demo --backend verilator --config $(OUT)/config.json $(DEMO_ARGS)

BENCH_ARGS ?=
bench: $(VENV)/.bench
	$(PY) -m bench $(BENCH_ARGS)

formal: $(STAMP)
	$(PY) -m formal $(FORMAL_ARGS)

N ?= 200
FUZZ_SEED ?= 1
fuzz: $(STAMP)
	$(PY) -m sim.fuzz --programs $(N) --seed $(FUZZ_SEED)

# Board builds: yosys + nextpnr from PyPI (YoWASP); fails when timing is not met.
BOARD ?=
BOARDS := icebreaker ulx3s orangecrab
board-check:
	@test -n "$(filter $(BOARDS),$(BOARD))" || \
	  { echo "set BOARD to one of: $(BOARDS) (e.g. make bitstream BOARD=icebreaker)"; exit 2; }

bitstream: board-check $(STAMP)
	$(PY) -m boards build $(BOARD)

program: board-check $(STAMP)
	$(PY) -m boards program $(BOARD)

clean:
	rm -rf build sim_build

distclean: clean
	rm -rf $(VENV)
