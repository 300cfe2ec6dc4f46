"""cocotb testbench of the emitted ``systolic_array`` (hw.systolic.SystolicArray).

Configuration from the environment (set by tests/hw/test_systolic_cocotb.py through
``run_cocotb(extra_env=...)``): ``ROWS``, ``COLS``, ``DATAFLOW``, ``INPUT_WIDTH``,
``WEIGHT_WIDTH``, ``ACC_WIDTH``, ``GROUPS`` (groups per run), ``CLEAR_MID_STREAM`` (1: first
leave WS partial sums in the array and pulse ``clear``, see :func:`dirty_then_clear`),
``SEED`` (random if unset; always printed so a failure can be replayed).

Amaranth flattens each stream payload (a ``data.StructLayout``) into one vector
``<stream>__payload``: fields are packed in declaration order from bit 0, and element ``j`` of
an ``ArrayLayout`` of ``w``-bit elements occupies bits ``[j*w, (j+1)*w)`` of its field. So

- ``preload__payload``: ``data[j]`` at ``j*weight_width``;
- ``ws_in__payload``: ``data[j]`` at ``j*input_width``, ``last`` at ``R*input_width``;
- ``os_in__payload``: ``a[j]`` at ``j*input_width``, ``b[j]`` at ``R*input_width +
  j*weight_width``, ``last`` after ``b``;
- ``out__payload``: ``data[j]`` at ``j*acc_width``, ``last`` at ``C*acc_width``.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.golden import matmul


class Params:
    def __init__(self, environ=os.environ):
        self.rows = int(environ["ROWS"])
        self.cols = int(environ["COLS"])
        self.dataflow = environ["DATAFLOW"]
        self.input_width = int(environ.get("INPUT_WIDTH", 8))
        self.weight_width = int(environ.get("WEIGHT_WIDTH", 8))
        self.acc_width = int(environ.get("ACC_WIDTH", 32))
        self.groups = int(environ.get("GROUPS", 4))
        self.clear_mid_stream = bool(int(environ.get("CLEAR_MID_STREAM", 0)))
        self.seed = int(environ.get("SEED", random.SystemRandom().getrandbits(32)))


def pack(fields):
    """``[(values, width), ...]`` -> an integer with the fields packed from bit 0."""
    word, offset = 0, 0
    for values, width in fields:
        for value in values:
            word |= (int(value) & ((1 << width) - 1)) << offset
            offset += width
    return word


def unpack_signed(word, count, width):
    values = []
    for j in range(count):
        value = (word >> (j * width)) & ((1 << width) - 1)
        values.append(value - (1 << width) if value >> (width - 1) else value)
    return values


def random_values(rng, shape, width):
    """Uniform signed values, a fifth of them forced to the extremes of ``width`` bits."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    values = rng.integers(lo, hi + 1, size=shape)
    extreme = rng.random(shape) < 0.2
    values[extreme] = rng.choice([lo, hi], size=int(extreme.sum()))
    return values


class Source:
    """Drives one valid/ready stream from a list of packed beats, with random valid gaps."""

    def __init__(self, dut, name, beats, rng, gap):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.beats, self.rng, self.gap = beats, rng, gap
        self.index = 0
        self.offered = False
        self.valid.value = 0

    def drive(self):
        """At the falling edge: offer the next beat (or keep offering it) unless a gap."""
        if not self.offered and self.index < len(self.beats) and self.rng.random() >= self.gap:
            self.payload.value = self.beats[self.index]
            self.offered = True
        self.valid.value = int(self.offered)

    def sample(self):
        """In the read-only phase before the rising edge: note a handshake."""
        if self.offered and int(self.ready.value):
            self.index += 1
            self.offered = False
            return True
        return False


class GroupSource:
    """ws_in / os_in in the order the groups were generated (outputs follow that order)."""

    def __init__(self, dut, groups, rng, gap):
        self.sources = {name: Source(dut, name, [], rng, gap)
                        for name in {kind for kind, _ in groups}}
        self.queue = [(kind, beat) for kind, beats in groups for beat in beats]
        self.position = 0

    def drive(self):
        if self.position >= len(self.queue):
            for source in self.sources.values():
                source.valid.value = 0
            return
        kind, beat = self.queue[self.position]
        for other, idle in self.sources.items():
            if other != kind:
                idle.valid.value = 0
        source = self.sources[kind]
        if not source.offered:
            source.beats, source.index = [beat], 0
        source.drive()

    def sample(self):
        if self.position < len(self.queue):
            kind, _ = self.queue[self.position]
            if self.sources[kind].sample():
                self.position += 1


