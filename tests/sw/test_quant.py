"""sw/quant.py: multipliers, symmetric quantisation, activation clamps."""

import numpy as np
import pytest

from sim import golden
from sw import quant


def test_per_tensor_and_per_column_multipliers_agree_with_golden():
    scales = np.array([0.5, 0.25, 1e-3, 0.999999, 3.1e-7])
    m0, shift = quant.quantize_multipliers(scales)
    for s, m, sh in zip(scales, m0, shift):
        assert (m, sh) == golden.quantize_multiplier(s)
        assert abs(m * 2.0 ** (-31 - sh) - s) <= s * 2 ** -30
    assert quant.quantize_multipliers(0.5) == (1 << 30, 0)


def test_quantize_multipliers_rejects_out_of_range():
    with pytest.raises(ValueError):
        quant.quantize_multipliers(1.5)


def test_symmetric_quantisation_saturates_and_rounds():
    x = np.array([[-2.0, 0.0, 1.0], [0.5, -0.25, 2.0]])
    scale = quant.symmetric_scale(x)
    assert scale == pytest.approx(2.0 / 127)
    q = quant.quantize_symmetric(x, scale)
    assert q.dtype == np.int8
    np.testing.assert_array_equal(q, [[-127, 0, 64], [32, -16, 127]])
    np.testing.assert_array_equal(quant.quantize_symmetric([10.0, -10.0], 0.01), [127, -127])
    per_col = quant.symmetric_scale(np.array([[1.0, 0.0, -3.0], [-2.0, 0.0, 1.0]]), axis=0)
    np.testing.assert_allclose(per_col, [2 / 127, 1.0, 3 / 127])   # an all-zero column -> 1


@pytest.mark.parametrize("activation, scale, zp, want", [
    ("none", 0.1, 5, (-128, 127)),
    ("relu", 0.1, 5, (5, 127)),
    ("relu6", 0.1, 5, (5, 65)),
    ("relu6", 0.01, 5, (5, 127)),
    ("relu6", 0.05, -128, (-128, -8)),
])
def test_activation_clamp(activation, scale, zp, want):
    assert quant.activation_clamp(activation, scale, zp) == want


def test_activation_clamp_unknown():
    with pytest.raises(ValueError, match="activation"):
        quant.activation_clamp("gelu")
