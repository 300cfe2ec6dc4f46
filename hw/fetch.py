"""Instruction fetch: program words from DRAM through the DMA read engine."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import ErrorCause

from .burst import dma_cmd_layout, dma_status_layout
from .config import Config
from .dma import dma_data_layout
from .queues import PC_WIDTH


__all__ = ["Fetcher", "fetched_layout", "FETCH_CHUNK"]

#: Instructions per DMA command unless the Config says otherwise (``cfg.fetch_chunk``).
FETCH_CHUNK = Config().fetch_chunk
# Chunks of words (or fault markers) buffered ahead of the dispatcher: one being consumed
# while the next arrives.
_BUFFER_CHUNKS = 2


def fetched_layout(addr_width):
    """A fetched word, or (``fault``) the DMA error that stopped the fetch at that pc."""
    return data.StructLayout({
        "word": isa.INSTR_BITS, "pc": PC_WIDTH, "fault": 1, "cause": ErrorCause,
        "addr": addr_width})


class Fetcher(wiring.Component):
    """Prefetches ``count`` instructions from ``base`` in chunks of ``cfg.fetch_chunk``
    (a buffer of two chunks).

    Each instruction is a 16-byte row of the DMA command, so the DMA's row-by-row window
    check stops the fetch exactly at the first instruction outside the window; that pc
    then carries a ``fault`` marker instead of a word, raised by the dispatcher only if it
    gets there (a HALT before it means no error).

    Ports
      start, base, count   In: begin fetching (a pulse; base/count sampled with it).
      flush                In: stop issuing; ``busy`` falls once the DMA command in flight
                           has finished (its data is dropped).
      busy                 Out: a DMA command is in flight.
      words                Out(stream(fetched_layout)), in program order.
      rd_cmd, rd_data, rd_status   the DMA read engine (through the arbiter).

    Throughput: one instruction per ``ceil(16 / bus_bytes)`` cycles once the first chunk is in.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "start": In(1),
            "base": In(cfg.addr_width),
            "count": In(PC_WIDTH),
            "flush": In(1),
            "busy": Out(1),
            "words": Out(stream.Signature(fetched_layout(cfg.addr_width))),
            "rd_cmd": Out(stream.Signature(dma_cmd_layout(cfg))),
            "rd_data": In(stream.Signature(dma_data_layout(cfg))),
            "rd_status": In(stream.Signature(dma_status_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        layout = fetched_layout(cfg.addr_width)
        chunk_max = cfg.fetch_chunk
        depth = _BUFFER_CHUNKS * chunk_max
        m.submodules.buffer = buffer = fifo.SyncFIFO(width=layout.size, depth=depth)
        m.d.comb += [self.words.payload.eq(buffer.r_data), self.words.valid.eq(buffer.r_rdy),
                     buffer.r_en.eq(self.words.ready)]

        base = Signal(cfg.addr_width)
        count = Signal(PC_WIDTH)
        issued = Signal(PC_WIDTH)     # instructions requested from the DMA
        received = Signal(PC_WIDTH)   # instructions (or a fault) pushed into the buffer
        in_flight = Signal()
        stopped = Signal()            # a fault or a flush: issue nothing more
        chunk = Signal(range(chunk_max + 1))
        m.d.comb += chunk.eq(Mux(count - issued < chunk_max, count - issued, chunk_max))

        # Room for a whole chunk: everything in flight lands in the buffer.
        room = (depth - buffer.level) >= chunk_max
        m.d.comb += [
            # `flush` (not only `stopped`, a cycle later): the controller may clear the
            # datapath in the very cycle it raises flush, and a command accepted then would
            # leave its data in the DMA with nobody to take it.
            self.rd_cmd.valid.eq(~in_flight & ~stopped & ~self.flush & (issued != count) & room),
            self.rd_cmd.payload.addr.eq(base + (issued << 4)),
            self.rd_cmd.payload.rows.eq(chunk),
            self.rd_cmd.payload.row_bytes.eq(isa.INSTR_BYTES),
            self.rd_cmd.payload.stride.eq(isa.INSTR_BYTES),
            self.busy.eq(in_flight),
        ]
        with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
            m.d.sync += [in_flight.eq(1), issued.eq(issued + chunk)]

        # Assemble each 16-byte row from its beats.
        beats_per_word = max(1, isa.INSTR_BYTES // cfg.bus_bytes)
        word = Signal(isa.INSTR_BITS)
        if beats_per_word == 1:
            assembled = self.rd_data.payload.data[:isa.INSTR_BITS]
        else:
            assembled = Cat(word[cfg.dma_data_width:], self.rd_data.payload.data)
        entry = Signal(layout)
        m.d.comb += [buffer.w_data.eq(entry), self.rd_data.ready.eq(1),
                     self.rd_status.ready.eq(~self.rd_data.valid)]
        with m.If(self.rd_data.valid):
            if beats_per_word > 1:
                # The first beat holds the low bytes: shift down as beats arrive.
                m.d.sync += word.eq(Cat(word[cfg.dma_data_width:], self.rd_data.payload.data))
            with m.If(self.rd_data.payload.row_last & ~stopped):
                m.d.comb += [entry.word.eq(assembled), entry.pc.eq(received),
                             buffer.w_en.eq(1)]
                m.d.sync += received.eq(received + 1)
        with m.If(self.rd_status.valid & self.rd_status.ready):
            m.d.sync += in_flight.eq(0)
            with m.If((self.rd_status.payload.cause != ErrorCause.NONE) & ~stopped):
                m.d.comb += [entry.fault.eq(1), entry.pc.eq(received),
                             entry.cause.eq(self.rd_status.payload.cause),
                             entry.addr.eq(self.rd_status.payload.addr), buffer.w_en.eq(1)]
                m.d.sync += stopped.eq(1)

        with m.If(self.flush):
            m.d.sync += stopped.eq(1)
        with m.If(self.start):
            m.d.sync += [base.eq(self.base), count.eq(self.count), issued.eq(0),
                         received.eq(0), stopped.eq(0)]
        return m
