"""The load unit: LOAD instructions, DRAM -> scratchpad / accumulator / qparam rows."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import LoadDst, Queue

from .accumulator import acc_write_layout
from .burst import dma_cmd_layout, dma_status_layout
from .decoder import QPARAM_ROWS, field_limits, instruction_layout, legal_bits
from .dma import dma_data_layout
from .queues import UnitCommand, UnitPort, command_layout, complete_or_fault, hold_instruction
from .scratchpad import sp_write_layout


__all__ = ["LoadUnit", "dma_field_mask", "qparam_write_layout", "row_beats"]


def row_beats(row_bytes, bus_bytes):
    return -(-row_bytes // bus_bytes)


def dma_field_mask(name, cmd):
    """The word bits of instruction ``name`` less the ``dram_addr`` / ``dram_stride`` bits
    above what the DMA command ``cmd`` (a :func:`~hw.burst.dma_cmd_layout` view) carries: a
    unit need not hold bits the DMA never sees."""
    mask = (1 << isa.INSTR_BITS) - 1
    instr = isa.INSTRUCTIONS[name]
    for field, width in (("dram_addr", len(cmd.addr)), ("dram_stride", len(cmd.stride))):
        f = instr.field(field)
        if width < f.width:
            mask &= ~(((1 << (f.width - width)) - 1) << (f.lsb + width))
    return mask


def qparam_write_layout(cfg):
    """A quantisation-parameter row (``data``: C int32), or with ``cfg.load_writes ==
    "columns"`` one value of it (``data`` at column ``col``)."""
    if cfg.load_writes == "columns":
        return data.StructLayout({"addr": range(QPARAM_ROWS), "col": range(cfg.cols),
                                  "data": 32})
    return data.StructLayout({
        "addr": range(QPARAM_ROWS), "data": data.ArrayLayout(32, cfg.cols)})


class LoadUnit(wiring.Component):
    """Executes LOAD: one DMA read command per instruction, its beats packed into local rows.

    Ports
      cmd          In(stream{word, pc}): LOAD instructions in program order.
      ctrl         UnitPort: tokens, completion, faults (see :class:`hw.queues.UnitPort`).
      rd_cmd, rd_data, rd_status   the DMA read engine (through the fetch/load arbiter).
      sp_write     Out(stream{addr, data}) scratchpad rows (E bytes).
      acc_write    Out(stream{addr, data, accumulate=0[, mask]}) accumulator rows (C values;
                   "columns": the column in ``mask``, its value in every column of ``data``).
      qparam_write Out(stream{addr, data}) quantisation-parameter rows (C int32), or
                   ("columns") stream{addr, col, data} one value.

    Each DRAM row arrives as ``ceil(row_bytes / bus_bytes)`` beats from lane 0; the local row
    is written the cycle its last beat arrives (elements past ``row_elems`` are zero, since
    the DMA zeroes lanes past the row end and the unused beats are never filled). With
    ``cfg.load_writes == "columns"`` an accumulator or qparam row is written a column (one
    32-bit beat) at a time instead, its columns past ``row_elems`` then with zeros, one per
    cycle: no beat is held. (A bus error mid-row then leaves that row's earlier columns
    written; the program stops with the error.)
    With ``cfg.unit_commands == "queue"`` the unit holds no copy of the instruction: it runs
    ``cmd``'s payload and takes it (``cmd.ready``) in the cycle it completes.
    Throughput: one beat per cycle. An instruction completes (tokens pushed) on the DMA
    status; a DMA fault is reported with the instruction's pc and the faulting address.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self._columns = cfg.load_writes == "columns"
        # The longest row assembled from beats (with "columns" only scratchpad rows, of one).
        self._max_row_bytes = (cfg.sp_row_bytes if self._columns
                               else max(cfg.sp_row_bytes, cfg.acc_row_bytes))
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cfg))),
            "ctrl": Out(UnitPort(cfg)),
            "rd_cmd": Out(stream.Signature(dma_cmd_layout(cfg))),
            "rd_data": In(stream.Signature(dma_data_layout(cfg))),
            "rd_status": In(stream.Signature(dma_status_layout(cfg))),
            "sp_write": Out(stream.Signature(sp_write_layout(cfg))),
            "acc_write": Out(stream.Signature(acc_write_layout(cfg))),
            "qparam_write": Out(stream.Signature(qparam_write_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        bus_bits = cfg.dma_data_width
        max_beats = row_beats(self._max_row_bytes, cfg.bus_bytes)

        # A held copy keeps only the bits a legal LOAD can have set and the DMA uses.
        mask, ones = legal_bits(cfg, Queue.LOAD)
        unit_command = UnitCommand(cfg, self.cmd,
                                   mask & dma_field_mask("LOAD", self.rd_cmd.payload), ones)
        copy, command = unit_command.copy, unit_command.command
        instr = data.View(instruction_layout("LOAD"), command.word)
        pc = command.pc
        local_addr = Signal(range(field_limits(cfg, "LOAD")["rows"] + 1))
        # A row's last beat goes straight to the local write, so a slot holds each of the
        # beats before it: one fewer than the longest row has.
        beat = Signal(range(max_beats))
        slots = [Signal(bus_bits, name=f"slot{i}") for i in range(max_beats - 1)]
        esize_shift = Mux(instr.dst == LoadDst.SP, 0, 2)

        # The row being completed by this beat: filled slots, this beat, zeros after it.
        row = Signal(max_beats * bus_bits)
        m.d.comb += row.eq(Cat(
            Mux(beat == i, self.rd_data.payload.data, Mux(beat > i, slots[i], 0))
            if i < len(slots) else Mux(beat == i, self.rd_data.payload.data, 0)
            for i in range(max_beats)))

        m.d.comb += [
            self.sp_write.payload.addr.eq(local_addr),
            self.sp_write.payload.data.eq(row[:cfg.sp_row_bytes * 8]),
            self.acc_write.payload.addr.eq(local_addr),
            self.acc_write.payload.accumulate.eq(0),
            self.qparam_write.payload.addr.eq(local_addr),
        ]
        # "columns": the column being written, and whether the row's data has ended (a short
        # row's remaining columns are written with zeros).
        if self._columns:
            col = Signal(range(cfg.cols))
            padding = Signal()
            value = Mux(padding, 0, self.rd_data.payload.data)
            m.d.comb += [
                self.acc_write.payload.mask.eq(1 << col),
                self.qparam_write.payload.col.eq(col),
                self.qparam_write.payload.data.eq(value),
            ]
            for j in range(cfg.cols):
                m.d.comb += self.acc_write.payload.data[j].eq(value[:cfg.acc_width])
        else:
            col, padding = None, Const(0)
            m.d.comb += self.qparam_write.payload.data.eq(row[:cfg.cols * 32])
            for j in range(cfg.cols):
                m.d.comb += self.acc_write.payload.data[j].eq(
                    row[32 * j:32 * j + cfg.acc_width])
        write_ready = Mux(instr.dst == LoadDst.SP, self.sp_write.ready,
                          Mux(instr.dst == LoadDst.ACC, self.acc_write.ready,
                              self.qparam_write.ready))

        hold_instruction(m, self.ctrl, instr, pc)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    unit_command.start(m)
                    m.next = "TOKENS"
            with m.State("TOKENS"):
                m.d.comb += self.ctrl.request.eq(1)
                with m.If(self.ctrl.grant):
                    m.d.sync += [local_addr.eq(instr.local_addr), beat.eq(0)]
                    if self._columns:
                        # (a row cut short by a fault leaves them mid-row)
                        m.d.sync += [col.eq(0), padding.eq(0)]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [
                    self.ctrl.executing.eq(1),
                    self.rd_cmd.valid.eq(1),
                    self.rd_cmd.payload.addr.eq(instr.dram_addr),
                    self.rd_cmd.payload.rows.eq(instr.rows),
                    self.rd_cmd.payload.row_bytes.eq(instr.row_elems << esize_shift),
                    self.rd_cmd.payload.stride.eq(instr.dram_stride),
                ]
                with m.If(self.rd_cmd.ready):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.ctrl.executing.eq(1)
                if self._columns:
                    with m.If(instr.dst != LoadDst.SP):
                        self._column_writes(m, instr, local_addr, col, padding, write_ready)
                    with m.Else():
                        self._rows(m, instr, local_addr, beat, slots, write_ready)
                else:
                    self._rows(m, instr, local_addr, beat, slots, write_ready)
                # The DMA sends the status after the command's last data beat.
                with m.If(~self.rd_data.valid & ~padding & self.rd_status.valid):
                    m.d.comb += self.rd_status.ready.eq(1)
                    complete_or_fault(m, self.ctrl, instr, self.rd_status.payload)
                    if not copy:
                        m.d.comb += self.cmd.ready.eq(1)
                    m.next = "IDLE"
        return m

    def _rows(self, m, instr, local_addr, beat, slots, write_ready):
        """A row's beats into the slots; its last beat writes the row."""
        last_of_row = self.rd_data.payload.row_last
        with m.If(self.rd_data.valid & ~last_of_row):
            m.d.comb += self.rd_data.ready.eq(1)
            m.d.sync += beat.eq(beat + 1)
            for i, slot in enumerate(slots):
                with m.If(beat == i):
                    m.d.sync += slot.eq(self.rd_data.payload.data)
        with m.If(self.rd_data.valid & last_of_row):
            with m.Switch(instr.dst):
                with m.Case(LoadDst.SP):
                    m.d.comb += self.sp_write.valid.eq(1)
                with m.Case(LoadDst.ACC):
                    m.d.comb += self.acc_write.valid.eq(1)
                with m.Default():
                    m.d.comb += self.qparam_write.valid.eq(1)
            m.d.comb += self.rd_data.ready.eq(write_ready)
            with m.If(write_ready):
                m.d.sync += [beat.eq(0), local_addr.eq(local_addr + 1)]

    def _column_writes(self, m, instr, local_addr, col, padding, write_ready):
        """("columns") Each beat (one int32) writes its column of the accumulator or qparam
        row; after a short row's last beat, its remaining columns are written with zeros."""
        C = self.cfg.cols
        with m.If(self.rd_data.valid | padding):
            with m.If(instr.dst == LoadDst.ACC):
                m.d.comb += self.acc_write.valid.eq(1)
            with m.Else():
                m.d.comb += self.qparam_write.valid.eq(1)
            m.d.comb += self.rd_data.ready.eq(write_ready & ~padding)
            with m.If(write_ready):
                m.d.sync += col.eq(col + 1)
                with m.If(col == C - 1):
                    m.d.sync += [col.eq(0), padding.eq(0), local_addr.eq(local_addr + 1)]
                with m.Elif(~padding & self.rd_data.payload.row_last):
                    m.d.sync += padding.eq(1)