def make_job(p, rng):
    """Random groups: packed input beats, packed preload beats and the expected rows."""
    R, C = p.rows, p.cols
    kinds = {"ws": ["ws"], "os": ["os"], "both": ["ws", "os"]}[p.dataflow]
    groups, preload, expected = [], [], []
    for _ in range(p.groups):
        kind = kinds[int(rng.integers(len(kinds)))]
        length = int(rng.choice([1, rng.integers(1, R + C + 1), rng.integers(R, 3 * R + 1)]))
        if kind == "ws":
            a = random_values(rng, (length, R), p.input_width)
            w = random_values(rng, (R, C), p.weight_width)
            preload += [pack([(row, p.weight_width)]) for row in w]
            beats = [pack([(row, p.input_width), ([m == length - 1], 1)])
                     for m, row in enumerate(a)]
            result = matmul(a, w, p.acc_width, p.input_width, p.weight_width)
        else:
            a = random_values(rng, (R, length), p.input_width)
            b = random_values(rng, (length, C), p.weight_width)
            beats = [pack([(a[:, k], p.input_width), (b[k], p.weight_width),
                           ([k == length - 1], 1)]) for k in range(length)]
            result = matmul(a, b, p.acc_width, p.input_width, p.weight_width)
        groups.append((f"{kind}_in", beats))
        expected += [([int(v) for v in row], i == len(result) - 1)
                     for i, row in enumerate(result)]
    return groups, preload, expected


async def dirty_then_clear(dut, p, rng):
    """A whole weight tile, ``R - 1`` beats of a WS group back to back (none reaches
    ``out``), and ``clear`` in the next cycle: partial sums are in the array, which a WS-only
    array does not reset."""
    R, C = p.rows, p.cols
    tiles = [pack([(random_values(rng, C, p.weight_width), p.weight_width)])
             for _ in range(R)]
    beats = [pack([(random_values(rng, R, p.input_width), p.input_width), ([0], 1)])
             for _ in range(R - 1)]
    for name, words in (("preload", tiles), ("ws_in", beats)):
        source = Source(dut, name, words, rng, gap=0)
        while source.index < len(words):
            await FallingEdge(dut.clk)
            source.drive()
            await ReadOnly()
            source.sample()
            assert not int(dut.out__valid.value), "a dirty row reached out before clear"
        await FallingEdge(dut.clk)
        source.valid.value = 0
    dut.clear.value = 1
    await FallingEdge(dut.clk)
    dut.clear.value = 0


@cocotb.test()
async def random_groups_with_backpressure(dut):
    p = Params()
    dut._log.info(f"{p.rows}x{p.cols} {p.dataflow}: SEED={p.seed}")
    rng = np.random.default_rng(p.seed)
    groups, preload, expected = make_job(p, rng)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.out__ready.value = 0
    dut.clear.value = 0
    sources = [GroupSource(dut, groups, rng, gap=0.25)]
    if p.dataflow != "os":
        sources.append(Source(dut, "preload", preload, rng, gap=0.25))
        dut.ws_in__valid.value = 0
    if p.dataflow != "ws":
        dut.os_in__valid.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    if p.clear_mid_stream:
        await dirty_then_clear(dut, p, rng)

    got = []
    beats = sum(len(beats) for _, beats in groups) + len(preload) + len(expected)
    budget = 4 * beats + 8 * (p.rows + p.cols) + 100
    for _ in range(budget):
        await FallingEdge(dut.clk)
        for source in sources:
            source.drive()
        ready = int(rng.random() < 0.6)
        dut.out__ready.value = ready
        await ReadOnly()
        for source in sources:
            source.sample()
        if ready and int(dut.out__valid.value):
            word = dut.out__payload.value.to_unsigned()
            got.append((unpack_signed(word, p.cols, p.acc_width),
                        bool(word >> (p.cols * p.acc_width) & 1)))
            row = len(got) - 1
            assert row < len(expected), f"unexpected output row {got[-1]} (SEED={p.seed})"
            assert got[-1] == expected[row], \
                f"row {row}: got {got[-1]}, expected {expected[row]} (SEED={p.seed})"
        if len(got) == len(expected):
            break
    assert len(got) == len(expected), \
        f"timeout: {len(got)} of {len(expected)} rows in {budget} cycles (SEED={p.seed})"
