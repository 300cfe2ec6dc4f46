"""Table-driven instruction decoding: bit positions come from ``sw/isa.py`` only."""

from collections import defaultdict

from amaranth.hdl import Cat, Module, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import LoadDst, Queue

from .config import Config


__all__ = ["instruction_layout", "Decoder", "QPARAM_ROWS", "at_most", "within", "fits_signed",
           "matmul_count_limit", "field_limits", "instruction_bits", "legal_bits"]

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
    rules of docs/DESIGN.md bound for ``cfg`` (0 for a token flag naming a missing
    neighbour); a field not listed may hold any value in a legal instruction. The
    :class:`Decoder` rejects a word with a bit set above these limits and checks its range
    rules on the fields narrowed to them, so a limit tighter than the rules would reject
    legal instructions: ``tests/hw/test_decoder.py`` compares the Decoder with the golden
    machine, and ``tests/hw/test_decoder_legal_bits.py`` proves with a SAT solver that the
    queues drop only bits that are constant in what it accepts."""
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


def _legal_width(limits, f):
    """Bits of field ``f`` a legal instruction may have set (``limits``: its
    :func:`field_limits`)."""
    return limits[f.name].bit_length() if f.name in limits else f.width


def instruction_bits(cfg, name):
    """The word bits a legal instruction ``name`` may have set: its opcode's, and each
    field's low bits up to the field's largest legal value (:func:`field_limits`)."""
    instr = isa.INSTRUCTIONS[name]
    limits = field_limits(cfg, name)
    mask = int(instr.opcode)
    for f in instr.all_fields[1:]:
        mask |= ((1 << _legal_width(limits, f)) - 1) << f.lsb
    return mask


def legal_bits(cfg, queue):
    """``(mask, ones)``: the word bits a legal instruction dispatched to ``queue`` may have
    set, and those every such instruction has set (its opcode's common bits). The other
    bits are 0, so a unit queue need not store them."""
    mask, ones = 0, (1 << isa.INSTR_BITS) - 1
    opcode = isa.HEADER[0]
    for instr in isa.INSTRUCTIONS.values():
        if instr.queue != queue:
            continue
        ones &= int(instr.opcode) | ~opcode.mask
        mask |= instruction_bits(cfg, instr.name)
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
        opcode_field = isa.HEADER[0]
        opcode = self.word[:opcode_field.width]
        m.d.comb += self.opcode.eq(opcode)

        # Every bit a legal instruction cannot have set (reserved bits, token flags naming a
        # missing neighbour, a field's bits above its largest legal value) must be 0. A bit is
        # checked for the opcodes that forbid it: bits forbidden by the same opcodes share one
        # OR, and each opcode ORs the groups it forbids.
        allowed = {name: instruction_bits(cfg, name) for name in isa.INSTRUCTIONS}
        groups = defaultdict(int)
        for bit in range(opcode_field.width, isa.INSTR_BITS):
            forbidding = frozenset(name for name, bits in allowed.items() if not bits >> bit & 1)
            if forbidding:
                groups[forbidding] |= 1 << bit
        any_set = {names: (self.word & bits) != 0 for names, bits in groups.items()}

        def view(name):
            """Instruction ``name``'s fields, each narrowed to the bits a legal one may have
            set: the check above rejects the others, so the rules compare only these."""
            instr, limits = isa.INSTRUCTIONS[name], field_limits(cfg, name)
            full = data.View(instruction_layout(name), self.word)
            return {f.name: full[f.name][:_legal_width(limits, f)] if f.name in limits
                    else full[f.name] for f in instr.all_fields}

        rules = {}
        f = view("LOAD")
        load_ok = {
            LoadDst.SP: at_most(f["row_elems"], E) & within(f["local_addr"], f["rows"],
                                                             cfg.sp_rows),
            LoadDst.ACC: at_most(f["row_elems"], C) & within(f["local_addr"], f["rows"],
                                                              cfg.acc_rows),
            LoadDst.QPARAM: (at_most(f["row_elems"], C)
                             & within(f["local_addr"], f["rows"], QPARAM_ROWS)),
        }
        dst_ok = Signal()
        with m.Switch(f["dst"]):
            for dst, ok in load_ok.items():
                with m.Case(dst):
                    m.d.comb += dst_ok.eq(ok)
        rules["LOAD"] = (f["rows"] != 0) & (f["row_elems"] != 0) & dst_ok

        f = view("STORE")
        rules["STORE"] = ((f["rows"] != 0) & (f["row_elems"] != 0) & at_most(f["row_elems"], C)
                          & within(f["acc_addr"], f["rows"], cfg.acc_rows))

        f = view("CONFIG")
        # clamp_lo <= clamp_hi with both representable in output_width bits: once both are,
        # their low output_width bits compare the same as the whole fields.
        ow = cfg.output_width
        rules["CONFIG"] = (fits_signed(f["clamp_lo"], ow) & fits_signed(f["clamp_hi"], ow)
                           & (f["clamp_lo"][:ow].as_signed() <= f["clamp_hi"][:ow].as_signed()))

        f = view("PRELOAD")
        rules["PRELOAD"] = ((1 if cfg.has_ws else 0) & (f["k_rows"] != 0)
                            & at_most(f["k_rows"], R)
                            & within(f["sp_addr"], f["k_rows"], cfg.sp_rows))

        f = view("MATMUL")
        ws_ok = ((1 if cfg.has_ws else 0) & within(f["acc_addr"], f["count"], cfg.acc_rows))
        os_ok = ((1 if cfg.has_os else 0) & within(f["b_addr"], f["count"], cfg.sp_rows)
                 & at_most(f["acc_addr"], cfg.acc_rows - R))
        # (a dataflow narrowed to no bits is WS: a config without OS has only that one)
        is_ws = f["dataflow"] == isa.Dataflow.WS
        rules["MATMUL"] = ((f["count"] != 0) & within(f["a_addr"], f["count"], cfg.sp_rows)
                           & (is_ws & ws_ok | ~is_ws & os_ok))
        m.d.comb += [
            self.is_preload.eq(opcode == isa.Opcode.PRELOAD),
            self.is_ws_matmul.eq((opcode == isa.Opcode.MATMUL) & is_ws),
        ]

        m.d.comb += self.illegal.eq(1)
        with m.Switch(opcode):
            for instr in isa.INSTRUCTIONS.values():
                with m.Case(instr.opcode):
                    stray = Cat(bits_set for names, bits_set in any_set.items()
                                if instr.name in names).any()
                    legal = ~stray & rules.get(instr.name, 1)
                    m.d.comb += [self.illegal.eq(~legal), self.queue.eq(instr.queue)]
        return m
