"""The store unit with the serial output lane and its qparam rows in a memory
(``Config.output_lane="serial"``): CONFIG / STORE sequences bit-exact with
:class:`sim.machine.Machine`, random stalls on every stream, and the qparam rows reading as 0
after a (soft) reset until written again, as the flip-flop rows do."""

import random
from collections import deque

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator

from hw.config import Config
from hw.store_unit import StoreUnit
from sim.machine import Machine
from sw import isa
from sw.isa import ErrorCause

from .test_units import STALL, _fields, _put, _random_config, _random_store, _seed, _tokens

CONFIGS = {
    "4x4-32bit": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, dma_data_width=32,
                        output_lanes=1, output_lane="serial"),
    "4x8-32bit": Config(rows=4, cols=8, scratchpad_kib=4, accumulator_kib=2, dma_data_width=32,
                        output_lanes=1, output_lane="serial"),
    "4x4-128bit": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1,
                         dma_data_width=128, output_lanes=1, output_lane="serial"),
    "4x2-64bit-acc20": Config(rows=4, cols=2, scratchpad_kib=4, accumulator_kib=1,
                              dma_data_width=64, acc_width=20, output_lanes=1,
                              output_lane="serial"),
}
QPARAM_ROWS = isa.QPARAM_SLOTS * len(isa.QPARAM_KINDS)


def _random_qparam(np_rng, C):
    qparam = np.zeros((QPARAM_ROWS, C), dtype=np.int64)
    for slot in range(isa.QPARAM_SLOTS):
        qparam[3 * slot] = np_rng.integers(-(1 << 31), 1 << 31, C)
        qparam[3 * slot + 1] = np_rng.choice(
            [np_rng.integers(1 << 29, 1 << 31), -(1 << 31), (1 << 31) - 1], C)
        qparam[3 * slot + 2] = np_rng.choice([0, 31, np_rng.integers(0, 32)], C)
    return qparam


