import gc
import os
import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw import regmap
from hw.axi import AxiResp
from hw.config import Config
from hw.queues import pc_width
from hw.registers import Registers


CFG = Config(rows=8, cols=4, scratchpad_kib=4, scratchpad_banks=2, accumulator_kib=1,
             dma_data_width=64, max_burst_beats=16, max_outstanding=2,
             dram_base=0x1000, dram_size=0x20000)
WORD_MASK = (1 << regmap.REG_BITS) - 1
TIMEOUT = 50


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


def _regs(access):
    return [reg for reg in regmap.REGISTERS if reg.access == access]


def _strobe_mask(strb):
    return sum(0xFF << (8 * i) for i in range(regmap.REG_BYTES) if strb >> i & 1)


def _unmapped_offsets():
    mapped = set(regmap.OFFSETS.values())
    top = 1 << regmap.ADDR_WIDTH
    holes = [a for a in range(0, top, regmap.REG_BYTES) if a not in mapped]
    return holes[:3] + holes[-2:]


class AxiLiteMaster:
    """Drives one AXI4-Lite transaction at a time with random AW/W order and R/B stalls.

    While a response is stalled, it checks that VALID stays high and the response stays put.
    """

    def __init__(self, bus, rng):
        self.bus = bus
        self.rng = rng

    def _gap(self):
        return self.rng.choice([0, 0, 0, 1, 2, 5])

    async def write(self, ctx, addr, data, strb=0xF):
        bus = self.bus
        order = self.rng.choice(["aw_first", "w_first", "together"])
        aw_start = self._gap() if order == "w_first" else 0
        w_start = self._gap() if order == "aw_first" else 0
        ctx.set(bus.awaddr, addr)
        ctx.set(bus.wdata, data)
        ctx.set(bus.wstrb, strb)
        aw_done = w_done = False
        for cycle in range(TIMEOUT):
            if aw_done and w_done:
                break
            ctx.set(bus.awvalid, not aw_done and cycle >= aw_start)
            ctx.set(bus.wvalid, not w_done and cycle >= w_start)
            aw_fire = ctx.get(bus.awvalid) and ctx.get(bus.awready)
            w_fire = ctx.get(bus.wvalid) and ctx.get(bus.wready)
            await ctx.tick()
            aw_done |= bool(aw_fire)
            w_done |= bool(w_fire)
        else:
            raise AssertionError(f"write {addr:#x}: AW/W not accepted")
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        (resp,) = await self._response(ctx, bus.bvalid, bus.bready, bus.bresp)
        return resp

    async def read(self, ctx, addr):
        bus = self.bus
        for _ in range(self._gap()):
            await ctx.tick()
        ctx.set(bus.araddr, addr)
        ctx.set(bus.arvalid, 1)
        for _ in range(TIMEOUT):
            fire = ctx.get(bus.arready)
            await ctx.tick()
            if fire:
                break
        else:
            raise AssertionError(f"read {addr:#x}: AR not accepted")
        ctx.set(bus.arvalid, 0)
        return await self._response(ctx, bus.rvalid, bus.rready, bus.rdata, bus.rresp)

    async def _response(self, ctx, valid, ready, *payload):
        ctx.set(ready, 0)
        held = None
        for _ in range(self._gap()):
            if held is not None:
                assert ctx.get(valid), "response dropped before it was accepted"
                assert tuple(ctx.get(p) for p in payload) == held, "response changed while held"
            elif ctx.get(valid):
                held = tuple(ctx.get(p) for p in payload)
            await ctx.tick()
        ctx.set(ready, 1)
        for _ in range(TIMEOUT):
            if ctx.get(valid):
                value = tuple(ctx.get(p) for p in payload)
                assert held is None or value == held, "response changed while held"
                await ctx.tick()
                ctx.set(ready, 0)
                return value
            await ctx.tick()
        raise AssertionError("no response")


