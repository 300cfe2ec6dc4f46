"""The 2D DMA engine: AXI4 master with a read and a write engine."""

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sw.isa import ErrorCause

from .axi import AXI4Signature, AxiBurst, AxiResp
from .burst import (BurstGen, burst_layout, dma_cmd_layout, dma_row_bytes_width,
                    dma_status_layout)
from .config import Config
from .ram import registered_read


__all__ = ["Dma", "dma_cmd_layout", "dma_status_layout", "dma_data_layout", "COUNTER_WIDTH"]


COUNTER_WIDTH = 32


def dma_data_layout(cfg):
    """One bus-wide beat of a row: the row's bytes from lane 0, ``row_last`` / ``last`` marks."""
    return data.StructLayout({
        "data": unsigned(cfg.dma_data_width),
        "row_last": unsigned(1),
        "last": unsigned(1),
    })


def _bus_error_cause(resp):
    return Mux(resp == AxiResp.DECERR, ErrorCause.DMA_DECERR, ErrorCause.DMA_SLVERR)


def _is_error(resp):
    return (resp == AxiResp.SLVERR) | (resp == AxiResp.DECERR)


# Byte counts are compared only with lane numbers and the bus width, so they are reduced
# to min(count, bus_bytes) first: the comparisons then take a few bits, not a carry chain.

def _clamp(count, bus_bytes):
    """``min(count, bus_bytes)``, ``log2(bus_bytes) + 1`` bits wide."""
    off_bits = exact_log2(bus_bytes)
    return Mux(count[off_bits:] != 0, bus_bytes, count[:off_bits])


def _lanes_below(m, count, bus_bytes):
    """Byte-lane mask of the lanes ``l < count``."""
    mask = Signal(bus_bytes)
    clamped = _clamp(count, bus_bytes)
    m.d.comb += mask.eq(Cat(clamped > lane for lane in range(bus_bytes)))
    return mask


def _expand_bytes(mask, bus_bytes):
    return Cat(mask[lane].replicate(8) for lane in range(bus_bytes))


def _at_most_bus(count, bus_bytes):
    """``count <= bus_bytes``."""
    off_bits = exact_log2(bus_bytes)
    high = count[off_bits:]
    return (high == 0) | ((high == 1) & (count[:off_bits] == 0))


def _sat_sub_bus(count, bus_bytes):
    """``max(count - bus_bytes, 0)``: only the bits above the lane bits count down."""
    off_bits = exact_log2(bus_bytes)
    return Mux(_at_most_bus(count, bus_bytes), 0, Cat(count[:off_bits], count[off_bits:] - 1))


