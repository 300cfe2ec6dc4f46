"""The fetcher alone, against a model DMA read engine: rows assembled in place in its
buffer, the fault marker (cause and address in the word's bits), flush, restart, and the
sizes of the DMA commands it issues. Random DMA latencies and consumer stalls; seeds are
printed, ``SEED=...`` replays them."""

import os
import random

import pytest
from amaranth.sim import Simulator

from boards.targets import BOARDS
from hw.config import Config, ConfigError
from hw.fetch import Fetcher
from hw.queues import pc_width
from sw import isa
from sw.isa import ErrorCause

SMALL = dict(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1)
CONFIGS = {
    "icebreaker": BOARDS["icebreaker"].cfg,
    # its one row in registers instead of block RAM
    "icebreaker-registers": BOARDS["icebreaker"].cfg.replace(fetch_storage="registers"),
    # two shifting rows
    "icebreaker-buffer2": BOARDS["icebreaker"].cfg.replace(fetch_buffer=2, fetch_storage="registers"),
    "bus64-chunk3": Config(**SMALL, dma_data_width=64, fetch_chunk=3, addr_width=20,
                           dram_size=1 << 16),
    "default-chunk": Config(**SMALL),
    "bus32-chunk2": Config(**SMALL, dma_data_width=32, fetch_chunk=2, addr_width=16,
                           dram_size=1 << 12),
    # fetch_buffer=1: the next chunk only once the buffer is empty (registers for one row,
    # a memory for three)
    "bus32-buffer1": Config(**SMALL, dma_data_width=32, fetch_chunk=1, fetch_buffer=1,
                            addr_width=16, dram_size=1 << 12),
    "bus128-chunk3-buffer1": Config(**SMALL, fetch_chunk=3, fetch_buffer=1),
}


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    return seed


