"""hw.dma.Dma in amaranth.sim against a small Python AXI4 memory with random stalls."""

import os
import random

import pytest
from amaranth.sim import Simulator

from hw.axi import AXI_4K, AxiResp
from hw.config import Config, ConfigError
from hw.burst import dma_row_bytes_width
from hw.dma import Dma
from sw.isa import ErrorCause


MEM_BYTES = 1 << 16


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


def _cfg(width):
    return Config(dma_data_width=width, addr_width=17, max_burst_beats=8, max_outstanding=2,
                  dram_size=MEM_BYTES)


def _single_cfg(width):
    """As the iCEBreaker's DMA: 16-beat bursts, one read burst in flight, one write burst
    awaiting B (the engines then keep no burst addresses of their own)."""
    return Config(dma_data_width=width, addr_width=17, id_width=1, max_burst_beats=16,
                  max_outstanding=1, dram_size=MEM_BYTES)


def _legal_cfg(width):
    """As the iCEBreaker's whole Config: also its array and memories and
    dma_cmd_fields="legal" (5-bit row_bytes: every row fits one burst, cut only at a page)."""
    return _single_cfg(width).replace(rows=4, cols=4, scratchpad_kib=1, scratchpad_banks=2,
                                      accumulator_kib=1, dma_cmd_fields="legal")


class AxiMemory:
    """AXI4 slave over a bytearray: random ready/valid stalls, in-order responses, protocol
    checks (bursts aligned, <= max beats, inside one 4 KiB page, VALID held until READY)
    and error responses for the bursts that touch ``errors`` ({address range: AxiResp})."""

    def __init__(self, cfg, rng, stall=0.0):
        self.cfg = cfg
        self.rng = rng
        self.stall = stall
        self.mem = bytearray(rng.randbytes(MEM_BYTES))
        self.errors = {}
        self.reads = []
        self.writes = []

    def _resp(self, addr, beats):
        for rng_, resp in self.errors.items():
            if addr < rng_.stop and rng_.start < addr + beats * self.cfg.bus_bytes:
                return resp
        return AxiResp.OKAY

    def _check_burst(self, addr, length):
        bus_bytes = self.cfg.bus_bytes
        beats = length + 1
        assert addr % bus_bytes == 0, f"unaligned burst at {addr:#x}"
        assert beats <= self.cfg.max_burst_beats, f"{beats}-beat burst at {addr:#x}"
        assert addr // AXI_4K == (addr + beats * bus_bytes - 1) // AXI_4K, \
            f"burst at {addr:#x} x{beats} crosses 4 KiB"

    def _go(self):
        return self.rng.random() >= self.stall

    async def run(self, ctx, axi):
        bus_bytes = self.cfg.bus_bytes
        r_beats, w_bursts, b_queue = [], [], []
        w_beat = 0
        held = {}
        while True:
            ctx.set(axi.arready, self._go())
            ctx.set(axi.awready, self._go())
            ctx.set(axi.wready, bool(w_bursts) and self._go())
            if r_beats and (ctx.get(axi.rvalid) or self._go()):
                addr, last, resp = r_beats[0]
                word = int.from_bytes(self.mem[addr:addr + bus_bytes], "little")
                ctx.set(axi.rdata, word if resp == AxiResp.OKAY else 0)
                ctx.set(axi.rresp, resp)
                ctx.set(axi.rlast, last)
                ctx.set(axi.rvalid, 1)
            else:
                ctx.set(axi.rvalid, 0)
            if b_queue and (ctx.get(axi.bvalid) or self._go()):
                ctx.set(axi.bresp, b_queue[0])
                ctx.set(axi.bvalid, 1)
            else:
                ctx.set(axi.bvalid, 0)
            names = ["arvalid", "arready", "araddr", "arlen", "rvalid", "rready",
                     "awvalid", "awready", "awaddr", "awlen", "wvalid", "wready", "wdata",
                     "wstrb", "wlast", "bvalid", "bready"]
            _, _, *values = await ctx.tick().sample(*(getattr(axi, n) for n in names))
            s = dict(zip(names, values))
            for ch, fields in (("ar", ("araddr", "arlen")), ("aw", ("awaddr", "awlen")),
                               ("w", ("wdata", "wstrb", "wlast"))):
                if ch in held:
                    assert s[f"{ch}valid"], f"{ch.upper()}VALID dropped before READY"
                    assert held[ch] == tuple(s[f] for f in fields), f"{ch.upper()} changed"
                if s[f"{ch}valid"] and not s[f"{ch}ready"]:
                    held[ch] = tuple(s[f] for f in fields)
                else:
                    held.pop(ch, None)
            if s["arvalid"] and s["arready"]:
                self._check_burst(s["araddr"], s["arlen"])
                self.reads.append((s["araddr"], s["arlen"] + 1))
                resp = self._resp(s["araddr"], s["arlen"] + 1)
                r_beats += [(s["araddr"] + i * bus_bytes, i == s["arlen"], resp)
                            for i in range(s["arlen"] + 1)]
            if s["rvalid"] and s["rready"]:
                r_beats.pop(0)
            if s["awvalid"] and s["awready"]:
                self._check_burst(s["awaddr"], s["awlen"])
                self.writes.append((s["awaddr"], s["awlen"] + 1))
                w_bursts.append((s["awaddr"], s["awlen"] + 1))
            if s["wvalid"] and s["wready"]:
                addr, beats = w_bursts[0]
                assert s["wlast"] == (w_beat == beats - 1), "WLAST misplaced"
                resp = self._resp(addr, beats)
                if resp == AxiResp.OKAY:
                    base = addr + w_beat * bus_bytes
                    for lane in range(bus_bytes):
                        if s["wstrb"] >> lane & 1:
                            self.mem[base + lane] = s["wdata"] >> (8 * lane) & 0xff
                w_beat += 1
                if w_beat == beats:
                    w_bursts.pop(0)
                    w_beat = 0
                    b_queue.append(resp)
            if s["bvalid"] and s["bready"]:
                b_queue.pop(0)