def _run(bench, *, seed=None, background=(), cfg=CFG):
    rng = random.Random(_seed() if seed is None else seed)
    dut = Registers(cfg)
    master = AxiLiteMaster(dut.s_axil, rng)
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def testbench(ctx):
        await bench(ctx, dut, master, rng)

    sim.add_testbench(testbench)
    for proc in background:
        sim.add_testbench(proc(dut), background=True)
    sim.run()


def test_port_names_follow_the_table():
    dut = Registers(CFG)
    assert dut.port("STATUS") is dut.status
    assert dut.port("irq_status") is dut.irq_status
    assert dut.set_port("IRQ_STATUS") is dut.irq_status_set
    assert len(dut.status.busy) == 1 and len(dut.err_cause.as_value()) == 4
    with pytest.raises(KeyError, match="const"):
        dut.port("ID")
    with pytest.raises(KeyError, match="NOPE"):
        dut.port("NOPE")
    Fragment.get(dut, None)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_parameters_are_rejected():
    with pytest.raises(TypeError, match="cfg"):
        Registers(None)
    with pytest.raises(ValueError, match="offset"):
        Registers(CFG, [regmap.Register("ODD", 0x3, "rw", regmap.by_name("PC").fields, "")])
    gc.collect()  # the half-built components warn when collected: inside this filter


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_dram_size_that_does_not_fit_is_rejected():
    with pytest.raises(ValueError, match="DRAM_SIZE"):
        Registers(Config(addr_width=32, dram_size=1 << 32))
    gc.collect()


def test_reset_values_and_const_registers():
    expected = regmap.reset_values(CFG)
    assert expected["ID"] == 0x54435247
    assert expected["DRAM_BASE"] == 0x1000 and expected["DRAM_SIZE"] == 0x20000
    assert regmap.by_name("CONFIG_ARRAY").unpack(expected["CONFIG_ARRAY"]) == {"rows": 8, "cols": 4}
    assert regmap.by_name("CONFIG_BUS").unpack(expected["CONFIG_BUS"]) == {
        "data_bytes": 8, "max_burst": 16, "outstanding": 2}

    async def bench(ctx, dut, master, rng):
        for reg in regmap.REGISTERS:
            assert await master.read(ctx, reg.offset) == (expected[reg.name], AxiResp.OKAY), reg.name
        for reg in _regs("rw") + _regs("w1c"):
            assert ctx.get(dut.port(reg.name).as_value()) == expected[reg.name], reg.name

    _run(bench)


# The iCEBreaker's address space, and the smallest one.
SMALL_CFGS = [Config(rows=4, cols=4, scratchpad_kib=1, scratchpad_banks=2, accumulator_kib=1,
                     dma_data_width=32, addr_width=aw, max_burst_beats=16, max_outstanding=1,
                     dram_base=0, dram_size=1 << aw) for aw in (17, 16)]


def _near_limits(rng, cfg):
    """A word at, just around or far beyond a WARL register's limit or width."""
    reg = rng.choice([reg for reg in _regs("rw") if reg.warl is not None])
    edge = rng.choice([reg.legal(cfg).limit, 1 << reg.legal(cfg).above_from])
    return (edge + rng.choice([-1, 0, 1, rng.randrange(1 << 20)])) & WORD_MASK


@pytest.mark.parametrize("cfg", [CFG] + SMALL_CFGS, ids=lambda cfg: f"aw{cfg.addr_width}")
def test_rw_read_back_honours_wstrb_and_legal_values(cfg):
    """A write takes the enabled bytes over the held value; a WARL register then holds and
    reads back the legal value of that word (hw.regmap.Register.legal_value)."""
    async def bench(ctx, dut, master, rng):
        model = {reg.name: reg.reset_value(cfg) for reg in _regs("rw")}
        for _ in range(120):
            reg = rng.choice(_regs("rw"))
            data = rng.choice([0, WORD_MASK, rng.getrandbits(32), _near_limits(rng, cfg)])
            strb = rng.choice([0xF, 0xF, 0x0, 0x1, 0x8, rng.getrandbits(4)])
            assert await master.write(ctx, reg.offset, data, strb) == AxiResp.OKAY
            keep = ~_strobe_mask(strb) & WORD_MASK
            model[reg.name] = reg.legal_value(cfg, (model[reg.name] & keep) | (data & ~keep))
            assert ctx.get(dut.port(reg.name).as_value()) == model[reg.name], reg.name
            check = rng.choice(_regs("rw"))
            assert await master.read(ctx, check.offset) == (model[check.name], AxiResp.OKAY)

    _run(bench, cfg=cfg)


