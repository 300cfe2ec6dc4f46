"""boards.bridge through the UART pins: sw.uart_link and raw frames against AxiSram and the
register block, in amaranth.sim."""

import os
import random

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from boards import protocol
from boards.bridge import Bridge
from boards.protocol import Command, Status
from boards.uart import UartRx, UartTx
from hw import regmap
from hw.axi_sram import AxiSram
from hw.config import Config
from hw.registers import Registers
from sw.uart_link import BusError, LinkError, UartLink


# Each SimTransport leaves its simulator mid-run (the pin processes never end); Python
# reports those abandoned coroutines when it collects them.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

DIVISOR = 4
BYTE_CYCLES = 10 * DIVISOR
FRAME_TIMEOUT = 4 * BYTE_CYCLES
BUS_TIMEOUT = 64
MEM_BASE = 0x1000
MEM_SIZE = 1024
MAX_PAYLOAD = 16
PERIOD = 1e-6
CFG = Config(rows=4, cols=4, scratchpad_kib=1, scratchpad_banks=2, accumulator_kib=1,
             dma_data_width=32, addr_width=16, max_burst_beats=16, max_outstanding=1,
             dram_base=MEM_BASE, dram_size=MEM_SIZE)


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


class BridgeHarness(Elaboratable):
    """UART pins -> Bridge -> (Registers, AxiSram); ``with_regs=False`` leaves the register
    bus unanswered (for TIMEOUT)."""

    def __init__(self, with_regs=True):
        self.rx = Signal(init=1)
        self.tx = Signal(init=1)
        self.with_regs = with_regs
        self.sram = AxiSram(MEM_SIZE, CFG.dma_data_width, CFG.id_width, CFG.addr_width,
                            base=MEM_BASE)
        self.bridge = Bridge(mem_base=MEM_BASE, mem_size=MEM_SIZE,
                             mem_addr_width=self.sram.word_addr_width,
                             mem_data_width=CFG.dma_data_width, reg_addr_width=regmap.ADDR_WIDTH,
                             frame_timeout=FRAME_TIMEOUT, bus_timeout=BUS_TIMEOUT,
                             max_payload=MAX_PAYLOAD)
        self.regs = Registers(CFG)

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UartRx(DIVISOR)
        m.submodules.uart_tx = uart_tx = UartTx(DIVISOR)
        m.submodules.bridge = bridge = self.bridge
        m.submodules.sram = sram = self.sram
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        wiring.connect(m, uart_rx.o, bridge.rx)
        wiring.connect(m, bridge.tx, uart_tx.i)
        wiring.connect(m, bridge.mem, sram.host)
        if self.with_regs:
            m.submodules.regs = self.regs
            wiring.connect(m, bridge.m_axil, self.regs.s_axil)
        return m


