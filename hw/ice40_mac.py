"""Two array multiply-adds in one iCE40 SB_MAC16, in its dual signed 8x8 mode.

The iCE40UP5K has 8 SB_MAC16 blocks. yosys maps a ``$mul`` (and the add after it) to a
whole block, so only 8 of the array's multipliers fit in DSPs. In ``MODE_8x8`` one block
holds two independent signed 8x8 multipliers, each followed by a 16-bit adder of its own:

* top half: ``F = A[15:8] * B[15:8]``, ``O[31:16] = F + C``
  (``TOPADDSUB_LOWERINPUT = 1`` selects ``F``, ``TOPADDSUB_UPPERINPUT = 1`` selects ``C``);
* bottom half: ``G = A[7:0] * B[7:0]``, ``O[15:0] = G + D`` (``BOTADDSUB_*`` likewise);

signed with ``A_SIGNED`` and ``B_SIGNED``, without carry between the halves
(``*ADDSUB_CARRYSELECT = 0``), and with ``*OUTPUT_SELECT = 0`` putting the adders' outputs on
``O`` without the output registers (no register of the block is used). These are the
semantics of yosys's ``SB_MAC16`` simulation model (``share/ice40/cells_sim.v``, checked
against Lattice's vendor model since YosysHQ/yosys#1212 fixed its signed modes), which the
tests simulate, and of Lattice's "DSP Function Usage Guide for iCE40 Devices" (TN1295).

The block adds the low 16 bits of the accumulator; the bits above them take the carry out of
bit 15, which the block does not output, in logic. Because an 8x8 product ``x`` is within
``[-2**14, 2**14]``, that carry (``floor((x + c_low) / 2**16)``, one of -1, 0, +1) follows
from bit 15 of ``c`` and bits 15 and 14 of the low sum (see :func:`_carry_out_of_low`).

Registered (``*OUTPUT_SELECT = 1``): the block's output registers hold the low sums, with
``OHOLD* = ~en`` as their clock enable, and their asynchronous resets (``ORST*``) unused; the
high bits of the addend and its bit 15 are registered in logic next to them and the carry is
added after the registers. With ``registered_b`` the block's B input register holds both
halves' ``b`` (the cells' active weights), loaded on ``load`` with ``en`` (``BHOLD``).
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["Ice40DualMac", "DSP_OPERAND_WIDTH", "MACS_PER_DSP"]

#: Operand width of one half of an SB_MAC16 in 8x8 mode.
DSP_OPERAND_WIDTH = 8
#: Independent multiply-adds one SB_MAC16 computes in 8x8 mode (its bottom and top halves).
MACS_PER_DSP = 2
#: Width of each half's adder (and of its product).
HALF_WIDTH = 2 * DSP_OPERAND_WIDTH

# SB_MAC16 parameter values (TN1295 / cells_sim.v).
_ADDSUB_LOWER_PRODUCT = 1   # *ADDSUB_LOWERINPUT: the half's 8x8 product (F or G)
_ADDSUB_UPPER_INPUT = 1     # *ADDSUB_UPPERINPUT: the C (top) or D (bottom) input
_ADDSUB_CARRY_ZERO = 0      # *ADDSUB_CARRYSELECT: carry in 0 (the halves independent)
_OUTPUT_ADDER = 0           # *OUTPUT_SELECT: the adder's output, unregistered
_OUTPUT_REGISTER = 1        # *OUTPUT_SELECT: the adder's output register


class Ice40DualMac(wiring.Component):
    """``s[i] = a[i] * b[i] + c[i]`` (wrapping to ``acc_width``) for ``i`` in 0, 1: both
    products and the low 16 bits of both sums in one SB_MAC16.

    Parameters
    ----------
    a_width, b_width : int
        Signed operand widths, each from 1 to 8.
    acc_width : int
        Signed width of ``c`` and ``s``, at least ``a_width + b_width``.
    registered : bool
        ``s`` is the sum of the operands of the last cycle with ``en`` (the block's output
        registers); otherwise ``s`` is combinational.
    registered_b : bool
        (``registered``) The products take ``b`` from the block's B register, which takes
        ``b`` in each cycle with ``en`` and ``load``.

    Ports
    -----
    a : In(ArrayLayout(signed(a_width), 2))
    b : In(ArrayLayout(signed(b_width), 2))
    c : In(ArrayLayout(signed(acc_width), 2))
    s : Out(ArrayLayout(signed(acc_width), 2))
        Element 0 uses the block's bottom half, element 1 its top half.
    en : In(1) (``registered``)
        Clock enable of the sum registers. They have no (synchronous) reset.
    load : In(1) (``registered_b``)
        The B register takes ``b`` (with ``en``). It has no (synchronous) reset.

    Latency 0: combinational (no register of the block is used, so a MAC cell built on it
    keeps its one-register timing); ``registered``: 1 cycle with ``en`` (the register of the
    cell). Throughput two multiply-adds per cycle. Elaborates to an ``Instance`` of the iCE40
    primitive: simulate it with a model of SB_MAC16.
    """

    def __init__(self, *, a_width, b_width, acc_width, registered=False, registered_b=False):
        for name, value in (("a_width", a_width), ("b_width", b_width)):
            if not isinstance(value, int) or not 1 <= value <= DSP_OPERAND_WIDTH:
                raise ValueError(f"Ice40DualMac {name}={value!r} must be an integer from 1"
                                 f" to {DSP_OPERAND_WIDTH}")
        if not isinstance(acc_width, int) or acc_width < a_width + b_width:
            raise ValueError(f"Ice40DualMac acc_width={acc_width!r} must be an integer of at"
                             f" least a_width + b_width = {a_width + b_width}")
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        if registered_b and not registered:
            raise ValueError("Ice40DualMac registered_b needs registered")
        self.registered, self.registered_b = registered, registered_b
        members = {
            "a": In(data.ArrayLayout(signed(a_width), MACS_PER_DSP)),
            "b": In(data.ArrayLayout(signed(b_width), MACS_PER_DSP)),
            "c": In(data.ArrayLayout(signed(acc_width), MACS_PER_DSP)),
            "s": Out(data.ArrayLayout(signed(acc_width), MACS_PER_DSP)),
        }
        if registered:
            members["en"] = In(1)
        if registered_b:
            members["load"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        halves = range(MACS_PER_DSP)
        # Each half takes 8-bit signed operands (narrower ones sign-extended) and the low
        # 16 bits of the addend (a narrower one sign-extended: the sum wraps anyway).
        a = [Signal(signed(DSP_OPERAND_WIDTH), name=f"a{i}") for i in halves]
        b = [Signal(signed(DSP_OPERAND_WIDTH), name=f"b{i}") for i in halves]
        c = [Signal(signed(HALF_WIDTH), name=f"c{i}") for i in halves]
        for i in halves:
            m.d.comb += [a[i].eq(self.a[i]), b[i].eq(self.b[i]), c[i].eq(self.c[i])]
        out = Signal(MACS_PER_DSP * HALF_WIDTH)
        zero = Const(0, 1)
        if self.registered:
            # CE enables every register of the block; the unused ones are bypassed.
            output_select, clock, enable, hold = _OUTPUT_REGISTER, ClockSignal(), 1, ~self.en
        else:
            output_select, clock, enable, hold = _OUTPUT_ADDER, zero, zero, zero
        b_reg, b_hold = (1, ~(self.en & self.load)) if self.registered_b else (0, zero)
        m.submodules.dsp = Instance(
            "SB_MAC16",
            p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
            p_TOPADDSUB_LOWERINPUT=Const(_ADDSUB_LOWER_PRODUCT, 2),
            p_TOPADDSUB_UPPERINPUT=Const(_ADDSUB_UPPER_INPUT, 1),
            p_TOPADDSUB_CARRYSELECT=Const(_ADDSUB_CARRY_ZERO, 2),
            p_TOPOUTPUT_SELECT=Const(output_select, 2),
            p_BOTADDSUB_LOWERINPUT=Const(_ADDSUB_LOWER_PRODUCT, 2),
            p_BOTADDSUB_UPPERINPUT=Const(_ADDSUB_UPPER_INPUT, 1),
            p_BOTADDSUB_CARRYSELECT=Const(_ADDSUB_CARRY_ZERO, 2),
            p_BOTOUTPUT_SELECT=Const(output_select, 2),
            # Every other register bypassed.
            p_NEG_TRIGGER=zero, p_C_REG=zero, p_A_REG=zero, p_B_REG=Const(b_reg, 1),
            p_D_REG=zero,
            p_TOP_8x8_MULT_REG=zero, p_BOT_8x8_MULT_REG=zero,
            p_PIPELINE_16x16_MULT_REG1=zero, p_PIPELINE_16x16_MULT_REG2=zero,
            i_CLK=clock, i_CE=enable,
            # The bottom half takes bits [7:0] of A and B and adds D, the top half bits
            # [15:8] and adds C.
            i_A=Cat(a[0], a[1]), i_B=Cat(b[0], b[1]), i_C=c[1], i_D=c[0],
            i_AHOLD=zero, i_BHOLD=b_hold, i_CHOLD=zero, i_DHOLD=zero,
            i_IRSTTOP=zero, i_IRSTBOT=zero, i_ORSTTOP=zero, i_ORSTBOT=zero,
            i_OLOADTOP=zero, i_OLOADBOT=zero, i_ADDSUBTOP=zero, i_ADDSUBBOT=zero,
            i_OHOLDTOP=hold, i_OHOLDBOT=hold,
            i_CI=zero, i_ACCUMCI=zero, i_SIGNEXTIN=zero,
            o_O=out,
        )
        for i in halves:
            low = out[i * HALF_WIDTH:(i + 1) * HALF_WIDTH]
            if self.acc_width <= HALF_WIDTH:
                m.d.comb += self.s[i].eq(low)
                continue
            c_high, c15 = self.c[i][HALF_WIDTH:], self.c[i][HALF_WIDTH - 1]
            if self.registered:
                # Registered with the block's low sum, and like it without a reset.
                c_high_reg = Signal.like(c_high, name=f"c_high{i}", reset_less=True)
                c15_reg = Signal(name=f"c15_{i}", reset_less=True)
                with m.If(self.en):
                    m.d.sync += [c_high_reg.eq(c_high), c15_reg.eq(c15)]
                c_high, c15 = c_high_reg, c15_reg
            high = Signal(self.acc_width - HALF_WIDTH, name=f"high{i}")
            carry = _carry_out_of_low(m, c15, low, name=f"carry{i}")
            m.d.comb += [high.eq(c_high + carry), self.s[i].eq(Cat(low, high))]
        return m


def _carry_out_of_low(m, c15, low, *, name):
    """``floor((x + c_low) / 2**16)`` for an 8x8 product ``x`` and the unsigned low 16 bits
    ``c_low`` of the addend, from bit 15 of ``c_low`` and ``low = (x + c_low) % 2**16``.

    With ``|x| <= 2**14``: a wrap upwards (+1) needs ``c_low >= 2**16 - 2**14`` and leaves
    ``low < 2**14``; one downwards (-1) needs ``c_low < 2**14`` and leaves
    ``low >= 2**16 - 2**14``; without a wrap, a change of bit 15 leaves bit 14 the other
    way (``low`` within ``2**14`` of ``2**15``)."""
    carry = Signal(signed(2), name=name)
    s15, s14 = low[HALF_WIDTH - 1], low[HALF_WIDTH - 2]
    with m.If(c15 & ~s15 & ~s14):
        m.d.comb += carry.eq(1)
    with m.Elif(~c15 & s15 & s14):
        m.d.comb += carry.eq(-1)
    return carry