@pytest.mark.parametrize("cfg", [CFG] + SMALL_CFGS, ids=lambda cfg: f"aw{cfg.addr_width}")
def test_warl_registers_hold_what_the_hardware_uses(cfg):
    """PROG_BASE wraps to addr_width bits, PROG_COUNT saturates to pc_width bits (also with
    addr_width=32), DRAM_BASE / DRAM_SIZE stop at 2**addr_width; WATCHDOG keeps 32 bits.
    The ports are as narrow as the legal values."""
    aw, pw = cfg.addr_width, pc_width(cfg)
    top = 1 << aw
    cases = {
        "PROG_BASE": [(WORD_MASK, top - 1), ((top + 0x30) & WORD_MASK, 0x30),
                      (top - 16, top - 16)],
        "PROG_COUNT": [(WORD_MASK, (1 << pw) - 1), (1 << pw, (1 << pw) - 1),
                       ((1 << pw) - 2, (1 << pw) - 2), (7, 7)],
        "DRAM_BASE": [(WORD_MASK, min(top, WORD_MASK)), (top - 1, top - 1), (0, 0)],
        "DRAM_SIZE": [(min(top + 1, WORD_MASK), min(top, WORD_MASK)),
                      (min(top, WORD_MASK), min(top, WORD_MASK)), (5, 5)],
        "WATCHDOG": [(WORD_MASK, WORD_MASK)],
    }
    widths = {"PROG_BASE": aw, "PROG_COUNT": pw, "DRAM_BASE": min(aw + 1, 32),
              "DRAM_SIZE": min(aw + 1, 32), "WATCHDOG": 32}

    async def bench(ctx, dut, master, rng):
        for name, pairs in cases.items():
            reg = regmap.by_name(name)
            assert len(dut.port(name).as_value()) == widths[name], name
            for word, held in pairs:
                assert reg.legal_value(cfg, word) == held, (name, hex(word))
                assert await master.write(ctx, reg.offset, word) == AxiResp.OKAY
                assert await master.read(ctx, reg.offset) == (held, AxiResp.OKAY), name
                assert ctx.get(dut.port(name).as_value()) == held, name
        # Bytes written into a saturated value: the word they make is made legal again.
        count = regmap.by_name("PROG_COUNT")
        assert await master.write(ctx, count.offset, WORD_MASK) == AxiResp.OKAY
        held = (1 << pw) - 1
        for strb, byte in ((0x8, 0), (0x1, 0), (0x4, 0xFF)):
            assert await master.write(ctx, count.offset, byte * 0x0101_0101, strb) == AxiResp.OKAY
            keep = ~_strobe_mask(strb) & WORD_MASK
            held = count.legal_value(cfg, (held & keep) | (byte * 0x0101_0101 & ~keep))
            assert await master.read(ctx, count.offset) == (held, AxiResp.OKAY)
        if pw <= 16:
            assert held == (1 << pw) - 1, "the byte above pc_width bits saturated the count"

    _run(bench, cfg=cfg)


def test_prog_count_saturates_like_the_machine():
    """The regmap restates hw.queues.pc_width (sw/ imports it without Amaranth)."""
    for aw in range(16, 33):
        cfg = Config(addr_width=aw, dram_size=1 << min(aw, 31))
        assert regmap.by_name("PROG_COUNT").legal(cfg).limit == (1 << pc_width(cfg)) - 1


