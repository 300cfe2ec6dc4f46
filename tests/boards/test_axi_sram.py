"""hw.axi_sram.AxiSram: random AXI4 bursts with WSTRB and stalls plus host-port traffic,
against a Python byte model."""

import os
import random

import pytest
from amaranth.sim import Simulator

from hw.axi import AxiBurst, AxiResp
from hw.axi_sram import AxiSram


BASE = 0x2000
SIZE = 2048
DATA_WIDTH = 32
WB = DATA_WIDTH // 8
FULL_SIZE = (WB - 1).bit_length()      # AxSIZE of a whole word
# Disjoint regions so concurrent writers and readers have a defined result.
AXI_W_REGION = (BASE, BASE + 768)
AXI_R_REGION = (BASE + 768, BASE + 1536)
HOST_REGION = (BASE + 1536, BASE + SIZE)


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


def _bursts(rng, region, count):
    lo, hi = region
    bursts = []
    for _ in range(count):
        beats = rng.choice([1, 2, 3, 8, 16, rng.randrange(1, 40)])
        start = rng.randrange(lo, hi - beats * WB + 1, WB)
        bursts.append((start, beats))
    return bursts


class Harness:
    def __init__(self, seed, stall):
        self.rng = random.Random(seed)
        self.stall = stall
        self.dut = AxiSram(SIZE, DATA_WIDTH, id_width=2, addr_width=16, base=BASE)
        self.model = bytearray(SIZE)

    def gap(self):
        return self.rng.random() < self.stall

    async def write(self, ctx, addr, beats, data, strb, burst=AxiBurst.INCR, awid=1,
                    size=FULL_SIZE):
        """One write burst; returns BRESP. ``data``/``strb`` are lists, one item per beat."""
        axi = self.dut.s_axi
        ctx.set(axi.awaddr, addr)
        ctx.set(axi.awlen, beats - 1)
        ctx.set(axi.awsize, size)
        ctx.set(axi.awburst, burst)
        ctx.set(axi.awid, awid)
        ctx.set(axi.awvalid, 1)
        await ctx.tick().until(axi.awready)
        ctx.set(axi.awvalid, 0)
        for beat in range(beats):
            while self.gap():
                await ctx.tick()
            ctx.set(axi.wdata, data[beat])
            ctx.set(axi.wstrb, strb[beat])
            ctx.set(axi.wlast, beat == beats - 1)
            ctx.set(axi.wvalid, 1)
            await ctx.tick().until(axi.wready)
            ctx.set(axi.wvalid, 0)
        while True:
            ctx.set(axi.bready, not self.gap())
            _, _, valid, ready, resp, bid = await ctx.tick().sample(
                axi.bvalid, axi.bready, axi.bresp, axi.bid)
            if valid and ready:
                assert bid == awid
                ctx.set(axi.bready, 0)
                return resp

    async def read(self, ctx, addr, beats, burst=AxiBurst.INCR, arid=2, size=FULL_SIZE):
        """One read burst; returns [(data, resp)] and checks RLAST, RID and R stability."""
        axi = self.dut.s_axi
        ctx.set(axi.araddr, addr)
        ctx.set(axi.arlen, beats - 1)
        ctx.set(axi.arsize, size)
        ctx.set(axi.arburst, burst)
        ctx.set(axi.arid, arid)
        ctx.set(axi.arvalid, 1)
        await ctx.tick().until(axi.arready)
        ctx.set(axi.arvalid, 0)
        out, held = [], None
        while len(out) < beats:
            ctx.set(axi.rready, not self.gap())
            _, _, valid, ready, data, resp, last, rid = await ctx.tick().sample(
                axi.rvalid, axi.rready, axi.rdata, axi.rresp, axi.rlast, axi.rid)
            if held is not None:
                assert valid and (data, resp, last) == held, "R changed while stalled"
            held = (data, resp, last) if valid and not ready else None
            if valid and ready:
                assert rid == arid
                assert last == (len(out) == beats - 1)
                out.append((data, resp))
        ctx.set(axi.rready, 0)
        return out

    async def host(self, ctx, word, write=False, data=0, strb=0):
        port = self.dut.host
        ctx.set(port.req.payload.addr, word)
        ctx.set(port.req.payload.write, write)
        ctx.set(port.req.payload.data, data)
        ctx.set(port.req.payload.strb, strb)
        ctx.set(port.req.valid, 1)
        await ctx.tick().until(port.req.ready)
        ctx.set(port.req.valid, 0)
        ctx.set(port.resp.ready, 1)
        (value,) = await ctx.tick().sample(port.resp.payload.data).until(port.resp.valid)
        ctx.set(port.resp.ready, 0)
        return value

    def model_write(self, addr, data, strb):
        for lane in range(WB):
            if strb >> lane & 1:
                self.model[addr - BASE + lane] = data >> (8 * lane) & 0xFF

    def model_word(self, addr):
        return int.from_bytes(self.model[addr - BASE:addr - BASE + WB], "little")


