"""Table-driven instruction decoding: bit positions come from ``sw/isa.py`` only."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import LoadDst, Queue

from .config import Config


__all__ = ["instruction_layout", "Decoder", "QPARAM_ROWS"]

QPARAM_ROWS = isa.QPARAM_SLOTS * len(isa.QPARAM_KINDS)


def instruction_layout(name):
    """A 128-bit :class:`data.FlexibleLayout` naming the fields of instruction ``name``."""
    instr = isa.INSTRUCTIONS[name]
    return data.FlexibleLayout(isa.INSTR_BITS, {
        f.name: data.Field(signed(f.width) if f.signed else unsigned(f.width), f.lsb)
        for f in instr.all_fields})


class Decoder(wiring.Component):
    """Combinational decode and legality check of one instruction word.

    Ports
      word      In(128)     the instruction.
      queue     Out(Queue)  where it goes (LOAD / EXEC / STORE / CONTROL).
      opcode    Out(4)
      illegal   Out(1)      any rule of docs/DESIGN.md that needs only the word and the Config
                            is broken (the PRELOAD/MATMUL pairing is the dispatcher's).
      is_preload, is_ws_matmul   Out(1) for the dispatcher's pairing check.

    Latency: 0 cycles (combinational).
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"Decoder cfg must be a hw.config.Config, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "word": In(isa.INSTR_BITS),
            "queue": Out(Queue),
            "opcode": Out(4),
            "illegal": Out(1),
            "is_preload": Out(1),
            "is_ws_matmul": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C, E = cfg.rows, cfg.cols, cfg.sp_row_elems
        opcode = self.word[:4]
        m.d.comb += self.opcode.eq(opcode)

        def view(name):
            return data.View(instruction_layout(name), self.word)

        def flags_ok(instr, f):
            prev_ok = ~(f.pop_prev | f.push_prev) if instr.queue in (Queue.LOAD, Queue.CONTROL) else 1
            next_ok = ~(f.pop_next | f.push_next) if instr.queue in (Queue.STORE, Queue.CONTROL) else 1
            return prev_ok & next_ok

        def within(start, count, depth):
            # start + count <= depth, evaluated wide enough not to wrap
            return (start + count) <= depth

        rules = {}
        f = view("LOAD")
        width = Signal(range(max(E, C) + 1))
        depth = Signal(range(max(cfg.sp_rows, cfg.acc_rows, QPARAM_ROWS) + 1))
        with m.Switch(f.dst):
            with m.Case(LoadDst.SP):
                m.d.comb += [width.eq(E), depth.eq(cfg.sp_rows)]
            with m.Case(LoadDst.ACC):
                m.d.comb += [width.eq(C), depth.eq(cfg.acc_rows)]
            with m.Case(LoadDst.QPARAM):
                m.d.comb += [width.eq(C), depth.eq(QPARAM_ROWS)]
        rules["LOAD"] = ((f.dst != 3) & (f.rows != 0) & (f.row_elems != 0)
                         & (f.row_elems <= width) & within(f.local_addr, f.rows, depth))

        f = view("STORE")
        rules["STORE"] = ((f.rows != 0) & (f.row_elems != 0) & (f.row_elems <= C)
                          & within(f.acc_addr, f.rows, cfg.acc_rows))

        f = view("CONFIG")
        out_lo, out_hi = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1
        rules["CONFIG"] = ((f.clamp_lo <= f.clamp_hi) & (f.clamp_lo >= out_lo)
                           & (f.clamp_hi <= out_hi))

        f = view("PRELOAD")
        rules["PRELOAD"] = ((1 if cfg.has_ws else 0) & (f.k_rows != 0) & (f.k_rows <= R)
                            & within(f.sp_addr, f.k_rows, cfg.sp_rows))

        f = view("MATMUL")
        ws_ok = ((1 if cfg.has_ws else 0) & within(f.acc_addr, f.count, cfg.acc_rows))
        os_ok = ((1 if cfg.has_os else 0) & within(f.b_addr, f.count, cfg.sp_rows)
                 & within(f.acc_addr, R, cfg.acc_rows))
        rules["MATMUL"] = ((f.count != 0) & within(f.a_addr, f.count, cfg.sp_rows)
                           & ((f.dataflow == isa.Dataflow.WS) & ws_ok
                              | (f.dataflow == isa.Dataflow.OS) & os_ok))
        m.d.comb += [
            self.is_preload.eq(opcode == isa.Opcode.PRELOAD),
            self.is_ws_matmul.eq((opcode == isa.Opcode.MATMUL) & (f.dataflow == isa.Dataflow.WS)),
        ]

        m.d.comb += self.illegal.eq(1)
        with m.Switch(opcode):
            for instr in isa.INSTRUCTIONS.values():
                with m.Case(instr.opcode):
                    header = view(instr.name)
                    legal = ((self.word & instr.reserved_mask) == 0) & flags_ok(instr, header)
                    if instr.name in rules:
                        legal &= rules[instr.name]
                    m.d.comb += [self.illegal.eq(~legal), self.queue.eq(instr.queue)]
        return m
