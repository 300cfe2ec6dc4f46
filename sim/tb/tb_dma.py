"""cocotb testbench of hw.dma.Dma with cocotbext-axi's AxiRam as the DRAM.

The DUT is the Verilog of ``Dma(Config.from_json(os.environ["DMA_CONFIG"]))`` (see
tests/hw/test_dma_cocotb.py). Amaranth names the AXI ports ``m_axi__awaddr`` ...;
``AxiBus.from_prefix(dut, "m_axi", bus_separator="__")`` finds them (cocotbext-axi 0.1.28
forwards ``bus_separator`` to cocotb-bus 0.3's ``Bus``). Streams are ``<name>__valid``,
``<name>__ready`` and one ``<name>__payload`` vector packed per the payload's StructLayout.

Seeds: every test prints ``SEED=...``; set ``SEED`` in the environment to replay.
"""

import logging
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from cocotbext.axi import AxiBus, AxiRam
from cocotbext.axi.constants import AxiResp as CocoAxiResp

from amaranth.back import verilog

from hw.axi import AXI_4K, AxiResp
from hw.config import Config
from hw.dma import Dma, dma_cmd_layout, dma_data_layout, dma_status_layout
from sim.runner import SIM_BUILD_ROOT, run_cocotb
from sw.isa import ErrorCause


MEM_BYTES = 1 << 18


def mem_bytes(cfg):
    """The DRAM model's size: MEM_BYTES, or the whole address space if that is smaller."""
    return min(MEM_BYTES, 1 << cfg.addr_width)


def config_from_env():
    return Config.from_json(os.environ["DMA_CONFIG"])


def emit_dma(cfg, name):
    """Write the DMA's Verilog to build/sim/<name>/dma.v (untouched if unchanged, so the
    simulator build is reused)."""
    out_dir = SIM_BUILD_ROOT / name
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "dma.v"
    text = verilog.convert(Dma(cfg), name="dma", emit_src=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def run_dma_tb(cfg, name, test_module=__name__, testcase=None, extra_env=None):
    """Build the DMA of ``cfg`` and run the cocotb tests of ``test_module`` on it."""
    return run_cocotb(verilog_sources=[emit_dma(cfg, name)], toplevel="dma",
                      test_module=test_module, build_name=name, testcase=testcase,
                      extra_env={"DMA_CONFIG": cfg.to_json(), **(extra_env or {})})


def seed_from_env(name):
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"{name}: SEED={seed}")
    return seed


def pack(layout, values):
    word = 0
    for name, field in layout:
        word |= (int(values.get(name, 0)) & ((1 << field.width) - 1)) << field.offset
    return word


def unpack(layout, word):
    return {name: word >> field.offset & ((1 << field.width) - 1) for name, field in layout}


def random_pauses(rng, probability):
    while True:
        yield rng.random() < probability


class ErrorRanges:
    """Address ranges answered with SLVERR or DECERR, installed on AxiRam's read and write
    interfaces: a failing access raises (AxiSlave* then answers SLVERR), and the response
    sender turns that SLVERR into the response configured for the range (DECERR)."""

    def __init__(self, ram):
        self.ranges = {}
        for iface, channel, field in ((ram.read_if, "r_channel", "rresp"),
                                      (ram.write_if, "b_channel", "bresp")):
            self._wrap(iface, channel, field)

    def lookup(self, address, length):
        for rng_, resp in self.ranges.items():
            if address < rng_.stop and rng_.start < address + length:
                return resp
        return None

    def _wrap(self, iface, channel_name, field):
        ranges = self
        original_access = iface._read if field == "rresp" else iface._write
        pending = []

        async def access(address, arg):
            length = arg if field == "rresp" else len(arg)
            resp = ranges.lookup(address, length)
            pending.append(resp)
            if resp is not None:
                raise IOError(f"injected {resp.name} at {address:#x}")
            return await original_access(address, arg)

        if field == "rresp":
            iface._read = access
        else:
            iface._write = access
        channel = getattr(iface, channel_name)
        original_send = channel.send

        async def send(tr):
            # Reads: one access per beat. Writes: the strobed runs of a burst, so any
            # injected error among them decides the B response.
            resps = [r for r in pending if r is not None]
            pending.clear()
            if resps and int(getattr(tr, field)) == CocoAxiResp.SLVERR:
                setattr(tr, field, CocoAxiResp(int(resps[0])))
            await original_send(tr)

        channel.send = send