class _BlockRamFifo(fifo.FIFOInterface, Elaboratable):
    """:class:`~amaranth.lib.fifo.SyncFIFOBuffered` (``depth >= 2``), cycle for cycle, whose
    storage has no defined read-during-write.

    The storage is never read and written at one address in the same cycle (a write needs a
    free entry, a read a filled one), so what such a read would return does not matter, and
    the memory says so (``no_rw_check``; its read port is asynchronous with a reset-less
    register, which yosys folds into the block RAM). Otherwise yosys adds registers to give
    a defined result: a bypass of the data width for a transparent port, twice that for one
    returning the old data (iCE40 block RAM has neither).
    """

    def __init__(self, *, width, depth):
        if depth < 2:
            raise ValueError(f"_BlockRamFifo depth={depth!r} must be at least 2")
        super().__init__(width=width, depth=depth)

    def elaborate(self, platform):
        m = Module()
        inner_depth = self.depth - 1
        storage = m.submodules.storage = Memory(shape=self.width, depth=inner_depth, init=[],
                                                attrs={"no_rw_check": 1})
        w_port = storage.write_port()
        r_port = storage.read_port(domain="comb")
        produce = Signal(range(inner_depth))
        consume = Signal(range(inner_depth))
        inner_level = Signal(range(inner_depth + 1))

        def incr(index):
            return Mux(index == inner_depth - 1, 0, index + 1)

        do_write = self.w_rdy & self.w_en
        do_inner_read = (inner_level != 0) & (~self.r_rdy | self.r_en)
        m.d.comb += [
            self.w_rdy.eq(inner_level != inner_depth),
            w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(do_write),
            r_port.addr.eq(consume),
            self.r_data.eq(registered_read(m, r_port, do_inner_read, name="r_data")),
            self.w_level.eq(inner_level + self.r_rdy), self.r_level.eq(self.w_level),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        with m.If(do_inner_read):
            m.d.sync += [consume.eq(incr(consume)), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        m.d.sync += inner_level.eq(inner_level + do_write - do_inner_read)
        return m


def _read_meta_layout(cfg):
    """The fields of a :func:`burst_layout` entry the read engine uses after the AR. With one
    burst in flight (no burst address needed, see the read engine) a burst's ``offset`` and
    ``row_bytes`` and an end entry's ``addr`` and ``cause`` share their bits."""
    fields = burst_layout(cfg).members
    common = {name: fields[name] for name in
              ("end", "len", "row_first", "row_last", "cmd_last", "tag")}
    if cfg.max_outstanding > 1:
        return data.StructLayout({**common, **{name: fields[name] for name in
                                               ("addr", "offset", "row_bytes", "cause")}})
    layout, at = {}, 0
    for name, shape in common.items():
        layout[name] = data.Field(shape, at)
        at += layout[name].width
    union = at
    for part in (("offset", "row_bytes"), ("addr", "cause")):
        at = union
        for name in part:
            layout[name] = data.Field(fields[name], at)
            at += layout[name].width
    return data.FlexibleLayout(max(field.offset + field.width for field in layout.values()),
                               layout)


def _write_meta_layout(cfg):
    """The fields of a :func:`burst_layout` entry the write engine uses after the AW."""
    fields = burst_layout(cfg).members
    return data.StructLayout({name: fields[name]
                              for name in ("end", "len", "offset", "row_first")})


class Dma(wiring.Component):
    """AXI4 master moving 2D blocks between DRAM and bus-wide row beats.

    A command ``{addr, rows, row_bytes, stride}`` names ``rows`` rows of ``row_bytes`` bytes,
    row ``r`` at byte address ``addr + r*stride`` (any alignment). The read and the write
    engine are independent, so a load and a store overlap on the bus; with
    ``cfg.dma_burst_gens == 1`` they share the one burst generator that splits commands into
    bursts (see Shared burst generator).

    Ports
      m_axi        Out(AXI4Signature(addr_width, dma_data_width, id_width)). INCR bursts,
                   AxSIZE = log2(bus bytes), ID 0, at most ``cfg.max_burst_beats`` beats, never
                   across 4 KiB; every burst starts at a bus-aligned address; rows are split
                   into bursts independently (unaligned ends use WSTRB on writes and are
                   discarded on reads; WDATA lanes with WSTRB low carry unspecified bytes).
                   AxVALID / WVALID come from registers and hold until their handshake.
                   RREADY and BREADY stay high.
      rd_cmd       In(stream(dma_cmd_layout)).
      rd_data      Out(stream{data, row_last, last}): each row from lane 0 in exactly
                   ``ceil(row_bytes / bus_bytes)`` beats, lanes past the row end zero,
                   ``row_last`` on a row's last beat, ``last`` on the command's last beat.
      rd_status    Out(stream{cause, addr}): one per read command, after its data.
      wr_cmd       In(stream(dma_cmd_layout)).
      wr_data      In(stream{data, row_last, last}): the rows to write, same format as
                   ``rd_data`` (``row_last`` is not used; ``last`` ends a faulted command).
      wr_status    Out(stream{cause, addr}): one per write command, after its last B response.
      window_base  In(addr_width), window_size  In(addr_width + 1): the DRAM window every
                   row must lie in (a size of ``2**addr_width`` is the whole address space).
      bytes_read, bytes_written  Out(32): running counts of the payload bytes delivered on
                   ``rd_data`` / written with WSTRB set, wrapping; a beat's bytes count from
                   the second cycle after its handshake.
      clear_counters             In(1): clears both counts.
      pause        In(1): no new command is taken (the bus guard's ``draining``). AxADDR,
                   AxLEN, WDATA, WSTRB and WLAST are reset-less registers: after a reset (the
                   watchdog's forced stop) they still hold the request the reset interrupted,
                   which the guard re-presents, until a new command is taken.

    Latency
      The first AR (AW) is valid 2 cycles after ``rd_cmd`` (``wr_cmd``) is accepted. An R
      beat leaves on ``rd_data`` 2 cycles after its handshake (the extra last beat of an
      unaligned row one cycle later); ``rd_status`` is valid the cycle after the command's
      last ``rd_data`` beat. ``wr_data`` beats are taken from the cycle after the first AW is
      valid, each W beat is valid the cycle after its ``wr_data`` beat was taken, and
      ``wr_status`` is valid the cycle after the last B response.

    Throughput
      One bus beat per cycle in each direction. Up to ``cfg.max_outstanding`` read bursts
      are in flight, limited further so that their data fits in a buffer of
      ``2 * cfg.max_burst_beats`` beats: RREADY never drops. Up to ``cfg.max_outstanding``
      write bursts await their B response; AW runs ahead of W. An unaligned read row costs
      at most one extra cycle at its end. The read engine takes a new command while the
      previous one is still draining (two in flight); the write engine takes a new command
      after the previous one's ``wr_status`` has been accepted.

    Shared burst generator (``cfg.dma_burst_gens == 1``)
      One command at a time is split into bursts, for the engine of its direction. A write
      holds the generator until its ``wr_status`` has been accepted; a read only until its
      last burst (and end entry) has gone to the read engine, so a read or a write may
      start while a read's data drains (still at most two reads in flight). When both
      ``rd_cmd`` and ``wr_cmd`` wait, the direction that did not go last goes first: a
      command waits for at most one command of the other direction (and a read for one of
      the two reads in flight to finish). Latencies are as above
      once a command is accepted; a load and a store no longer overlap, except a store
      behind a load's draining data.

      Neither direction waits on the other forever, since a command holding the generator
      completes without any progress of the other direction: a write completes once the
      store unit supplies its ``wr_data`` (accumulator rows through the output lane; an
      accumulator read waits only for the accumulator's writes, a bounded burst from the
      exec unit or from a load whose read is already past the generator, and a qparam
      write delays the lane's register by a cycle at most) and the B responses arrive; a
      read's bursts are taken as its data is taken from ``rd_data``, by the fetcher (always
      ready, it requests only what its buffer has room for) or the load unit, whose row
      writes wait only for the exec unit's scratchpad reads or accumulator writes (bounded)
      or, for qparam rows, for a cycle in which the store unit's serial lane holds its read
      address (it does for most cycles, and for every cycle it waits for the DMA), never for
      a DMA write. As AXI allows a master to assume, the memory answers reads and writes
      independently. The units hand the DMA a command only after taking its tokens, so a
      command waiting for the generator holds nothing that the command in it needs.

    Faults
      Rows are window-checked in order before any burst of the row is issued. The first row
      outside ``[window_base, window_base + window_size)`` ends the command: no AR/AW for it
      or later rows, bursts already issued complete, read data still due is drained and not
      delivered, the command's remaining ``wr_data`` beats (up to the one with ``last``) are
      consumed, then the status is ``{DMA_WINDOW, row address}``. A SLVERR / DECERR on R or
      B stops the command the same way with ``{DMA_SLVERR / DMA_DECERR, burst address}``;
      write beats produced after the error response has arrived carry WSTRB = 0. On a fault,
      ``rd_data`` stops delivering at the faulting point: a row may end without
      ``row_last``, and the command's data without ``last``; ``rd_status`` tells why.
      A command with ``rows = 0`` or ``row_bytes = 0`` moves nothing and gets status NONE.
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "m_axi": Out(AXI4Signature(cfg.addr_width, cfg.dma_data_width, cfg.id_width)),
            "rd_cmd": In(stream.Signature(dma_cmd_layout(cfg))),
            "rd_data": Out(stream.Signature(dma_data_layout(cfg))),
            "rd_status": Out(stream.Signature(dma_status_layout(cfg))),
            "wr_cmd": In(stream.Signature(dma_cmd_layout(cfg))),
            "wr_data": In(stream.Signature(dma_data_layout(cfg))),
            "wr_status": Out(stream.Signature(dma_status_layout(cfg))),
            "window_base": In(cfg.addr_width),
            "window_size": In(cfg.addr_width + 1),
            "bytes_read": Out(COUNTER_WIDTH),
            "bytes_written": Out(COUNTER_WIDTH),
            "clear_counters": In(1),
            "pause": In(1),
        })

    @property
    def read_buffer_beats(self):
        return 2 * self._cfg.max_burst_beats

    def elaborate(self, platform):
        m = Module()
        axi = self.m_axi
        size = exact_log2(self._cfg.bus_bytes)
        m.d.comb += [axi.arsize.eq(size), axi.arburst.eq(AxiBurst.INCR),
                     axi.awsize.eq(size), axi.awburst.eq(AxiBurst.INCR)]
        window_end = self.window_base + self.window_size
        # The bus payload survives a reset for the bus guard (see ``pause``).
        self._kept = {name: Signal.like(getattr(axi, name), reset_less=True, name=f"kept_{name}")
                      for name in ("araddr", "arlen", "awaddr", "awlen", "wdata", "wstrb",
                                   "wlast")}
        m.d.comb += [getattr(axi, name).eq(kept) for name, kept in self._kept.items()]
        if self._cfg.dma_burst_gens == 2:
            # Two read commands in flight: the next one's ARs go out while the last one's
            # data drains. The write engine takes one command at a time.
            rd_gen = self._burst_gen(m, "rd_gen", self.rd_cmd, self.rd_status, in_flight=2,
                                     window_end=window_end)
            read_bytes = self._read_engine(m, rd_gen.o)
            wr_gen = self._burst_gen(m, "wr_gen", self.wr_cmd, self.wr_status, in_flight=1,
                                     window_end=window_end, end_result=False)
            write_bytes = self._write_engine(m, wr_gen, wr_gen.o)
        else:
            gen, rd_bursts, wr_bursts = self._shared_burst_gen(m, window_end)
            read_bytes = self._read_engine(m, rd_bursts)
            write_bytes = self._write_engine(m, gen, wr_bursts)
        # A cycle's bytes are added the cycle after: the counters' carry chains then start
        # at a register, not at the end of the consumers' ready chains.
        read_last = Signal.like(read_bytes, name="read_bytes_last")
        written_last = Signal.like(write_bytes, name="written_bytes_last")
        with m.If(self.clear_counters):
            m.d.sync += [self.bytes_read.eq(0), self.bytes_written.eq(0),
                         read_last.eq(0), written_last.eq(0)]
        with m.Else():
            m.d.sync += [read_last.eq(read_bytes), written_last.eq(write_bytes),
                         self.bytes_read.eq(self.bytes_read + read_last),
                         self.bytes_written.eq(self.bytes_written + written_last)]
        return m

    def _burst_gen(self, m, name, cmd, status, in_flight, window_end, end_result=True):
        """A BurstGen fed from ``cmd`` with at most ``in_flight`` commands between their
        acceptance and their ``status`` (``end_result``: see :class:`BurstGen`)."""
        gen = m.submodules[name] = BurstGen(self._cfg, end_result=end_result)
        wiring.connect(m, wiring.flipped(cmd), gen.cmd)
        count = Signal(range(in_flight + 1), name=f"{name}_in_flight")
        started = gen.cmd.valid & gen.cmd.ready
        finished = status.valid & status.ready
        m.d.comb += [gen.start.eq((count < in_flight) & ~self.pause),
                     gen.window_base.eq(self.window_base),
                     gen.window_end.eq(window_end)]
        m.d.sync += count.eq(count + started - finished)
        return gen

    def _shared_burst_gen(self, m, window_end):
        """One BurstGen for both engines (``dma_burst_gens=1``); returns it and the read and
        the write engine's burst streams.

        The generator takes a command when it is idle (the last one's end entry has gone out)
        and no write is in flight: a write holds it until its ``wr_status`` is accepted, since
        the write engine reads the generator's ``row_bytes`` and ``result`` until then. A read
        carries all it needs in the read engine's queue, so, as with two generators, a second
        read (or a write) may start while a read's data drains. When both directions wait,
        the one that did not go last goes: neither waits for more than one command of the
        other (a read with two in flight is not waiting for a turn). The generator's bursts
        go to the write engine while a write is in flight (no command starts before its
        status), else to the read engine.
        """
        cfg = self._cfg
        gen = m.submodules.burst_gen = BurstGen(cfg)
        rd_cmd, wr_cmd = self.rd_cmd, self.wr_cmd
        rd_in_flight = Signal(range(3))
        wr_in_flight = Signal()
        write_next = Signal()       # the last command was a read: a waiting write goes first
        # The generator's tag alternates over commands of both directions; the read engine
        # needs it to alternate over reads, to tell a failed read's bursts from the next one's.
        rd_tag = Signal()
        read_ok = rd_in_flight != 2
        pick_write = Signal()
        m.d.comb += [
            pick_write.eq(wr_cmd.valid & (write_next | ~(rd_cmd.valid & read_ok))),
            gen.start.eq(~self.pause & ~wr_in_flight),
            gen.cmd.valid.eq(wr_cmd.valid | (rd_cmd.valid & read_ok)),
            gen.cmd.payload.eq(Mux(pick_write, wr_cmd.payload, rd_cmd.payload)),
            rd_cmd.ready.eq(gen.cmd.ready & ~pick_write & read_ok),
            wr_cmd.ready.eq(gen.cmd.ready & pick_write),
            gen.window_base.eq(self.window_base),
            gen.window_end.eq(window_end),
        ]
        with m.If(gen.cmd.valid & gen.cmd.ready):
            m.d.sync += write_next.eq(~pick_write)
            with m.If(~pick_write):
                m.d.sync += rd_tag.eq(~rd_tag)
        m.d.sync += rd_in_flight.eq(rd_in_flight + (rd_cmd.valid & rd_cmd.ready)
                                    - (self.rd_status.valid & self.rd_status.ready))
        with m.If(wr_cmd.valid & wr_cmd.ready):
            m.d.sync += wr_in_flight.eq(1)
        with m.If(self.wr_status.valid & self.wr_status.ready):
            m.d.sync += wr_in_flight.eq(0)

        layout = burst_layout(cfg)
        rd_bursts = stream.Signature(layout).create(path=("rd_bursts",))
        wr_bursts = stream.Signature(layout).create(path=("wr_bursts",))
        m.d.comb += [
            rd_bursts.payload.eq(gen.o.payload), rd_bursts.payload.tag.eq(rd_tag),
            wr_bursts.payload.eq(gen.o.payload),
            rd_bursts.valid.eq(gen.o.valid & ~wr_in_flight),
            wr_bursts.valid.eq(gen.o.valid & wr_in_flight),
            gen.o.ready.eq(Mux(wr_in_flight, wr_bursts.ready, rd_bursts.ready)),
        ]
        return gen, rd_bursts, wr_bursts

    def _read_engine(self, m, bursts):
        """AR issue with buffer credits, R buffer, realignment; returns bytes delivered now.
        ``bursts`` come from a generator with ``end_result``, at most two commands in flight,
        their tags alternating."""
        cfg = self._cfg
        axi = self.m_axi
        bus_bytes = cfg.bus_bytes
        dw = cfg.dma_data_width
        # With one burst in flight an AR needs an empty queue, so ARADDR keeps the address of
        # the burst being realigned until its command's status is taken: the queue holds no
        # burst addresses, and a fault's address need not be copied.
        several = cfg.max_outstanding > 1
        layout = _read_meta_layout(cfg)
        depth = self.read_buffer_beats
        dbuf = m.submodules.rd_buf = _BlockRamFifo(width=dw + len(axi.rresp), depth=depth)
        meta_fifo = m.submodules.rd_meta = fifo.SyncFIFOBuffered(
            width=layout.size, depth=cfg.max_outstanding + 1)
        meta = data.View(layout, meta_fifo.r_data)

        burst = bursts.p
        # Beats of issued bursts not yet taken out of the buffer: an AR goes out only when
        # its whole burst fits, which is why RREADY never needs to drop. With one burst in
        # flight the queue is only empty once the buffer is, and a burst fills at most half
        # of it: nothing to count.
        reserve = Signal(range(depth + 1))
        release = Signal()
        if several:
            reserved = Signal(range(depth + 1))
            m.d.sync += reserved.eq(reserved + reserve - release)
            fits = reserved + burst.len + 1 <= depth
        else:
            fits = Const(1)

        # AR issue.
        # Tags of the bursts whose R beats are due, in order, so an error response stops the
        # issue of its own command's remaining bursts as soon as it arrives.
        due_tags = m.submodules.rd_due_tags = fifo.SyncFIFO(width=1, depth=cfg.max_outstanding)
        stopped = Signal()
        stopped_tag = Signal()

        ar_free = ~axi.arvalid | axi.arready
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += axi.arvalid.eq(0)
        with m.If(bursts.valid):
            with m.If(burst.end):
                m.d.comb += [bursts.ready.eq(meta_fifo.w_rdy), meta_fifo.w_en.eq(1)]
            with m.Elif(stopped & (burst.tag == stopped_tag)):
                m.d.comb += bursts.ready.eq(1)
            with m.Elif(ar_free & (meta_fifo.w_level < cfg.max_outstanding) & fits):
                m.d.comb += [bursts.ready.eq(1), meta_fifo.w_en.eq(1), due_tags.w_en.eq(1),
                             reserve.eq(burst.len + 1)]
                m.d.sync += [axi.arvalid.eq(1), self._kept["araddr"].eq(burst.addr),
                             self._kept["arlen"].eq(burst.len)]
        # Without burst addresses an end entry's fields overlay a burst's (_read_meta_layout).
        end_only = () if several else ("addr", "cause")
        entry = Signal(layout)
        m.d.comb += [entry[name].eq(burst[name]) for name, _ in layout
                     if name not in end_only]
        with m.If(burst.end):
            m.d.comb += [entry[name].eq(burst[name]) for name in end_only]
        m.d.comb += [meta_fifo.w_data.eq(entry), due_tags.w_data.eq(burst.tag)]

        # R into the buffer.
        m.d.comb += [axi.rready.eq(dbuf.w_rdy), dbuf.w_en.eq(axi.rvalid),
                     dbuf.w_data.eq(Cat(axi.rdata, axi.rresp)),
                     due_tags.r_en.eq(axi.rvalid & axi.rready & axi.rlast)]
        r_error = axi.rvalid & axi.rready & _is_error(axi.rresp)
        with m.If(r_error):
            m.d.sync += [stopped.eq(1), stopped_tag.eq(due_tags.r_data)]

        # The command at the head of the realignment saw an error response: drop its data.
        failed = Signal()
        fail_cause = Signal(ErrorCause)
        fail_addr = Signal(cfg.addr_width) if several else axi.araddr

        # Realignment: output beat j of a row is bytes [offset + j*B, offset + (j+1)*B) of the
        # row's bus beats, i.e. the previous and the current bus beat shifted by the offset.
        beat = dbuf.r_data[:dw]
        resp = dbuf.r_data[dw:]
        offset = meta.offset
        beat_idx = Signal(len(meta.len))
        prev = Signal(dw)
        out_rem = Signal(dma_row_bytes_width(cfg))  # bytes of the row not yet delivered
        flush = Signal()                   # the row's last beat is only in `prev`

        first_beat = Signal()
        cur_rem = Signal.like(out_rem)
        aligned = Signal(dw)
        # One byte-select per lane: offset 0 takes the current beat, offset k the previous
        # beat's bytes from k on and then the current beat's. Lanes past the row end (all
        # that would come from the current beat in a flush) are masked below.
        skip = Signal.like(offset)
        m.d.comb += [
            first_beat.eq(meta.row_first & (beat_idx == 0) & ~flush),
            cur_rem.eq(Mux(first_beat, meta.row_bytes, out_rem)),
            skip.eq(offset - 1),
            aligned.eq((Cat(prev[8:], beat) >> Cat(Const(0, 3), skip))[:dw]),
        ]
        out = self.rd_data
        m.d.comb += [
            out.p.data.eq(aligned & _expand_bytes(_lanes_below(m, cur_rem, bus_bytes),
                                                  bus_bytes)),
            out.p.row_last.eq(_at_most_bus(cur_rem, bus_bytes)),
            out.p.last.eq(_at_most_bus(cur_rem, bus_bytes) & meta.cmd_last),
        ]
        delivered = Mux(out.valid & out.ready, _clamp(cur_rem, bus_bytes), 0)
        status = self.rd_status
        last_of_burst = beat_idx == meta.len

        with m.If(meta_fifo.r_rdy & meta.end):
            m.d.comb += [status.valid.eq(1),
                         status.p.cause.eq(Mux(failed, fail_cause, meta.cause)),
                         status.p.addr.eq(Mux(failed, fail_addr, meta.addr))]
            with m.If(status.ready):
                m.d.comb += meta_fifo.r_en.eq(1)
                m.d.sync += failed.eq(0)
                with m.If((meta.tag == stopped_tag) & ~r_error):
                    m.d.sync += stopped.eq(0)
        with m.Elif(meta_fifo.r_rdy & flush):
            m.d.comb += out.valid.eq(~failed)
            with m.If(out.ready | failed):
                m.d.comb += meta_fifo.r_en.eq(1)
                m.d.sync += [flush.eq(0), out_rem.eq(0)]
        with m.Elif(meta_fifo.r_rdy & dbuf.r_rdy):
            beat_error = _is_error(resp)
            emit = ~(first_beat & (offset != 0)) & ~failed & ~beat_error
            m.d.comb += out.valid.eq(emit)
            with m.If(out.ready | ~emit):
                m.d.comb += [dbuf.r_en.eq(1), release.eq(1)]
                m.d.sync += [prev.eq(beat), beat_idx.eq(beat_idx + 1),
                             out_rem.eq(Mux(emit, _sat_sub_bus(cur_rem, bus_bytes), cur_rem))]
                with m.If(beat_error & ~failed):
                    m.d.sync += [failed.eq(1), fail_cause.eq(_bus_error_cause(resp))]
                    if several:
                        m.d.sync += fail_addr.eq(meta.addr)
                with m.If(last_of_burst):
                    m.d.sync += beat_idx.eq(0)
                    row_left = Mux(emit, ~_at_most_bus(cur_rem, bus_bytes), cur_rem != 0)
                    with m.If(meta.row_last & ~failed & ~beat_error & row_left):
                        m.d.sync += flush.eq(1)
                    with m.Else():
                        m.d.comb += meta_fifo.r_en.eq(1)
        return delivered

    def _write_engine(self, m, gen, bursts):
        """AW issue, W realignment and strobes, B tracking; returns bytes written now.
        ``bursts`` come from ``gen``, which takes no command while one is in flight."""
        cfg = self._cfg
        axi = self.m_axi
        bus_bytes = cfg.bus_bytes
        dw = cfg.dma_data_width
        # One command at a time: its row_bytes and end result are read from the generator,
        # which holds them until the next command, so the queue carries only per-burst fields.
        layout = _write_meta_layout(cfg)
        meta_fifo = m.submodules.wr_meta = fifo.SyncFIFOBuffered(
            width=layout.size, depth=cfg.max_outstanding + 1)
        meta = data.View(layout, meta_fifo.r_data)
        # Addresses of the bursts awaiting their B response, to report a failing one. With
        # one burst outstanding the next AW waits for its B, and after an error for the
        # status, so AWADDR holds that address all along: the queue only counts.
        several = cfg.max_outstanding > 1
        # (Not width 0, which yosys cannot emit; the unread bit is optimised away.)
        pending = m.submodules.wr_pending = fifo.SyncFIFO(
            width=cfg.addr_width if several else 1, depth=cfg.max_outstanding)
        bus_error = Signal()
        fail_cause = Signal(ErrorCause)
        fail_addr = Signal(cfg.addr_width) if several else axi.awaddr

        # AW issue.
        burst = bursts.p
        aw_free = ~axi.awvalid | axi.awready
        with m.If(axi.awvalid & axi.awready):
            m.d.sync += axi.awvalid.eq(0)
        with m.If(bursts.valid):
            with m.If(burst.end):
                m.d.comb += [bursts.ready.eq(meta_fifo.w_rdy), meta_fifo.w_en.eq(1)]
            with m.Elif(bus_error):
                m.d.comb += bursts.ready.eq(1)
            with m.Elif(aw_free & (meta_fifo.w_level < cfg.max_outstanding) & pending.w_rdy):
                m.d.comb += [bursts.ready.eq(1), meta_fifo.w_en.eq(1), pending.w_en.eq(1)]
                m.d.sync += [axi.awvalid.eq(1), self._kept["awaddr"].eq(burst.addr),
                             self._kept["awlen"].eq(burst.len)]
        entry = Signal(layout)
        m.d.comb += [entry[name].eq(burst[name]) for name, _ in layout]
        m.d.comb += meta_fifo.w_data.eq(entry)
        if several:
            m.d.comb += pending.w_data.eq(burst.addr)

        # B.
        m.d.comb += [axi.bready.eq(1), pending.r_en.eq(axi.bvalid)]
        with m.If(axi.bvalid & _is_error(axi.bresp) & ~bus_error):
            m.d.sync += [bus_error.eq(1), fail_cause.eq(_bus_error_cause(axi.bresp))]
            if several:
                m.d.sync += fail_addr.eq(pending.r_data)

        # W: bus beat k of a row holds input beats k-1 and k shifted up by the row's offset.
        offset = meta.offset
        beat_idx = Signal(len(meta.len))
        prev = Signal(dw)
        # bytes from this bus beat's lane 0 to the row end
        bus_rem = Signal(dma_row_bytes_width(cfg) + 1)
        last_seen = Signal()                   # the command's `last` wr_data beat was taken
        ended = Signal()

        first_beat = Signal()
        cur_bus_rem = Signal.like(bus_rem)
        low = Signal.like(offset)
        need_in = Signal()
        shifted = Signal(2 * dw)
        strobe = Signal(bus_bytes)
        m.d.comb += [
            first_beat.eq(meta.row_first & (beat_idx == 0)),
            cur_bus_rem.eq(Mux(first_beat, offset + gen.row_bytes, bus_rem)),
            low.eq(Mux(first_beat, offset, 0)),
            # Past a row's first bus beat, input bytes remain while more than the offset's
            # lanes of the row remain: the input beats are the row shifted down by them.
            need_in.eq(first_beat | (bus_rem > offset)),
            # Lanes outside the row (from `prev` before its first byte, from `wr_data` past
            # its end) have their strobe low, so their data is left unmasked.
            shifted.eq(Cat(prev, self.wr_data.p.data) >> Cat(Const(0, 3), bus_bytes - offset)),
            strobe.eq(Mux(bus_error, 0, Cat((lane >= low) & (_clamp(cur_bus_rem, bus_bytes) > lane)
                                            for lane in range(bus_bytes)))),
        ]

        w_free = ~axi.wvalid | axi.wready
        with m.If(axi.wvalid & axi.wready):
            m.d.sync += axi.wvalid.eq(0)
        with m.If(meta_fifo.r_rdy & ~meta.end & w_free & (~need_in | self.wr_data.valid)):
            m.d.comb += self.wr_data.ready.eq(need_in)
            m.d.sync += [
                axi.wvalid.eq(1), self._kept["wdata"].eq(shifted[:dw]),
                self._kept["wstrb"].eq(strobe), self._kept["wlast"].eq(beat_idx == meta.len),
                prev.eq(self.wr_data.p.data),
                bus_rem.eq(_sat_sub_bus(cur_bus_rem, bus_bytes)),
                beat_idx.eq(beat_idx + 1),
            ]
            with m.If(need_in & self.wr_data.p.last):
                m.d.sync += last_seen.eq(1)
            with m.If(beat_idx == meta.len):
                m.d.comb += meta_fifo.r_en.eq(1)
                m.d.sync += beat_idx.eq(0)
        with m.Elif(meta_fifo.r_rdy & meta.end):
            with m.If(gen.has_data & ~last_seen):
                m.d.comb += self.wr_data.ready.eq(1)
                with m.If(self.wr_data.valid & self.wr_data.p.last):
                    m.d.sync += last_seen.eq(1)
            with m.Else():
                m.d.comb += meta_fifo.r_en.eq(1)
                m.d.sync += ended.eq(1)

        status = self.wr_status
        m.d.comb += [status.valid.eq(ended & ~pending.r_rdy & ~axi.wvalid),
                     status.p.cause.eq(Mux(bus_error, fail_cause, gen.result.cause)),
                     status.p.addr.eq(Mux(bus_error, fail_addr, gen.result.addr))]
        with m.If(status.valid & status.ready):
            m.d.sync += [ended.eq(0), bus_error.eq(0), last_seen.eq(0)]
        written = sum(axi.wstrb[lane] for lane in range(bus_bytes))
        return Mux(axi.wvalid & axi.wready, written, 0)
