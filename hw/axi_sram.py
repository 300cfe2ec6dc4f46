"""On-chip RAM behind an AXI4 slave, with a simple word port for a debug/host master."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import AXI_LEN_WIDTH, AXI4Signature, AxiBurst, AxiResp


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
    """The state of one AXI burst in progress (read or write).

    The address is kept as the word offset from the RAM's base: every supported beat is a
    whole word, so it advances by one (a burst may not wrap the address space).
    """

    def __init__(self, name, offset_width, id_width):
        self.active = Signal(name=f"{name}_active")
        self.offset = Signal(offset_width, name=f"{name}_offset", reset_less=True)
        # Beats after this one.
        self.left = Signal(AXI_LEN_WIDTH, name=f"{name}_left", reset_less=True)
        self.id = Signal(id_width, name=f"{name}_id", reset_less=True)
        # Not INCR of whole words: SLVERR for every beat, no access.
        self.bad_burst = Signal(name=f"{name}_bad_burst", reset_less=True)

    def start(self, m, sram, addr, length, size, id, burst):
        m.d.sync += [self.active.eq(1), self.offset.eq(sram._offset(addr)),
                     self.left.eq(length), self.id.eq(id),
                     self.bad_burst.eq((burst != AxiBurst.INCR) | (size != sram.full_size))]

    def advance(self, m):
        m.d.sync += [self.offset.eq(self.offset + 1), self.left.eq(self.left - 1)]
        with m.If(self.left == 0):
            m.d.sync += self.active.eq(0)


class AxiSram(wiring.Component):
    """``size_bytes`` of RAM at byte addresses ``[base, base + size_bytes)`` behind AXI4.

    The RAM is one ``lib.memory.Memory`` with a single address shared by its read and write
    port, so yosys maps it to single-port RAM (iCE40UP5K SB_SPRAM256KA with ``synth_ice40
    -spram``, ECP5 DP16KD).

    Ports
      s_axi   In(AXI4Signature(addr_width, data_width, id_width)): INCR bursts up to 256
              beats of whole words (AxSIZE = the bus width, which is what a DMA issues;
              narrow writes rely on WSTRB), WSTRB honoured. One read and one write
              burst in progress; a new AR (AW) is accepted in the cycle the previous burst
              issues its last beat (has sent B). Beats outside the RAM answer DECERR (writes
              to them are ignored); FIXED / WRAP bursts and narrower AxSIZE answer SLVERR for
              every beat without touching the RAM. WLAST is not checked: the burst ends
              after AWLEN + 1 beats.
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
        self.full_size = (word_bytes - 1).bit_length()       # AxSIZE of a whole word
        self.addr_width = addr_width
        super().__init__({
            "s_axi": In(AXI4Signature(addr_width, data_width, id_width)),
            "host": In(HostPortSignature(self.word_addr_width, data_width)),
        })

    def _offset(self, addr):
        """The word offset of byte address ``addr`` from the base (modulo the address space:
        an address below the base gives an offset past the end)."""
        return (addr - self.base)[:self.addr_width][self.full_size:]

    def _in_range(self, offset):
        return offset < self.depth

    def elaborate(self, platform):
        m = Module()
        axi, host = self.s_axi, self.host
        addr_width = len(axi.awaddr)
        id_width = len(axi.awid)

        m.submodules.mem = mem = Memory(shape=self.data_width, depth=self.depth, init=[])
        rd = mem.read_port()
        wr = mem.write_port(granularity=8)
        addr = Signal(self.word_addr_width)
        m.d.comb += [rd.addr.eq(addr), wr.addr.eq(addr)]

        offset_width = addr_width - self.full_size
        rb = _Burst("ar", offset_width, id_width)
        wb = _Burst("aw", offset_width, id_width)
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

        # The RAM's address, write data and enables: one mux each, from whoever has it this
        # cycle. A read port is enabled only by the read that owns it: it must hold its word
        # while R or the host response waits.
        rd_ok = self._in_range(rb.offset) & ~rb.bad_burst
        wr_ok = self._in_range(wb.offset) & ~wb.bad_burst
        m.d.comb += [
            addr.eq(Mux(host_go, host.req.payload.addr,
                        Mux(wr_go, wb.offset, rb.offset)[:self.word_addr_width])),
            wr.data.eq(Mux(host_go, host.req.payload.data, axi.wdata)),
            rd.en.eq(Mux(host_go, ~host.req.payload.write, rd_go & rd_ok)),
            wr.en.eq(Mux(host_go, Mux(host.req.payload.write, host.req.payload.strb, 0),
                         Mux(wr_go & wr_ok, axi.wstrb, 0))),
        ]

        # Host port.
        m.d.comb += host.req.ready.eq(host_go)
        with m.If(host.resp.ready):
            m.d.sync += host.resp.valid.eq(0)
        with m.If(host_go):
            m.d.sync += host.resp.valid.eq(1)
        m.d.comb += host.resp.payload.data.eq(rd.data)

        # Read channel.
        m.d.comb += [axi.arready.eq(~rb.active | (rd_go & (rb.left == 0))),
                     axi.rdata.eq(rd.data)]
        with m.If(axi.rready):
            m.d.sync += axi.rvalid.eq(0)
        with m.If(rd_go):
            m.d.sync += [
                axi.rvalid.eq(1), axi.rid.eq(rb.id), axi.rlast.eq(rb.left == 0),
                axi.rresp.eq(Mux(rb.bad_burst, AxiResp.SLVERR,
                                 Mux(rd_ok, AxiResp.OKAY, AxiResp.DECERR))),
            ]
            rb.advance(m)
        with m.If(axi.arvalid & axi.arready):
            rb.start(m, self, axi.araddr, axi.arlen, axi.arsize, axi.arid, axi.arburst)

        # Write channel.
        m.d.comb += [axi.awready.eq(~wb.active & ~axi.bvalid), axi.wready.eq(wr_go)]
        with m.If(axi.bready):
            m.d.sync += axi.bvalid.eq(0)
        beat_resp = Mux(wb.bad_burst, AxiResp.SLVERR, Mux(wr_ok, AxiResp.OKAY, AxiResp.DECERR))
        # A burst's response is the worst of its beats (DECERR > SLVERR > OKAY).
        resp = Mux(beat_resp > w_err, beat_resp, w_err)
        with m.If(wr_go):
            m.d.sync += w_err.eq(resp)
            with m.If(wb.left == 0):
                m.d.sync += [axi.bvalid.eq(1), axi.bid.eq(wb.id), axi.bresp.eq(resp),
                             w_err.eq(AxiResp.OKAY)]
            wb.advance(m)
        with m.If(axi.awvalid & axi.awready):
            wb.start(m, self, axi.awaddr, axi.awlen, axi.awsize, axi.awid, axi.awburst)
        return m
