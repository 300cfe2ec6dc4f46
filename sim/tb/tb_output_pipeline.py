"""cocotb testbench of the emitted ``output_pipeline`` (hw.output_pipeline.OutputPipeline).

Configuration from the environment (set by tests/hw/test_output_pipeline_cocotb.py):
``CONFIG`` (``hw.config.Config`` JSON), ``BATCHES`` and ``ROWS`` (rows per batch of one
parameter set), ``SEED`` (random if unset; always printed so a failure can be replayed).

The payload vectors ``params``, ``i__payload`` and ``o__payload`` are packed and unpacked
with the same ``data`` layouts the gateware uses (``layout.const(...).as_bits()`` and
``layout.from_bits(...)``), so the testbench cannot disagree with the design on bit order.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from hw.config import Config
from hw.output_pipeline import QuantParams, pipeline_in_layout, pipeline_out_layout
from sim import golden


INT32_MIN, INT32_MAX = golden.INT32_MIN, golden.INT32_MAX


def random_multiplier(rng):
    return rng.choice([INT32_MIN, INT32_MAX, 1 << 30, rng.randint(1 << 30, INT32_MAX),
                       rng.randint(INT32_MIN, INT32_MAX)])


def random_params(cfg, rng):
    zero_point = rng.randint(-16, 16)
    lo, hi = rng.choice([(-128, 127), (zero_point, 127), (zero_point, zero_point + 60),
                         (-(1 << 15), (1 << 15) - 1)])
    return dict(
        out_int32=int(rng.random() < 0.2), bias_en=rng.randrange(2),
        per_column=rng.randrange(2),
        multiplier=random_multiplier(rng), shift=rng.choice([0, 31, rng.randrange(32)]),
        zero_point=zero_point, clamp_lo=lo, clamp_hi=hi,
        bias=[rng.choice([INT32_MIN, INT32_MAX, rng.randint(INT32_MIN, INT32_MAX),
                          rng.randint(-999, 999)]) for _ in range(cfg.cols)],
        col_multiplier=[random_multiplier(rng) for _ in range(cfg.cols)],
        col_shift=[rng.choice([0, 31, rng.randrange(32)]) for _ in range(cfg.cols)],
    )


def random_row(cfg, rng):
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    return [rng.choice([lo, hi, 0, -1, rng.randint(lo, hi), rng.randint(-4096, 4096)])
            for _ in range(cfg.cols)]


def tie_row(cfg, rng, shift):
    """A row whose SRDHM by M0 = 2**30 (x/2) lands on or next to a tie of the final shift."""
    # Small quotients, so the ties are not hidden by the output saturation.
    return [2 * ((rng.randint(-100, 99) << shift) + ((1 << shift) >> 1))
            + rng.choice([0, 1, -1]) for _ in range(cfg.cols)]


def expected(cfg, params, rows):
    per_col = params["per_column"]
    return golden.output_pipeline(
        np.array(rows, dtype=np.int64),
        bias=np.array(params["bias"]) if params["bias_en"] else None,
        multiplier=np.array(params["col_multiplier"]) if per_col else params["multiplier"],
        shift=np.array(params["col_shift"]) if per_col else params["shift"],
        zero_point=params["zero_point"], lo=params["clamp_lo"], hi=params["clamp_hi"],
        output_width=cfg.output_width, out_int32=bool(params["out_int32"])).tolist()


@cocotb.test()
async def random_batches_with_stalls(dut):
    cfg = Config.from_json(os.environ["CONFIG"])
    batches = int(os.environ.get("BATCHES", 6))
    rows_per_batch = int(os.environ.get("ROWS", 16))
    seed = int(os.environ.get("SEED", random.SystemRandom().getrandbits(32)))
    dut._log.info(f"SEED={seed} config={cfg.to_dict()}")
    rng = random.Random(seed)
    in_layout, out_layout = pipeline_in_layout(cfg), pipeline_out_layout(cfg)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    for batch in range(batches):
        params = random_params(cfg, rng)
        if batch % 3 == 2:
            params.update(out_int32=0, bias_en=0, per_column=0, multiplier=1 << 30,
                          shift=rng.randint(1, 8))
            rows = [tie_row(cfg, rng, params["shift"]) for _ in range(rows_per_batch)]
        else:
            rows = [random_row(cfg, rng) for _ in range(rows_per_batch)]
        want = expected(cfg, params, rows)
        dut.params.value = QuantParams(cfg).const(params).as_bits()
        p_valid, p_ready = rng.choice([(1.0, 1.0), (0.7, 0.6), (0.4, 0.9)])
        sent, got, offering = 0, [], False
        for _ in range(rows_per_batch * (cfg.cols // cfg.output_lanes) * 20 + 100):
            await RisingEdge(dut.clk)
            # Drive for this cycle; a row stays offered until it is taken.
            if not offering and sent < len(rows) and rng.random() < p_valid:
                offering = True
                dut.i__payload.value = in_layout.const(
                    {"data": rows[sent], "last": int(sent == len(rows) - 1)}).as_bits()
            dut.i__valid.value = int(offering)
            dut.o__ready.value = int(rng.random() < p_ready)
            await ReadOnly()
            if offering and dut.i__ready.value:
                offering = False
                sent += 1
            if dut.o__valid.value and dut.o__ready.value:
                beat = out_layout.from_bits(dut.o__payload.value.to_unsigned())
                got.append(([beat.data[j] for j in range(cfg.cols)], beat.last))
            if len(got) == len(rows):
                break
        await RisingEdge(dut.clk)
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        assert len(got) == len(rows), f"batch {batch}: {len(got)} of {len(rows)} rows came out"
        for n, (data, last) in enumerate(got):
            assert data == want[n], \
                f"batch {batch} row {n} (acc {rows[n]}, params {params}): {data} != {want[n]}"
            assert last == (n == len(rows) - 1), f"batch {batch} row {n}: last={last}"