class DmaTb:
    """Drivers of the DMA's streams and the AxiRam memory behind it."""

    def __init__(self, dut, cfg, rng):
        self.dut = dut
        self.cfg = cfg
        self.rng = rng
        self.cmd_layout = dma_cmd_layout(cfg)
        self.data_layout = dma_data_layout(cfg)
        self.status_layout = dma_status_layout(cfg)
        self.out_stall = 0.0
        self.in_gap = 0.0
        self.cycle = 0
        self.mem_bytes = mem_bytes(cfg)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator="__"), dut.clk,
                          dut.rst, size=self.mem_bytes)
        for log in (self.ram.write_if.log, self.ram.read_if.log):
            log.setLevel(logging.WARNING)
        self.errors = ErrorRanges(self.ram)
        self.ram.write(0, rng.randbytes(self.mem_bytes))

    async def start(self, window=None):
        """Reset the DUT; ``window`` (base, size) defaults to all of the memory."""
        dut = self.dut
        window = (0, self.mem_bytes) if window is None else window
        for name in ("rd_cmd", "wr_cmd", "wr_data"):
            getattr(dut, f"{name}__valid").value = 0
        for name in ("rd_data", "rd_status", "wr_status"):
            getattr(dut, f"{name}__ready").value = 0
        dut.clear_counters.value = 0
        self.set_window(*window)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        cocotb.start_soon(self._count_cycles())
        dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    async def _count_cycles(self):
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    def set_window(self, base, size):
        self.window = (base, size)
        self.dut.window_base.value = base
        self.dut.window_size.value = size

    def set_bus_pauses(self, probability):
        """Random stalls on all five AXI channels (AxiRam's pause generators)."""
        channels = (self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                    self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                    self.ram.read_if.r_channel)
        for channel in channels:
            if probability:
                channel.set_pause_generator(random_pauses(self.rng, probability))
            else:
                channel.clear_pause_generator()

    def _port(self, name, member):
        return getattr(self.dut, f"{name}__{member}")

    async def _send(self, name, word):
        clk = self.dut.clk
        self._port(name, "payload").value = word
        self._port(name, "valid").value = 1
        while True:
            await ReadOnly()
            done = int(self._port(name, "ready").value)
            await RisingEdge(clk)
            if done:
                break
        self._port(name, "valid").value = 0

    async def read(self, cmd):
        """Run a read; return (beats as (data, row_last, last), (cause, addr), cycles)."""
        start = self.cycle
        await self._send("rd_cmd", pack(self.cmd_layout, cmd))
        clk = self.dut.clk
        beats = []
        self._port("rd_status", "ready").value = 1
        while True:
            beat, status = await self._sample_read()
            if beat is not None:
                beats.append(beat)
            await RisingEdge(clk)
            if status is not None:
                self._port("rd_data", "ready").value = 0
                self._port("rd_status", "ready").value = 0
                return beats, status, self.cycle - start

    async def read_many(self, cmds):
        """Send read commands back to back while collecting; return [(beats, status)]."""
        sender = cocotb.start_soon(self._send_all("rd_cmd", cmds))
        clk = self.dut.clk
        results, beats = [], []
        self._port("rd_status", "ready").value = 1
        while len(results) < len(cmds):
            beat, status = await self._sample_read()
            if beat is not None:
                beats.append(beat)
            if status is not None:
                results.append((beats, status))
                beats = []
            await RisingEdge(clk)
        self._port("rd_data", "ready").value = 0
        self._port("rd_status", "ready").value = 0
        await sender
        return results

    async def _sample_read(self):
        """One cycle of the read side (``rd_status.ready`` is held high by the caller):
        ``rd_data.ready`` at random, then the beat taken as (data, row_last, last) and the
        status taken as (cause, addr), each None when there is none."""
        ready = self.rng.random() >= self.out_stall
        self._port("rd_data", "ready").value = ready
        await ReadOnly()
        beat = status = None
        if ready and int(self._port("rd_data", "valid").value):
            fields = unpack(self.data_layout, self._port("rd_data", "payload").value.to_unsigned())
            beat = (fields["data"], fields["row_last"], fields["last"])
        if int(self._port("rd_status", "valid").value):
            fields = unpack(self.status_layout,
                            self._port("rd_status", "payload").value.to_unsigned())
            status = (ErrorCause(fields["cause"]), fields["addr"])
        return beat, status

    async def _send_all(self, name, cmds):
        for cmd in cmds:
            await self._send(name, pack(self.cmd_layout, cmd))

    async def write(self, cmd, rows_data):
        """Run a write of ``rows_data`` (bytes per row); return ((cause, addr), cycles)."""
        start = self.cycle
        await self._send("wr_cmd", pack(self.cmd_layout, cmd))
        bus_bytes = self.cfg.bus_bytes
        beats = []
        for row in rows_data:
            row_beats = row_to_beats(row, bus_bytes)
            beats += [(b, i == len(row_beats) - 1) for i, b in enumerate(row_beats)]
        clk = self.dut.clk
        self._port("wr_status", "ready").value = 1
        idx = 0
        while True:
            offer = idx < len(beats) and self.rng.random() >= self.in_gap
            self._port("wr_data", "valid").value = offer
            if offer:
                self._port("wr_data", "payload").value = pack(self.data_layout, {
                    "data": beats[idx][0], "row_last": beats[idx][1],
                    "last": idx == len(beats) - 1})
            await ReadOnly()
            taken = offer and int(self._port("wr_data", "ready").value)
            status = None
            if int(self._port("wr_status", "valid").value):
                status = unpack(self.status_layout,
                                self._port("wr_status", "payload").value.to_unsigned())
            await RisingEdge(clk)
            idx += bool(taken)
            if status is not None:
                self._port("wr_data", "valid").value = 0
                self._port("wr_status", "ready").value = 0
                assert idx == len(beats), f"wr_status with {len(beats) - idx} wr_data beats left"
                return (ErrorCause(status["cause"]), status["addr"]), self.cycle - start

    def memory(self):
        return bytearray(self.ram.read(0, self.mem_bytes))


