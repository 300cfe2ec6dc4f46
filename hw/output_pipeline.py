"""The store path's requantisation: accumulator rows in, int32 or int8 rows out.

Per value, bit-exact with :func:`sim.golden.output_pipeline`::

    x = wrap32(acc + bias)                       (bias only when bias_en)
    y = x                                        (out_int32)
    y = saturate(clamp(zp + RDBP(SRDHM(x, M0), shift), lo, hi), output_width)   (otherwise)

:class:`OutputPipeline` (``cfg.output_lane == "pipelined"``) splits the 32x32 multiply into
four 16x16 partial products (one DSP each) so every stage is a short add or a multiplier with
registered inputs and outputs. :class:`SerialOutputPipeline` (``"serial"``, for small FPGAs)
multiplies by shift-and-add, one column at a time, and reads the per-column parameters one
at a time from a memory.
"""

from amaranth import Module, Signal, signed, unsigned, Const, Cat, Mux
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .config import Config
from .decoder import fits_signed
from .repeat import place


__all__ = [
    "OutputPipeline", "OutputLane", "SerialOutputPipeline", "ColParam", "QuantParams",
    "SerialParams", "pipeline_in_layout", "pipeline_out_layout", "serial_out_layout",
    "PARAM_WIDTH", "SHIFT_WIDTH", "ZERO_POINT_WIDTH",
]

#: Width of the int32 quantities: biases, multipliers M0, int32 outputs.
PARAM_WIDTH = 32
#: Width of a right shift (0 .. PARAM_WIDTH-1).
SHIFT_WIDTH = ceil_log2(PARAM_WIDTH)
#: Width of the zero point and the clamp bounds (as in the CONFIG instruction).
ZERO_POINT_WIDTH = 16

_HALF = PARAM_WIDTH // 2
_INT_MAX = (1 << (PARAM_WIDTH - 1)) - 1
# SRDHM keeps the high half of the doubled product: bits [PARAM_WIDTH-1 ..] of a*b.
_HIGH_SHIFT = PARAM_WIDTH - 1
# Registered stages of a lane before the output row register (see OutputPipeline._lane).
_LANE_STAGES = 6


_SCALAR_PARAMS = {
    "out_int32": unsigned(1),
    "bias_en": unsigned(1),
    "per_column": unsigned(1),
    "multiplier": signed(PARAM_WIDTH),
    "shift": unsigned(SHIFT_WIDTH),
    "zero_point": signed(ZERO_POINT_WIDTH),
    "clamp_lo": signed(ZERO_POINT_WIDTH),
    "clamp_hi": signed(ZERO_POINT_WIDTH),
}


class SerialParams(data.StructLayout):
    """The parameters :class:`SerialOutputPipeline` takes as ports (the others it reads
    per column through ``col_value``). The clamp bounds are those of a legal CONFIG
    (docs/DESIGN.md: ``clamp_lo <= clamp_hi``, both within the output width), so they are
    ``cfg.output_width`` bits wide."""

    def __init__(self, cfg):
        bound = signed(cfg.output_width)
        super().__init__({"out_int32": _SCALAR_PARAMS["out_int32"],
                          "zero_point": _SCALAR_PARAMS["zero_point"],
                          "clamp_lo": bound, "clamp_hi": bound})


class QuantParams(data.StructLayout):
    """Requantisation parameters, held stable while rows are in the pipeline."""

    def __init__(self, cfg):
        super().__init__({
            **_SCALAR_PARAMS,
            "bias": data.ArrayLayout(signed(PARAM_WIDTH), cfg.cols),
            "col_multiplier": data.ArrayLayout(signed(PARAM_WIDTH), cfg.cols),
            "col_shift": data.ArrayLayout(unsigned(SHIFT_WIDTH), cfg.cols),
        })


def pipeline_in_layout(cfg):
    return data.StructLayout({
        "data": data.ArrayLayout(signed(cfg.acc_width), cfg.cols),
        "last": unsigned(1),
    })


def pipeline_out_layout(cfg):
    return data.StructLayout({
        "data": data.ArrayLayout(signed(PARAM_WIDTH), cfg.cols),
        "last": unsigned(1),
    })


def serial_out_layout():
    """One column's result (an int8 one in the low byte); ``last`` is the row's on its last
    column."""
    return data.StructLayout({"data": signed(PARAM_WIDTH), "last": unsigned(1)})


