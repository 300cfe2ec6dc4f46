import gc
import os
import random
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hw.config import Config
from hw.output_pipeline import OutputPipeline, QuantParams
from sim import golden
from sim.tb.tb_output_pipeline import expected as expected_rows


INT32_MIN, INT32_MAX = golden.INT32_MIN, golden.INT32_MAX


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


def random_acc(rng, cfg, n):
    """Accumulator values weighted towards the corners of the arithmetic."""
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    corners = [lo, hi, lo + 1, hi - 1, 0, 1, -1]
    pick = []
    for _ in range(n):
        kind = rng.randrange(4)
        if kind == 0:
            pick.append(rng.choice(corners))
        elif kind == 1:
            pick.append(rng.randint(-(1 << 12), 1 << 12))
        else:
            pick.append(rng.randint(lo, hi))
    return pick


def random_multiplier(rng):
    return rng.choice([INT32_MIN, INT32_MAX, 1 << 30, rng.randint(1 << 30, INT32_MAX),
                       rng.randint(INT32_MIN, INT32_MAX), rng.randint(-100, 100)])


def random_shift(rng):
    return rng.choice([0, 31, 1, rng.randrange(32), rng.randrange(32)])


def make_params(cfg, rng, *, out_int32=0, bias_en=0, per_column=0, lo=-128, hi=127,
                zero_point=None, multiplier=None, shift=None, bias=None,
                col_multiplier=None, col_shift=None):
    cols = cfg.cols
    return dict(
        out_int32=out_int32, bias_en=bias_en, per_column=per_column,
        multiplier=random_multiplier(rng) if multiplier is None else multiplier,
        shift=random_shift(rng) if shift is None else shift,
        zero_point=rng.randint(-20, 20) if zero_point is None else zero_point,
        clamp_lo=lo, clamp_hi=hi,
        bias=bias if bias is not None else [rng.choice([INT32_MIN, INT32_MAX,
                                                        rng.randint(INT32_MIN, INT32_MAX),
                                                        rng.randint(-1000, 1000)])
                                            for _ in range(cols)],
        col_multiplier=col_multiplier if col_multiplier is not None
        else [random_multiplier(rng) for _ in range(cols)],
        col_shift=col_shift if col_shift is not None else [random_shift(rng) for _ in range(cols)],
    )


def tie_rows(cfg, rng, shift, n):
    """Rows whose SRDHM by M0 = 2**30 (x/2) is odd, and whose result/2**shift is a tie."""
    rows = []
    for _ in range(n):
        row = []
        for _ in range(cfg.cols):
            # Small quotients, so the ties are not hidden by the output saturation.
            k = rng.randint(-100, 99)
            half = (k << shift) + ((1 << shift) >> 1)
            row.append(2 * half + rng.choice([0, 1, -1]))
        rows.append(row)
    return rows


