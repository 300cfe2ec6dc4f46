"""The iCEBreaker Config end to end (emitted Verilog in Verilator against the golden machine):
its unit queues and units hold only the instruction bits a legal instruction can have set,
its fetcher writes rows into its buffer in place, its output lane is serial and reads the
accumulator through its one shared port, so check GEMMs with backpressure, illegal
range fields whose only offending bits are the ones the queues drop, and a fetch fault; its
basic performance counters count cycles and DMA bytes only."""

import numpy as np
import pytest

from boards.targets import BOARDS
from sw import isa
from tests.hw.test_top_cocotb import _int8, _quantised_case, _run_words, _runtimes, _seed

pytestmark = [pytest.mark.cocotb, pytest.mark.xdist_group("top")]

# The board's own Config: its RAM fills the whole 17-bit address space, a window whose size
# (2**addr_width) does not fit addr_width bits.
CFG = BOARDS["icebreaker"].cfg


def test_gemms_match_golden_with_backpressure():
    """int8 with per-column requantisation and bias through the serial output lane, and
    int32 + bias (the lane's passthrough)."""
    seed = _seed()
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (9, 13, 7), (9, 4, 3)] + [tuple(int(x) for x in rng.integers(1, 12, 3))]
    for index, (M, K, N) in enumerate(shapes):
        A, B = _int8(rng, (M, K)), _int8(rng, (K, N))
        rtl, gold = _runtimes(CFG, backpressure=index % 2 == 0, seed=seed + index)
        kw, expected = _quantised_case(rng, A.astype(np.int64) @ B, int32=index == 2)
        C, report = rtl.gemm(A, B, dataflow="ws", **kw)
        C_gold, _ = gold.gemm(A, B, dataflow="ws", **kw)
        assert np.array_equal(C, C_gold), (M, K, N)
        assert np.array_equal(C, expected), (M, K, N)
        assert report["macs"] == M * K * N


@pytest.mark.parametrize("bad", [
    # the high bits the load queue drops: must be caught before, by the decoder
    isa.encode("LOAD", local_addr=1 << 19, rows=1, row_elems=4, dram_stride=4),
    isa.encode("LOAD", rows=1 << 15, row_elems=4, dram_stride=4),
    isa.encode("STORE", acc_addr=CFG.acc_rows, rows=1, row_elems=1, dram_stride=4),
    isa.encode("MATMUL", a_addr=0, count=1 << 15, acc_addr=0),
    isa.encode("CONFIG", clamp_lo=-129, clamp_hi=0),
])
def test_illegal_high_bits_stop_at_their_index(bad):
    words = [isa.encode("LOAD", rows=1, row_elems=4, dram_addr=0x100, dram_stride=4,
                        push_next=1),
             isa.encode("PRELOAD", sp_addr=0, k_rows=CFG.rows, pop_prev=1),
             bad,
             isa.encode("HALT")]
    results = _run_words(CFG, words, data=bytes(range(256)), backpressure=True, seed=_seed())
    for result in results.values():
        cause, pc, _ = result.error
        assert (isa.ErrorCause(cause), pc) == (isa.ErrorCause.ILLEGAL_INSTRUCTION, 2)
    assert results["rtl"].dram == results["golden"].dram


def test_fetch_fault_reports_the_first_instruction_outside_the_window():
    words = [isa.encode("LOAD", rows=1, row_elems=4, dram_addr=0, dram_stride=4)] * 3
    words += [isa.encode("HALT")]
    # the window ends after instruction 1: instruction 2 cannot be fetched
    results = _run_words(CFG, words, window=(0, 2 * isa.INSTR_BYTES))
    for result in results.values():
        cause, pc, addr = result.error
        assert (isa.ErrorCause(cause), pc, addr) == (isa.ErrorCause.DMA_WINDOW, 2,
                                                     2 * isa.INSTR_BYTES)


def test_basic_perf_counters_count_cycles_and_dma_bytes_only():
    assert CFG.perf_counters == "basic"
    words = [isa.encode("LOAD", rows=2, row_elems=4, dram_addr=0x100, dram_stride=4),
             isa.encode("HALT")]
    results = _run_words(CFG, words, data=bytes(range(256)))
    counters = results["rtl"].counters
    assert results["rtl"].error is None and results["rtl"].cycles > 0
    assert counters["dma_bytes_read"] == 2 * isa.INSTR_BYTES + 2 * 4
    for name in ("busy_load", "busy_exec", "busy_store", "stall_exec", "macs_issued"):
        assert counters[name] == 0, name
