# amaranth: UnusedElaboratable=no
"""ShiftFIFO against amaranth.lib.fifo.SyncFIFO, cycle by cycle: the same random writes and
reads (full and empty included) give the same ready, level and read data. Seeds are printed,
``SEED=...`` replays them."""

import os
import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import fifo
from amaranth.sim import Simulator

from hw.shift_fifo import ShiftFIFO


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_same_cycles_as_syncfifo(depth):
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    rng = random.Random(seed)
    width = 7
    m = Module()
    m.submodules.dut = dut = ShiftFIFO(width=width, depth=depth)
    m.submodules.ref = ref = fifo.SyncFIFO(width=width, depth=depth)

    async def bench(ctx):
        # phases that favour writes (fill up) and reads (drain)
        for phase in range(40):
            p_write = 0.8 if phase % 2 else 0.3
            for _ in range(25):
                w_en, r_en = rng.random() < p_write, rng.random() < 1 - p_write
                data = rng.getrandbits(width)
                for port in (dut, ref):
                    ctx.set(port.w_en, w_en)
                    ctx.set(port.r_en, r_en)
                    ctx.set(port.w_data, data)
                assert ctx.get(dut.w_rdy) == ctx.get(ref.w_rdy)
                assert ctx.get(dut.r_rdy) == ctx.get(ref.r_rdy)
                assert ctx.get(dut.level) == ctx.get(ref.level)
                if ctx.get(ref.r_rdy):
                    assert ctx.get(dut.r_data) == ctx.get(ref.r_data)
                await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_depth_is_validated():
    with pytest.raises(ValueError, match="depth"):
        ShiftFIFO(width=4, depth=0)
