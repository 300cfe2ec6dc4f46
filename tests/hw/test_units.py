"""Load and store units alone: row packing against the golden machine, tokens, DMA faults.

The DMA, the local memories and the controller's token grants are Python models with
random stalls on every stream; the expected rows come from :class:`sim.machine.Machine`
(its LOAD transfer and its STORE output pipeline), so packing, zero-filling past
``row_elems``, int8 / int32 output and the quantisation parameters are checked bit-exact.
"""

import os
import random
from collections import deque

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator

from hw.accumulator import acc_read_unbuffered
from hw.config import Config, ConfigError
from hw.load_unit import LoadUnit
from hw.store_unit import StoreUnit
from sim.machine import Machine
from sw import isa
from sw.isa import ErrorCause, LoadDst

CONFIGS = {
    "4x4-32bit": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, dma_data_width=32),
    "8x4-64bit": Config(rows=8, cols=4, scratchpad_kib=8, accumulator_kib=1, dma_data_width=64),
    "4x8-lanes2": Config(rows=4, cols=8, scratchpad_kib=4, accumulator_kib=2, output_lanes=2,
                         acc_width=24),
    # The units run their queue's head and take it when it completes (no copy).
    "4x4-queue": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, dma_data_width=32,
                        addr_width=17, dram_size=1 << 16, unit_commands="queue"),
}
# Accumulator and qparam rows written a column per beat (no assembly registers).
COLUMNS_CFG = Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, dma_data_width=32,
                     output_lanes=1, output_lane="serial", load_writes="columns",
                     unit_commands="queue", addr_width=17, dram_size=1 << 16)
LOAD_CONFIGS = {**CONFIGS, "4x4-columns": COLUMNS_CFG}
STALL = 0.3


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    return seed


def _fields(word):
    return isa.decode(word)[1]


