"""The ECP5 boards' Config (ULX3S and OrangeCrab) end to end: its emitted Verilog in
Verilator runs random GEMMs and a convolution with AXI backpressure, bit for bit equal to
the golden machine and to numpy. (The iCEBreaker's Config has its own such test,
tests/hw/test_lean_control_cocotb.py.)"""

import numpy as np
import pytest

from boards.targets import BOARDS
from tests.hw.test_top_cocotb import _int8, _quantised_case, _runtimes, _seed
from tests.sw.test_compiler import reference_conv

pytestmark = [pytest.mark.cocotb, pytest.mark.xdist_group("top")]

CFG = BOARDS["ulx3s"].cfg


def test_one_config_for_both_ecp5_boards():
    assert BOARDS["orangecrab"].cfg == CFG


def test_gemms_and_a_conv_match_golden_with_backpressure():
    seed = _seed()
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (CFG.rows, CFG.rows, CFG.cols), (37, 53, 29)]
    shapes.append(tuple(int(x) for x in rng.integers(1, 3 * CFG.rows, 3)))
    for index, (M, K, N) in enumerate(shapes):
        A, B = _int8(rng, (M, K)), _int8(rng, (K, N))
        rtl, gold = _runtimes(CFG, backpressure=index % 2 == 1, seed=seed + index)
        options, expected = _quantised_case(rng, A.astype(np.int64) @ B, int32=index % 2 == 0)
        C, report = rtl.gemm(A, B, **options)
        C_gold, _ = gold.gemm(A, B, **options)
        assert np.array_equal(C, C_gold), (M, K, N)
        assert np.array_equal(C, expected), (M, K, N)
        assert report["macs"] == M * K * N

    X, W = _int8(rng, (1, 7, 6, 5)), _int8(rng, (3, 3, 5, 11))
    options, expected = _quantised_case(rng, reference_conv(X, W, 1, "same"), int32=False)
    rtl, gold = _runtimes(CFG, backpressure=True, seed=seed)
    Y, _ = rtl.conv2d(X, W, stride=1, padding="same", **options)
    Y_gold, _ = gold.conv2d(X, W, stride=1, padding="same", **options)
    assert np.array_equal(Y, Y_gold)
    assert np.array_equal(Y, expected)