def row_to_beats(row, bus_bytes):
    padded = bytes(row) + bytes(-len(row) % bus_bytes)
    return [int.from_bytes(padded[i:i + bus_bytes], "little")
            for i in range(0, len(padded), bus_bytes)]


def command_rows(cmd):
    return [(cmd["addr"] + r * cmd["stride"], cmd["row_bytes"]) for r in range(cmd["rows"])]


def window_rows(cmd, window, addr_width):
    """Rows that happen under the window rule and the status it gives."""
    base, size = window
    done = []
    for addr, n in command_rows(cmd):
        if not (base <= addr and addr + n <= base + size):
            return done, (ErrorCause.DMA_WINDOW, addr % (1 << addr_width))
        done.append((addr, n))
    return done, (ErrorCause.NONE, 0)


def payload_bytes(cmd, tb):
    """Bytes a fault-free-bus command moves: its rows up to the first one outside the window."""
    return sum(n for _, n in window_rows(cmd, tb.window, tb.cfg.addr_width)[0])


def expected_read(cmd, window, mem, cfg):
    bus_bytes = cfg.bus_bytes
    rows, status = window_rows(cmd, window, cfg.addr_width)
    beats = []
    for addr, n in rows:
        row = row_to_beats(mem[addr:addr + n], bus_bytes)
        beats += [(b, int(i == len(row) - 1), 0) for i, b in enumerate(row)]
    if beats and status[0] == ErrorCause.NONE:
        beats[-1] = (beats[-1][0], 1, 1)
    return beats, status


def apply_write(cmd, rows_data, window, mem, cfg):
    rows, status = window_rows(cmd, window, cfg.addr_width)
    for (addr, n), row in zip(rows, rows_data):
        mem[addr:addr + n] = row
    return status


