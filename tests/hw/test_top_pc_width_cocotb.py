"""Instruction indices (pcs) are ``hw.queues.pc_width(cfg)`` bits inside the machine while
PROG_COUNT, PC and ERR_PC stay 32-bit: a program count past what the address space holds
(up to 2**32 - 1) must end exactly as the golden machine's 32-bit count does, with the
fetch fault at the first row outside the window or the address space. Emitted Verilog in
Verilator, compared with the golden machine."""

import pytest

from hw.config import Config
from hw.queues import pc_width
from sim.backends import RtlBackend
from sw import isa
from sw.isa import ErrorCause
from sw.runtime import Runtime

pytestmark = [pytest.mark.cocotb, pytest.mark.xdist_group("top")]

ADDR_WIDTH = 16
CFG = Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, addr_width=ADDR_WIDTH,
             dram_size=1 << (ADDR_WIDTH - 1))
TOP = 1 << ADDR_WIDTH


def _run(image, dram_base, prog_base, count, window):
    rtl = RtlBackend(CFG, timeout_cycles=200_000)
    golden = Runtime(CFG, "golden").backend
    return (rtl.run(image, dram_base, prog_base, count, window=window),
            golden.run(image, dram_base, prog_base, count, window=window))


def _same_end(rtl, golden):
    """Same cause and pc; the address as the AXI bus carries it (addr_width bits)."""
    cause, pc, addr = golden.error
    assert rtl.error == (cause, pc, addr % TOP)
    return ErrorCause(cause), pc


def test_pc_width_covers_the_address_space():
    assert pc_width(CFG) == ADDR_WIDTH - 3
    assert pc_width(Config()) == 29


@pytest.mark.parametrize("count", [
    3,                                   # runs past the program: ILLEGAL_INSTRUCTION at 3
    4,                                   # the fetch of pc 3 wraps past 2**addr_width
    (1 << pc_width(CFG)) - 1,            # the largest count the pc field holds
    1 << pc_width(CFG),                  # the smallest one it does not
    (1 << 32) - 1,
])
def test_a_count_past_the_top_of_the_address_space(count):
    """Three FENCEs in the last 48 bytes of the address space; the window holds them."""
    words = [isa.encode("FENCE")] * 3
    dram_base = TOP - 64
    image = bytes(16) + isa.to_bytes(words)
    rtl, golden = _run(image, dram_base, dram_base + 16, count, window=(dram_base, 64))
    expected = (ErrorCause.ILLEGAL_INSTRUCTION if count == 3 else ErrorCause.DMA_WINDOW, 3)
    assert _same_end(rtl, golden) == expected


@pytest.mark.parametrize("count", [(1 << (ADDR_WIDTH - 4)) - 1, (1 << 32) - 1])
def test_the_largest_pc_a_program_reaches(count):
    """A program filling the address space from 0 in a window ending one byte short of it:
    its last instruction, at pc 2**(addr_width-4) - 1, cannot be fetched (or lies past the
    count), the largest pc any program can stop at."""
    last = (1 << (ADDR_WIDTH - 4)) - 1
    words = [isa.encode("FENCE")] * last
    image = isa.to_bytes(words) + bytes(isa.INSTR_BYTES)
    rtl, golden = _run(image, 0, 0, count, window=(0, TOP - 1))
    expected = ErrorCause.ILLEGAL_INSTRUCTION if count == last else ErrorCause.DMA_WINDOW
    assert _same_end(rtl, golden) == (expected, last)
