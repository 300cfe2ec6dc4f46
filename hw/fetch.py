"""Instruction fetch: program words from DRAM through the DMA read engine."""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import ErrorCause

from .burst import dma_cmd_layout, dma_status_layout
from .config import Config
from .dma import dma_data_layout
from .queues import pc_width
from .ram import registered_read


__all__ = ["Fetcher", "fetched_layout", "FETCH_CHUNK"]

#: Instructions per DMA command unless the Config says otherwise (``cfg.fetch_chunk``).
FETCH_CHUNK = Config().fetch_chunk
# Buffers up to this many rows are registers that shift towards the head (no read mux);
# deeper ones are a memory (block or distributed RAM on the larger parts).
_SHIFT_ROWS_MAX = 2


def fetched_layout(cfg):
    """A fetched word, or (``fault``) the DMA error that stopped the fetch there: a fault
    carries no word, so its ``cause`` and ``addr`` are in the word's bits."""
    cause_bits = Shape.cast(ErrorCause).width
    return data.FlexibleLayout(isa.INSTR_BITS + 1, {
        "word": data.Field(unsigned(isa.INSTR_BITS), 0),
        "cause": data.Field(ErrorCause, 0),
        "addr": data.Field(unsigned(cfg.addr_width), cause_bits),
        "fault": data.Field(unsigned(1), isa.INSTR_BITS),
    })


