"""The knobs that make the small-FPGA configurations lean (``Config.queue_depth``,
``Config.fetch_chunk``): validation, defaults equal to the fixed values they replaced, and
the controller and the fetcher behaving exactly as before at the board settings."""

import os
import random

import pytest
from amaranth.sim import Simulator

import tests.hw.test_controller as controller_tests
from boards.targets import BOARDS
from hw.config import Config, ConfigError
from hw.controller import QUEUE_DEPTH
from hw.fetch import FETCH_CHUNK, Fetcher
from sw import isa
from sw.isa import ErrorCause


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    return seed


@pytest.mark.parametrize("name, value", [
    ("queue_depth", 0), ("queue_depth", 65), ("queue_depth", 1.5),
    ("fetch_chunk", 0), ("fetch_chunk", 65),
])
def test_invalid_values_name_the_parameter(name, value):
    with pytest.raises(ConfigError, match=f"Config.{name}="):
        Config(**{name: value})


def test_defaults_are_the_previous_fixed_values():
    cfg = Config()
    assert cfg.queue_depth == QUEUE_DEPTH == 8
    assert cfg.fetch_chunk == FETCH_CHUNK == 8
    assert Config.from_json(Config(queue_depth=2, fetch_chunk=3).to_json()).queue_depth == 2


# ---- controller: the existing random-program and full-queue checks at small depths ------

@pytest.mark.parametrize("depth", [1, 2])
def test_controller_with_shallow_queues(monkeypatch, depth):
    cfg = controller_tests.CFG.replace(queue_depth=depth)
    monkeypatch.setattr(controller_tests, "CFG", cfg)
    monkeypatch.setattr(controller_tests, "QUEUE_DEPTH", depth)
    controller_tests.test_random_programs_respect_tokens_and_order(latency=3, cfg=cfg)
    controller_tests.test_no_deadlock_while_a_queue_is_full_behind_a_slow_token(cfg)
    for order in ("exec_first", "store_first", "load_first"):
        controller_tests.test_deadlock_reports_the_oldest_waiting_instruction(cfg, order)


# ---- fetcher: a model DMA read engine behind it ------------------------------------------

def _fetch(cfg, words, window_rows, seed):
    """Runs a Fetcher over ``words`` (at address 0; rows at or beyond ``window_rows`` fault)
    with a random-latency DMA model and random stalls on ``words``; returns what it emitted
    and the largest command it issued."""
    dut = Fetcher(cfg)
    rng = random.Random(seed)
    beats = max(1, isa.INSTR_BYTES // cfg.bus_bytes)
    out, commands = [], []

    async def control(ctx):
        ctx.set(dut.base, 0)
        ctx.set(dut.count, len(words))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    async def dma(ctx):
        while True:
            ctx.set(dut.rd_cmd.ready, 1)
            while not ctx.get(dut.rd_cmd.valid):
                await ctx.tick()
            cmd = ctx.get(dut.rd_cmd.payload)
            await ctx.tick()
            ctx.set(dut.rd_cmd.ready, 0)
            commands.append(cmd.rows)
            first = cmd.addr // isa.INSTR_BYTES
            fault = None
            for row in range(first, first + cmd.rows):
                if row >= window_rows:
                    fault = row * isa.INSTR_BYTES
                    break
                for beat in range(beats):
                    for _ in range(rng.randrange(3)):
                        await ctx.tick()
                    chunk = words[row] >> (beat * cfg.dma_data_width)
                    ctx.set(dut.rd_data.payload, {
                        "data": chunk & ((1 << cfg.dma_data_width) - 1),
                        "row_last": beat == beats - 1, "last": 0})
                    ctx.set(dut.rd_data.valid, 1)
                    await ctx.tick()
                    ctx.set(dut.rd_data.valid, 0)
            ctx.set(dut.rd_status.payload, {
                "cause": ErrorCause.NONE if fault is None else ErrorCause.DMA_WINDOW,
                "addr": fault or 0})
            ctx.set(dut.rd_status.valid, 1)
            while not ctx.get(dut.rd_status.ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.rd_status.valid, 0)

    async def consumer(ctx):
        while len(out) < min(len(words), window_rows + 1):
            ready = rng.random() < 0.6
            ctx.set(dut.words.ready, ready)
            if ready and ctx.get(dut.words.valid):
                entry = ctx.get(dut.words.payload)
                out.append((len(out), entry.fault, entry.word if not entry.fault else None))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(control)
    sim.add_testbench(dma, background=True)
    sim.add_testbench(consumer)
    sim.run()
    return out, commands


@pytest.mark.parametrize("chunk, bus", [(1, 32), (3, 64), (8, 128)])
def test_fetcher_delivers_the_program_in_order(chunk, bus):
    seed = _seed()
    cfg = Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, dma_data_width=bus,
                 fetch_chunk=chunk)
    rng = random.Random(seed)
    words = [rng.getrandbits(isa.INSTR_BITS) for _ in range(2 * chunk + 3)]
    out, commands = _fetch(cfg, words, window_rows=len(words), seed=seed)
    assert out == [(pc, 0, word) for pc, word in enumerate(words)]
    assert max(commands) == chunk and sum(commands) == len(words)


def test_fetcher_reports_the_first_row_outside_the_window():
    seed = _seed()
    cfg = BOARDS["icebreaker"].cfg
    words = list(range(1, 8))
    out, _ = _fetch(cfg, words, window_rows=4, seed=seed)
    assert out[:4] == [(pc, 0, word) for pc, word in enumerate(words[:4])]
    assert out[4][:2] == (4, 1)
