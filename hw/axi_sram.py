"""On-chip RAM behind an AXI4 slave, with a simple word port for a debug/host master."""

from amaranth import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, AxiBurst, AxiResp


__all__ = ["AxiSram", "HostPortSignature"]


class HostPortSignature(wiring.Signature):
    """A word-wide request/response port, master view.

    ``req``: ``addr`` (word index), ``write``, ``data``, ``strb`` (byte enables);
    ``resp``: one transfer per request, in order; ``data`` is the word read (reads only).
    """

    def __init__(self, addr_width, data_width):
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "req": Out(stream.Signature(data.StructLayout({
                "addr": addr_width, "write": 1, "data": data_width,
                "strb": data_width // 8}))),
            "resp": In(stream.Signature(data.StructLayout({"data": data_width}))),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))

    def __repr__(self):
        return f"HostPortSignature({self.addr_width}, {self.data_width})"


class _Burst:
    """The state of one AXI burst in progress (read or write)."""

    def __init__(self, name, addr_width, id_width):
        self.active = Signal(name=f"{name}_active")
        self.addr = Signal(addr_width, name=f"{name}_addr")
        self.left = Signal(8, name=f"{name}_left")           # beats after this one
        self.size = Signal(3, name=f"{name}_size")
        self.id = Signal(id_width, name=f"{name}_id")
        self.bad_burst = Signal(name=f"{name}_bad_burst")   # not INCR: SLVERR, no access

    def start(self, m, addr, length, size, id, burst):
        m.d.sync += [self.active.eq(1), self.addr.eq(addr), self.left.eq(length),
                     self.size.eq(size), self.id.eq(id), self.bad_burst.eq(burst != AxiBurst.INCR)]

    def advance(self, m):
        m.d.sync += [self.addr.eq(self.addr + (Const(1, self.addr.shape()) << self.size)),
                     self.left.eq(self.left - 1)]
        with m.If(self.left == 0):
            m.d.sync += self.active.eq(0)


class AxiSram(wiring.Component):
    """``size_bytes`` of RAM at byte addresses ``[base, base + size_bytes)`` behind AXI4.

    The RAM is one ``lib.memory.Memory`` with a single address shared by its read and write
    port, so yosys maps it to single-port RAM (iCE40UP5K SB_SPRAM256KA with ``synth_ice40
    -spram``, ECP5 DP16KD).

    Ports
      s_axi   In(AXI4Signature(addr_width, data_width, id_width)): INCR bursts up to 256
              beats of any AxSIZE up to the bus width (a beat covers the whole word at its
              address; narrow writes rely on WSTRB), WSTRB honoured. One read and one write
              burst in progress; a new AR (AW) is accepted in the cycle the previous burst
              issues its last beat (has sent B). Beats outside the RAM answer DECERR (writes
              to them are ignored), FIXED / WRAP bursts SLVERR without touching the RAM. WLAST
              is not checked: the burst ends after AWLEN + 1 beats.
      host    In(HostPortSignature(log2(depth), data_width)): word accesses at word indexes
              from the start of the RAM, one response per request.

    Arbitration: the host port first, then reads and writes alternate when both are ready.

    Latency: R data the cycle after the beat is issued (AR accepted -> first R 2 cycles);
    a write beat is written in the cycle W is accepted, B the cycle after the last beat.
    Host response the cycle after the request is accepted.

    Throughput: 1 beat per cycle for reads or writes alone, shared 1:1 when both run.
    """

    def __init__(self, size_bytes, data_width, id_width, addr_width, *, base=0):
        if data_width not in (8, 16, 32, 64, 128, 256):
            raise ValueError(f"data_width must be a power of two from 8 to 256, not {data_width!r}")
        word_bytes = data_width // 8
        if (not isinstance(size_bytes, int) or size_bytes <= 0 or size_bytes % word_bytes
                or size_bytes > 1 << addr_width):
            raise ValueError(f"size_bytes must be a positive multiple of {word_bytes} no larger"
                             f" than 2**addr_width, not {size_bytes!r}")
        if (not isinstance(base, int) or base < 0 or base % word_bytes
                or base + size_bytes > 1 << addr_width):
            raise ValueError(f"base must be a multiple of {word_bytes} that leaves the RAM inside"
                             f" the {addr_width}-bit address space, not {base!r}")
        self.size_bytes = size_bytes
        self.base = base
        self.data_width = data_width
        self.word_bytes = word_bytes
        self.depth = size_bytes // word_bytes
        self.word_addr_width = max(1, (self.depth - 1).bit_length())
        super().__init__({
            "s_axi": In(AXI4Signature(addr_width, data_width, id_width)),
            "host": In(HostPortSignature(self.word_addr_width, data_width)),
        })

    def _in_range(self, addr):
        return (addr >= self.base) & (addr < self.base + self.size_bytes)

    def _word(self, addr):
        offset = (addr - self.base)[:len(addr)]
        return offset[(self.word_bytes - 1).bit_length():][:self.word_addr_width]

    def elaborate(self, platform):
        m = Module()
        axi, host = self.s_axi, self.host
        addr_width = len(axi.awaddr)
        id_width = len(axi.awid)

        m.submodules.mem = mem = Memory(shape=self.data_width, depth=self.depth, init=[])
        rd = mem.read_port()
        wr = mem.write_port(granularity=8)
        addr = Signal(self.word_addr_width)
        # A read port is enabled by default; it must hold its word while R or the host
        # response waits, so it is enabled only by the read that owns it.
        m.d.comb += [rd.addr.eq(addr), wr.addr.eq(addr), rd.en.eq(0)]

        rb = _Burst("ar", addr_width, id_width)
        wb = _Burst("aw", addr_width, id_width)
        w_err = Signal(2)
        prefer_write = Signal()

        # R and host response slots: the memory's read data feeds both, so a read may only be
        # issued when neither holds an unaccepted word (the port holds its data meanwhile).
        r_free = ~axi.rvalid | axi.rready
        h_free = ~host.resp.valid | host.resp.ready
        slot_free = r_free & h_free

        host_go = Signal()
        rd_go = Signal()
        wr_go = Signal()
        rd_want = rb.active & slot_free
        wr_want = wb.active & axi.wvalid
        m.d.comb += host_go.eq(host.req.valid & slot_free)
        with m.If(~host_go):
            with m.If(rd_want & wr_want):
                m.d.comb += [wr_go.eq(prefer_write), rd_go.eq(~prefer_write)]
            with m.Else():
                m.d.comb += [wr_go.eq(wr_want), rd_go.eq(rd_want)]
        with m.If(rd_go | wr_go):
            m.d.sync += prefer_write.eq(rd_go)

        # Host port.
        m.d.comb += host.req.ready.eq(host_go)
        with m.If(host.resp.ready):
            m.d.sync += host.resp.valid.eq(0)
        with m.If(host_go):
            m.d.comb += [
                addr.eq(host.req.payload.addr),
                rd.en.eq(~host.req.payload.write),
                wr.data.eq(host.req.payload.data),
                wr.en.eq(Mux(host.req.payload.write, host.req.payload.strb, 0)),
            ]
            m.d.sync += host.resp.valid.eq(1)
        m.d.comb += host.resp.payload.data.eq(rd.data)

        # Read channel.
        m.d.comb += [axi.arready.eq(~rb.active | (rd_go & (rb.left == 0))),
                     axi.rdata.eq(rd.data)]
        with m.If(axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        rd_ok = self._in_range(rb.addr) & ~rb.bad_burst
        with m.If(rd_go):
            m.d.comb += [addr.eq(self._word(rb.addr)), rd.en.eq(rd_ok)]
            m.d.sync += [
                axi.rvalid.eq(1), axi.rid.eq(rb.id), axi.rlast.eq(rb.left == 0),
                axi.rresp.eq(Mux(rb.bad_burst, AxiResp.SLVERR,
                                 Mux(rd_ok, AxiResp.OKAY, AxiResp.DECERR))),
            ]
            rb.advance(m)
        with m.If(axi.arvalid & axi.arready):
            rb.start(m, axi.araddr, axi.arlen, axi.arsize, axi.arid, axi.arburst)

        # Write channel.
        m.d.comb += [axi.awready.eq(~wb.active & ~axi.bvalid), axi.wready.eq(wr_go)]
        with m.If(axi.bready):
            m.d.sync += axi.bvalid.eq(0)
        wr_ok = self._in_range(wb.addr) & ~wb.bad_burst
        beat_resp = Mux(wb.bad_burst, AxiResp.SLVERR, Mux(wr_ok, AxiResp.OKAY, AxiResp.DECERR))
        # A burst's response is the worst of its beats (DECERR > SLVERR > OKAY).
        resp = Mux(beat_resp > w_err, beat_resp, w_err)
        with m.If(wr_go):
            m.d.comb += [addr.eq(self._word(wb.addr)), wr.data.eq(axi.wdata),
                         wr.en.eq(Mux(wr_ok, axi.wstrb, 0))]
            m.d.sync += w_err.eq(resp)
            with m.If(wb.left == 0):
                m.d.sync += [axi.bvalid.eq(1), axi.bid.eq(wb.id), axi.bresp.eq(resp),
                             w_err.eq(AxiResp.OKAY)]
            wb.advance(m)
        with m.If(axi.awvalid & axi.awready):
            wb.start(m, axi.awaddr, axi.awlen, axi.awsize, axi.awid, axi.awburst)
        return m