class _RowBuffer(wiring.Component):
    """A FIFO of ``depth`` 128-bit rows, each written in place a lane (``lanes`` of them) at
    a time into the slot after the last complete row.

    Ports
      lane_en  In(lanes): write ``data``'s lanes into the row being filled.
      data     In(128).
      push     In(1): the row being filled is complete (with this cycle's lanes).
      pop      In(1): drop the head row (``head_valid`` must be set).
      clear    In(1): empty the buffer.
      head     Out(128): the oldest complete row, valid while ``head_valid``.
      head_valid Out(1).
      level    Out(range(depth + 1)): complete rows held.

    The caller writes only when a slot is free (``level - pop < depth``). A pushed row is
    the head the next cycle if the buffer was empty; with ``block_ram`` (one row in block
    RAM) the cycle after that, once the row has been read into the RAM's output register.
    """

    def __init__(self, depth, lanes, block_ram=False):
        if block_ram and depth != 1:
            raise ValueError(f"_RowBuffer: block_ram holds one row, not depth={depth}")
        self.depth, self.lanes, self.block_ram = depth, lanes, block_ram
        super().__init__({
            "lane_en": In(lanes),
            "data": In(isa.INSTR_BITS),
            "push": In(1),
            "pop": In(1),
            "clear": In(1),
            "head": Out(isa.INSTR_BITS),
            "head_valid": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        with m.If(self.clear):
            m.d.sync += self.level.eq(0)
        with m.Else():
            m.d.sync += self.level.eq(self.level + self.push - self.pop)
        if self.block_ram:
            self._block_ram(m)
        elif depth <= _SHIFT_ROWS_MAX:
            m.d.comb += self.head_valid.eq(self.level != 0)
            self._shifting(m)
        else:
            m.d.comb += self.head_valid.eq(self.level != 0)
            self._memory(m)
        return m

    def _block_ram(self, m):
        # The row's lanes are written only while the buffer is empty, and read (into the
        # RAM's output register, which holds it until the next row) the cycle after its
        # push: never in the cycle they are written, so the RAM needs no defined
        # read-during-write (no_rw_check) and yosys adds no registers for one.
        storage = m.submodules.storage = memory.Memory(
            shape=unsigned(isa.INSTR_BITS), depth=1, init=[],
            attrs={"no_rw_check": 1, "ram_style": "block"})
        w_port = storage.write_port(granularity=isa.INSTR_BITS // self.lanes)
        r_port = storage.read_port(domain="comb")
        loading = Signal()
        m.d.comb += [w_port.addr.eq(0), w_port.data.eq(self.data), w_port.en.eq(self.lane_en),
                     r_port.addr.eq(0),
                     self.head.eq(registered_read(m, r_port, loading, name="head")),
                     self.head_valid.eq((self.level != 0) & ~loading)]
        m.d.sync += loading.eq(self.push & ~self.clear)

    def _shifting(self, m):
        # Row 0 is the head: every row moves down on a pop, the one being filled included,
        # and this cycle's lanes land in its new place.
        lane_bits = isa.INSTR_BITS // self.lanes
        # Only rows below `level` are read: their reset value does not matter.
        rows = [Signal(isa.INSTR_BITS, name=f"row{i}", reset_less=True)
                for i in range(self.depth)]
        fill = self.level - self.pop
        m.d.comb += self.head.eq(rows[0])
        for i, row in enumerate(rows):
            for lane in range(self.lanes):
                bits = slice(lane * lane_bits, (lane + 1) * lane_bits)
                with m.If(self.lane_en[lane] & (fill == i)):
                    m.d.sync += row[bits].eq(self.data[bits])
                if i + 1 < self.depth:
                    with m.Elif(self.pop):
                        m.d.sync += row[bits].eq(rows[i + 1][bits])

    def _memory(self, m):
        depth = self.depth
        m.submodules.storage = storage = memory.Memory(
            shape=unsigned(isa.INSTR_BITS), depth=depth, init=[])
        w_port = storage.write_port(granularity=isa.INSTR_BITS // self.lanes)
        r_port = storage.read_port(domain="comb")
        w_slot = Signal(range(depth))
        r_slot = Signal(range(depth))

        def advance(slot):
            return Mux(slot == depth - 1, 0, slot + 1)

        m.d.comb += [r_port.addr.eq(r_slot), self.head.eq(r_port.data),
                     w_port.addr.eq(w_slot), w_port.data.eq(self.data),
                     w_port.en.eq(self.lane_en)]
        with m.If(self.clear):
            m.d.sync += [w_slot.eq(0), r_slot.eq(0)]
        with m.Else():
            with m.If(self.push):
                m.d.sync += w_slot.eq(advance(w_slot))
            with m.If(self.pop):
                m.d.sync += r_slot.eq(advance(r_slot))


class Fetcher(wiring.Component):
    """Prefetches ``count`` instructions from ``base`` in chunks of ``cfg.fetch_chunk``
    into a buffer of ``cfg.fetch_buffer`` chunks: with two, one is consumed while the next
    arrives; with one (small FPGAs), the next chunk is requested once the buffer is empty.

    Each instruction is a 16-byte row of the DMA command, so the DMA's row-by-row window
    check stops the fetch exactly at the first instruction outside the window; that
    instruction then comes as a ``fault`` marker instead of a word, raised by the dispatcher
    only if it gets there (a HALT before it means no error).

    Each beat is written into its row's place in the buffer (no assembly register); the row
    becomes visible with its last beat. The buffer is registers shifting towards the head
    for up to two rows, else a memory; with ``cfg.fetch_storage == "block_ram"`` its one
    row is in block RAM. The fault marker is the last entry pushed before the next
    ``start``, so one flag, not a column, tells it: the head is the fault when the flag is
    set and it is the only entry left.

    Ports
      start, base, count   In: begin fetching (a pulse; base/count sampled with it; anything
                           still buffered is dropped). ``count`` has :func:`~hw.queues.pc_width`
                           bits (PROG_COUNT saturated).
      flush                In: stop issuing; ``busy`` falls once the DMA command in flight
                           has finished (its data is dropped).
      busy                 Out: a DMA command is in flight.
      words                Out(stream(fetched_layout)), in program order from pc 0 (entries
                           carry no pc: the consumer counts them).
      rd_cmd, rd_data, rd_status   the DMA read engine (through the arbiter).

    Latency: a row is on ``words`` the cycle after its last beat was taken (two cycles
    after with ``fetch_storage="block_ram"``).
    Throughput: one instruction per ``ceil(16 / bus_bytes)`` cycles once the first chunk is in
    (two buffered chunks; with one, a chunk's DMA latency is paid after each chunk).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "start": In(1),
            "base": In(cfg.addr_width),
            "count": In(pc_width(cfg)),
            "flush": In(1),
            "busy": Out(1),
            "words": Out(stream.Signature(fetched_layout(cfg))),
            "rd_cmd": Out(stream.Signature(dma_cmd_layout(cfg))),
            "rd_data": In(stream.Signature(dma_data_layout(cfg))),
            "rd_status": In(stream.Signature(dma_status_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        chunk_max = cfg.fetch_chunk
        depth = cfg.fetch_buffer * chunk_max
        beats_per_word = max(1, isa.INSTR_BYTES // cfg.bus_bytes)
        beat_bits = isa.INSTR_BITS // beats_per_word

        m.submodules.buffer = buffer = _RowBuffer(depth, beats_per_word,
                                                  block_ram=cfg.fetch_storage == "block_ram")
        faulted = Signal()      # the last entry pushed is the fault marker
        m.d.comb += [
            self.words.payload.word.eq(buffer.head),
            self.words.payload.fault.eq(faulted & (buffer.level == 1)),
            self.words.valid.eq(buffer.head_valid),
            buffer.pop.eq(self.words.valid & self.words.ready),
            buffer.clear.eq(self.start),
        ]

        # ---- DMA commands ------------------------------------------------------------------
        addr = Signal(cfg.addr_width)         # of the next instruction to request
        remaining = Signal.like(self.count)   # instructions not requested yet
        in_flight = Signal()
        stopped = Signal()            # a fault or a flush: issue nothing more
        chunk = Signal(range(chunk_max + 1))
        m.d.comb += chunk.eq(Mux(remaining < chunk_max, remaining, chunk_max))

        # Room for a whole chunk: everything in flight lands in the buffer, so the rows it
        # fills are free.
        room = (depth - buffer.level) >= chunk_max
        m.d.comb += [
            # `flush` (not only `stopped`, a cycle later): the controller may clear the
            # datapath in the very cycle it raises flush, and a command accepted then would
            # leave its data in the DMA with nobody to take it.
            self.rd_cmd.valid.eq(~in_flight & ~stopped & ~self.flush & (remaining != 0) & room),
            self.rd_cmd.payload.addr.eq(addr),
            self.rd_cmd.payload.rows.eq(chunk),
            self.rd_cmd.payload.row_bytes.eq(isa.INSTR_BYTES),
            self.rd_cmd.payload.stride.eq(isa.INSTR_BYTES),
            self.busy.eq(in_flight),
        ]
        with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
            m.d.sync += [in_flight.eq(1), addr.eq(addr + chunk * isa.INSTR_BYTES),
                         remaining.eq(remaining - chunk)]

        # ---- rows into the buffer ------------------------------------------------------------
        # The first beat of a row holds its low bytes; every lane is offered the beat and
        # the lane enable picks the beat's own. A fault marker is written over the lanes
        # its cause and address take (the rest of its word is meaningless).
        layout = fetched_layout(cfg)
        entry = Signal(layout)
        marker_lanes = -(-(layout["addr"].offset + cfg.addr_width) // beat_bits)
        beat = Signal(range(beats_per_word))
        m.d.comb += [self.rd_data.ready.eq(1), self.rd_status.ready.eq(~self.rd_data.valid),
                     entry.word.eq(Cat([self.rd_data.payload.data[:beat_bits]]
                                       * beats_per_word)),
                     buffer.data.eq(entry.word)]
        with m.If(self.rd_data.valid):
            with m.If(~stopped):
                m.d.comb += buffer.lane_en.eq(1 << beat)
            with m.If(self.rd_data.payload.row_last):
                m.d.sync += beat.eq(0)
                m.d.comb += buffer.push.eq(~stopped)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        with m.If(self.rd_status.valid & self.rd_status.ready):
            m.d.sync += in_flight.eq(0)
            with m.If((self.rd_status.payload.cause != ErrorCause.NONE) & ~stopped):
                m.d.comb += [entry.cause.eq(self.rd_status.payload.cause),
                             entry.addr.eq(self.rd_status.payload.addr),
                             buffer.lane_en.eq((1 << marker_lanes) - 1),
                             buffer.push.eq(1)]
                m.d.sync += [stopped.eq(1), faulted.eq(1)]

        with m.If(self.flush):
            m.d.sync += stopped.eq(1)
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), remaining.eq(self.count), stopped.eq(0),
                         faulted.eq(0), beat.eq(0)]
        return m