def test_ro_registers_read_their_ports():
    async def bench(ctx, dut, master, rng):
        for _ in range(3):
            values = {}
            for reg in _regs("ro"):
                values[reg.name] = rng.getrandbits(reg.width)
                ctx.set(dut.port(reg.name).as_value(), values[reg.name])
            for reg in rng.sample(_regs("ro"), len(_regs("ro"))):
                assert await master.read(ctx, reg.offset) == (values[reg.name], AxiResp.OKAY)

    _run(bench)


def test_cmd_pulses_last_exactly_one_cycle():
    ctrl = regmap.by_name("CTRL")
    pulses, b_rises = [], []

    def monitor(dut):
        async def proc(ctx):
            cycle, b_was = 0, 0
            while True:
                value = ctx.get(dut.ctrl.as_value())
                if value:
                    pulses.append((cycle, value))
                b = ctx.get(dut.s_axil.bvalid)
                if b and not b_was:
                    b_rises.append(cycle)
                b_was = b
                await ctx.tick()
                cycle += 1
        return proc

    written = []

    async def bench(ctx, dut, master, rng):
        for _ in range(30):
            data = rng.choice([1, 2, 3, WORD_MASK, rng.getrandbits(32)])
            strb = rng.choice([0xF, 0x1, 0xE, 0x0])
            assert await master.write(ctx, ctrl.offset, data, strb) == AxiResp.OKAY
            written.append(data & _strobe_mask(strb) & ctrl.mask)
            assert await master.read(ctx, ctrl.offset) == (0, AxiResp.OKAY)

    _run(bench, background=[monitor])
    assert len(b_rises) == len(written)
    expected = [(cycle, value) for cycle, value in zip(b_rises, written) if value]
    assert pulses == expected
    assert any(value == ctrl.pack(start=1, abort=1) for _, value in pulses)


def test_w1c_set_and_clear():
    irq = regmap.by_name("IRQ_STATUS")
    done, error = irq.pack(done=1), irq.pack(error=1)

    async def bench(ctx, dut, master, rng):
        status = dut.irq_status.as_value()
        set_port = dut.irq_status_set.as_value()
        assert await master.read(ctx, irq.offset) == (0, AxiResp.OKAY)
        ctx.set(set_port, done)
        await ctx.tick()
        ctx.set(set_port, 0)
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(status) == done, "a set pulse is sticky"
        ctx.set(set_port, error)
        await ctx.tick()
        ctx.set(set_port, 0)
        assert await master.read(ctx, irq.offset) == (done | error, AxiResp.OKAY)
        assert await master.write(ctx, irq.offset, error) == AxiResp.OKAY
        assert await master.read(ctx, irq.offset) == (done, AxiResp.OKAY)
        assert await master.write(ctx, irq.offset, WORD_MASK, strb=0x0) == AxiResp.OKAY
        assert await master.read(ctx, irq.offset) == (done, AxiResp.OKAY), "WSTRB=0 clears nothing"
        assert await master.write(ctx, irq.offset, 0) == AxiResp.OKAY
        assert ctx.get(status) == done, "writing 0 clears nothing"
        # An event during the clearing write wins: the interrupt is not lost.
        ctx.set(set_port, done)
        assert await master.write(ctx, irq.offset, done | error) == AxiResp.OKAY
        ctx.set(set_port, 0)
        assert await master.read(ctx, irq.offset) == (done, AxiResp.OKAY)
        assert await master.write(ctx, irq.offset, WORD_MASK) == AxiResp.OKAY
        assert await master.read(ctx, irq.offset) == (0, AxiResp.OKAY)

    _run(bench)