def _rows(cmd):
    return [(cmd["addr"] + r * cmd["stride"], cmd["row_bytes"]) for r in range(cmd["rows"])]


def _beats(row, bus_bytes):
    """A row as rd_data / wr_data beats: bytes from lane 0, zero past the end."""
    padded = bytes(row) + bytes(-len(row) % bus_bytes)
    return [int.from_bytes(padded[i:i + bus_bytes], "little")
            for i in range(0, len(padded), bus_bytes)]


def _expected_rows(cmd, window, mem):
    """(rows that happen, status) under the window rule (bus errors aside)."""
    lo, size = window
    done = []
    for addr, n in _rows(cmd):
        if not (lo <= addr and addr + n <= lo + size and addr + n <= MEM_BYTES):
            return done, (ErrorCause.DMA_WINDOW, addr)
        done.append((addr, n))
    return done, (ErrorCause.NONE, 0)


@pytest.fixture(params=[2, 1], ids=lambda gens: f"gens{gens}")
def gens(request):
    """``dma_burst_gens``: every test runs with a burst generator per engine and with one
    shared by both."""
    return request.param


class Harness:
    def __init__(self, width, seed, stall=0.0, out_stall=0.0, config=_cfg, gens=2):
        self.cfg = config(width).replace(dma_burst_gens=gens)
        self.rng = random.Random(seed)
        self.dut = Dma(self.cfg)
        self.mem = AxiMemory(self.cfg, self.rng, stall)
        self.out_stall = out_stall
        self.window = (0, MEM_BYTES)
        self.finished = 0

    async def send(self, ctx, port, payload):
        ctx.set(port.p, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def recv(self, ctx, port, stall):
        while True:
            ready = self.rng.random() >= stall
            ctx.set(port.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(port.valid, port.p)
            if valid and ready:
                ctx.set(port.ready, 0)
                return payload

    async def read(self, ctx, cmd):
        """Issue a read; return (beats as (data, row_last, last), status)."""
        await self.send(ctx, self.dut.rd_cmd, cmd)
        beats = []
        expect = -(-cmd["row_bytes"] // self.cfg.bus_bytes) * cmd["rows"]
        while True:
            port = self.dut.rd_data
            ready = self.rng.random() >= self.out_stall
            ctx.set(port.ready, ready)
            ctx.set(self.dut.rd_status.ready, 1)
            _, _, valid, payload, s_valid, status = await ctx.tick().sample(
                port.valid, port.p, self.dut.rd_status.valid, self.dut.rd_status.p)
            if valid and ready:
                beats.append((payload.data, payload.row_last, payload.last))
                assert len(beats) <= expect
            if s_valid:
                ctx.set(port.ready, 0)
                ctx.set(self.dut.rd_status.ready, 0)
                return beats, (ErrorCause(status.cause), status.addr)

    async def write(self, ctx, cmd, rows_data):
        """Issue a write of ``rows_data`` (a list of bytes per row); return the status."""
        await self.send(ctx, self.dut.wr_cmd, cmd)
        beats = [(b, i == len(row) - 1) for row in rows_data
                 for i, b in enumerate(_beats(row, self.cfg.bus_bytes))]
        port = self.dut.wr_data
        status_port = self.dut.wr_status
        ctx.set(status_port.ready, 1)
        idx = 0
        while True:
            if idx < len(beats):
                offer = self.rng.random() >= self.out_stall
                ctx.set(port.valid, offer)
                ctx.set(port.p, {"data": beats[idx][0], "row_last": beats[idx][1],
                                 "last": idx == len(beats) - 1})
            else:
                offer = False
                ctx.set(port.valid, 0)
            _, _, ready, s_valid, status = await ctx.tick().sample(
                port.ready, status_port.valid, status_port.p)
            if offer and ready:
                idx += 1
            if s_valid:
                ctx.set(port.valid, 0)
                ctx.set(status_port.ready, 0)
                assert idx == len(beats), "wr_status before all wr_data was consumed"
                return ErrorCause(status.cause), status.addr

    def run(self, *testbenches, background=(), cycles_limit=200_000):
        period, cycles = 1e-8, 0
        sim = Simulator(self.dut)
        sim.add_clock(period)

        async def slave(ctx):
            await self.mem.run(ctx, self.dut.m_axi)

        async def setup(ctx):
            ctx.set(self.dut.window_base, self.window[0])
            ctx.set(self.dut.window_size, self.window[1])

        sim.add_testbench(slave, background=True)
        for tb in background:
            sim.add_testbench(tb, background=True)
        sim.add_testbench(setup)
        for tb in testbenches:
            sim.add_testbench(tb)
        while self.finished < len(testbenches):
            assert cycles < cycles_limit, "testbench hung"
            cycles += 1000
            sim.run_until(cycles * period)


def _random_cmd(rng, cfg, region, max_rows=4, max_row_bytes=70):
    bus = cfg.bus_bytes
    max_row_bytes = min(max_row_bytes, (1 << dma_row_bytes_width(cfg)) - 1)
    rows = rng.randint(1, max_rows)
    whole = rng.randint(1, max_row_bytes // bus) * bus  # bus-multiple rows hit the edge cases
    row_bytes = rng.choice([rng.randint(1, max_row_bytes), whole, whole + rng.choice([-1, 1])])
    stride = rng.choice([row_bytes, row_bytes + rng.randint(0, 40), rng.randint(1, 300)])
    span = (rows - 1) * stride + row_bytes
    addr = rng.randrange(region.start, region.stop - span)
    if rng.random() < 0.3:
        addr -= addr % bus
    if rng.random() < 0.2:  # end right at a 4 KiB page to force a split
        addr = max(region.start, (addr // AXI_4K + 1) * AXI_4K - rng.randint(1, row_bytes))
        addr = min(addr, region.stop - span)
    return {"addr": addr, "rows": rows, "row_bytes": row_bytes, "stride": stride}


def _check_read(h, cmd, beats, status, mem):
    rows, want_status = _expected_rows(cmd, h.window, mem)
    want = []
    for addr, n in rows:
        row = _beats(mem[addr:addr + n], h.cfg.bus_bytes)
        want += [(b, i == len(row) - 1, False) for i, b in enumerate(row)]
    if want and want_status[0] == ErrorCause.NONE:
        want[-1] = (want[-1][0], True, True)
    assert status == want_status, (cmd, status, want_status)
    assert beats == want, cmd


def _write_expect(cmd, rows_data, window, mem):
    rows, status = _expected_rows(cmd, window, mem)
    for (addr, n), row in zip(rows, rows_data):
        mem[addr:addr + n] = row
    return status


@pytest.mark.parametrize("config, width", [(_cfg, 32), (_cfg, 64), (_cfg, 128),
                                           (_single_cfg, 32), (_legal_cfg, 32)])
@pytest.mark.parametrize("stall", [0.0, 0.4])
def test_random_transfers(config, width, stall, gens):
    """Concurrent random reads (low half) and writes (high half), byte-exact."""
    seed = _seed()
    h = Harness(width, seed, stall=stall, out_stall=stall, config=config, gens=gens)
    reference = bytearray(h.mem.mem)
    n_cmds = 12

    async def reads(ctx):
        for _ in range(n_cmds):
            cmd = _random_cmd(h.rng, h.cfg, range(0, MEM_BYTES // 2))
            beats, status = await h.read(ctx, cmd)
            _check_read(h, cmd, beats, status, reference)
        h.finished += 1

    async def writes(ctx):
        for _ in range(n_cmds):
            cmd = _random_cmd(h.rng, h.cfg, range(MEM_BYTES // 2, MEM_BYTES))
            rows_data = [h.rng.randbytes(cmd["row_bytes"]) for _ in range(cmd["rows"])]
            status = await h.write(ctx, cmd, rows_data)
            assert status == _write_expect(cmd, rows_data, h.window, reference), cmd
        h.finished += 1

    h.run(reads, writes)
    assert h.mem.mem == reference


@pytest.mark.parametrize("config, width", [(_cfg, 32), (_cfg, 128), (_single_cfg, 32),
                                           (_legal_cfg, 32)])
def test_window_faults(config, width, gens):
    """Rows leaving the window stop the command at that row; later commands still work."""
    seed = _seed()
    h = Harness(width, seed, stall=0.3, out_stall=0.3, config=config, gens=gens)
    h.window = (0x2000, 0x4000)
    reference = bytearray(h.mem.mem)

    long_row = min(40, (1 << dma_row_bytes_width(h.cfg)) - 1)  # as the legal fields allow

    async def tb(ctx):
        cases = [
            {"addr": 0x1ff0, "rows": 2, "row_bytes": 16, "stride": 64},     # first row below
            {"addr": 0x5f00, "rows": 5, "row_bytes": long_row, "stride": 0x80},  # third past end
            {"addr": 0x6000 - long_row, "rows": 3, "row_bytes": long_row,   # second straddles
             "stride": 1},
            {"addr": 0x2003, "rows": 3, "row_bytes": 21, "stride": 33},     # all inside
        ]
        for cmd in cases:
            beats, status = await h.read(ctx, cmd)
            _check_read(h, cmd, beats, status, reference)
            rows_data = [h.rng.randbytes(cmd["row_bytes"]) for _ in range(cmd["rows"])]
            status = await h.write(ctx, cmd, rows_data)
            assert status == _write_expect(cmd, rows_data, h.window, reference), cmd
        h.finished += 1

    h.run(tb)
    assert h.mem.mem == reference


@pytest.mark.parametrize("config", [_cfg, _single_cfg, _legal_cfg])
def test_window_of_the_whole_address_space(config, gens):
    """A window of all ``2**addr_width`` bytes (a board whose RAM fills its address space)
    takes every row inside the space and stops only a row crossing its top."""
    seed = _seed()
    h = Harness(32, seed, stall=0.3, out_stall=0.3, config=config, gens=gens)
    top = 1 << h.cfg.addr_width
    h.window = (0, top)
    reference = bytearray(h.mem.mem)

    async def tb(ctx):
        for cmd in [{"addr": 0, "rows": 2, "row_bytes": 16, "stride": 64},
                    {"addr": MEM_BYTES - 40, "rows": 2, "row_bytes": 20, "stride": 20}]:
            beats, status = await h.read(ctx, cmd)
            _check_read(h, cmd, beats, status, reference)
            rows_data = [h.rng.randbytes(cmd["row_bytes"]) for _ in range(cmd["rows"])]
            status = await h.write(ctx, cmd, rows_data)
            assert status == _write_expect(cmd, rows_data, h.window, reference), cmd
        # The last row of the space is taken up to its last byte; one byte more is outside.
        crossing = {"addr": top - 8, "rows": 1, "row_bytes": 9, "stride": 9}
        beats, status = await h.read(ctx, crossing)
        assert (beats, status) == ([], (ErrorCause.DMA_WINDOW, top - 8))
        status = await h.write(ctx, crossing, [bytes(9)])
        assert status == (ErrorCause.DMA_WINDOW, top - 8)
        h.finished += 1

    h.run(tb)
    assert h.mem.mem == reference


@pytest.mark.parametrize("config", [_cfg, _single_cfg])
@pytest.mark.parametrize("resp", [AxiResp.SLVERR, AxiResp.DECERR])
def test_bus_errors(resp, config, gens):
    """An error response ends the command with its cause and burst address, cleanly."""
    seed = _seed()
    h = Harness(64, seed, stall=0.3, out_stall=0.3, config=config, gens=gens)
    bad = range(0x3000, 0x3040)
    h.mem.errors[bad] = resp
    cause = ErrorCause.DMA_SLVERR if resp == AxiResp.SLVERR else ErrorCause.DMA_DECERR
    reference = bytearray(h.mem.mem)

    async def tb(ctx):
        cmd = {"addr": 0x2f80, "rows": 6, "row_bytes": 64, "stride": 64}
        beats, status = await h.read(ctx, cmd)
        assert status == (cause, 0x3000)
        good_beats = (0x3000 - 0x2f80) // h.cfg.bus_bytes
        want = [(int.from_bytes(reference[a:a + 8], "little"), (a + 8) % 64 == 0, False)
                for a in range(0x2f80, 0x3000, 8)]
        assert beats == want[:good_beats]
        rows_data = [h.rng.randbytes(64) for _ in range(6)]
        status = await h.write(ctx, cmd, rows_data)
        assert status == (cause, 0x3000)
        # Rows before the failing burst are written; the failing one is not.
        reference[0x2f80:0x3000] = b"".join(rows_data[:2])
        assert h.mem.mem[0x2f80:0x3040] == reference[0x2f80:0x3040]
        # Later commands work.
        ok = {"addr": 0x100, "rows": 2, "row_bytes": 10, "stride": 30}
        beats, status = await h.read(ctx, ok)
        _check_read(h, ok, beats, status, reference)
        h.finished += 1

    h.run(tb)
    # Bursts after the failing one may have been written before the error arrived;
    # nothing beyond the command's rows is touched.
    assert h.mem.mem[:0x2f80] == reference[:0x2f80]
    assert h.mem.mem[0x2f80 + 6 * 64:] == reference[0x2f80 + 6 * 64:]


@pytest.mark.parametrize("resp", [AxiResp.SLVERR, AxiResp.DECERR])
def test_bus_errors_legal_fields(resp, gens):
    """As test_bus_errors with dma_cmd_fields="legal" (one burst per row, cut only at a page
    end): the second row crosses into a page answering errors, so its first burst completes
    and its second fails."""
    seed = _seed()
    h = Harness(32, seed, stall=0.3, out_stall=0.3, config=_legal_cfg, gens=gens)
    h.mem.errors[range(0x3000, 0x3100)] = resp
    cause = ErrorCause.DMA_SLVERR if resp == AxiResp.SLVERR else ErrorCause.DMA_DECERR
    reference = bytearray(h.mem.mem)
    cmd = {"addr": 0x2fc9, "rows": 4, "row_bytes": 31, "stride": 32}

    async def tb(ctx):
        beats, status = await h.read(ctx, cmd)
        assert status == (cause, 0x3000)
        want = []
        for addr in (0x2fc9, 0x2fe9):
            row = _beats(reference[addr:addr + 31], 4)
            want += [(b, i == len(row) - 1, False) for i, b in enumerate(row)]
        # Row 1's output beats made of its first burst's bytes only (0x2fe9 .. 0x2fff).
        assert beats == want[:8 + (0x3000 - 0x2fe9) // 4]
        rows_data = [h.rng.randbytes(31) for _ in range(4)]
        status = await h.write(ctx, cmd, rows_data)
        assert status == (cause, 0x3000)
        reference[0x2fc9:0x2fe8] = rows_data[0]
        reference[0x2fe9:0x3000] = rows_data[1][:0x3000 - 0x2fe9]
        ok = {"addr": 0x101, "rows": 3, "row_bytes": 31, "stride": 40}
        beats, status = await h.read(ctx, ok)
        _check_read(h, ok, beats, status, reference)
        h.finished += 1

    h.run(tb)
    assert h.mem.mem == reference


def test_empty_commands_and_counters(gens):
    seed = _seed()
    h = Harness(32, seed, gens=gens)

    async def tb(ctx):
        for cmd in ({"addr": 0x40, "rows": 0, "row_bytes": 8, "stride": 8},
                    {"addr": 0x40, "rows": 3, "row_bytes": 0, "stride": 8}):
            assert await h.read(ctx, cmd) == ([], (ErrorCause.NONE, 0))
            assert await h.write(ctx, cmd, []) == (ErrorCause.NONE, 0)
        assert h.mem.reads == [] and h.mem.writes == []
        cmd = {"addr": 0x41, "rows": 3, "row_bytes": 7, "stride": 9}
        beats, status = await h.read(ctx, cmd)
        _check_read(h, cmd, beats, status, h.mem.mem)
        await h.write(ctx, {**cmd, "addr": 0x1003}, [b"abcdefg"] * 3)
        assert ctx.get(h.dut.bytes_read) == 21
        assert ctx.get(h.dut.bytes_written) == 21
        ctx.set(h.dut.clear_counters, 1)
        await ctx.tick()
        ctx.set(h.dut.clear_counters, 0)
        assert ctx.get(h.dut.bytes_read) == 0 and ctx.get(h.dut.bytes_written) == 0
        h.finished += 1

    h.run(tb)


def _failing_cmd(cfg, at):
    """Six contiguous rows of one burst each, the third starting at ``at``, where the bus
    answers an error (as in test_bus_errors), and the read beats of the two rows before."""
    bus = cfg.bus_bytes
    row = min(64, ((1 << dma_row_bytes_width(cfg)) - 1) // bus * bus)
    start = at - 2 * row
    cmd = {"addr": start, "rows": 6, "row_bytes": row, "stride": row}
    return cmd, lambda mem: [(int.from_bytes(mem[a:a + bus], "little"),
                              (a + bus - start) % row == 0, False)
                             for a in range(start, at, bus)]


@pytest.mark.parametrize("config, width", [(_cfg, 64), (_single_cfg, 32), (_legal_cfg, 32)])
def test_reads_and_writes_offered_together(config, width, gens):
    """Read commands back to back (two in flight) and write commands offered at the same
    time, some failing on the window or a bus error: each gets its own data and status,
    memory is exact. With one shared burst generator the directions take turns: a waiting
    command sees at most one of the other direction go first, and no command starts while
    a write is in flight."""
    seed = _seed()
    h = Harness(width, seed, stall=0.3, out_stall=0.3, config=config, gens=gens)
    bus = h.cfg.bus_bytes
    rd_bad, wr_bad = 0x3000, 0xb000
    cause = {AxiResp.SLVERR: ErrorCause.DMA_SLVERR, AxiResp.DECERR: ErrorCause.DMA_DECERR}
    resp = h.rng.choice(list(cause))
    h.mem.errors[range(rd_bad, rd_bad + bus)] = resp
    h.mem.errors[range(wr_bad, wr_bad + bus)] = resp
    reference = bytearray(h.mem.mem)
    rd_fail, rd_fail_beats = _failing_cmd(h.cfg, rd_bad)
    wr_fail, _ = _failing_cmd(h.cfg, wr_bad)
    n_cmds = 14
    reads = [_random_cmd(h.rng, h.cfg, range(0, 0x2000)) for _ in range(n_cmds)]
    for at in (3, 4, 9):            # a failing read right before and right after another
        reads[at] = rd_fail
    reads[6] = {"addr": MEM_BYTES - 40, "rows": 2, "row_bytes": 20, "stride": 32}  # window
    writes = [_random_cmd(h.rng, h.cfg, range(0x8000, 0xa000)) for _ in range(n_cmds)]
    writes[5] = wr_fail
    writes[8] = {"addr": 0xa100, "rows": 3, "row_bytes": 20, "stride": 0x3000}  # window
    got_reads = []

    async def send_reads(ctx):
        for cmd in reads:
            await h.send(ctx, h.dut.rd_cmd, cmd)
        h.finished += 1

    async def receive_reads(ctx):
        beats = []
        while len(got_reads) < len(reads):
            ready = h.rng.random() >= h.out_stall
            # A status taken late keeps its command in flight while later ones run.
            s_ready = h.rng.random() >= 0.95
            ctx.set(h.dut.rd_data.ready, ready)
            ctx.set(h.dut.rd_status.ready, s_ready)
            _, _, valid, payload, s_valid, status = await ctx.tick().sample(
                h.dut.rd_data.valid, h.dut.rd_data.p, h.dut.rd_status.valid, h.dut.rd_status.p)
            if valid and ready:
                beats.append((payload.data, payload.row_last, payload.last))
            if s_valid and s_ready:
                got_reads.append((beats, (ErrorCause(status.cause), status.addr)))
                beats = []
        h.finished += 1

    async def do_writes(ctx):
        for cmd in writes:
            rows_data = [h.rng.randbytes(cmd["row_bytes"]) for _ in range(cmd["rows"])]
            status = await h.write(ctx, cmd, rows_data)
            if cmd is wr_fail:
                assert status == (cause[resp], wr_bad)
                reference[wr_fail["addr"]:wr_bad] = b"".join(rows_data[:2])
            else:
                assert status == _write_expect(cmd, rows_data, h.window, reference), cmd
        h.finished += 1

    async def monitor(ctx):
        rd_in_flight = wr_in_flight = 0
        writes_passed = reads_passed = 0    # while a read / a write waits
        while True:
            _, _, rd_v, rd_r, wr_v, wr_r, rs_v, rs_r, ws_v, ws_r = await ctx.tick().sample(
                h.dut.rd_cmd.valid, h.dut.rd_cmd.ready, h.dut.wr_cmd.valid, h.dut.wr_cmd.ready,
                h.dut.rd_status.valid, h.dut.rd_status.ready,
                h.dut.wr_status.valid, h.dut.wr_status.ready)
            rd_go, wr_go = rd_v and rd_r, wr_v and wr_r
            if gens == 1:
                assert not ((rd_go or wr_go) and wr_in_flight), "a command during a write"
                # A read waits for another only with two in flight: not a turn missed.
                if wr_go and rd_v and rd_in_flight < 2:
                    writes_passed += 1
                if rd_go and wr_v:
                    reads_passed += 1
                assert writes_passed <= 1 and reads_passed <= 1, "a direction starves"
            if rd_go:
                writes_passed = 0
            if wr_go:
                reads_passed = 0
            rd_in_flight += rd_go - (rs_v and rs_r)
            wr_in_flight += wr_go - (ws_v and ws_r)

    h.run(send_reads, receive_reads, do_writes, background=[monitor])
    for cmd, (beats, status) in zip(reads, got_reads, strict=True):
        if cmd is rd_fail:
            assert status == (cause[resp], rd_bad)
            assert beats == rd_fail_beats(reference)
        else:
            _check_read(h, cmd, beats, status, reference)
    mem = h.mem.mem
    # Bursts of the failing write after the failing one may have landed before the error.
    assert mem[:wr_bad] == reference[:wr_bad]
    fail_end = wr_fail["addr"] + wr_fail["rows"] * wr_fail["row_bytes"]
    assert mem[fail_end:] == reference[fail_end:]


@pytest.mark.parametrize("value", [0, 3, "1"])
def test_dma_burst_gens_is_validated(value):
    with pytest.raises(ConfigError, match="Config.dma_burst_gens="):
        Config(dma_burst_gens=value)
