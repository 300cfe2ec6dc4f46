"""The whole accelerator with the serial output lane and the qparam rows in block RAM
(``Config.output_lane="serial"`` with ``acc_read_ports=1``: the iCEBreaker's Config): GEMMs
with int8 (per-column requantisation, bias) and int32 outputs, bit-exact with the golden
runtime and numpy."""

import numpy as np
import pytest

from boards.targets import BOARDS
from sim import golden

from .test_top_cocotb import _int8, _runtimes, _seed

pytestmark = [pytest.mark.cocotb, pytest.mark.xdist_group("top")]

# The iCEBreaker's Config (serial lane, one accumulator read port; the same Verilator build
# as tests/hw/test_lean_control_cocotb.py) with a DRAM window the simulated RAM holds quickly.
CFG = BOARDS["icebreaker"].cfg.replace(dram_size=16 * 1024)


def test_serial_lane_gemms_match_golden_and_numpy():
    seed = _seed()
    rng = np.random.default_rng(seed)
    for index, (M, K, N) in enumerate([(5, 7, 6), (9, 4, 3), (3, 9, 8)]):
        A, B = _int8(rng, (M, K)), _int8(rng, (K, N))
        rtl, gold = _runtimes(CFG, backpressure=index % 2 == 1, seed=seed + index)
        if index == 1:
            kw = dict(out_dtype="int32", bias=rng.integers(-(1 << 31), 1 << 31, N,
                                                           dtype=np.int64).astype(np.int32))
            expected = golden.wrap(A.astype(np.int64) @ B + kw["bias"], 32)
        else:
            kw = dict(out_dtype="int8", multiplier=rng.integers(1 << 29, 1 << 31, N),
                      shift=rng.integers(0, 12, N), zero_point=int(rng.integers(-20, 20)),
                      bias=rng.integers(-5000, 5000, N, dtype=np.int32), clamp=(-100, 120))
            expected = golden.requantize(A.astype(np.int64) @ B + kw["bias"], kw["multiplier"],
                                         kw["shift"], kw["zero_point"], -100, 120)
        C, _ = rtl.gemm(A, B, dataflow="ws", **kw)
        C_gold, _ = gold.gemm(A, B, dataflow="ws", **kw)
        assert np.array_equal(C, C_gold), (M, K, N)
        assert np.array_equal(C, expected), (M, K, N)