def test_slverr_changes_nothing():
    async def bench(ctx, dut, master, rng):
        expected = regmap.reset_values(CFG)
        for reg in _regs("ro"):
            ctx.set(dut.port(reg.name).as_value(), rng.getrandbits(reg.width))
            expected[reg.name] = ctx.get(dut.port(reg.name).as_value())
        for addr in _unmapped_offsets():
            assert await master.read(ctx, addr) == (0, AxiResp.SLVERR), hex(addr)
            assert await master.write(ctx, addr, WORD_MASK) == AxiResp.SLVERR, hex(addr)
        for reg in _regs("const") + _regs("ro"):
            assert await master.write(ctx, reg.offset, ~expected[reg.name] & WORD_MASK) \
                == AxiResp.SLVERR, reg.name
        for reg in regmap.REGISTERS:
            assert await master.read(ctx, reg.offset) == (expected[reg.name], AxiResp.OKAY), reg.name
        # An error does not wedge the slave: the next write works.
        prog_base = regmap.by_name("PROG_BASE")
        assert await master.write(ctx, prog_base.offset, 0x1234) == AxiResp.OKAY
        assert await master.read(ctx, prog_base.offset) == (0x1234, AxiResp.OKAY)

    _run(bench)


def test_concurrent_reads_and_writes():
    """A reader polls a register while a writer updates it: every read is a value issued
    so far, never older than the previous read; a const register reads right throughout."""
    seed = _seed()
    reg = regmap.by_name("WATCHDOG")
    ident = regmap.by_name("ID")
    ident_value = ident.reset_value(CFG)
    values = random.Random(seed + 1)
    writes = [values.getrandbits(32) for _ in range(40)]
    issued = [reg.reset_value(CFG)]
    seen = []

    def reader(dut):
        async def proc(ctx):
            rng = random.Random(seed + 2)
            master = AxiLiteMaster(dut.s_axil, rng)
            while True:
                addr = rng.choice([reg.offset, reg.offset, ident.offset])
                value, resp = await master.read(ctx, addr)
                assert resp == AxiResp.OKAY
                if addr == ident.offset:
                    assert value == ident_value
                    continue
                assert value in issued, f"{value:#x} was never written"
                index = issued.index(value)
                assert not seen or index >= seen[-1], "a read went back in time"
                seen.append(index)
        return proc

    async def bench(ctx, dut, master, rng):
        for data in writes:
            # Listed before the write starts: the reader may see it before B arrives here.
            issued.append(data)
            assert await master.write(ctx, reg.offset, data) == AxiResp.OKAY
        assert ctx.get(dut.watchdog.as_value()) == writes[-1]

    _run(bench, seed=seed, background=[reader])
    assert len(seen) > 10 and seen[-1] > len(writes) // 2


def test_set_pulse_in_the_clearing_cycle_wins():
    """A w1c bit set by hardware in the very cycle software clears it stays set."""
    irq = regmap.by_name("IRQ_STATUS")
    done = irq.pack(done=1)

    async def bench(ctx, dut, master, rng):
        bus, set_port = dut.s_axil, dut.irq_status_set.as_value()
        ctx.set(set_port, done)
        await ctx.tick()
        ctx.set(set_port, 0)
        ctx.set(bus.awaddr, irq.offset)
        ctx.set(bus.wdata, done)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(set_port, done)
        await ctx.tick()  # AW and W accepted together: the write is performed
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        ctx.set(set_port, 0)
        assert ctx.get(bus.bvalid) and ctx.get(bus.bresp) == AxiResp.OKAY
        assert ctx.get(dut.irq_status.as_value()) == done
        ctx.set(bus.bready, 1)
        await ctx.tick()
        ctx.set(bus.bready, 0)
        assert await master.write(ctx, irq.offset, done) == AxiResp.OKAY
        assert ctx.get(dut.irq_status.as_value()) == 0, "without a new event the clear works"

    _run(bench)