class SimTransport:
    """A byte transport whose ``read`` advances the simulation (pyserial semantics: it
    returns fewer bytes once its timeout has passed) and that drives and decodes the pins."""

    def __init__(self, harness, rng=None, jitter=False):
        self.h = harness
        self.rng = rng or random.Random(0)
        self.jitter = jitter
        self.to_send = bytearray()
        self.received = bytearray()
        self.cycles = 0
        self.sim = Simulator(harness)
        self.sim.add_clock(PERIOD)
        self.sim.add_testbench(self._driver, background=True)
        self.sim.add_testbench(self._decoder, background=True)

    async def _driver(self, ctx):
        while True:
            await ctx.tick()
            if not self.to_send:
                continue
            byte = self.to_send.pop(0)
            for bit in [0] + [byte >> i & 1 for i in range(8)] + [1]:
                ctx.set(self.h.rx, bit)
                await ctx.tick().repeat(DIVISOR)
            if self.jitter:
                await ctx.tick().repeat(self.rng.choice([1, 1, 2, 7]))

    async def _decoder(self, ctx):
        while True:
            await ctx.tick().until(~self.h.tx)
            await ctx.tick().repeat(DIVISOR // 2 + DIVISOR)
            value = 0
            for i in range(8):
                value |= ctx.get(self.h.tx) << i
                await ctx.tick().repeat(DIVISOR)
            assert ctx.get(self.h.tx) == 1, "stop bit"
            self.received.append(value)

    def advance(self, cycles):
        self.cycles += cycles
        self.sim.run_until(self.cycles * PERIOD)

    def write(self, data):
        self.to_send += data

    def read(self, n):
        budget = (len(self.to_send) + n + 4) * 2 * BYTE_CYCLES + FRAME_TIMEOUT + BUS_TIMEOUT
        while len(self.received) < n and budget > 0:
            self.advance(BYTE_CYCLES)
            budget -= BYTE_CYCLES
        data, self.received = bytes(self.received[:n]), self.received[n:]
        return data

    def exchange(self, frame, command, length):
        """Send one raw frame, return the decoded response."""
        self.write(frame)
        head = self.read(3)
        assert head[:1] == bytes([protocol.SYNC]), head
        n = protocol.response_length(command, length, head[1])
        return protocol.decode_response(head + self.read(n + 2), command, length)


def test_link_registers_and_memory():
    rng = random.Random(_seed())
    t = SimTransport(BridgeHarness(), rng, jitter=True)
    link = UartLink(t, seq=rng.randrange(256))
    assert link.ping() == protocol.BoardInfo(protocol.PROTOCOL_VERSION, MAX_PAYLOAD, MEM_BASE,
                                             MEM_SIZE)
    assert link.reg_read(regmap.ADDR.ID) == regmap.ID_MAGIC
    link.reg_write(regmap.ADDR.DRAM_BASE, 0xBEE0)
    assert link.reg_read(regmap.ADDR.DRAM_BASE) == 0xBEE0
    link.reg_write(regmap.ADDR.DRAM_BASE, 0xDEADBEE0)     # WARL: beyond the space, its top
    assert link.reg_read(regmap.ADDR.DRAM_BASE) == 1 << CFG.addr_width
    # Unaligned start and end, several chunks, both ends of the RAM.
    for addr, size in ((MEM_BASE + 3, 37), (MEM_BASE, 5), (MEM_BASE + MEM_SIZE - 6, 6)):
        data = rng.randbytes(size)
        link.mem_write(addr, data)
        assert link.mem_read(addr, size) == data
    assert link.stats["retries"] == 0


def test_errors_are_reported():
    rng = random.Random(_seed())
    t = SimTransport(BridgeHarness(), rng)
    link = UartLink(t)
    with pytest.raises(BusError, match="REG_WRITE 0x0 failed on the board's bus: BUS_ERROR"):
        link.reg_write(regmap.ADDR.ID, 1)
    with pytest.raises(BusError, match="BUS_ERROR"):
        link.reg_read(1 << regmap.ADDR_WIDTH)
    with pytest.raises(BusError, match="BUS_ERROR"):
        link.mem_read(MEM_BASE + MEM_SIZE - 2, 4)
    with pytest.raises(BusError, match="BUS_ERROR"):
        link.mem_write(MEM_BASE - 1, b"\0")
    seq = 0x33
    for command, length in ((0x7E, 0), (Command.MEM_READ, MAX_PAYLOAD + 1),
                            (Command.MEM_READ, 0), (Command.REG_READ, 2)):
        frame = protocol.encode_request(command, seq, MEM_BASE, length)
        assert t.exchange(frame, command, length) == protocol.Response(Status.BAD_COMMAND, seq)
    # Still in sync afterwards.
    assert link.reg_read(regmap.ADDR.ID) == regmap.ID_MAGIC


def test_corrupted_frame_is_rejected_without_effect():
    rng = random.Random(_seed())
    t = SimTransport(BridgeHarness(), rng)
    link = UartLink(t)
    link.mem_write(MEM_BASE, bytes(8))
    good = protocol.encode_request(Command.MEM_WRITE, 0x10, MEM_BASE, payload=b"\xAA" * 8)
    for position in (2, 5, 9, 12, len(good) - 1):
        bad = bytearray(good)
        bad[position] ^= 1 << rng.randrange(8)
        response = t.exchange(bytes(bad), Command.MEM_WRITE, 8)
        assert response.status == Status.BAD_CRC
        assert link.mem_read(MEM_BASE, 8) == bytes(8)
    assert t.exchange(good, Command.MEM_WRITE, 8) == protocol.Response(Status.OK, 0x10)
    assert link.mem_read(MEM_BASE, 8) == b"\xAA" * 8


def test_truncated_frame_is_dropped_and_bridge_resynchronises():
    rng = random.Random(_seed())
    t = SimTransport(BridgeHarness(), rng)
    link = UartLink(t)
    frame = protocol.encode_request(Command.MEM_WRITE, 0x20, MEM_BASE, payload=b"\x55" * 8)
    t.write(frame[:-3])
    assert t.read(1) == b"", "a truncated frame must not be answered"
    # Noise and a stray SYNC between frames are skipped too.
    t.write(bytes([0x00, 0x13, protocol.SYNC]))
    t.advance(2 * FRAME_TIMEOUT)
    assert t.read(1) == b""
    assert link.mem_read(MEM_BASE, 8) == bytes(8)
    assert link.reg_read(regmap.ADDR.ID) == regmap.ID_MAGIC


def test_retried_write_is_executed_once():
    t = SimTransport(BridgeHarness())
    link = UartLink(t)
    link.ping()
    frame = protocol.encode_request(Command.REG_WRITE, 0x44, regmap.ADDR.DRAM_SIZE,
                                    payload=(0x100).to_bytes(4, "little"))
    assert t.exchange(frame, Command.REG_WRITE, 4).status == Status.OK
    link_write = protocol.encode_request(Command.MEM_WRITE, 0x45, MEM_BASE, payload=b"\1\2")
    assert t.exchange(link_write, Command.MEM_WRITE, 2).status == Status.OK
    # The same seq again (a retry whose answer was lost): answered, not executed.
    stale = protocol.encode_request(Command.MEM_WRITE, 0x45, MEM_BASE, payload=b"\7\7")
    assert t.exchange(stale, Command.MEM_WRITE, 2).status == Status.OK
    assert link.mem_read(MEM_BASE, 2) == b"\1\2"
    # After another command the same seq is a new write.
    assert t.exchange(stale, Command.MEM_WRITE, 2).status == Status.OK
    assert link.mem_read(MEM_BASE, 2) == b"\7\7"


def test_register_bus_timeout():
    t = SimTransport(BridgeHarness(with_regs=False))
    link = UartLink(t)
    with pytest.raises(BusError, match="REG_READ 0x24 failed on the board's bus: TIMEOUT"):
        link.reg_read(regmap.ADDR.STATUS)
    with pytest.raises(BusError, match="TIMEOUT"):
        link.reg_write(regmap.ADDR.CTRL, 1)
    assert link.ping().mem_size == MEM_SIZE


def test_no_answer_is_a_link_error():
    t = SimTransport(BridgeHarness())
    link = UartLink(t, retries=1)
    t.write = lambda data: None     # the line is cut
    with pytest.raises(LinkError, match="failed after 2 attempts"):
        link.ping()


def test_address_and_length_limits():
    """Address bits above those the bridge keeps, the exact ends of the RAM, and a MEM_WRITE
    longer than the buffer (its whole frame is still taken before the answer)."""
    rng = random.Random(_seed())
    t = SimTransport(BridgeHarness(), rng)
    link = UartLink(t)
    data = rng.randbytes(MAX_PAYLOAD)
    link.mem_write(MEM_BASE + MEM_SIZE - MAX_PAYLOAD, data)
    assert link.mem_read(MEM_BASE + MEM_SIZE - MAX_PAYLOAD, MAX_PAYLOAD) == data
    for high_bit in (16, 24, 31):
        # Would alias the RAM or the ID register if the high address bits were ignored.
        with pytest.raises(BusError, match="BUS_ERROR"):
            link.mem_read(MEM_BASE + (1 << high_bit), 4)
        with pytest.raises(BusError, match="BUS_ERROR"):
            link.mem_write(MEM_BASE + (1 << high_bit), b"\1")
        with pytest.raises(BusError, match="BUS_ERROR"):
            link.reg_read(regmap.ADDR.ID + (1 << high_bit))
    with pytest.raises(BusError, match="BUS_ERROR"):
        link.mem_read(MEM_BASE + MEM_SIZE - MAX_PAYLOAD + 1, MAX_PAYLOAD)
    seq = 0x5A
    long = protocol.encode_request(Command.MEM_WRITE, seq, MEM_BASE,
                                   payload=rng.randbytes(MAX_PAYLOAD + 3))
    assert t.exchange(long, Command.MEM_WRITE, MAX_PAYLOAD + 3) == \
        protocol.Response(Status.BAD_COMMAND, seq)
    assert link.mem_read(MEM_BASE, 4) == bytes(4)
    assert link.mem_read(MEM_BASE + MEM_SIZE - MAX_PAYLOAD, MAX_PAYLOAD) == data


def test_retry_survives_a_corrupted_copy():
    """A corrupted frame leaves the record of the last write alone: a retry of that write
    arriving intact afterwards is answered from the record, not executed again."""
    rng = random.Random(_seed())
    t = SimTransport(BridgeHarness(), rng)
    link = UartLink(t)
    link_seq = link._seq
    link.mem_write(MEM_BASE + 8, b"\4\5\6")     # the last write
    stale = protocol.encode_request(Command.MEM_WRITE, (link_seq + 1) & 0xFF, MEM_BASE + 8,
                                    payload=b"\7\7\7")
    bad = bytearray(stale)
    bad[-4] ^= 0x10
    assert t.exchange(bytes(bad), Command.MEM_WRITE, 3).status == Status.BAD_CRC
    assert t.exchange(stale, Command.MEM_WRITE, 3).status == Status.OK
    assert link.mem_read(MEM_BASE + 8, 3) == b"\4\5\6"


def test_register_read_from_a_strict_slave():
    """REG_READ against a register slave that drives RDATA only during its R beat (garbage
    otherwise) and answers after random delays: the answer carries the R beat's data, and
    REG_WRITE its payload."""
    rng = random.Random(_seed())
    t = SimTransport(BridgeHarness(with_regs=False), rng)
    axil = t.h.bridge.m_axil
    written = {}

    def value(addr):
        return written.get(addr, (addr * 0x01010101 ^ 0x5A5A5A5A) & 0xFFFFFFFF)

    async def slave(ctx):
        ctx.set(axil.rdata, 0xBAD0BAD0)
        while True:
            await ctx.tick().until(axil.arvalid | axil.awvalid)
            await ctx.tick().repeat(rng.randrange(1, 4))
            if ctx.get(axil.arvalid):
                addr = ctx.get(axil.araddr)
                ctx.set(axil.arready, 1)
                await ctx.tick()
                ctx.set(axil.arready, 0)
                await ctx.tick().repeat(rng.randrange(1, 6))
                ctx.set(axil.rdata, value(addr))
                ctx.set(axil.rvalid, 1)
                await ctx.tick().until(axil.rready)
                ctx.set(axil.rvalid, 0)
                ctx.set(axil.rdata, rng.randrange(1 << 32))
            else:
                await ctx.tick().until(axil.wvalid)
                written[ctx.get(axil.awaddr)] = ctx.get(axil.wdata)
                ctx.set(axil.awready, 1)
                ctx.set(axil.wready, 1)
                await ctx.tick()
                ctx.set(axil.awready, 0)
                ctx.set(axil.wready, 0)
                ctx.set(axil.bvalid, 1)
                await ctx.tick().until(axil.bready)
                ctx.set(axil.bvalid, 0)

    t.sim.add_testbench(slave, background=True)
    link = UartLink(t)
    for addr in (0x10, 0x24, 0x7FC):
        assert link.reg_read(addr) == value(addr)
    link.reg_write(0x30, 0x12345678)
    assert link.reg_read(0x30) == 0x12345678