def run_store_unit(cfg, seed, *, reset_rows=None):
    """CONFIG / STORE words through the store unit; with ``reset_rows``, other qparam rows
    are written first, then the unit is reset and only rows ``reset_rows`` written again."""
    C = cfg.cols
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    amax = (1 << (cfg.acc_width - 1)) - 1
    acc = np_rng.integers(-amax - 1, amax + 1, (cfg.acc_rows, C))
    acc[0, :2] = [-amax - 1, amax]
    acc[1] = np_rng.integers(-3000, 3000, C)
    stale = _random_qparam(np_rng, C)
    qparam = _random_qparam(np_rng, C)
    rows_loaded = range(QPARAM_ROWS) if reset_rows is None else reset_rows
    qparam[[r for r in range(QPARAM_ROWS) if r not in rows_loaded]] = 0
    words = [_random_config(rng, cfg) if i % 3 == 0 else _random_store(rng, cfg)
             for i in range(12)]
    fault_index = max(i for i, w in enumerate(words) if w & 0xF == isa.Opcode.STORE)

    unit = StoreUnit(cfg)
    clear = Signal()
    dut = ResetInserter({"sync": clear})(unit)
    log, rows_written = [], {}

    async def dma(ctx):
        for index, word in enumerate(words):
            if word & 0xF != isa.Opcode.STORE:
                continue
            f = _fields(word)
            row_bytes = f["row_elems"] * (4 if f["out_int32"] else 1)
            nbeats = -(-row_bytes // cfg.bus_bytes)
            ctx.set(unit.wr_cmd.ready, 1)
            cmd, = await ctx.tick().sample(unit.wr_cmd.payload).until(unit.wr_cmd.valid)
            ctx.set(unit.wr_cmd.ready, 0)
            assert (cmd.addr, cmd.rows, cmd.row_bytes) == (f["dram_addr"], f["rows"], row_bytes)
            rows = rows_written[index] = []
            for r in range(f["rows"]):
                row = b""
                for b in range(nbeats):
                    while rng.random() < STALL:
                        ctx.set(unit.wr_data.ready, 0)
                        await ctx.tick()
                    ctx.set(unit.wr_data.ready, 1)
                    beat, = await ctx.tick().sample(unit.wr_data.payload).until(
                        unit.wr_data.valid)
                    ctx.set(unit.wr_data.ready, 0)
                    assert (beat.row_last, beat.last) == (
                        b == nbeats - 1, b == nbeats - 1 and r == f["rows"] - 1)
                    row += int(beat.data).to_bytes(cfg.bus_bytes, "little")
                rows.append(row[:row_bytes])
            faulty = index == fault_index
            await _put(ctx, rng, unit.wr_status,
                       {"cause": ErrorCause.DMA_DECERR if faulty else ErrorCause.NONE,
                        "addr": f["dram_addr"] if faulty else 0})
        await ctx.tick().repeat(4)

    async def accumulator(ctx):
        pending, req_ready, resp_valid = deque(), False, False
        async for _, _, req_valid, addr, resp_ready in ctx.tick().sample(
                unit.acc_req.valid, unit.acc_req.payload.addr, unit.acc_resp.ready):
            if resp_valid and resp_ready:
                pending.popleft()
            if req_ready and req_valid:
                pending.append(addr)
            req_ready = len(pending) < 4 and rng.random() >= STALL
            # A response, once valid, stays until taken (the serial lane reads its columns
            # from the held payload).
            resp_valid = bool(pending) and (resp_valid or rng.random() >= STALL)
            ctx.set(unit.acc_req.ready, req_ready)
            ctx.set(unit.acc_resp.valid, resp_valid)
            if pending:
                ctx.set(unit.acc_resp.payload, {"data": [int(v) for v in acc[pending[0]]]})

    async def write_rows(ctx, table, rows):
        for row in rows:
            await _put(ctx, rng, unit.qparam_write,
                       {"addr": row, "data": [int(v) & 0xFFFFFFFF for v in table[row]]})

    async def commands(ctx):
        if reset_rows is not None:
            await write_rows(ctx, stale, range(QPARAM_ROWS))
            ctx.set(clear, 1)
            await ctx.tick()
            ctx.set(clear, 0)
        await write_rows(ctx, qparam, rows_loaded)
        for pc, word in enumerate(words):
            await _put(ctx, rng, unit.cmd, {"word": word, "pc": pc})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(dma)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(accumulator, background=True)
    sim.add_testbench(_tokens(rng, unit.ctrl, log), background=True)
    sim.run()

    machine = Machine(cfg, b"")
    machine.acc[:] = acc
    machine.qparam[:] = qparam
    expected_log = []
    for pc, word in enumerate(words):
        f = _fields(word)
        if pc == fault_index:
            expected_log.append(("error", pc, ErrorCause.DMA_DECERR, f["dram_addr"]))
        elif f["push_prev"]:
            expected_log.append(("push", pc, 1, 0))
        if word & 0xF == isa.Opcode.CONFIG:
            machine._do_config(pc, f)
            continue
        values = machine._store_values(acc[f["acc_addr"]:f["acc_addr"] + f["rows"],
                                           :f["row_elems"]], f["qslot"], f["out_int32"])
        expected = [row.astype("<i4" if f["out_int32"] else np.int8).tobytes()
                    for row in values]
        assert rows_written[pc] == expected, (pc, isa.decode(word)[1])
    assert log == expected_log


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_serial_store_unit_matches_the_golden_machine(name):
    run_store_unit(CONFIGS[name], _seed())


@pytest.mark.parametrize("rows", [(), (0, 1, 2), (3, 4, 5), (1, 5)])
def test_qparam_rows_read_as_zero_after_reset_until_written(rows):
    run_store_unit(CONFIGS["4x4-32bit"], _seed(), reset_rows=rows)
