"""The serial output lane (``Config.output_lane="serial"``): bit-exact with sim/golden.py on
the scenarios of test_output_pipeline (extremes, ties, SRDHM's overflow, int32, clamps),
with random stalls on ``i`` and ``o``; its cycle count per value as documented."""

import pytest
from amaranth import Module, Mux, Signal
from amaranth.hdl import Array
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw.config import Config, ConfigError
from hw.output_pipeline import (QuantParams, SerialOutputPipeline, pipeline_in_layout,
                                pipeline_out_layout)

from .test_output_pipeline import (_seed, make_params, random_acc, random_shift, run_pipeline,
                                   tie_rows)


class SerialWithParams(wiring.Component):
    """The serial lane with the ports of :class:`OutputPipeline`: its per-column parameters
    read from ``params`` the way the store unit reads its qparam memory (the addressed
    value, one cycle later), each row given to it as its C beats, its results gathered into
    rows."""

    def __init__(self, cfg):
        self._cfg = cfg
        self.lane = SerialOutputPipeline(cfg)
        super().__init__({
            "i": In(stream.Signature(pipeline_in_layout(cfg))),
            "o": Out(stream.Signature(pipeline_out_layout(cfg))),
            "params": In(QuantParams(cfg)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.lane = lane = self.lane
        p = self.params
        # The lane takes a row once per column: the row is held for its C beats.
        m.d.comb += [lane.i.valid.eq(self.i.valid), lane.i.payload.eq(self.i.payload),
                     self.i.ready.eq(lane.i.ready & (lane.col_addr.col == cfg.cols - 1))]
        row = Signal(pipeline_out_layout(cfg))
        col = Signal(range(cfg.cols))
        m.d.comb += [lane.o.ready.eq(~self.o.valid), self.o.payload.eq(row)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(lane.o.valid & lane.o.ready):
            m.d.sync += [row.data[j].eq(row.data[j + 1]) for j in range(cfg.cols - 1)]
            # An int8 result is the low byte.
            value = lane.o.payload.data
            m.d.sync += [row.data[cfg.cols - 1].eq(Mux(p.out_int32, value, value[:8].as_signed())),
                         col.eq(col + 1)]
            with m.If(col == cfg.cols - 1):
                m.d.sync += [self.o.valid.eq(1), row.last.eq(lane.o.payload.last), col.eq(0)]
        m.d.comb += [lane.params.out_int32.eq(p.out_int32),
                     lane.params.zero_point.eq(p.zero_point)]
        # The lane takes a legal CONFIG's bounds (within the output range, lo <= hi): a
        # scenario's wider bounds as the legal ones that clamp the same after saturation.
        out_lo, out_hi = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1
        for name in ("clamp_lo", "clamp_hi"):
            bound = p[name]
            m.d.comb += lane.params[name].eq(
                Mux(bound < out_lo, out_lo, Mux(bound > out_hi, out_hi, bound)))
        # The parameters as they apply, as the store unit resolves them.
        table = Array(Array([Mux(p.bias_en, p.bias[c], 0),
                             Mux(p.per_column, p.col_multiplier[c], p.multiplier),
                             Mux(p.per_column, p.col_shift[c], p.shift)])
                      for c in range(cfg.cols))
        # The address is registered, not the value: the test bench changes the parameters
        # (like the store unit's LOADs) while no row is in flight, and a row may follow at once.
        addr = Signal.like(lane.col_addr)
        m.d.sync += addr.eq(lane.col_addr)
        m.d.comb += lane.col_value.eq(table[addr.col][addr.kind.as_value()])
        return m


def serial_cfg(**kw):
    return Config(rows=4, cols=kw.pop("cols", 4), output_lanes=1, output_lane="serial",
                  scratchpad_kib=4, accumulator_kib=4, **kw)


@pytest.mark.parametrize("cols, acc_width, output_width", [
    (4, 32, 8), (1, 32, 8), (2, 20, 8), (4, 32, 4), (2, 32, 2),
])
def test_random_rows_match_golden(cols, acc_width, output_width):
    cfg = serial_cfg(cols=cols, acc_width=acc_width, output_width=output_width)
    run_pipeline(cfg, _seed(), make_dut=SerialWithParams)


def test_without_stalls():
    run_pipeline(serial_cfg(), _seed(), p_valid=1.0, p_ready=1.0, make_dut=SerialWithParams)


def test_heavy_stalls():
    run_pipeline(serial_cfg(), _seed(), p_valid=0.2, p_ready=0.1, make_dut=SerialWithParams)


def legal_clamp_scenarios(cfg, rng):
    """Clamp bounds as legal CONFIGs have them (within the output range, lo <= hi, lo == hi
    and the range's ends included), with zero points up to the 16-bit field's extremes, on
    random, corner and rounding-tie values."""
    out_lo, out_hi = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1
    zp_lo, zp_hi = -(1 << 15), (1 << 15) - 1
    out = []
    for _ in range(12):
        lo, hi = sorted(rng.choice([out_lo, out_hi, 0, rng.randint(out_lo, out_hi)])
                        for _ in range(2))
        if rng.random() < 0.2:
            lo = hi
        zero_point = rng.choice([zp_lo, zp_hi, rng.randint(-20, 20), rng.randint(zp_lo, zp_hi)])
        shift = random_shift(rng)
        rows = ([random_acc(rng, cfg, cfg.cols) for _ in range(3)]
                + (tie_rows(cfg, rng, shift, 2) if 0 < shift < 20 else []))
        out.append((make_params(cfg, rng, lo=lo, hi=hi, zero_point=zero_point, shift=shift,
                                multiplier=1 << 30 if rng.random() < 0.5 else None,
                                per_column=rng.randint(0, 1), bias_en=rng.randint(0, 1)),
                    rows))
    return out


@pytest.mark.parametrize("output_width", [8, 4, 2])
def test_legal_clamps_and_wide_zero_points_match_golden(output_width):
    run_pipeline(serial_cfg(output_width=output_width), _seed(), make_dut=SerialWithParams,
                 make_work=legal_clamp_scenarios)


@pytest.mark.parametrize("out_int32, shift", [(0, 0), (0, 7), (0, 31), (1, 5)])
def test_cycles_per_value_are_as_documented(out_int32, shift):
    cfg = serial_cfg()
    dut = SerialWithParams(cfg)
    rows = 3
    per_value = 2 if out_int32 else 36 + shift
    outs = []

    async def bench(ctx):
        ctx.set(dut.params, QuantParams(cfg).const(dict(
            out_int32=out_int32, shift=shift, multiplier=1 << 30, clamp_lo=-128, clamp_hi=127)))
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"data": [1] * cfg.cols, "last": 0})
        for cycle in range(rows * cfg.cols * per_value + 10):
            _, _, o_valid = await ctx.tick().sample(dut.lane.o.valid)
            if o_valid:
                outs.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # One cycle per value in OUTPUT: the values as the lane produces them.
    values = rows * cfg.cols
    assert len(outs) >= values
    assert [b - a for a, b in zip(outs, outs[1:values])] == [per_value] * (values - 1)


def test_serial_needs_one_output_lane():
    with pytest.raises(ConfigError, match="output_lane"):
        Config(rows=4, cols=4, output_lane="serial")
    with pytest.raises(ConfigError, match="output_lane"):
        Config(output_lane="fast")
    assert Config().output_lane == "pipelined"
