"""The store unit: CONFIG and STORE, accumulator -> output pipeline -> DRAM."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.utils import bits_for
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import Opcode, Queue

from .accumulator import acc_read_req_layout, acc_read_resp_layout, acc_read_unbuffered
from .burst import dma_cmd_layout, dma_status_layout
from .decoder import QPARAM_ROWS, field_limits, instruction_layout, legal_bits
from .dma import dma_data_layout
from .load_unit import dma_field_mask, qparam_write_layout, row_beats
from .output_pipeline import PARAM_WIDTH, ColParam, OutputPipeline, SerialOutputPipeline
from .queues import UnitCommand, UnitPort, command_layout, complete_or_fault, hold_instruction
from .ram import registered_read


__all__ = ["StoreUnit"]


def _store_bits(cfg):
    """The word bits a legal STORE can have set: its header and each field's low bits up to
    the field's largest legal value (:func:`hw.decoder.field_limits`)."""
    limits = field_limits(cfg, "STORE")
    bits = 0
    for f in isa.INSTRUCTIONS["STORE"].all_fields:
        width = limits[f.name].bit_length() if f.name in limits else f.width
        bits |= ((1 << width) - 1) << f.lsb
    return bits


class StoreUnit(wiring.Component):
    """Executes CONFIG (output-pipeline settings) and STORE, in program order.

    A STORE issues one DMA write command, reads its accumulator rows, passes them through the
    :class:`~hw.output_pipeline.OutputPipeline` and packs each result row into
    ``ceil(row_bytes / bus_bytes)`` beats (int8: byte ``j`` = column ``j``; int32: 4 little-
    endian bytes per column). It completes when the DMA reports the last write response; a
    fault is reported with the instruction's pc and address. The quantisation-parameter rows
    (bias, per-column multiplier and shift, two slots) live here, written by LOAD: in
    flip-flops for the pipelined output lane, in a memory (block RAM) of one int32 per
    column for the serial lane, which reads them one at a time (``cfg.output_lane``).

    Ports
      cmd           In(stream{word, pc}): CONFIG / STORE in program order.
      ctrl          UnitPort (tokens, completion, faults).
      acc_req, acc_resp   the accumulator's read port.
      wr_cmd, wr_data, wr_status   the DMA write engine.
      qparam_write  In(stream{addr, data}): rows from the load unit; always ready with the
                    pipelined lane, one row per C cycles or more with the serial one (a column
                    per cycle in which the lane reads the address whose value it holds); with
                    ``cfg.load_writes == "columns"`` stream{addr, col, data}, one value each,
                    every row's C columns in order.

    With ``cfg.unit_commands == "queue"`` the unit holds no copy of the instruction: it runs
    ``cmd``'s payload and takes it (``cmd.ready``) in the cycle it completes.

    Throughput: one accumulator row per ``max(C/output_lanes, beats per row)`` cycles
    (pipelined lane) or per ``C * (37 + shift)`` cycles (serial lane, int8 results: a
    column's read, then its ``36 + shift`` cycles; see
    :class:`~hw.output_pipeline.SerialOutputPipeline`).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cfg))),
            "ctrl": Out(UnitPort(cfg)),
            "acc_req": Out(stream.Signature(acc_read_req_layout(cfg))),
            "acc_resp": In(stream.Signature(acc_read_resp_layout(cfg))),
            "wr_cmd": Out(stream.Signature(dma_cmd_layout(cfg))),
            "wr_data": Out(stream.Signature(dma_data_layout(cfg))),
            "wr_status": In(stream.Signature(dma_status_layout(cfg))),
            "qparam_write": In(stream.Signature(qparam_write_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        C = cfg.cols
        serial = cfg.output_lane == "serial"
        m.submodules.pipeline = pipeline = (SerialOutputPipeline if serial else OutputPipeline)(cfg)

        out_lo, out_hi = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1
        # The machine's state before any CONFIG: multiplier 0, full output range.
        reset_config = (isa.encode("CONFIG", clamp_lo=out_lo, clamp_hi=out_hi)
                        & ~((1 << 8) - 1))
        config_word = Signal(isa.INSTR_BITS, init=reset_config)
        config = data.View(instruction_layout("CONFIG"), config_word)

        # A held copy keeps only the bits a legal STORE can have set and the DMA uses (a
        # CONFIG needs its token flags, which are in the same place, and is applied as it is
        # taken).
        mask, ones = legal_bits(cfg, Queue.STORE)
        unit_command = UnitCommand(
            cfg, self.cmd, mask & _store_bits(cfg) & dma_field_mask("STORE", self.wr_cmd.payload),
            ones)
        copy, command = unit_command.copy, unit_command.command
        instr = data.View(instruction_layout("STORE"), command.word)
        pc = command.pc
        params = pipeline.params
        slot = instr.qslot * len(isa.QPARAM_KINDS)
        # A legal CONFIG's clamp bounds are within the output width (docs/DESIGN.md): the
        # serial lane takes those bits only, so the unit keeps no others.
        m.d.comb += [
            params.out_int32.eq(instr.out_int32),
            params.zero_point.eq(config.zero_point),
            params.clamp_lo.eq(config.clamp_lo[:len(params.clamp_lo)]),
            params.clamp_hi.eq(config.clamp_hi[:len(params.clamp_hi)]),
        ]
        if serial:
            # The serial lane gets bias / multiplier / shift resolved, one at a time.
            self._qparam_memory(m, pipeline, slot, config)
        else:
            m.d.comb += [
                params.bias_en.eq(config.bias_en),
                params.per_column.eq(config.per_column),
                params.multiplier.eq(config.multiplier),
                params.shift.eq(config.shift),
            ]
            self._qparam_registers(m, params, slot)

        hold_instruction(m, self.ctrl, instr, pc)

        # ---- row packing: pipeline rows -> bus beats ------------------------------------------
        bus_bits = cfg.dma_data_width
        max_beats = row_beats(4 * C, cfg.bus_bytes)
        row_bytes = Signal(range(4 * C + 1))
        m.d.comb += row_bytes.eq(Mux(instr.out_int32, instr.row_elems << 2, instr.row_elems))
        # Rows still to request and to send, counted down, and the next row's address: set
        # from the STORE as it arrives, so no comparison or adder needs its fields.
        rows_out = Signal(range(field_limits(cfg, "STORE")["rows"] + 1))
        rows_req = Signal.like(rows_out)
        acc_ptr = Signal.like(self.acc_req.payload.addr)
        incoming = data.View(instruction_layout("STORE"), self.cmd.payload.word)
        if not serial:
            nbeats = Signal(range(max_beats + 1))
            m.d.comb += nbeats.eq((row_bytes + cfg.bus_bytes - 1)
                                  >> (cfg.bus_bytes.bit_length() - 1))
            packed = Signal(max_beats * bus_bits)
            result = pipeline.o.payload.data
            m.d.comb += packed.eq(Mux(instr.out_int32,
                                      Cat(result[j][:32] for j in range(C)),
                                      Cat(result[j][:8] for j in range(C))))
            beats = Array(packed[i * bus_bits:(i + 1) * bus_bits] for i in range(max_beats))
            beat = Signal(range(max_beats + 1))
            m.d.comb += [
                self.wr_data.payload.data.eq(beats[beat]),
                self.wr_data.payload.row_last.eq(beat == nbeats - 1),
                self.wr_data.payload.last.eq((beat == nbeats - 1)
                                             & (rows_out == 1)),
            ]
        m.d.comb += [
            self.acc_req.payload.addr.eq(acc_ptr),
            pipeline.i.payload.data.eq(self.acc_resp.payload.data),
            pipeline.i.valid.eq(self.acc_resp.valid),
            self.acc_resp.ready.eq(pipeline.i.ready),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    unit_command.start(m)
                    m.d.sync += [rows_req.eq(incoming.rows), rows_out.eq(incoming.rows),
                                 acc_ptr.eq(incoming.acc_addr)]
                    # The CONFIG is only read by the STOREs after it, which start after it
                    # has its tokens; a program that stops before then resets the unit. So
                    # it takes effect here, and a held command need not keep it.
                    with m.If(self.cmd.payload.word[:4] == Opcode.CONFIG):
                        m.d.sync += config_word.eq(self.cmd.payload.word)
                    if not serial:
                        m.d.sync += beat.eq(0)
                    m.next = "TOKENS"
            with m.State("TOKENS"):
                m.d.comb += self.ctrl.request.eq(1)
                with m.If(self.ctrl.grant):
                    with m.If(instr.as_value()[:4] == Opcode.CONFIG):
                        m.d.comb += [self.ctrl.push_prev.eq(instr.push_prev),
                                     self.ctrl.push_next.eq(instr.push_next)]
                        if not copy:
                            m.d.comb += self.cmd.ready.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += [
                    self.ctrl.executing.eq(1),
                    self.wr_cmd.valid.eq(1),
                    self.wr_cmd.payload.addr.eq(instr.dram_addr),
                    self.wr_cmd.payload.rows.eq(instr.rows),
                    self.wr_cmd.payload.row_bytes.eq(row_bytes),
                    self.wr_cmd.payload.stride.eq(instr.dram_stride),
                ]
                with m.If(self.wr_cmd.ready):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.ctrl.executing.eq(1)
                if acc_read_unbuffered(cfg):
                    self._read_columns(m, pipeline, rows_req, acc_ptr)
                else:
                    m.d.comb += self.acc_req.valid.eq(rows_req != 0)
                    with m.If(self.acc_req.valid & self.acc_req.ready):
                        m.d.sync += [rows_req.eq(rows_req - 1), acc_ptr.eq(acc_ptr + 1)]
                if serial:
                    self._pack_columns(m, pipeline.o, instr, rows_out)
                else:
                    m.d.comb += self.wr_data.valid.eq(pipeline.o.valid)
                    with m.If(self.wr_data.valid & self.wr_data.ready):
                        m.d.sync += beat.eq(beat + 1)
                        with m.If(self.wr_data.payload.row_last):
                            m.d.comb += pipeline.o.ready.eq(1)
                            m.d.sync += [beat.eq(0), rows_out.eq(rows_out - 1)]
                            with m.If(self.wr_data.payload.last):
                                m.next = "STATUS"
            with m.State("STATUS"):
                m.d.comb += [self.ctrl.executing.eq(1), self.wr_status.ready.eq(1)]
                with m.If(self.wr_status.valid):
                    complete_or_fault(m, self.ctrl, instr, self.wr_status.payload)
                    if not copy:
                        m.d.comb += self.cmd.ready.eq(1)
                    m.next = "IDLE"
        return m

    def _read_columns(self, m, lane, rows_req, acc_ptr):
        """In state DATA: the rows for the serial ``lane``, each read once per column (the
        accumulator holds no response, :func:`~hw.accumulator.acc_read_unbuffered`), a read
        issued when the lane waits for a column and no read is in flight, so the lane takes
        the response in the cycle it comes."""
        in_flight = Signal()
        m.d.comb += self.acc_req.valid.eq((rows_req != 0) & lane.i.ready & ~in_flight)
        with m.If(self.acc_req.valid & self.acc_req.ready):
            m.d.sync += in_flight.eq(1)
            with m.If(lane.col_addr.col == self.cfg.cols - 1):
                m.d.sync += [rows_req.eq(rows_req - 1), acc_ptr.eq(acc_ptr + 1)]
        with m.If(self.acc_resp.valid & self.acc_resp.ready):
            m.d.sync += in_flight.eq(0)

    def _pack_columns(self, m, results, instr, rows_out):
        """In state DATA: the serial lane's ``results``, one column at a time, into bus beats
        (from byte lane 0, bytes past the row's end left as they were), the next state
        STATUS once every row is sent. A column's result needs no row register: it goes
        straight into its bytes of the beat, which waits for the DMA as the lane's output."""
        cfg = self.cfg
        beat = Signal(cfg.dma_data_width)
        full = Signal()                         # the beat waits for the DMA
        beat_row_last = Signal()
        col = Signal(range(cfg.cols))           # the column of the next result
        pos = Signal(range(cfg.bus_bytes))      # its first byte lane
        size = Mux(instr.out_int32, 4, 1)
        result = results.payload.data
        # The decoder keeps row_elems within 1 .. C: its low bits compare with the column.
        elems = instr.row_elems[:bits_for(cfg.cols)]
        col_end = Signal()
        beat_end = Signal()
        m.d.comb += [
            col_end.eq(col + 1 == elems),
            beat_end.eq(col_end | (pos + size == cfg.bus_bytes)),
            results.ready.eq(~full),
            self.wr_data.valid.eq(full),
            self.wr_data.payload.data.eq(beat),
            self.wr_data.payload.row_last.eq(beat_row_last),
            self.wr_data.payload.last.eq(beat_row_last & (rows_out == 1)),
        ]
        with m.If(results.valid & results.ready):
            m.d.sync += col.eq(Mux(col == cfg.cols - 1, 0, col + 1))
            with m.If(col < elems):
                for lane in range(cfg.bus_bytes):
                    byte = lane % 4
                    with m.If(Mux(instr.out_int32, pos == lane - byte, pos == lane)):
                        m.d.sync += beat.word_select(lane, 8).eq(
                            Mux(instr.out_int32, result.word_select(byte, 8), result[:8]))
                m.d.sync += pos.eq(Mux(beat_end, 0, pos + size))
                with m.If(beat_end):
                    m.d.sync += [full.eq(1), beat_row_last.eq(col_end)]
        with m.If(self.wr_data.valid & self.wr_data.ready):
            m.d.sync += full.eq(0)
            with m.If(beat_row_last):
                m.d.sync += rows_out.eq(rows_out - 1)
        # The columns past row_elems are taken too, so the next STORE starts at column 0.
        with m.If((rows_out == 0) & (col == 0) & ~full):
            m.next = "STATUS"

    def _qparam_registers(self, m, params, slot):
        """The qparam rows in flip-flops, all of slot ``slot`` driving ``params`` at once."""
        C = self.cfg.cols
        qparam = Array(Signal(data.ArrayLayout(32, C), name=f"qparam{i}")
                       for i in range(QPARAM_ROWS))
        m.d.comb += self.qparam_write.ready.eq(1)
        with m.If(self.qparam_write.valid):
            m.d.sync += qparam[self.qparam_write.payload.addr].eq(self.qparam_write.payload.data)
        bias, mult, shift = qparam[slot], qparam[slot + 1], qparam[slot + 2]
        for j in range(C):
            m.d.comb += [params.bias[j].eq(bias[j]), params.col_multiplier[j].eq(mult[j]),
                         params.col_shift[j].eq(shift[j][:len(params.col_shift[j])])]

    def _qparam_memory(self, m, pipeline, slot, config):
        """The qparam rows in a memory of one value per (row, column), written a column per
        cycle and read at the serial lane's ``col_addr`` of slot ``slot``, the value then
        resolved as the CONFIG says (bias_en, per_column). A memory has no reset, so a row
        reads as 0 until written since the (soft) reset, as the flip-flops do.

        The read is registered only in cycles without a write: a block RAM's read and write
        of one address in one cycle give no defined result, so a read register the synthesis
        tool cannot prove idle during writes costs flip-flops to emulate one. A write
        therefore waits for a cycle that reads the address the register already holds (the
        lane keeps an address for most cycles, and for every cycle it waits for the DMA),
        and a write to that address makes the next cycle reload it."""
        C = self.cfg.cols
        write = self.qparam_write
        m.submodules.qparam = mem = memory.Memory(shape=PARAM_WIDTH, depth=QPARAM_ROWS * C,
                                                  init=[])
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        value = registered_read(m, rd, ~wr.en, name="value")   # used once loaded (from_memory)
        value_addr = Signal.like(rd.addr)
        fresh = Signal()            # value is the memory's word at value_addr
        with m.If(~wr.en):
            m.d.sync += [value_addr.eq(rd.addr), fresh.eq(1)]
        with m.Elif(wr.addr == value_addr):
            m.d.sync += fresh.eq(0)
        written = Signal(QPARAM_ROWS)
        row_done = Signal()
        m.d.comb += wr.en.eq(write.valid & fresh & (rd.addr == value_addr))
        if self.cfg.load_writes == "columns":
            # The load unit sends the row's values one column at a time, all C in order.
            write_col = write.payload.col
            m.d.comb += [write.ready.eq(wr.en), wr.data.eq(write.payload.data)]
        else:
            write_col = Signal(range(C))
            m.d.comb += [write.ready.eq(row_done & wr.en),
                         wr.data.eq(write.payload.data[write_col])]
            with m.If(wr.en):
                m.d.sync += write_col.eq(Mux(row_done, 0, write_col + 1))
        m.d.comb += [
            row_done.eq(write_col == C - 1),
            wr.addr.eq(write.payload.addr * C + write_col),
        ]
        with m.If(wr.en & row_done):
            m.d.sync += written.bit_select(write.payload.addr, 1).eq(1)

        kind = pipeline.col_addr.kind
        row = Signal(range(QPARAM_ROWS))
        m.d.comb += [row.eq(slot + kind.as_value()), rd.addr.eq(row * C + pipeline.col_addr.col)]
        # Registered with the read: where the value comes from (the memory, the CONFIG's
        # multiplier or shift, or neither: 0), one select each so a bit is one LUT.
        from_memory, config_mult, config_shift = Signal(), Signal(), Signal()
        m.d.sync += [
            from_memory.eq(written.bit_select(row, 1)
                           & Mux(kind == ColParam.BIAS, config.bias_en, config.per_column)),
            config_mult.eq((kind == ColParam.MULTIPLIER) & ~config.per_column),
            config_shift.eq((kind == ColParam.SHIFT) & ~config.per_column),
        ]
        m.d.comb += pipeline.col_value.eq(
            Mux(from_memory, value,
                Mux(config_mult, config.multiplier, 0) | Mux(config_shift, config.shift, 0)))