def scenarios(cfg, rng):
    cols = cfg.cols
    rows = lambda n: [random_acc(rng, cfg, cols) for _ in range(n)]  # noqa: E731
    out = []
    for _ in range(3):
        out.append((make_params(cfg, rng), rows(12)))
        out.append((make_params(cfg, rng, per_column=1, bias_en=1), rows(12)))
    out.append((make_params(cfg, rng, out_int32=1, bias_en=1), rows(10)))
    out.append((make_params(cfg, rng, out_int32=1, bias_en=0), rows(4)))
    # Extremes of M0 and of the shift, on the extremes of the accumulator.
    acc_lo, acc_hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    corner_rows = [[acc_lo, acc_hi] * (cols // 2) + [acc_lo] * (cols % 2),
                   [acc_hi, acc_lo] * (cols // 2) + [acc_hi] * (cols % 2)]
    for mult in (INT32_MIN, INT32_MAX):
        for shift in (0, 31):
            out.append((make_params(cfg, rng, multiplier=mult, shift=shift),
                        corner_rows + rows(4)))
    # SRDHM's one overflow, INT32_MIN * INT32_MIN, whatever acc_width is: x = 0 + INT32_MIN.
    out.append((make_params(cfg, rng, multiplier=INT32_MIN, shift=0, bias_en=1,
                            bias=[INT32_MIN] * cols, zero_point=0, lo=-(1 << 15),
                            hi=(1 << 15) - 1), [[0] * cols, [1] * cols]))
    # Rounding ties in RDBP (and in SRDHM via the odd / even inputs).
    for shift in (1, 2, 5):
        out.append((make_params(cfg, rng, multiplier=1 << 30, shift=shift, zero_point=0),
                    tie_rows(cfg, rng, shift, 4)))
    # ReLU (lo = zero point) and ReLU6 (hi = zero point + 6/scale).
    out.append((make_params(cfg, rng, zero_point=-5, lo=-5, hi=127, shift=8), rows(6)))
    out.append((make_params(cfg, rng, per_column=1, zero_point=3, lo=3, hi=3 + 60), rows(6)))
    # Clamps wider than the output: the saturation to output_width does the work.
    out.append((make_params(cfg, rng, lo=-(1 << 15), hi=(1 << 15) - 1, shift=0,
                            zero_point=rng.randint(-(1 << 15), (1 << 15) - 1)), rows(6)))
    return out


def run_pipeline(cfg, seed, *, p_valid=0.7, p_ready=0.7, make_dut=OutputPipeline,
                 make_work=scenarios):
    """``make_work(cfg, rng)``'s [(params, rows)] (by default :func:`scenarios`) through
    ``make_dut(cfg)`` (ports i, o, params: QuantParams)."""
    rng = random.Random(seed)
    dut = make_dut(cfg)
    work = make_work(cfg, rng)
    layout = QuantParams(cfg)
    total = sum(len(r) for _, r in work)
    got = []

    async def producer(ctx):
        done_before = 0
        for params, rows in work:
            # Parameters may only change once the previous rows have left the pipeline.
            while len(got) < done_before:
                await ctx.tick()
            done_before += len(rows)
            ctx.set(dut.params, layout.const(params))
            for n, row in enumerate(rows):
                while rng.random() > p_valid:
                    await ctx.tick()
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"data": row, "last": int(n == len(rows) - 1)})
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        while len(got) < total:
            ctx.set(dut.o.ready, int(rng.random() < p_ready))
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload)
            if valid and ready:
                got.append(([payload.data[j] for j in range(cfg.cols)], payload.last))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()

    n = 0
    for params, rows in work:
        want = expected_rows(cfg, params, rows)
        for k, row in enumerate(rows):
            data, last = got[n]
            assert data == want[k], f"row {n} (input {row}, params {params}): {data} != {want[k]}"
            assert last == (k == len(rows) - 1), f"row {n}: last"
            n += 1


@pytest.mark.parametrize("cols, lanes, acc_width", [
    (4, 4, 32), (4, 2, 32), (4, 1, 32), (8, 8, 20),
])
def test_random_rows_match_golden(cols, lanes, acc_width):
    cfg = Config(rows=4, cols=cols, output_lanes=lanes, acc_width=acc_width,
                 scratchpad_kib=4, accumulator_kib=4)
    run_pipeline(cfg, _seed())


def test_full_rate_without_stalls():
    cfg = Config(rows=4, cols=4, output_lanes=2, scratchpad_kib=4, accumulator_kib=4)
    run_pipeline(cfg, _seed(), p_valid=1.0, p_ready=1.0)


def test_output_width_4():
    cfg = Config(rows=4, cols=4, output_width=4, scratchpad_kib=4, accumulator_kib=4)
    run_pipeline(cfg, _seed())


def test_latency_and_throughput_are_as_documented():
    cfg = Config(rows=4, cols=4, output_lanes=2, scratchpad_kib=4, accumulator_kib=4)
    slices = cfg.cols // cfg.output_lanes
    dut = OutputPipeline(cfg)
    rows = 6
    cycles = {}

    async def bench(ctx):
        ctx.set(dut.params, QuantParams(cfg).const(dict(out_int32=1)))
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        sent = 0
        for cycle in range(rows * slices + 20):
            ctx.set(dut.i.payload, {"data": [sent] * cfg.cols, "last": 0})
            _, _, i_ready, o_valid, o_data = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.data)
            if i_ready and sent < rows:
                cycles.setdefault(("in", sent), cycle)
                sent += 1
                if sent == rows:
                    ctx.set(dut.i.valid, 0)
            if o_valid:
                cycles.setdefault(("out", o_data[0]), cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for r in range(rows):
        assert cycles[("out", r)] - cycles[("in", r)] == slices + 7
        if r:
            assert cycles[("in", r)] - cycles[("in", r - 1)] == slices


def test_rejects_a_non_config():
    with warnings.catch_warnings():
        # The half-built component is collected here, not in a later test.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match="cfg"):
            OutputPipeline({"cols": 4})
        gc.collect()