def random_cmd(rng, cfg, region, max_rows=6, max_row_bytes=None):
    max_row_bytes = max_row_bytes or 6 * cfg.bus_bytes * cfg.max_burst_beats // 4
    bus = cfg.bus_bytes
    rows = rng.randint(1, max_rows)
    whole = rng.randint(1, max_row_bytes // bus) * bus  # bus-multiple rows hit the edge cases
    row_bytes = rng.choice([rng.randint(1, max_row_bytes), whole, whole + rng.choice([-1, 1])])
    stride = rng.choice([row_bytes, row_bytes + rng.randint(1, 64), rng.randint(1, 2 * row_bytes)])
    # The command must fit in the region: a shorter row, fewer rows where it would not.
    row_bytes = min(row_bytes, len(region) - 1)
    rows = max(1, min(rows, (len(region) - 1 - row_bytes) // stride + 1))
    span = (rows - 1) * stride + row_bytes
    addr = rng.randrange(region.start, region.stop - span)
    if rng.random() < 0.3:
        addr -= addr % bus
    if rng.random() < 0.25:  # straddle a 4 KiB page
        addr = max(region.start, (addr // AXI_4K + 1) * AXI_4K - rng.randint(1, row_bytes))
        addr = min(addr, region.stop - span)
    return {"addr": addr, "rows": rows, "row_bytes": row_bytes, "stride": stride}


async def random_traffic(tb, n_cmds):
    """Concurrent random reads (lower half) and writes (upper half); byte-exact checks."""
    reference = tb.memory()
    half = tb.mem_bytes // 2
    moved = {"read": 0, "write": 0}

    async def reads():
        for _ in range(n_cmds):
            cmd = random_cmd(tb.rng, tb.cfg, range(0, half))
            beats, status, _ = await tb.read(cmd)
            want_beats, want_status = expected_read(cmd, tb.window, reference, tb.cfg)
            assert status == want_status, (cmd, status, want_status)
            assert beats == want_beats, f"read data differs for {cmd}"
            moved["read"] += payload_bytes(cmd, tb)

    async def writes():
        for _ in range(n_cmds):
            cmd = random_cmd(tb.rng, tb.cfg, range(half, tb.mem_bytes))
            rows_data = [tb.rng.randbytes(cmd["row_bytes"]) for _ in range(cmd["rows"])]
            status, _ = await tb.write(cmd, rows_data)
            want = apply_write(cmd, rows_data, tb.window, reference, tb.cfg)
            assert status == want, (cmd, status, want)
            moved["write"] += payload_bytes(cmd, tb)

    read_before = tb.dut.bytes_read.value.to_unsigned()
    written_before = tb.dut.bytes_written.value.to_unsigned()
    r = cocotb.start_soon(reads())
    w = cocotb.start_soon(writes())
    await r
    await w
    assert_memory(tb, reference)
    # A beat's bytes count from the second cycle after its handshake (hw.dma.Dma); values
    # read after an edge are those before it.
    for _ in range(3):
        await RisingEdge(tb.dut.clk)
    wrap = 1 << len(tb.dut.bytes_read)
    assert (tb.dut.bytes_read.value.to_unsigned() - read_before) % wrap == moved["read"]
    assert (tb.dut.bytes_written.value.to_unsigned() - written_before) % wrap == moved["write"]


def assert_memory(tb, reference):
    mem = tb.memory()
    if mem != reference:
        bad = [i for i in range(len(mem)) if mem[i] != reference[i]]
        raise AssertionError(f"{len(bad)} memory bytes differ, first at {bad[0]:#x}")


async def new_tb(dut, name, window=None):
    tb = DmaTb(dut, config_from_env(), random.Random(seed_from_env(name)))
    await tb.start(window)
    return tb


@cocotb.test()
async def test_random_2d(dut):
    """Random 2D reads and writes, no stalls."""
    tb = await new_tb(dut, "test_random_2d")
    await random_traffic(tb, 20)


@cocotb.test()
async def test_random_2d_stalls(dut):
    """Random 2D transfers with random pauses on all AXI channels and the streams."""
    tb = await new_tb(dut, "test_random_2d_stalls")
    tb.set_bus_pauses(0.3)
    tb.out_stall = 0.3
    tb.in_gap = 0.3
    await random_traffic(tb, 30)


@cocotb.test()
async def test_window_faults(dut):
    """Rows outside the window stop the command there; nothing else changes; later commands
    still work."""
    base, size = 0x3000, 0x8000
    tb = await new_tb(dut, "test_window_faults", window=(base, size))
    tb.set_bus_pauses(0.2)
    tb.out_stall = 0.2
    tb.in_gap = 0.2
    reference = tb.memory()
    end = base + size
    cases = [
        {"addr": base - 1, "rows": 3, "row_bytes": 20, "stride": 64},
        {"addr": end - 3 * 100 + 7, "rows": 5, "row_bytes": 90, "stride": 100},
        {"addr": end - 40, "rows": 2, "row_bytes": 41, "stride": 1},
        {"addr": base + 5, "rows": 3, "row_bytes": 50, "stride": 0x1000},
        {"addr": end - 16, "rows": 1, "row_bytes": 16, "stride": 0},
        {"addr": base + 0x100, "rows": 4, "row_bytes": 33, "stride": -0x200 & 0xffffffff},
    ]
    for _ in range(6):
        cmd = random_cmd(tb.rng, tb.cfg, range(base - 0x800, end + 0x800))
        cases.append(cmd)
    for cmd in cases:
        beats, status, _ = await tb.read(cmd)
        want_beats, want_status = expected_read(cmd, tb.window, reference, tb.cfg)
        assert status == want_status, (cmd, status, want_status)
        assert beats == want_beats, f"read data differs for {cmd}"
        rows_data = [tb.rng.randbytes(cmd["row_bytes"]) for _ in range(cmd["rows"])]
        status, _ = await tb.write(cmd, rows_data)
        want = apply_write(cmd, rows_data, tb.window, reference, tb.cfg)
        assert status == want, (cmd, status, want)
    assert_memory(tb, reference)


@cocotb.test()
async def test_bus_errors(dut):
    """SLVERR / DECERR responses: the command stops with that cause and the burst's address,
    bytes outside the command are untouched and later commands still work."""
    tb = await new_tb(dut, "test_bus_errors")
    tb.set_bus_pauses(0.2)
    tb.out_stall = 0.2
    bus_bytes = tb.cfg.bus_bytes
    burst_bytes = bus_bytes * tb.cfg.max_burst_beats
    for resp, cause in ((AxiResp.SLVERR, ErrorCause.DMA_SLVERR),
                        (AxiResp.DECERR, ErrorCause.DMA_DECERR)):
        reference = tb.memory()
        bad = tb.rng.randrange(0x10, tb.mem_bytes // burst_bytes - 0x10) * burst_bytes
        tb.errors.ranges = {range(bad, bad + bus_bytes): resp}
        row_bytes = burst_bytes
        addr = bad - 2 * row_bytes
        cmd = {"addr": addr, "rows": 6, "row_bytes": row_bytes, "stride": row_bytes}
        beats, status, _ = await tb.read(cmd)
        assert status == (cause, bad), (status, cause, hex(bad))
        want_beats, _ = expected_read({**cmd, "rows": 2}, tb.window, reference, tb.cfg)
        want_beats[-1] = (want_beats[-1][0], 1, 0)
        assert beats == want_beats, "read data before the failing burst differs"

        rows_data = [tb.rng.randbytes(row_bytes) for _ in range(cmd["rows"])]
        status, _ = await tb.write(cmd, rows_data)
        assert status == (cause, bad), (status, cause, hex(bad))
        mem = tb.memory()
        reference[addr:bad] = b"".join(rows_data[:2])
        assert mem[:bad] == reference[:bad], "memory before the failing burst differs"
        # Bursts issued before the error came back may have landed; nothing past the
        # command's rows may change.
        after = addr + cmd["rows"] * row_bytes
        assert mem[after:] == reference[after:], "memory past the command changed"
        tb.errors.ranges = {}
        await random_traffic(tb, 3)


@cocotb.test()
async def test_pipelined_reads(dut):
    """Read commands back to back (the next one's ARs overlap the last one's data), some
    failing on the window or on SLVERR / DECERR: each gets its own data and status."""
    tb = await new_tb(dut, "test_pipelined_reads")
    tb.set_bus_pauses(0.2)
    tb.out_stall = 0.3
    reference = tb.memory()
    bus_bytes = tb.cfg.bus_bytes
    burst_bytes = bus_bytes * tb.cfg.max_burst_beats
    # The failing beats lie 4 bursts apart, so each failing command (one burst before its
    # failing beat, 4 bursts long) meets only its own; 4 KiB bursts still end below a
    # quarter of the memory, where the other commands start.
    slverr = tb.mem_bytes // 8
    decerr = slverr + 4 * burst_bytes
    bad = {range(slverr, slverr + bus_bytes): AxiResp.SLVERR,
           range(decerr, decerr + bus_bytes): AxiResp.DECERR}
    tb.errors.ranges = bad
    cmds = [random_cmd(tb.rng, tb.cfg, range(tb.mem_bytes // 4, tb.mem_bytes))
            for _ in range(12)]
    for at, where in ((2, slverr), (5, decerr), (8, slverr)):
        cmds[at] = {"addr": where - burst_bytes, "rows": 4, "row_bytes": burst_bytes,
                    "stride": burst_bytes}
    cmds[10] = {"addr": tb.mem_bytes - 40, "rows": 2, "row_bytes": 32, "stride": 32}
    for (beats, status), cmd in zip(await tb.read_many(cmds), cmds, strict=True):
        err = tb.errors.lookup(cmd["addr"], cmd["rows"] * cmd["row_bytes"])
        if err is None:
            want_beats, want_status = expected_read(cmd, tb.window, reference, tb.cfg)
        else:
            where = next(r.start for r in bad if bad[r] == err)
            want_beats, _ = expected_read({**cmd, "rows": 1}, tb.window, reference, tb.cfg)
            want_beats[-1] = (want_beats[-1][0], 1, 0)
            cause = ErrorCause.DMA_SLVERR if err == AxiResp.SLVERR else ErrorCause.DMA_DECERR
            want_status = (cause, where)
        assert status == want_status, (cmd, status, want_status)
        assert beats == want_beats, f"read data differs for {cmd}"


@cocotb.test()
async def test_single_beat_rows(dut):
    """Rows of one bus beat, not contiguous (a GEMM's scratchpad-row loads), no stalls: data
    exact, and at least ``DMA_MIN_READ_RATE`` / ``DMA_MIN_WRITE_RATE`` beats per cycle from
    command to status (unset: no bound)."""
    tb = await new_tb(dut, "test_single_beat_rows")
    bus_bytes = tb.cfg.bus_bytes
    rows = 256
    cmd = {"addr": 0x1000, "rows": rows, "row_bytes": bus_bytes, "stride": 3 * bus_bytes}
    reference = tb.memory()
    beats, status, read_cycles = await tb.read(cmd)
    want_beats, want_status = expected_read(cmd, tb.window, reference, tb.cfg)
    assert status == want_status and beats == want_beats
    write_cmd = {**cmd, "addr": cmd["addr"] + bus_bytes}
    rows_data = [tb.rng.randbytes(bus_bytes) for _ in range(rows)]
    status, write_cycles = await tb.write(write_cmd, rows_data)
    assert status == apply_write(write_cmd, rows_data, tb.window, reference, tb.cfg)
    assert_memory(tb, reference)
    rates = {"read": rows / read_cycles, "write": rows / write_cycles}
    print(f"single-beat rows, beats per cycle: {rates}")
    for direction, rate in rates.items():
        minimum = float(os.environ.get(f"DMA_MIN_{direction.upper()}_RATE", 0))
        assert rate >= minimum, f"{direction}: {rate:.3f} beats/cycle, expected >= {minimum}"