class OutputPipeline(wiring.Component):
    """Requantises accumulator rows, ``cfg.output_lanes`` columns per cycle.

    Ports
      i       In(stream{data: C x signed(acc_width), last}): accumulator rows.
      o       Out(stream{data: C x signed(32), last}): results (int8 ones sign-extended),
              ``last`` copied from the row.
      params  In(QuantParams(cfg)): must not change while rows are in flight.

    Latency
      ``o.valid`` rises ``C/output_lanes + 7`` cycles after the row's ``i`` handshake:
      an input row register, then per column slice: bias add, partial products, two
      levels of the high-half sum, rounding shift, zero point, and the clamp / saturation
      stage that fills the output row register.

    Throughput
      One row every ``C/output_lanes`` cycles. Backpressure on ``o`` stalls the whole
      pipeline (``i.ready`` depends combinationally on ``o.ready``).
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(pipeline_in_layout(cfg))),
            "o": Out(stream.Signature(pipeline_out_layout(cfg))),
            "params": In(QuantParams(cfg)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        lanes = cfg.output_lanes
        slices = cfg.cols // lanes
        m = Module()

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # Stage 0: the input row, shifted down one slice of `lanes` columns per cycle.
        buf = Signal(pipeline_in_layout(cfg))
        buf_valid = Signal()
        col = Signal(range(slices))
        row_end = Signal()
        m.d.comb += [
            row_end.eq(col == slices - 1),
            self.i.ready.eq(advance & (~buf_valid | row_end)),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(self.i.payload), buf_valid.eq(1), col.eq(0)]
        with m.Elif(advance & buf_valid):
            with m.If(row_end):
                m.d.sync += buf_valid.eq(0)
            with m.Else():
                m.d.sync += col.eq(col + 1)
                m.d.sync += [buf.data[j].eq(buf.data[j + lanes]) for j in range(cfg.cols - lanes)]

        # Each stage: valid, row end, `last`, and per-lane registers, all enabled by `advance`.
        ctrl = [(buf_valid, row_end, buf.last & row_end)]
        for stage in range(_LANE_STAGES):
            regs = (Signal(name=f"s{stage + 1}_valid"), Signal(name=f"s{stage + 1}_end"),
                    Signal(name=f"s{stage + 1}_last"))
            with m.If(advance):
                m.d.sync += [r.eq(prev) for r, prev in zip(regs, ctrl[-1])]
            ctrl.append(regs)

        results = [self._lane(m, advance, col, lane, buf.data[lane]) for lane in range(lanes)]

        # Output row register: slices shift in from the top, so a full row is in order.
        out = Signal(pipeline_out_layout(cfg))
        last_valid, last_end, last_last = ctrl[-1]
        with m.If(advance):
            with m.If(last_valid):
                m.d.sync += [out.data[j].eq(out.data[j + lanes])
                             for j in range(cfg.cols - lanes)]
                m.d.sync += [out.data[cfg.cols - lanes + lane].eq(res)
                             for lane, res in enumerate(results)]
                m.d.sync += [self.o.valid.eq(last_end), out.last.eq(last_last)]
            with m.Else():
                m.d.sync += self.o.valid.eq(0)
        m.d.comb += self.o.payload.eq(out)
        return m

    def _lane(self, m, advance, col, lane, acc):
        """Lane ``lane``, fed the column of the current slice; returns its result."""
        cfg = self._cfg
        p = self.params
        unit = place(m, f"lane_{lane}", "output_lane", lambda: OutputLane(cfg))
        m.d.comb += [unit.advance.eq(advance), unit.acc.eq(acc)]
        m.d.comb += [unit.params[name].eq(p[name]) for name in _SCALAR_PARAMS]
        with m.Switch(col):
            for n, column in enumerate(range(lane, cfg.cols, cfg.output_lanes)):
                with m.Case(n):
                    m.d.comb += [unit.bias.eq(p.bias[column]),
                                 unit.col_multiplier.eq(p.col_multiplier[column]),
                                 unit.col_shift.eq(p.col_shift[column])]
        return unit.result


class OutputLane(wiring.Component):
    """One column's requantisation pipeline (see :class:`OutputPipeline`).

    Ports
      advance     In(1): every register takes its next value (the pipeline's stall).
      acc         In(signed(acc_width)): the accumulator value.
      bias, col_multiplier, col_shift   In: the column's per-column parameters.
      params      In(StructLayout): the per-tensor parameters of :class:`QuantParams`.
      result      Out(signed(32)): the int32 value or the int8 result sign-extended.

    Latency ``_LANE_STAGES`` advances from ``acc`` to ``result``; one value per advance.
    The registers hold data only (validity travels in the pipeline's control registers),
    so they need no reset.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "advance": In(1),
            "acc": In(signed(cfg.acc_width)),
            "bias": In(signed(PARAM_WIDTH)),
            "col_multiplier": In(signed(PARAM_WIDTH)),
            "col_shift": In(unsigned(SHIFT_WIDTH)),
            "params": In(data.StructLayout(_SCALAR_PARAMS)),
            "result": Out(signed(PARAM_WIDTH)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        p = self.params
        acc, bias, col_mult, col_shift = self.acc, self.bias, self.col_multiplier, self.col_shift

        def stage(name, shape, value):
            reg = Signal(shape, name=name)
            with m.If(self.advance):
                m.d.sync += reg.eq(value)
            return reg
        # Stage 1: bias add (wrapping at 32 bits) and the lane's multiplier and shift.
        x1 = stage("x1", signed(PARAM_WIDTH), acc + Mux(p.bias_en, bias, 0))
        mult1 = stage("mult1", signed(PARAM_WIDTH), Mux(p.per_column, col_mult, p.multiplier))
        shift1 = stage("shift1", unsigned(SHIFT_WIDTH), Mux(p.per_column, col_shift, p.shift))

        # Stage 2: four 16x16 partial products of x * M0.
        x_hi, x_lo = x1[_HALF:].as_signed(), x1[:_HALF]
        m_hi, m_lo = mult1[_HALF:].as_signed(), mult1[:_HALF]
        pp_hh = stage("pp_hh", signed(PARAM_WIDTH), x_hi * m_hi)
        pp_hl = stage("pp_hl", signed(PARAM_WIDTH + 1), x_hi * m_lo)
        pp_lh = stage("pp_lh", signed(PARAM_WIDTH + 1), x_lo * m_hi)
        pp_ll = stage("pp_ll", unsigned(PARAM_WIDTH), x_lo * m_lo)
        x2 = stage("x2", signed(PARAM_WIDTH), x1)
        shift2 = stage("shift2", unsigned(SHIFT_WIDTH), shift1)

        # Stages 3 and 4: SRDHM. gemmlowp's nudge and truncating division by 2**31 equal
        # floor((a*b + 2**30) / 2**31) for either sign; only INT32_MIN**2 overflows (to 2**31).
        # The four partial products are summed in two levels to keep each carry chain short.
        upper = stage("upper", signed(2 * PARAM_WIDTH), (pp_hh << PARAM_WIDTH) + (pp_hl << _HALF))
        lower = stage("lower", signed(PARAM_WIDTH + _HALF + 2),
                      (pp_lh << _HALF) + pp_ll + (1 << (_HIGH_SHIFT - 1)))
        x3 = stage("x3", signed(PARAM_WIDTH), x2)
        shift3 = stage("shift3", unsigned(SHIFT_WIDTH), shift2)

        high = Signal(signed(PARAM_WIDTH + 1), name="high")
        m.d.comb += high.eq((upper + lower)[_HIGH_SHIFT:])
        overflow = ~high[-1] & high[-2]
        h4 = stage("h4", signed(PARAM_WIDTH), Mux(overflow, _INT_MAX, high))
        x4 = stage("x4", signed(PARAM_WIDTH), x3)
        shift4 = stage("shift4", unsigned(SHIFT_WIDTH), shift3)
        # RoundingDivideByPOT is round half away from zero: add half of 2**shift (one less
        # for negative values) and shift arithmetically. Both addends depend on the shift
        # only, so they are decoded here, off the path of the next stage's add.
        half = Signal(unsigned(PARAM_WIDTH), name="half")
        m.d.comb += half.eq((Const(1, 1) << shift3)[1:])
        half_pos4 = stage("half_pos4", unsigned(PARAM_WIDTH), half)
        half_neg4 = stage("half_neg4", unsigned(PARAM_WIDTH), half - (shift3 != 0))

        # Stage 5: RoundingDivideByPOT.
        rounded = h4 + Mux(h4[-1], half_neg4, half_pos4)
        r5 = stage("r5", signed(PARAM_WIDTH), rounded >> shift4)
        x5 = stage("x5", signed(PARAM_WIDTH), x4)

        # Stage 6: zero point.
        y6 = stage("y6", signed(PARAM_WIDTH + 1), r5 + p.zero_point)
        x6 = stage("x6", signed(PARAM_WIDTH), x5)

        # Output stage: np.clip's min(max(y, lo), hi), then saturation to output_width. The
        # comparisons of y run in parallel; the candidates lo and hi depend only on params.
        out_min, out_max = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1

        def saturate(value):
            return Mux(value < out_min, out_min, Mux(value > out_max, out_max, value))

        lo, hi = p.clamp_lo, p.clamp_hi
        y = Mux(y6 < lo, saturate(Mux(lo > hi, hi, lo)),
                Mux(y6 > hi, saturate(hi), saturate(y6)))
        m.d.comb += self.result.eq(Mux(p.out_int32, x6, y))
        return m


class ColParam(enum.Enum, shape=2):
    """A per-column parameter: its row within a qparam slot (``sw.isa.QPARAM_KINDS`` order)."""
    BIAS = 0
    MULTIPLIER = 1
    SHIFT = 2


# The serial lane's product register: the partial sums of x * M0 (with the rounding nudge),
# scaled down by the steps done, stay within +-(2**32 + 2**31): two bits above an int32.
_SERIAL_ACC_WIDTH = PARAM_WIDTH + 2
# The zero point is added to the rounded product's low bits: a product beyond this width,
# plus any 16-bit zero point, is beyond every clamp bound and output range anyway.
_NARROW_WIDTH = ZERO_POINT_WIDTH + 2
# An int8 result's byte (output_width <= 8 bits, sign-extended).
_BYTE = 8


class SerialOutputPipeline(wiring.Component):
    """Requantises accumulator rows one value at a time, without a multiplier (small FPGAs).

    Same arithmetic and ``i`` stream as :class:`OutputPipeline`; the results leave one
    column at a time (no output row register: the store unit packs them into bus beats),
    and the per-column parameters are read one at a time from the qparam memory through
    ``col_addr`` / ``col_value``.

    Ports
      i          In(stream{data: C x signed(acc_width), last}): accumulator rows, each
                 C times: the lane takes column ``col_addr.col`` of each beat, so a row is C
                 beats (the store unit reads it once per column, holding no copy of it).
                 ``i.ready`` is high while the lane waits for a column (it does not depend
                 on ``i.valid``).
      o          Out(stream{data: signed(32), last}): the results of each row's columns
                 0 .. C-1 in turn: the int32 value, or the int8 one in bits 0..7 (the store
                 unit packs bytes, so the bits above are left as x's); ``last`` is the row's
                 ``last`` on its column C-1. The payload is held while ``o.ready`` is low.
      params     In(SerialParams(cfg)): out_int32, zero_point, clamp_lo, clamp_hi; stable
                 while rows are in flight. The bounds must be a legal CONFIG's (``clamp_lo <=
                 clamp_hi``, both representable in ``output_width`` bits: the decoder rejects
                 other CONFIGs), so the lane neither saturates them nor orders them.
      col_addr   Out({kind: ColParam, col}): the column parameter the lane reads next.
      col_value  In(signed(32)): the value, in the previous cycle, of the parameter
                 ``col_addr`` named then, as it applies (a registered memory read resolved
                 by the store unit): the bias (0 without bias_en), the multiplier and the
                 shift (per column or per tensor).

    Cycles per column
      load (x = acc + bias) 1, multiply 32 (radix 2: one bit of x per step, LSB first),
      rounding shift ``shift + 1``, saturation 1, output 1 (``o.valid``, until ``o.ready``):
      **36 + shift** cycles for an int8 value, 2 for an int32 value, when ``o`` is ready.
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "i": In(stream.Signature(pipeline_in_layout(cfg))),
            "o": Out(stream.Signature(serial_out_layout())),
            "params": In(SerialParams(cfg)),
            "col_addr": Out(data.StructLayout({"kind": ColParam, "col": range(cfg.cols)})),
            "col_value": In(signed(PARAM_WIDTH)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        cols = cfg.cols
        m = Module()
        p, value, addr = self.params, self.col_value, self.col_addr

        col = Signal(range(cols))
        last_col = Signal()
        row_last = Signal()                   # the row's `last`, kept from its last column
        count = Signal(SHIFT_WIDTH)           # multiply step, then rounding-shift step
        x = Signal(signed(PARAM_WIDTH))       # acc + bias; the multiply shifts it out LSB first
        prod = Signal(signed(_SERIAL_ACC_WIDTH))
        half = Signal()                       # the last bit the rounding shift dropped
        sticky = Signal()                     # any 1 among the bits dropped before it
        m.d.comb += [last_col.eq(col == cols - 1), addr.col.eq(col), addr.kind.eq(ColParam.SHIFT)]

        multiplier, shift = value, value[:SHIFT_WIDTH]
        x_new = Signal(signed(PARAM_WIDTH))
        m.d.comb += x_new.eq(self.i.payload.data[col] + value)

        # Step k adds bit k of x times M0 at weight 2**k, as (prod >> 1) + addend: after the
        # 32 steps prod = floor((x*M0 + 2**30) / 2**31), SRDHM's high half. The sign bit
        # weighs -2**31, so the last step adds ~M0 = -M0-1; the missing 1 (x 2**31) is in the
        # initial value, with the nudge 2**30 (both doubled: the first step halves them).
        # INT32_MIN * INT32_MIN gives 2**31 here where SRDHM saturates to 2**31-1; the two
        # agree after the rounding shift (shift > 0) or the output clamp (shift = 0).
        last_step = Signal()
        addend = Signal(signed(PARAM_WIDTH))
        stepped = Signal(signed(_SERIAL_ACC_WIDTH))
        m.d.comb += [last_step.eq(count == PARAM_WIDTH - 1), stepped.eq((prod >> 1) + addend)]
        initial = Cat(Const(1 << _HIGH_SHIFT, PARAM_WIDTH), x_new[-1])

        # RoundingDivideByPOT rounds half away from zero: up when the dropped bits are more
        # than half, or exactly half of a non-negative value.
        round_up = half & (sticky | ~prod[-1])
        y = Signal(signed(_NARROW_WIDTH + 1))
        m.d.comb += y.eq(prod[:_NARROW_WIDTH].as_signed() + p.zero_point + round_up)
        # np.clip(y, lo, hi) then saturation to output_width: both are monotonic, so
        # saturating y first gives the same result with narrow comparisons (lo and hi are
        # within the output range already).
        width = cfg.output_width
        narrow = fits_signed(prod, _NARROW_WIDTH)
        y_sat = Mux(narrow & fits_signed(y, width), y[:width].as_signed(),
                    Mux(Mux(narrow, y[-1], prod[-1]), -(1 << (width - 1)), (1 << (width - 1)) - 1))
        # Registered (state SATURATE): the rounding, zero point and saturation take one
        # cycle, the clamp and the store unit's byte packing the next.
        saturated = Signal(signed(width))
        lo, hi = p.clamp_lo, p.clamp_hi
        # min(max(y, lo), hi) as two comparisons in a row.
        above_lo = Mux(saturated < lo, lo, saturated)
        clamped = Signal(signed(_BYTE))
        m.d.comb += clamped.eq(Mux(above_lo > hi, hi, above_lo))
        result = Cat(Mux(p.out_int32, x[:_BYTE], clamped.as_unsigned()), x[_BYTE:])

        m.d.comb += [self.o.payload.data.eq(result), self.o.payload.last.eq(row_last & last_col)]

        with m.FSM(init="PRIME"):
            with m.State("PRIME"):
                # Reads the first column's bias before the first load.
                m.d.comb += addr.kind.eq(ColParam.BIAS)
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [self.i.ready.eq(1),
                             addr.kind.eq(Mux(self.i.valid, ColParam.MULTIPLIER, ColParam.BIAS))]
                with m.If(self.i.valid):
                    m.d.sync += [x.eq(x_new), prod.eq(initial), count.eq(0),
                                 half.eq(0), sticky.eq(0)]
                    with m.If(last_col):
                        m.d.sync += row_last.eq(self.i.payload.last)
                    with m.If(p.out_int32):
                        m.next = "OUTPUT"
                    with m.Else():
                        m.next = "MULTIPLY"
            with m.State("MULTIPLY"):
                m.d.comb += [
                    addend.eq(Mux(x[0], Mux(last_step, ~multiplier, multiplier), 0)),
                    addr.kind.eq(Mux(last_step, ColParam.SHIFT, ColParam.MULTIPLIER)),
                ]
                m.d.sync += [prod.eq(stepped), x.eq(x >> 1), count.eq(count + 1)]
                with m.If(last_step):
                    m.next = "SHIFT"
            with m.State("SHIFT"):
                with m.If(count == shift):
                    m.next = "SATURATE"
                with m.Else():
                    m.d.sync += [prod.eq(stepped), half.eq(prod[0]), sticky.eq(sticky | half),
                                 count.eq(count + 1)]
            with m.State("SATURATE"):
                m.d.sync += saturated.eq(y_sat)
                m.next = "OUTPUT"
            with m.State("OUTPUT"):
                m.d.comb += [self.o.valid.eq(1), addr.kind.eq(ColParam.BIAS),
                             addr.col.eq(Mux(last_col, 0, col + 1))]
                with m.If(self.o.ready):
                    m.d.sync += col.eq(addr.col)
                    m.next = "LOAD"
        return m
