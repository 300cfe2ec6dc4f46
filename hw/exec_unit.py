"""The exec unit: PRELOAD and MATMUL, scratchpad -> systolic array -> accumulator."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sw.isa import Dataflow, Opcode, Queue

from .accumulator import acc_addr_width, acc_column_writes, acc_write_layout
from .decoder import instruction_layout, legal_bits, matmul_count_limit
from .queues import CommandPacking, UnitPort, command_layout, pc_width
from .scratchpad import sp_addr_width, sp_read_req_layout, sp_read_resp_layout
from .shift_fifo import ShiftFIFO


__all__ = ["ExecUnit", "SP_PORT_A", "SP_PORT_B", "SP_PORT_W", "SP_READ_PORTS"]

SP_PORT_A, SP_PORT_B, SP_PORT_W = 0, 1, 2   # activations, OS weights, WS weight preload
SP_READ_PORTS = 3

# Instructions issued but not yet retired (their token pushes are released in order).
_RETIRE_DEPTH = 4


def _rows_shape(cfg):
    """A MATMUL's row count: ``count`` (at most :func:`~hw.decoder.matmul_count_limit`, the
    decoder checks it) or ``R`` for an OS group."""
    return range(max(matmul_count_limit(cfg), cfg.rows) + 1)


def _array_out_layout(cfg):
    return data.StructLayout({"data": data.ArrayLayout(cfg.acc_width, cfg.cols), "last": 1})


class ExecUnit(wiring.Component):
    """Executes PRELOAD and MATMUL in program order, overlapping them.

    Three engines run concurrently: the *preloader* (PRELOAD: ``k_rows`` scratchpad rows on
    read port 2, then zero rows, ``R`` beats into ``preload``), the *streamer* (MATMUL:
    ``count`` rows on read port 0 into ``ws_in``, or ``count`` pairs of rows on ports 0 and 1
    into ``os_in``) and the *writeback* (array ``out`` rows -> accumulator rows, overwrite or
    accumulate). So the next tile preloads while the current MATMUL streams; the array pairs
    tiles with WS groups in order. Token pushes are released in program order: a PRELOAD
    completes when its last beat entered the array, a MATMUL when its last row is in the
    accumulator.

    Ports
      cmd          In(stream{word, pc}): PRELOAD / MATMUL in program order.
      ctrl         UnitPort (tokens, completion).
      sp_req[i], sp_resp[i]  scratchpad read ports 0..2.
      preload, ws_in, os_in  Out: the array's input streams (those the config builds).
      array_out    In: the array's results.
      acc_write    Out(stream{addr, data, accumulate}).
      mac_beats    Out(1): an array input beat (R*C MACs) was accepted this cycle.
      stalled      Out(1): an instruction waits for its tokens.

    With ``cfg.unit_commands == "queue"`` the unit holds no copy of the instruction: it issues
    ``cmd``'s payload and takes it (``cmd.ready``) in the cycle it starts.

    Throughput: one array beat per cycle per stream (both scratchpad reads of an OS beat in
    the same cycle when they are in different banks).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        R, C = cfg.rows, cfg.cols
        members = {
            "cmd": In(stream.Signature(command_layout(cfg))),
            "ctrl": Out(UnitPort(cfg)),
            "sp_req": Out(stream.Signature(sp_read_req_layout(cfg))).array(SP_READ_PORTS),
            "sp_resp": In(stream.Signature(sp_read_resp_layout(cfg))).array(SP_READ_PORTS),
            "array_out": In(stream.Signature(_array_out_layout(cfg))),
            "acc_write": Out(stream.Signature(acc_write_layout(cfg))),
            "mac_beats": Out(1),
            "stalled": Out(1),
        }
        if cfg.has_ws:
            members["preload"] = Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(cfg.weight_width, C)})))
            members["ws_in"] = Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(cfg.input_width, R), "last": 1})))
        if cfg.has_os:
            members["os_in"] = Out(stream.Signature(data.StructLayout({
                "a": data.ArrayLayout(cfg.input_width, R),
                "b": data.ArrayLayout(cfg.weight_width, C), "last": 1})))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R = cfg.rows

        # Writeback groups, in the order the streamer starts them.
        group_layout = data.StructLayout({
            "acc_addr": acc_addr_width(cfg), "accumulate": 1, "rows": _rows_shape(cfg)})
        m.submodules.groups = groups = ShiftFIFO(width=group_layout.size, depth=_RETIRE_DEPTH)
        # Issued instructions awaiting retirement: token pushes in program order.
        retire_layout = data.StructLayout({
            "is_matmul": 1, "push_prev": 1, "push_next": 1, "pc": pc_width(cfg)})
        m.submodules.retire = retire = ShiftFIFO(width=retire_layout.size, depth=_RETIRE_DEPTH)

        preload_busy = Signal()
        stream_busy = Signal()
        preload_done = Signal()   # pulses
        matmul_done = Signal()

        # ---- issue: the head instruction takes its tokens and goes to its engine ---------
        copy = cfg.unit_commands == "copy"
        if copy:
            # The held instruction keeps only the bits a legal PRELOAD / MATMUL can have set.
            packing = CommandPacking(*legal_bits(cfg, Queue.EXEC), pc_width(cfg))
            held = Signal(packing.width)
            instr = data.View(command_layout(cfg), packing.unpack(held))
            have = Signal()
        else:
            # The queue's head is issued in place: its engine and the retire entry take what
            # they need as it starts, and the queue drops it then.
            instr = self.cmd.payload
            have = self.cmd.valid
        word = instr.word
        pre = data.View(instruction_layout("PRELOAD"), word)
        mm = data.View(instruction_layout("MATMUL"), word)
        is_matmul = word[:4] == Opcode.MATMUL
        engine_free = Mux(is_matmul, ~stream_busy & groups.w_rdy, ~preload_busy) & retire.w_rdy

        m.d.comb += [
            self.ctrl.request.eq(have & engine_free),
            self.ctrl.pop_prev.eq(mm.pop_prev),
            self.ctrl.pop_next.eq(mm.pop_next),
            self.ctrl.pc.eq(instr.pc),
            self.stalled.eq(have & engine_free & ~self.ctrl.grant),
        ]
        start = Signal()
        m.d.comb += start.eq(have & engine_free & self.ctrl.grant)
        if copy:
            m.d.comb += self.cmd.ready.eq(~have)
            with m.If(self.cmd.valid & ~have):
                m.d.sync += [held.eq(packing.pack(self.cmd.payload)), have.eq(1)]
            with m.If(start):
                m.d.sync += have.eq(0)
        else:
            m.d.comb += self.cmd.ready.eq(start)
        entry = Signal(retire_layout)
        m.d.comb += [entry.is_matmul.eq(is_matmul), entry.push_prev.eq(mm.push_prev),
                     entry.push_next.eq(mm.push_next), entry.pc.eq(instr.pc),
                     retire.w_data.eq(entry)]
        m.d.comb += retire.w_en.eq(start)

        # ---- preloader -----------------------------------------------------------------
        if cfg.has_ws:
            self._preloader(m, start & ~is_matmul, pre, preload_busy, preload_done)
        # ---- streamer ------------------------------------------------------------------
        self._streamer(m, start & is_matmul, mm, stream_busy, groups, group_layout)
        # ---- writeback -------------------------------------------------------------------
        self._writeback(m, groups, group_layout, matmul_done)

        # ---- retirement ------------------------------------------------------------------
        pending_preloads = Signal(range(_RETIRE_DEPTH + 1))
        pending_matmuls = Signal(range(_RETIRE_DEPTH + 1))
        head = data.View(retire_layout, retire.r_data)
        retire_now = retire.r_rdy & Mux(head.is_matmul, (pending_matmuls != 0) | matmul_done,
                                        (pending_preloads != 0) | preload_done)
        m.d.comb += retire.r_en.eq(retire_now)
        with m.If(retire_now):
            m.d.comb += [self.ctrl.push_prev.eq(head.push_prev),
                         self.ctrl.push_next.eq(head.push_next),
                         self.ctrl.push_pc.eq(head.pc)]
        m.d.sync += [
            pending_preloads.eq(pending_preloads + preload_done
                                - (retire_now & ~head.is_matmul)),
            pending_matmuls.eq(pending_matmuls + matmul_done - (retire_now & head.is_matmul)),
        ]
        m.d.comb += self.ctrl.executing.eq(retire.r_rdy | preload_busy | stream_busy)
        return m

    def _preloader(self, m, start, pre, busy, done):
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        req, resp = self.sp_req[SP_PORT_W], self.sp_resp[SP_PORT_W]
        sp_addr = Signal(sp_addr_width(cfg))
        k_rows = Signal(range(R + 1))
        requested = Signal(range(R + 1))
        beat = Signal(range(R + 1))
        with m.If(start):
            m.d.sync += [busy.eq(1), sp_addr.eq(pre.sp_addr), k_rows.eq(pre.k_rows),
                         requested.eq(0), beat.eq(0)]
        m.d.comb += [req.valid.eq(busy & (requested < k_rows)),
                     req.payload.addr.eq(sp_addr + requested)]
        with m.If(req.valid & req.ready):
            m.d.sync += requested.eq(requested + 1)
        from_sp = beat < k_rows
        m.d.comb += self.preload.valid.eq(busy & (beat < R) & (~from_sp | resp.valid))
        for j in range(C):
            m.d.comb += self.preload.payload.data[j].eq(
                Mux(from_sp, resp.payload.data[j], 0))
        m.d.comb += resp.ready.eq(busy & from_sp & self.preload.ready)
        with m.If(self.preload.valid & self.preload.ready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == R - 1):
                m.d.sync += busy.eq(0)
                m.d.comb += done.eq(1)

    def _streamer(self, m, start, mm, busy, groups, group_layout):
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        req_a, resp_a = self.sp_req[SP_PORT_A], self.sp_resp[SP_PORT_A]
        req_b, resp_b = self.sp_req[SP_PORT_B], self.sp_resp[SP_PORT_B]
        a_addr = Signal(sp_addr_width(cfg))
        count = Signal(_rows_shape(cfg))
        os_mode = Signal()
        req_a_n = Signal.like(count)
        sent = Signal.like(count)
        with m.If(start):
            m.d.sync += [busy.eq(1), a_addr.eq(mm.a_addr), count.eq(mm.count),
                         os_mode.eq(mm.dataflow == Dataflow.OS), req_a_n.eq(0), sent.eq(0)]
            m.d.comb += groups.w_en.eq(1)
        group = Signal(group_layout)
        m.d.comb += [group.acc_addr.eq(mm.acc_addr), group.accumulate.eq(mm.accumulate),
                     group.rows.eq(Mux(mm.dataflow == Dataflow.OS, R, mm.count)),
                     groups.w_data.eq(group)]
        m.d.comb += [
            req_a.valid.eq(busy & (req_a_n < count)),
            req_a.payload.addr.eq(a_addr + req_a_n),
        ]
        with m.If(req_a.valid & req_a.ready):
            m.d.sync += req_a_n.eq(req_a_n + 1)
        if cfg.has_os:
            # The OS weight rows, on their own port (a WS-only array reads none).
            b_addr = Signal(sp_addr_width(cfg))
            req_b_n = Signal.like(count)
            with m.If(start):
                m.d.sync += [b_addr.eq(mm.b_addr), req_b_n.eq(0)]
            m.d.comb += [
                req_b.valid.eq(busy & os_mode & (req_b_n < count)),
                req_b.payload.addr.eq(b_addr + req_b_n),
            ]
            with m.If(req_b.valid & req_b.ready):
                m.d.sync += req_b_n.eq(req_b_n + 1)

        # `sent + 1 == count` (not `sent == count - 1`): the increment is shared with the
        # counter's own.
        sent_next = Signal.like(sent)
        m.d.comb += sent_next.eq(sent + 1)
        last = sent_next == count
        accepted = Signal()
        if cfg.has_ws:
            m.d.comb += self.ws_in.payload.last.eq(last)
            for i in range(R):
                m.d.comb += self.ws_in.payload.data[i].eq(resp_a.payload.data[i])
            with m.If(busy & ~os_mode):
                m.d.comb += [self.ws_in.valid.eq(resp_a.valid),
                             resp_a.ready.eq(self.ws_in.ready),
                             accepted.eq(resp_a.valid & self.ws_in.ready)]
        if cfg.has_os:
            m.d.comb += self.os_in.payload.last.eq(last)
            for i in range(R):
                m.d.comb += self.os_in.payload.a[i].eq(resp_a.payload.data[i])
            for j in range(C):
                m.d.comb += self.os_in.payload.b[j].eq(resp_b.payload.data[j])
            both = resp_a.valid & resp_b.valid
            with m.If(busy & os_mode):
                m.d.comb += [self.os_in.valid.eq(both),
                             resp_a.ready.eq(both & self.os_in.ready),
                             resp_b.ready.eq(both & self.os_in.ready),
                             accepted.eq(both & self.os_in.ready)]
        m.d.comb += self.mac_beats.eq(accepted)
        with m.If(accepted):
            m.d.sync += sent.eq(sent_next)
            with m.If(last):
                m.d.sync += busy.eq(0)

    def _writeback(self, m, groups, group_layout, done):
        cfg = self.cfg
        group = data.View(group_layout, groups.r_data)
        row = Signal(_rows_shape(cfg))
        row_next = Signal.like(row)     # shared by the counter and its end test
        out = self.array_out
        m.d.comb += [
            self.acc_write.valid.eq(out.valid & groups.r_rdy),
            self.acc_write.payload.addr.eq(group.acc_addr + row),
            self.acc_write.payload.accumulate.eq(group.accumulate),
            self.acc_write.payload.data.eq(out.payload.data),
            out.ready.eq(groups.r_rdy & self.acc_write.ready),
            row_next.eq(row + 1),
        ]
        if acc_column_writes(cfg):
            m.d.comb += self.acc_write.payload.mask.eq(-1)     # a result row: every column
        with m.If(self.acc_write.valid & self.acc_write.ready):
            m.d.sync += row.eq(row_next)
            with m.If(row_next == group.rows):
                m.d.sync += row.eq(0)
                m.d.comb += [groups.r_en.eq(1), done.eq(1)]
