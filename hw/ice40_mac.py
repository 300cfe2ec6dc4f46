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
"""

from amaranth.hdl import Cat, Const, Instance, Module, Signal, signed
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


class Ice40DualMac(wiring.Component):
    """``s[i] = a[i] * b[i] + c[i]`` (wrapping to ``acc_width``) for ``i`` in 0, 1: both
    products and the low 16 bits of both sums in one SB_MAC16.

    Parameters
    ----------
    a_width, b_width : int
        Signed operand widths, each from 1 to 8.
    acc_width : int
        Signed width of ``c`` and ``s``, at least ``a_width + b_width``.

    Ports
    -----
    a : In(ArrayLayout(signed(a_width), 2))
    b : In(ArrayLayout(signed(b_width), 2))
    c : In(ArrayLayout(signed(acc_width), 2))
    s : Out(ArrayLayout(signed(acc_width), 2))
        Element 0 uses the block's bottom half, element 1 its top half.

    Latency 0: combinational (no register of the block is used, so a MAC cell built on it
    keeps its one-register timing); throughput two multiply-adds per cycle. Elaborates to an
    ``Instance`` of the iCE40 primitive: simulate it with a model of SB_MAC16.
    """

    def __init__(self, *, a_width, b_width, acc_width):
        for name, value in (("a_width", a_width), ("b_width", b_width)):
            if not isinstance(value, int) or not 1 <= value <= DSP_OPERAND_WIDTH:
                raise ValueError(f"Ice40DualMac {name}={value!r} must be an integer from 1"
                                 f" to {DSP_OPERAND_WIDTH}")
        if not isinstance(acc_width, int) or acc_width < a_width + b_width:
            raise ValueError(f"Ice40DualMac acc_width={acc_width!r} must be an integer of at"
                             f" least a_width + b_width = {a_width + b_width}")
        self.a_width, self.b_width, self.acc_width = a_width, b_width, acc_width
        super().__init__({
            "a": In(data.ArrayLayout(signed(a_width), MACS_PER_DSP)),
            "b": In(data.ArrayLayout(signed(b_width), MACS_PER_DSP)),
            "c": In(data.ArrayLayout(signed(acc_width), MACS_PER_DSP)),
            "s": Out(data.ArrayLayout(signed(acc_width), MACS_PER_DSP)),
        })

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
        m.submodules.dsp = Instance(
            "SB_MAC16",
            p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
            p_TOPADDSUB_LOWERINPUT=Const(_ADDSUB_LOWER_PRODUCT, 2),
            p_TOPADDSUB_UPPERINPUT=Const(_ADDSUB_UPPER_INPUT, 1),
            p_TOPADDSUB_CARRYSELECT=Const(_ADDSUB_CARRY_ZERO, 2),
            p_TOPOUTPUT_SELECT=Const(_OUTPUT_ADDER, 2),
            p_BOTADDSUB_LOWERINPUT=Const(_ADDSUB_LOWER_PRODUCT, 2),
            p_BOTADDSUB_UPPERINPUT=Const(_ADDSUB_UPPER_INPUT, 1),
            p_BOTADDSUB_CARRYSELECT=Const(_ADDSUB_CARRY_ZERO, 2),
            p_BOTOUTPUT_SELECT=Const(_OUTPUT_ADDER, 2),
            # Every register bypassed.
            p_NEG_TRIGGER=zero, p_C_REG=zero, p_A_REG=zero, p_B_REG=zero, p_D_REG=zero,
            p_TOP_8x8_MULT_REG=zero, p_BOT_8x8_MULT_REG=zero,
            p_PIPELINE_16x16_MULT_REG1=zero, p_PIPELINE_16x16_MULT_REG2=zero,
            i_CLK=zero, i_CE=zero,
            # The bottom half takes bits [7:0] of A and B and adds D, the top half bits
            # [15:8] and adds C.
            i_A=Cat(a[0], a[1]), i_B=Cat(b[0], b[1]), i_C=c[1], i_D=c[0],
            i_AHOLD=zero, i_BHOLD=zero, i_CHOLD=zero, i_DHOLD=zero,
            i_IRSTTOP=zero, i_IRSTBOT=zero, i_ORSTTOP=zero, i_ORSTBOT=zero,
            i_OLOADTOP=zero, i_OLOADBOT=zero, i_ADDSUBTOP=zero, i_ADDSUBBOT=zero,
            i_OHOLDTOP=zero, i_OHOLDBOT=zero,
            i_CI=zero, i_ACCUMCI=zero, i_SIGNEXTIN=zero,
            o_O=out,
        )
        for i in halves:
            low = out[i * HALF_WIDTH:(i + 1) * HALF_WIDTH]
            if self.acc_width <= HALF_WIDTH:
                m.d.comb += self.s[i].eq(low)
                continue
            high = Signal(self.acc_width - HALF_WIDTH, name=f"high{i}")
            carry = _carry_out_of_low(m, self.c[i][HALF_WIDTH - 1], low, name=f"carry{i}")
            m.d.comb += [high.eq(self.c[i][HALF_WIDTH:] + carry),
                         self.s[i].eq(Cat(low, high))]
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