class _Dma:
    """A read engine model: rows of ``memory`` (instruction words by row index) in beats
    after random delays; the row ``fault_row`` fails with ``fault_cause`` after
    ``fault_beats`` of its beats (a window fault delivers none of them)."""

    def __init__(self, dut, cfg, memory, rng, fault_row=None, fault_cause=ErrorCause.DMA_WINDOW,
                 fault_beats=0):
        self.dut, self.cfg, self.memory, self.rng = dut, cfg, memory, rng
        self.fault_row, self.fault_cause, self.fault_beats = fault_row, fault_cause, fault_beats
        self.commands = []
        self.hold = False     # while set, accepted commands deliver nothing

    async def run(self, ctx):
        dut, cfg, rng = self.dut, self.cfg, self.rng
        beats = max(1, isa.INSTR_BYTES // cfg.bus_bytes)
        mask = (1 << cfg.dma_data_width) - 1
        while True:
            ctx.set(dut.rd_cmd.ready, 1)
            # (a loop, not `until`: this background process may be stopped while waiting)
            valid = False
            while not valid:
                _, _, valid, cmd = await ctx.tick().sample(dut.rd_cmd.valid,
                                                           dut.rd_cmd.payload)
            ctx.set(dut.rd_cmd.ready, 0)
            while self.hold:
                await ctx.tick()
            assert (cmd.row_bytes, cmd.stride) == (isa.INSTR_BYTES, isa.INSTR_BYTES)
            first = cmd.addr // isa.INSTR_BYTES
            self.commands.append((first, cmd.rows))
            fault = None
            for row in range(first, first + cmd.rows):
                delivered = beats
                if row == self.fault_row:
                    fault, delivered = row, self.fault_beats
                for beat in range(delivered):
                    await ctx.tick().repeat(rng.randrange(3) + 1)
                    ctx.set(dut.rd_data.payload, {
                        "data": (self.memory[row] >> (beat * cfg.dma_data_width)) & mask,
                        "row_last": beat == beats - 1, "last": 0})
                    ctx.set(dut.rd_data.valid, 1)
                    await ctx.tick()
                    ctx.set(dut.rd_data.valid, 0)
                if fault is not None:
                    break
            await ctx.tick().repeat(rng.randrange(3) + 1)
            ctx.set(dut.rd_status.payload, {
                "cause": ErrorCause.NONE if fault is None else self.fault_cause,
                "addr": 0 if fault is None else fault * isa.INSTR_BYTES})
            ctx.set(dut.rd_status.valid, 1)
            ready = False
            while not ready:
                _, _, ready = await ctx.tick().sample(dut.rd_status.ready)
            ctx.set(dut.rd_status.valid, 0)


def _consume(dut, rng, out, until, ready_p=0.6):
    async def consumer(ctx):
        while not until():
            ready = rng.random() < ready_p
            ctx.set(dut.words.ready, ready)
            if ready and ctx.get(dut.words.valid):
                entry = ctx.get(dut.words.payload)
                out.append(("fault", ErrorCause(entry.cause), entry.addr) if entry.fault
                           else ("word", entry.word))
            await ctx.tick()
        ctx.set(dut.words.ready, 0)
        # nothing follows the end of the program (or the fault marker)
        for _ in range(60):
            await ctx.tick()
            assert not ctx.get(dut.words.valid)
    return consumer


def _start(dut, base, count):
    async def control(ctx):
        ctx.set(dut.base, base)
        ctx.set(dut.count, count)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
    return control


def _expected(memory, count, fault_row, cause):
    out = [("word", memory[pc]) for pc in range(count if fault_row is None
                                                else min(count, fault_row))]
    if fault_row is not None and fault_row < count:
        out.append(("fault", cause, fault_row * isa.INSTR_BYTES))
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("case", ["whole", "window", "bus_error_mid_row", "empty"])
@pytest.mark.parametrize("ready_p", [0.6, 0.1])   # a slow consumer keeps the buffer full
def test_program_in_order_then_the_fault_marker(name, case, ready_p):
    cfg = CONFIGS[name]
    seed = _seed()
    rng = random.Random(seed)
    beats = max(1, isa.INSTR_BYTES // cfg.bus_bytes)
    count = 0 if case == "empty" else rng.randrange(1, 4 * cfg.fetch_chunk + 6)
    memory = [rng.getrandbits(isa.INSTR_BITS) for _ in range(count + 8)]
    memory[0] = (1 << isa.INSTR_BITS) - 1
    fault_row, cause, fault_beats = None, ErrorCause.DMA_WINDOW, 0
    if case == "window":
        fault_row = rng.randrange(count)
    elif case == "bus_error_mid_row":
        fault_row, cause = rng.randrange(count), ErrorCause.DMA_SLVERR
        fault_beats = rng.randrange(beats)   # part of the row arrives, without row_last
    base_row = 0
    dut = Fetcher(cfg)
    dma = _Dma(dut, cfg, memory, rng, fault_row, cause, fault_beats)
    out = []
    expected = _expected(memory, count, fault_row, cause)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(_start(dut, base_row * isa.INSTR_BYTES, count))
    sim.add_testbench(dma.run, background=True)
    sim.add_testbench(_consume(dut, rng, out, lambda: len(out) >= len(expected), ready_p))
    sim.run()
    assert out == expected
    # chunks of fetch_chunk rows (the last one shorter), in order, none past the fault
    issued = 0
    for first, rows in dma.commands:
        assert first == issued and rows == min(cfg.fetch_chunk, count - issued)
        issued += rows
    assert issued <= count
    if fault_row is None:
        assert issued == count


def test_largest_count_stops_at_the_fault_like_any_larger_count():
    """``count`` is PROG_COUNT saturated to pc_width bits: the all-ones count fetches in
    full chunks up to the fault, as a 32-bit count would."""
    cfg = CONFIGS["bus32-chunk2"]
    seed = _seed()
    rng = random.Random(seed)
    count = (1 << pc_width(cfg)) - 1
    fault_row = 9
    memory = [rng.getrandbits(isa.INSTR_BITS) for _ in range(fault_row + 1)]
    dut = Fetcher(cfg)
    dma = _Dma(dut, cfg, memory, rng, fault_row)
    out = []
    expected = _expected(memory, count, fault_row, ErrorCause.DMA_WINDOW)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(_start(dut, 0, count))
    sim.add_testbench(dma.run, background=True)
    sim.add_testbench(_consume(dut, rng, out, lambda: len(out) >= len(expected)))
    sim.run()
    assert out == expected
    assert dma.commands == [(row, cfg.fetch_chunk) for row in range(0, fault_row + 1,
                                                                    cfg.fetch_chunk)]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_restart_drops_the_buffer_and_flush_stops_issuing(name):
    """A consumer that never reads fills the buffer (``fetch_buffer`` chunks, then no
    command); a new
    start drops those words and fetches the new program from its base; a flush stops
    issuing, lets the command in flight finish (``busy`` falls) and drops its rows."""
    cfg = CONFIGS[name]
    seed = _seed()
    rng = random.Random(seed)
    memory = [rng.getrandbits(isa.INSTR_BITS) for _ in range(64 + 4 * cfg.fetch_chunk)]
    dut = Fetcher(cfg)
    dma = _Dma(dut, cfg, memory, rng)
    second_base, second_count = 40, 3 * cfg.fetch_chunk + 1
    out = []

    async def bench(ctx):
        ctx.set(dut.words.ready, 0)
        await _start(dut, 0, 30)(ctx)
        await ctx.tick().repeat(40 * cfg.fetch_chunk + 60)
        assert len(dma.commands) == cfg.fetch_buffer and ctx.get(dut.words.valid)
        assert not ctx.get(dut.busy)
        await _start(dut, second_base * isa.INSTR_BYTES, second_count)(ctx)
        await _consume(dut, rng, out, lambda: len(out) >= second_count)(ctx)
        # a third program, flushed while its first command is in flight
        dma.hold = True
        commands = len(dma.commands)
        await _start(dut, 0, 30)(ctx)
        await ctx.tick().until(dut.busy)
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        dma.hold = False
        await ctx.tick().until(~dut.busy)
        ctx.set(dut.words.ready, 1)
        for _ in range(40 * cfg.fetch_chunk):
            await ctx.tick()
            assert not ctx.get(dut.words.valid) and not ctx.get(dut.rd_cmd.valid)
        assert len(dma.commands) == commands + 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(dma.run, background=True)
    sim.add_testbench(bench)
    sim.run()
    assert out == [("word", memory[second_base + pc]) for pc in range(second_count)]


@pytest.mark.parametrize("value", [0, 3])
def test_fetch_buffer_is_one_or_two_chunks(value):
    with pytest.raises(ConfigError, match="fetch_buffer"):
        Config(fetch_buffer=value)


def test_fetch_storage_block_ram_holds_one_row():
    with pytest.raises(ConfigError, match="fetch_storage"):
        Config(fetch_storage="flops")
    with pytest.raises(ConfigError, match="fetch_storage.*fetch_buffer=1 and fetch_chunk=1"):
        Config(fetch_storage="block_ram", fetch_buffer=1, fetch_chunk=2)
    assert Config().fetch_storage == "registers"
    assert Config(fetch_storage="block_ram", fetch_buffer=1, fetch_chunk=1)