def test_aw_and_w_are_taken_together():
    """AW (or W) alone waits; once both are valid both are taken in that cycle, and the
    register's new value and B appear the cycle after."""
    prog_base = regmap.by_name("PROG_BASE")

    async def bench(ctx, dut, master, rng):
        bus = dut.s_axil
        first, second = rng.choice([(bus.awvalid, bus.wvalid), (bus.wvalid, bus.awvalid)])
        ctx.set(bus.awaddr, prog_base.offset)
        ctx.set(bus.wdata, 0x1234_5678)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(first, 1)
        for _ in range(3):
            assert not ctx.get(bus.awready) and not ctx.get(bus.wready)
            await ctx.tick()
        ctx.set(second, 1)
        assert ctx.get(bus.awready) and ctx.get(bus.wready)
        await ctx.tick()
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        assert ctx.get(bus.bvalid) and ctx.get(bus.bresp) == AxiResp.OKAY
        assert ctx.get(dut.prog_base.as_value()) == 0x1234_5678

    _run(bench)


def test_next_transaction_waits_for_the_held_response():
    """AW, W and AR offered while B / R are stalled are not taken, so no response is lost."""
    prog_base = regmap.by_name("PROG_BASE")
    unmapped = _unmapped_offsets()[0]

    async def bench(ctx, dut, master, rng):
        bus = dut.s_axil
        for sig, value in [(bus.awaddr, prog_base.offset), (bus.wdata, 0xABCD),
                           (bus.wstrb, 0xF), (bus.awvalid, 1), (bus.wvalid, 1),
                           (bus.araddr, prog_base.offset), (bus.arvalid, 1)]:
            ctx.set(sig, value)
        await ctx.tick()  # AW, W and AR accepted
        ctx.set(bus.awaddr, unmapped)
        ctx.set(bus.araddr, unmapped)
        for _ in range(6):
            _, _, awready, wready, arready, bvalid, rvalid, bresp, rdata = \
                await ctx.tick().sample(bus.awready, bus.wready, bus.arready, bus.bvalid,
                                        bus.rvalid, bus.bresp, bus.rdata)
            assert not awready and not wready and not arready
        assert bvalid and bresp == AxiResp.OKAY
        assert rvalid and rdata == prog_base.reset_value(CFG), "the read was before the write"
        ctx.set(bus.bready, 1)
        ctx.set(bus.rready, 1)
        responses = []
        for _ in range(12):
            _, _, awready, wready, arready, bvalid, rvalid, bresp, rresp = \
                await ctx.tick().sample(bus.awready, bus.wready, bus.arready, bus.bvalid,
                                        bus.rvalid, bus.bresp, bus.rresp)
            if awready:
                ctx.set(bus.awvalid, 0)
            if wready:
                ctx.set(bus.wvalid, 0)
            if arready:
                ctx.set(bus.arvalid, 0)
            if bvalid:
                responses.append(("b", AxiResp(bresp)))
            if rvalid:
                responses.append(("r", AxiResp(rresp)))
        assert sorted(responses) == [("b", AxiResp.OKAY), ("b", AxiResp.SLVERR),
                                     ("r", AxiResp.OKAY), ("r", AxiResp.SLVERR)]
        assert ctx.get(dut.prog_base.as_value()) == 0xABCD

    _run(bench)


def test_every_address_reads_its_register_or_slverr():
    """Each word address of the first slots past the map, and some far above it, reads its
    register or (0, SLVERR): the decode aliases nothing (random ro values, so a register
    read at a wrong address shows)."""
    by_offset = {reg.offset: reg for reg in regmap.REGISTERS}
    top = 1 << regmap.ADDR_WIDTH

    async def bench(ctx, dut, master, rng):
        expected = regmap.reset_values(CFG)
        for reg in _regs("ro"):
            value = rng.getrandbits(reg.width) | 1
            ctx.set(dut.port(reg.name).as_value(), value)
            expected[reg.name] = value & reg.mask
        far = [rng.randrange(0x100, top) & ~3 for _ in range(8)] + [top - 4]
        for addr in list(range(0, 0x100, regmap.REG_BYTES)) + far:
            reg = by_offset.get(addr)
            want = (expected[reg.name], AxiResp.OKAY) if reg else (0, AxiResp.SLVERR)
            assert await master.read(ctx, addr) == want, hex(addr)

    _run(bench)