def _dma_rows(dram, f, elem_bytes, bus_bytes, fault_row=None):
    """The DMA's rd_data beats for a LOAD: each row from lane 0, zero past its end."""
    nbytes = f["row_elems"] * elem_bytes
    nbeats = -(-nbytes // bus_bytes)
    beats = []
    for r in range(f["rows"] if fault_row is None else fault_row):
        addr = f["dram_addr"] + r * f["dram_stride"]
        row = bytes(dram[addr:addr + nbytes]) + bytes(nbeats * bus_bytes - nbytes)
        for b in range(nbeats):
            beats.append({"data": int.from_bytes(row[b * bus_bytes:(b + 1) * bus_bytes],
                                                 "little"),
                          "row_last": b == nbeats - 1,
                          "last": b == nbeats - 1 and r == f["rows"] - 1})
    return beats


async def _put(ctx, rng, stream, payload):
    while rng.random() < STALL:
        ctx.set(stream.valid, 0)
        await ctx.tick()
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


def _sink(rng, stream, out):
    async def sink(ctx):
        ready = False
        async for _, _, valid, payload in ctx.tick().sample(stream.valid, stream.payload):
            if ready and valid:
                out.append(payload)
            ready = rng.random() >= STALL
            ctx.set(stream.ready, ready)
    return sink


def _tokens(rng, ctrl, log):
    """Grants at random; records completions and faults as (kind, pc, ...)."""
    async def tokens(ctx):
        async for _, _, push_prev, push_next, push_pc, error_valid, error in ctx.tick().sample(
                ctrl.push_prev, ctrl.push_next, ctrl.push_pc, ctrl.error_valid, ctrl.error):
            if push_prev or push_next:
                log.append(("push", push_pc, push_prev, push_next))
            if error_valid:
                log.append(("error", error.pc, ErrorCause(error.cause), error.addr))
            ctx.set(ctrl.grant, rng.random() < 0.6)
    return tokens


def _random_load(rng, cfg, dram_size, dst):
    E, C = cfg.sp_row_elems, cfg.cols
    width, elem_bytes = (E, 1) if dst == LoadDst.SP else (C, 4)
    depth = {LoadDst.SP: cfg.sp_rows, LoadDst.ACC: cfg.acc_rows, LoadDst.QPARAM: 6}[dst]
    rows = rng.randint(1, min(6, depth))
    row_elems = rng.choice([1, width, rng.randint(1, width)])
    stride = rng.choice([row_elems * elem_bytes, rng.randint(0, 3 * width * elem_bytes)])
    span = (rows - 1) * stride + row_elems * elem_bytes
    return isa.encode("LOAD", dst=dst, local_addr=rng.randint(0, depth - rows), rows=rows,
                      row_elems=row_elems, dram_addr=rng.randint(0, dram_size - span),
                      dram_stride=stride, push_next=rng.randint(0, 1),
                      pop_next=rng.randint(0, 1))


@pytest.mark.parametrize("name", sorted(LOAD_CONFIGS))
def test_load_unit_packs_rows_like_the_golden_machine(name):
    cfg = LOAD_CONFIGS[name]
    seed = _seed()
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    dram = np_rng.integers(0, 256, 1024, dtype=np.uint8).tobytes()
    dram = bytes([0x80, 0x7F, 0xFF, 0x00]) + dram[4:]       # -128, 127, -1, 0 at the front
    words = [_random_load(rng, cfg, len(dram), dst) for _ in range(8)
             for dst in (LoadDst.SP, LoadDst.ACC, LoadDst.QPARAM)]
    rng.shuffle(words)
    fault_index = len(words) - 3
    fault_row = rng.randint(0, _fields(words[fault_index])["rows"] - 1)

    dut = LoadUnit(cfg)
    writes = {"sp": [], "acc": [], "qparam": []}
    log = []

    async def dma(ctx):
        for index, word in enumerate(words):
            f = _fields(word)
            cmd = await _get_cmd(ctx)
            elem_bytes = 1 if f["dst"] == LoadDst.SP else 4
            assert (cmd.addr, cmd.rows, cmd.row_bytes, cmd.stride) == (
                f["dram_addr"], f["rows"], f["row_elems"] * elem_bytes, f["dram_stride"])
            faulty = index == fault_index
            for beat in _dma_rows(dram, f, elem_bytes, cfg.bus_bytes,
                                  fault_row if faulty else None):
                await _put(ctx, rng, dut.rd_data, beat)
            bad_addr = f["dram_addr"] + fault_row * f["dram_stride"]
            await _put(ctx, rng, dut.rd_status,
                       {"cause": ErrorCause.DMA_WINDOW if faulty else ErrorCause.NONE,
                        "addr": bad_addr if faulty else 0})
        await ctx.tick().repeat(4)

    async def _get_cmd(ctx):
        ctx.set(dut.rd_cmd.ready, 1)
        cmd, = await ctx.tick().sample(dut.rd_cmd.payload).until(dut.rd_cmd.valid)
        ctx.set(dut.rd_cmd.ready, 0)
        return cmd

    async def commands(ctx):
        for pc, word in enumerate(words):
            await _put(ctx, rng, dut.cmd, {"word": word, "pc": pc})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(dma)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(_tokens(rng, dut.ctrl, log), background=True)
    for key, stream in (("sp", dut.sp_write), ("acc", dut.acc_write),
                        ("qparam", dut.qparam_write)):
        sim.add_testbench(_sink(rng, stream, writes[key]), background=True)
    sim.run()

    # Golden: the machine's LOADs on memories that start out random (zero-fill is visible).
    machine = Machine(cfg, dram, window=(0, len(dram)))
    machine.sp[:] = np_rng.integers(-128, 128, machine.sp.shape)
    machine.acc[:] = np_rng.integers(-1000, 1000, machine.acc.shape)
    machine.qparam[:] = np_rng.integers(-1000, 1000, machine.qparam.shape)
    hw_sp, hw_acc, hw_qp = machine.sp.copy(), machine.acc.copy(), machine.qparam.copy()
    expected_log = []
    for pc, word in enumerate(words):
        f = _fields(word)
        if pc == fault_index:
            bad = f["dram_addr"] + fault_row * f["dram_stride"]
            expected_log.append(("error", pc, ErrorCause.DMA_WINDOW, bad))
            f = dict(f, rows=fault_row)
        elif f["push_prev"] or f["push_next"]:
            expected_log.append(("push", pc, f["push_prev"], f["push_next"]))
        if f["rows"]:
            machine._do_load(pc, f)
    assert log == expected_log

    E, C = cfg.sp_row_elems, cfg.cols
    for w in writes["sp"]:
        hw_sp[w.addr] = np.array([w.data[j] for j in range(E)], np.uint8).view(np.int8)
    def signed32(value):
        return int(value) - (1 << 32) * (int(value) >> 31)

    columns = cfg.load_writes == "columns"
    for w in writes["acc"]:
        assert w.accumulate == 0
        for j in range(C):
            if not columns or w.mask >> j & 1:
                hw_acc[w.addr, j] = w.data[j]
    for w in writes["qparam"]:
        if columns:
            hw_qp[w.addr, w.col] = signed32(w.data)
        else:
            hw_qp[w.addr] = [signed32(w.data[j]) for j in range(C)]
    assert np.array_equal(hw_sp, machine.sp)
    assert np.array_equal(hw_acc, machine.acc)
    assert np.array_equal(hw_qp, machine.qparam)
    # One write a row, or with "columns" one a column of an accumulator / qparam row.
    if columns:
        assert all(bin(w.mask).count("1") == 1 for w in writes["acc"])
    per_row = [C if columns and _fields(w)["dst"] != LoadDst.SP else 1 for w in words]
    total = sum(_fields(w)["rows"] * per_row[i] for i, w in enumerate(words) if i != fault_index)
    assert sum(map(len, writes.values())) == total + fault_row * per_row[fault_index]


def _random_config(rng, cfg):
    lo, hi = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1
    clamp = sorted(rng.randint(lo, hi) for _ in range(2)) if rng.random() < 0.5 else (lo, hi)
    return isa.encode("CONFIG", multiplier=rng.choice([0, 1 << 30, (1 << 31) - 1,
                                                       rng.randint(1 << 29, (1 << 31) - 1)]),
                      shift=rng.randint(0, 31), zero_point=rng.randint(-20, 20),
                      clamp_lo=clamp[0], clamp_hi=clamp[1], per_column=rng.randint(0, 1),
                      bias_en=rng.randint(0, 1), push_prev=rng.randint(0, 1))


def _random_store(rng, cfg):
    out_int32 = rng.randint(0, 1)
    rows = rng.randint(1, 5)
    row_elems = rng.choice([1, cfg.cols, rng.randint(1, cfg.cols)])
    row_bytes = row_elems * (4 if out_int32 else 1)
    return isa.encode("STORE", acc_addr=rng.randint(0, cfg.acc_rows - rows), out_int32=out_int32,
                      qslot=rng.randint(0, isa.QPARAM_SLOTS - 1), rows=rows,
                      row_elems=row_elems, dram_addr=rng.randrange(0, 1 << 16),
                      dram_stride=rng.choice([row_bytes, rng.randrange(0, 1 << 12)]),
                      push_prev=rng.randint(0, 1), pop_prev=rng.randint(0, 1))


QPARAM_ROWS = isa.QPARAM_SLOTS * len(isa.QPARAM_KINDS)


def _random_qparam(np_rng, C):
    qparam = np.zeros((QPARAM_ROWS, C), dtype=np.int64)
    for slot in range(isa.QPARAM_SLOTS):
        qparam[3 * slot] = np_rng.integers(-(1 << 31), 1 << 31, C)
        qparam[3 * slot + 1] = np_rng.choice(
            [np_rng.integers(1 << 29, 1 << 31), -(1 << 31), (1 << 31) - 1], C)
        qparam[3 * slot + 2] = np_rng.choice([0, 31, np_rng.integers(0, 32)], C)
    return qparam


def run_store_unit(cfg, seed, *, reset_rows=None, busy_slot=None):
    """CONFIG / STORE words through the store unit; with ``reset_rows``, other qparam rows
    are written first, then the unit is reset and only rows ``reset_rows`` written again.
    With ``busy_slot``, the STOREs use the other slot while the rows of ``busy_slot`` are
    written over and over with random values (a LOAD racing with nothing it reads)."""
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
    if busy_slot is not None:
        qslot = isa.INSTRUCTIONS["STORE"].field("qslot")
        words = [(w & ~qslot.mask) | ((1 - busy_slot) << qslot.lsb)
                 if w & 0xF == isa.Opcode.STORE else w for w in words]
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
            assert (cmd.addr, cmd.rows, cmd.row_bytes, cmd.stride) == (
                f["dram_addr"], f["rows"], row_bytes, f["dram_stride"])
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
        unbuffered = acc_read_unbuffered(cfg)
        pending, req_ready, resp_valid = deque(), False, False
        async for _, _, req_valid, addr, resp_ready in ctx.tick().sample(
                unit.acc_req.valid, unit.acc_req.payload.addr, unit.acc_resp.ready):
            if resp_valid and resp_ready:
                pending.popleft()
            # The serial lane takes each response in its cycle (the accumulator holds none).
            assert not (resp_valid and unbuffered and not resp_ready)
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

    columns = cfg.load_writes == "columns"

    def row_writes(addr, values):
        """The qparam_write payloads of one row (one, or with "columns" one a column)."""
        values = [int(v) & 0xFFFFFFFF for v in values]
        if columns:
            return [{"addr": addr, "col": j, "data": v} for j, v in enumerate(values)]
        return [{"addr": addr, "data": values}]

    async def write_rows(ctx, table, rows):
        for row in rows:
            for payload in row_writes(row, table[row]):
                await _put(ctx, rng, unit.qparam_write, payload)

    async def commands(ctx):
        if reset_rows is not None:
            await write_rows(ctx, stale, range(QPARAM_ROWS))
            ctx.set(clear, 1)
            await ctx.tick()
            ctx.set(clear, 0)
        await write_rows(ctx, qparam, rows_loaded)
        rows_ready.append(True)
        for pc, word in enumerate(words):
            await _put(ctx, rng, unit.cmd, {"word": word, "pc": pc})

    rows_ready = []

    async def rewrite_busy_slot(ctx):
        rows = range(len(isa.QPARAM_KINDS) * busy_slot, len(isa.QPARAM_KINDS) * (busy_slot + 1))
        valid = False
        pending = []
        async for _, _, ready in ctx.tick().sample(unit.qparam_write.ready):
            if not rows_ready:
                continue
            if valid and ready:
                valid = False
            if not valid and not pending and rng.random() >= STALL:
                row = _random_qparam(np_rng, C)[rng.choice(rows)]
                pending = row_writes(rng.choice(rows), row)
            if not valid and pending:
                ctx.set(unit.qparam_write.payload, pending.pop(0))
                valid = True
            ctx.set(unit.qparam_write.valid, valid)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(dma)
    sim.add_testbench(commands, background=True)
    sim.add_testbench(accumulator, background=True)
    if busy_slot is not None:
        sim.add_testbench(rewrite_busy_slot, background=True)
    sim.add_testbench(_tokens(rng, unit.ctrl, log), background=True)
    sim.run()

    machine = Machine(cfg, b"")
    machine.acc[:] = acc
    machine.qparam[:] = qparam  # the busy slot's rows are not read
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
def test_store_unit_matches_the_golden_output_pipeline(name):
    run_store_unit(CONFIGS[name], _seed())


def test_unit_commands_is_validated():
    with pytest.raises(ConfigError, match="unit_commands"):
        Config(unit_commands="fifo")
    assert Config().unit_commands == "copy"


def test_load_writes_is_validated():
    with pytest.raises(ConfigError, match="load_writes"):
        Config(load_writes="beats")
    with pytest.raises(ConfigError, match="load_writes.*dma_data_width=32"):
        Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, output_lanes=1,
               output_lane="serial", load_writes="columns")         # a 128-bit bus
    with pytest.raises(ConfigError, match="load_writes.*output_lane=serial"):
        Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, dma_data_width=32,
               load_writes="columns")
    assert Config().load_writes == "rows"
    assert COLUMNS_CFG.load_writes == "columns"
