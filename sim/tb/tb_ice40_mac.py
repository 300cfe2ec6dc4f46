"""cocotb testbenches of the array's multipliers in iCE40 SB_MAC16 blocks (hw.ice40_mac),
simulated with yosys's SB_MAC16 model (tests/hw/test_ice40_mac.py builds them).

``dual_mac``: one :class:`hw.ice40_mac.Ice40DualMac` (``A_WIDTH``, ``B_WIDTH``,
``ACC_WIDTH`` from the environment): every pair of operands on both halves at once, each
with an addend near the wraps of its low 16 bits or random.

``grid_pair``: the grid of a Config built with its multipliers in SB_MAC16 pairs next to the
generic grid (``result`` and ``ref_result``), both fed the same random inputs every cycle
(random stalls, resets, weight shifts, buffer selects, OS beats): the outputs must be equal
in every cycle. A WS-only grid resets no partial sum, in either form (in the SB_MAC16's
output registers, which have only an asynchronous reset, or in logic): so what both show is
architecturally visible, the same in both, once every partial-sum register has been written
since power-on, and the comparison starts after the first ``ROWS + COLS`` cycles with ``en``
(a bound of the depth of a column plus its deskew); from then on through resets. Broadcast
grids (``FEED=broadcast``) have no buffer selects but ``w_load``, and their active weights
(in the SB_MAC16 B registers) are not reset either: ``w_load`` is set throughout those first
cycles. With ``WEIGHT_BUFFERS=1`` (broadcast, no shadow weights) ``w_load`` has a bit per row
(random each, all set in those first cycles) and there is no ``w_shift``.
Configuration from the environment: ``ROWS``, ``COLS``, ``DATAFLOW``, ``FEED``,
``WEIGHT_BUFFERS`` (2 if unset), ``INPUT_WIDTH``,
``WEIGHT_WIDTH``, ``ACC_WIDTH``, ``CYCLES``, ``SEED`` (random if unset; always printed so a
failure can be replayed).
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from hw.mac import WEIGHT_BUFFERS
from sim.tb.tb_systolic import pack, unpack_signed

# Low 16 bits of an addend around which an 8x8 product makes the sum carry out of them.
CARRY_EDGES = (0, 1 << 14, 1 << 15, (1 << 16) - (1 << 14), 1 << 16)


def seeded_rng(name):
    seed = int(os.environ.get("SEED", random.SystemRandom().getrandbits(32)))
    print(f"{name}: SEED={seed}")
    return random.Random(seed)


def signed_range(width):
    return range(-(1 << (width - 1)), 1 << (width - 1))


def addend(rng, width):
    """A signed ``width``-bit value whose low 16 bits are often close to where a product
    carries out of them."""
    if rng.random() < 0.3:
        return wrap(rng.getrandbits(width), width)
    low = rng.choice(CARRY_EDGES) + rng.randint(-300, 300)
    return wrap((rng.getrandbits(width) & ~0xFFFF) | (low & 0xFFFF), width)


def wrap(value, width):
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


@cocotb.test()
async def dual_mac(dut):
    """Every (a, b) on the bottom half while the top half takes the same pairs in another
    order (b as a and a ^ the sign bit as b, where the widths allow), each with its own
    addend."""
    rng = seeded_rng("dual_mac")
    aw, bw, acc_width = (int(os.environ[k]) for k in ("A_WIDTH", "B_WIDTH", "ACC_WIDTH"))
    for a in signed_range(aw):
        for b in signed_range(bw):
            top_a, top_b = (b, a ^ -(1 << (aw - 1))) if aw == bw else (-1 - a, b)
            c = [addend(rng, acc_width), addend(rng, acc_width)]
            dut.a.value = pack([([a, top_a], aw)])
            dut.b.value = pack([([b, top_b], bw)])
            dut.c.value = pack([(c, acc_width)])
            await Timer(1, unit="ns")
            got = unpack_signed(dut.s.value.to_unsigned(), 2, acc_width)
            want = [wrap(a * b + c[0], acc_width), wrap(top_a * top_b + c[1], acc_width)]
            assert got == want, (a, b, top_a, top_b, c, got, want)


def operand(rng, width):
    """A random signed value, the extremes and small values often."""
    low, high = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return rng.choice([low, high, 0, -1, 1, low + 1, rng.randint(low, high),
                       rng.randint(low, high)])


@cocotb.test()
async def grid_pair(dut):
    rng = seeded_rng("grid_pair")
    rows, cols = int(os.environ["ROWS"]), int(os.environ["COLS"])
    dataflow = os.environ["DATAFLOW"]
    iw, ww = int(os.environ["INPUT_WIDTH"]), int(os.environ["WEIGHT_WIDTH"])
    acc_width = int(os.environ["ACC_WIDTH"])
    cycles = int(os.environ["CYCLES"])
    ws, os_ = dataflow in ("ws", "both"), dataflow in ("os", "both")
    broadcast = os.environ.get("FEED", "systolic") == "broadcast"
    direct = int(os.environ.get("WEIGHT_BUFFERS", WEIGHT_BUFFERS)) == 1

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await FallingEdge(dut.clk)
    os_mode = 0
    distinct = set()
    # The first cycles, with en (and w_load), until every register that result depends on
    # has been written since power-on.
    warm_up = rows + cols
    for cycle in range(cycles):
        # Resets rarely, so that sums build up between them.
        dut.rst.value = int(rng.random() < 0.01)
        dut.en.value = 1 if warm_up else int(rng.random() < 0.75)
        warm_up -= 1 if warm_up else 0
        # h_layout, per row, from bit 0: a, then sel (WS), then last (OS).
        h_fields = []
        for _ in range(rows):
            h_fields.append(([operand(rng, iw)], iw))
            if ws and not broadcast:
                h_fields.append(([rng.randrange(WEIGHT_BUFFERS)], 1))
            if os_:
                h_fields.append(([int(rng.random() < 0.2)], 1))
        dut.feed_h.value = pack(h_fields)
        if direct:
            dut.w_top.value = pack([([operand(rng, ww) for _ in range(cols)], ww)])
            dut.w_load.value = pack([([1 if warm_up else int(rng.random() < 0.3)
                                       for _ in range(rows)], 1)])
        elif ws:
            dut.w_top.value = pack([([operand(rng, ww) for _ in range(cols)], ww)])
            dut.w_shift.value = rng.randrange(1 << (1 if broadcast else WEIGHT_BUFFERS))
        if broadcast and not direct:
            dut.w_load.value = 1 if warm_up else int(rng.random() < 0.3)
        if os_:
            dut.feed_b.value = pack([([operand(rng, ww) for _ in range(cols)], ww)])
        if ws and os_:
            if rng.random() < 0.01:
                os_mode ^= 1
            dut.os_mode.value = os_mode
        await FallingEdge(dut.clk)
        if warm_up:
            continue
        got = unpack_signed(dut.result.value.to_unsigned(), cols, acc_width)
        want = unpack_signed(dut.ref_result.value.to_unsigned(), cols, acc_width)
        assert got == want, f"cycle {cycle}: DSP grid {got} != generic grid {want}"
        distinct.update(got)
    # The comparison means something only if the sums moved through a wide range.
    assert len(distinct) > cycles // 20, f"only {len(distinct)} distinct results"
    assert min(distinct) < -(1 << (iw + ww - 2)) and max(distinct) > 1 << (iw + ww - 2)