@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_concurrent_bursts_and_host(stall):
    seed = _seed()
    h = Harness(seed, stall)
    rng = h.rng
    r_bursts = _bursts(rng, AXI_R_REGION, 12)
    w_bursts = _bursts(rng, AXI_W_REGION, 12)
    # The read region is filled by the host port first, so the reads check it too.
    preload = {a: rng.randrange(1 << DATA_WIDTH) for a in range(*AXI_R_REGION, WB)}
    done = {}

    async def setup_then_reader(ctx):
        for addr, value in preload.items():
            await h.host(ctx, (addr - BASE) // WB, True, value, (1 << WB) - 1)
            h.model_write(addr, value, (1 << WB) - 1)
        done["preload"] = True
        for addr, beats in r_bursts:
            got = await h.read(ctx, addr, beats)
            want = [(h.model_word(addr + WB * i), AxiResp.OKAY) for i in range(beats)]
            assert got == want, f"read burst {addr:#x}+{beats}"
        done["reader"] = True

    async def writer(ctx):
        for addr, beats in w_bursts:
            data = [rng.randrange(1 << DATA_WIDTH) for _ in range(beats)]
            strb = [rng.choice([0xF, 0xF, 0x0, 0x1, 0x6, rng.randrange(16)])
                    for _ in range(beats)]
            assert await h.write(ctx, addr, beats, data, strb) == AxiResp.OKAY
            for i in range(beats):
                h.model_write(addr + WB * i, data[i], strb[i])
        done["writer"] = True

    async def host_traffic(ctx):
        while "preload" not in done:
            await ctx.tick()
        for _ in range(40):
            addr = rng.randrange(*HOST_REGION, WB)
            if rng.random() < 0.5:
                value, strb = rng.randrange(1 << DATA_WIDTH), rng.randrange(16)
                await h.host(ctx, (addr - BASE) // WB, True, value, strb)
                h.model_write(addr, value, strb)
            else:
                assert await h.host(ctx, (addr - BASE) // WB) == h.model_word(addr)
        done["host"] = True

    async def check_all(ctx):
        while len(done) < 4:
            await ctx.tick()
        lo, hi = AXI_W_REGION
        got = await h.read(ctx, lo, (hi - lo) // WB // 2)
        got += await h.read(ctx, (lo + hi) // 2, (hi - lo) // WB // 2)
        assert [d for d, _ in got] == [h.model_word(a) for a in range(lo, hi, WB)]
        for addr in range(*HOST_REGION, WB):
            assert await h.host(ctx, (addr - BASE) // WB) == h.model_word(addr)

    sim = Simulator(h.dut)
    sim.add_clock(1e-6)
    for tb in (setup_then_reader, writer, host_traffic, check_all):
        sim.add_testbench(tb)
    sim.run()


def test_decerr_slverr_and_full_throughput():
    h = Harness(_seed(), 0.0)
    clock = {"cycles": 0}
    cycles = {}

    async def counter(ctx):
        async for _ in ctx.tick():
            clock["cycles"] += 1

    async def tb(ctx):
        ones = [0xFFFFFFFF] * 4
        # The last two beats run off the end of the RAM: DECERR, nothing written.
        assert await h.write(ctx, BASE + SIZE - 8, 4, ones, [0xF] * 4) == AxiResp.DECERR
        got = await h.read(ctx, BASE + SIZE - 8, 4)
        assert [r for _, r in got] == [AxiResp.OKAY] * 2 + [AxiResp.DECERR] * 2
        assert [d for d, _ in got[:2]] == [0xFFFFFFFF] * 2
        assert [r for _, r in await h.read(ctx, BASE - 4, 2)] == [AxiResp.DECERR, AxiResp.OKAY]
        assert await h.write(ctx, BASE, 2, [1, 2], [0xF, 0xF],
                             burst=AxiBurst.FIXED) == AxiResp.SLVERR
        assert await h.host(ctx, 0) == 0, "a FIXED burst must not write"
        assert [r for _, r in await h.read(ctx, BASE, 1, burst=AxiBurst.WRAP)] == \
            [AxiResp.SLVERR]
        # Narrow beats are not supported: every beat answers SLVERR, nothing is written.
        for size in range(FULL_SIZE):
            assert await h.write(ctx, BASE, 3, [7, 8, 9], [0xF] * 3, size=size) == \
                AxiResp.SLVERR
            assert [r for _, r in await h.read(ctx, BASE, 3, size=size)] == \
                [AxiResp.SLVERR] * 3
        assert await h.host(ctx, 0) == 0, "a narrow burst must not write"
        # The longest burst AXI allows, across the whole RAM's start.
        ramp = list(range(1, 257))
        assert await h.write(ctx, BASE, 256, ramp, [0xF] * 256) == AxiResp.OKAY
        assert await h.read(ctx, BASE, 256) == [(v, AxiResp.OKAY) for v in ramp]
        for kind in ("read", "write"):
            start = clock["cycles"]
            if kind == "read":
                await h.read(ctx, BASE, 64)
            else:
                await h.write(ctx, BASE, 64, list(range(64)), [0xF] * 64)
            cycles[kind] = clock["cycles"] - start

    sim = Simulator(h.dut)
    sim.add_clock(1e-6)
    sim.add_testbench(counter, background=True)
    sim.add_testbench(tb)
    sim.run()
    # One beat per cycle: a 64-beat burst takes 64 cycles plus the address and response.
    assert cycles["read"] <= 64 + 3, cycles
    assert cycles["write"] <= 64 + 3, cycles
