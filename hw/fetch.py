"""Instruction fetch: program words from DRAM through the DMA read engine."""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
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
    then carries a ``fault`` marker instead of a word (its ``word`` is meaningless), raised
    by the dispatcher only if it gets there (a HALT before it means no error).

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
        chunk_max = cfg.fetch_chunk
        depth = _BUFFER_CHUNKS * chunk_max
        # The buffer: ``depth`` slots a row's beats are written into in place (no assembly
        # register), and a fault flag per slot. Entries leave in pc order, so their pc is a
        # count of the entries delivered; the fault that stops the fetch is the last entry
        # pushed, so its cause and address need one register, not a slot each.
        beats_per_word = max(1, isa.INSTR_BYTES // cfg.bus_bytes)
        beat_bits = min(cfg.dma_data_width, isa.INSTR_BITS)
        slots = Array(Signal(isa.INSTR_BITS, name=f"slot{i}") for i in range(depth))
        slot_fault = Array(Signal(name=f"slot{i}_fault") for i in range(depth))
        w_slot = Signal(range(depth))
        w_beat = Signal(range(beats_per_word))
        r_slot = Signal(range(depth))
        level = Signal(range(depth + 1))
        push = Signal()
        pop = Signal()
        delivered = Signal(PC_WIDTH)
        fault_cause = Signal(ErrorCause)
        fault_addr = Signal(cfg.addr_width)
        head_fault = slot_fault[r_slot]
        m.d.comb += [
            self.words.payload.word.eq(slots[r_slot]),
            self.words.payload.pc.eq(delivered),
            self.words.payload.fault.eq(head_fault),
            self.words.payload.cause.eq(Mux(head_fault, fault_cause, ErrorCause.NONE)),
            self.words.payload.addr.eq(Mux(head_fault, fault_addr, 0)),
            self.words.valid.eq(level != 0),
            pop.eq(self.words.valid & self.words.ready),
        ]
        with m.If(pop):
            m.d.sync += [delivered.eq(delivered + 1),
                         r_slot.eq(Mux(r_slot == depth - 1, 0, r_slot + 1))]
        with m.If(push):
            m.d.sync += w_slot.eq(Mux(w_slot == depth - 1, 0, w_slot + 1))
        m.d.sync += level.eq(level + push - pop)

        base = Signal(cfg.addr_width)
        count = Signal(PC_WIDTH)
        issued = Signal(PC_WIDTH)     # instructions requested from the DMA
        in_flight = Signal()
        stopped = Signal()            # a fault or a flush: issue nothing more
        chunk = Signal(range(chunk_max + 1))
        m.d.comb += chunk.eq(Mux(count - issued < chunk_max, count - issued, chunk_max))

        # Room for a whole chunk: everything in flight lands in the buffer.
        room = (depth - level) >= chunk_max
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

        # A command is issued only with room for all its rows, so the slot being written
        # is free; a row is pushed (made visible) with its last beat.
        m.d.comb += [self.rd_data.ready.eq(1), self.rd_status.ready.eq(~self.rd_data.valid)]
        with m.If(self.rd_data.valid):
            for beat in range(beats_per_word):
                with m.If(w_beat == beat):
                    m.d.sync += slots[w_slot][beat * beat_bits:(beat + 1) * beat_bits].eq(
                        self.rd_data.payload.data[:beat_bits])
            with m.If(self.rd_data.payload.row_last):
                m.d.sync += w_beat.eq(0)
                with m.If(~stopped):
                    m.d.comb += push.eq(1)
                    m.d.sync += slot_fault[w_slot].eq(0)
            with m.Else():
                m.d.sync += w_beat.eq(w_beat + 1)
        with m.If(self.rd_status.valid & self.rd_status.ready):
            m.d.sync += in_flight.eq(0)
            with m.If((self.rd_status.payload.cause != ErrorCause.NONE) & ~stopped):
                m.d.comb += push.eq(1)
                m.d.sync += [slot_fault[w_slot].eq(1), stopped.eq(1),
                             fault_cause.eq(self.rd_status.payload.cause),
                             fault_addr.eq(self.rd_status.payload.addr)]

        with m.If(self.flush):
            m.d.sync += stopped.eq(1)
        with m.If(self.start):
            m.d.sync += [base.eq(self.base), count.eq(self.count), issued.eq(0),
                         delivered.eq(0), stopped.eq(0)]
        return m
