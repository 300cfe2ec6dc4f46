"""Table-driven instruction decoding: bit positions come from ``sw/isa.py`` only."""

from amaranth.hdl import Module, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import LoadDst, Queue

from .config import Config


__all__ = ["instruction_layout", "Decoder", "QPARAM_ROWS", "at_most", "within", "fits_signed",
           "matmul_count_limit", "field_limits", "legal_bits"]

QPARAM_ROWS = isa.QPARAM_SLOTS * len(isa.QPARAM_KINDS)


def instruction_layout(name):
    """A 128-bit :class:`data.FlexibleLayout` naming the fields of instruction ``name``."""
    instr = isa.INSTRUCTIONS[name]
    return data.FlexibleLayout(isa.INSTR_BITS, {
        f.name: data.Field(signed(f.width) if f.signed else unsigned(f.width), f.lsb)
        for f in instr.all_fields})


def _low_and_zero_high(value, width):
    """``(value[:width], value[width:] == 0)``: a field narrowed to ``width`` bits, and
    whether that lost nothing."""
    if len(value) <= width:
        return value, 1
    return value[:width], value[width:] == 0


def at_most(value, limit):
    """``value <= limit`` (unsigned, constant ``limit``), compared on the limit's bits only:
    the wide instruction fields would otherwise cost a carry chain each."""
    low, high_zero = _low_and_zero_high(value, max(1, limit.bit_length()))
    return high_zero & (low <= limit)


def within(start, count, depth):
    """``start + count <= depth`` (unsigned, constant ``depth``) without wrapping: each
    operand above ``depth`` breaks it already, so only their low bits are added."""
    width = depth.bit_length()
    start_low, start_fits = _low_and_zero_high(start, width)
    count_low, count_fits = _low_and_zero_high(count, width)
    return start_fits & count_fits & ((start_low + count_low) <= depth)


def fits_signed(value, width):
    """The signed ``value`` is representable in ``width`` bits: its bits from ``width - 1``
    up are all equal (copies of the sign)."""
    top = Value.cast(value)[width - 1:]
    return (top == 0) | (top == (1 << len(top)) - 1)


def matmul_count_limit(cfg):
    """The largest ``count`` of a legal MATMUL: ``a_addr + count`` fits the scratchpad, and a
    WS MATMUL's ``acc_addr + count`` the accumulator too (an OS one's count is K, the
    reduction length, bounded by the scratchpad only)."""
    return cfg.sp_rows if cfg.has_os else min(cfg.sp_rows, cfg.acc_rows)


def field_limits(cfg, name):
    """``{field: largest value}`` of the unsigned fields of instruction ``name`` that the
    :class:`Decoder`'s rules bound for ``cfg`` (0 for a token flag naming a missing
    neighbour); a field not listed may hold any value in a legal instruction.
    ``tests/hw/test_decoder_legal_bits.py`` proves these against the Decoder with a SAT
    solver, so the two cannot drift apart."""
    R, C, E = cfg.rows, cfg.cols, cfg.sp_row_elems
    load_depth = max(cfg.sp_rows, cfg.acc_rows, QPARAM_ROWS)
    no_prev = {"pop_prev": 0, "push_prev": 0}
    no_next = {"pop_next": 0, "push_next": 0}
    limits = {
        # local / accumulator / scratchpad ranges: start + count <= depth with count >= 1
        "LOAD": {**no_prev, "dst": max(LoadDst), "local_addr": load_depth - 1,
                 "rows": load_depth, "row_elems": max(E, C)},
        "STORE": {**no_next, "acc_addr": cfg.acc_rows - 1, "rows": cfg.acc_rows,
                  "row_elems": C},
        "CONFIG": no_next,
        "PRELOAD": {"sp_addr": cfg.sp_rows - 1, "k_rows": R},
        "MATMUL": {"dataflow": int(cfg.has_os), "a_addr": cfg.sp_rows - 1,
                   "acc_addr": cfg.acc_rows - 1, "count": matmul_count_limit(cfg),
                   # b_addr is checked (and used) by OS MATMULs only
                   **({} if cfg.has_ws else {"b_addr": cfg.sp_rows - 1})},
        "FENCE": {**no_prev, **no_next},
        "HALT": {**no_prev, **no_next},
    }
    return limits[name]


def legal_bits(cfg, queue):
    """``(mask, ones)``: the word bits a legal instruction dispatched to ``queue`` may have
    set, and those every such instruction has set (its opcode's common bits). The other
    bits are 0, so a unit queue need not store them."""
    mask, ones = 0, (1 << isa.INSTR_BITS) - 1
    opcode = isa.HEADER[0]
    for instr in isa.INSTRUCTIONS.values():
        if instr.queue != queue:
            continue
        limits = field_limits(cfg, instr.name)
        ones &= int(instr.opcode) | ~opcode.mask
        mask |= int(instr.opcode)
        for f in instr.all_fields[1:]:
            width = limits[f.name].bit_length() if f.name in limits else f.width
            mask |= ((1 << width) - 1) << f.lsb
    return mask, ones & opcode.mask


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

        rules = {}
        f = view("LOAD")
        load_ok = {
            LoadDst.SP: at_most(f.row_elems, E) & within(f.local_addr, f.rows, cfg.sp_rows),
            LoadDst.ACC: at_most(f.row_elems, C) & within(f.local_addr, f.rows, cfg.acc_rows),
            LoadDst.QPARAM: (at_most(f.row_elems, C)
                             & within(f.local_addr, f.rows, QPARAM_ROWS)),
        }
        dst_ok = Signal()
        with m.Switch(f.dst):
            for dst, ok in load_ok.items():
                with m.Case(dst):
                    m.d.comb += dst_ok.eq(ok)
        rules["LOAD"] = (f.rows != 0) & (f.row_elems != 0) & dst_ok

        f = view("STORE")
        rules["STORE"] = ((f.rows != 0) & (f.row_elems != 0) & at_most(f.row_elems, C)
                          & within(f.acc_addr, f.rows, cfg.acc_rows))

        f = view("CONFIG")
        # clamp_lo <= clamp_hi with both representable in output_width bits: once both are,
        # their low output_width bits compare the same as the whole fields.
        ow = cfg.output_width
        rules["CONFIG"] = (fits_signed(f.clamp_lo, ow) & fits_signed(f.clamp_hi, ow)
                           & (f.clamp_lo[:ow].as_signed() <= f.clamp_hi[:ow].as_signed()))

        f = view("PRELOAD")
        rules["PRELOAD"] = ((1 if cfg.has_ws else 0) & (f.k_rows != 0) & at_most(f.k_rows, R)
                            & within(f.sp_addr, f.k_rows, cfg.sp_rows))

        f = view("MATMUL")
        ws_ok = ((1 if cfg.has_ws else 0) & within(f.acc_addr, f.count, cfg.acc_rows))
        os_ok = ((1 if cfg.has_os else 0) & within(f.b_addr, f.count, cfg.sp_rows)
                 & at_most(f.acc_addr, cfg.acc_rows - R))
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
