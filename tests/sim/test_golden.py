"""sim/golden.py against values worked out by hand and against a transcription of TFLite."""

from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sim import golden
from sim.golden import INT32_MAX, INT32_MIN


int32 = st.integers(INT32_MIN, INT32_MAX)
int32_corners = st.one_of(int32, st.sampled_from([INT32_MIN, INT32_MIN + 1, INT32_MAX, 0, 1, -1,
                                                  1 << 30, -(1 << 30)]))
shifts = st.integers(0, 31)


# -- a transcription of gemmlowp / TFLite in Python integers ------------------------------------

def c_div(a, b):
    """C's ``/`` on integers: truncation towards zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ref_srdhm(a, b):
    # gemmlowp fixedpoint.h SaturatingRoundingDoublingHighMul(std::int32_t, std::int32_t)
    overflow = a == b and a == INT32_MIN
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else (1 - (1 << 30))
    ab_x2_high32 = c_div(ab_64 + nudge, 1 << 31)
    return INT32_MAX if overflow else ab_x2_high32


def ref_rdbp(x, exponent):
    # gemmlowp RoundingDivideByPOT: Python's & and >> on negative ints act on two's complement.
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def ref_output(acc, bias, m0, shift, zp, lo, hi, width):
    x = ((acc + bias + (1 << 31)) % (1 << 32)) - (1 << 31)
    y = min(max(zp + ref_rdbp(ref_srdhm(x, m0), shift), lo), hi)
    return min(max(y, -(1 << (width - 1))), (1 << (width - 1)) - 1)


# -- srdhm ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, want", [
    # The one overflow: (-1.0) * (-1.0) = +1.0 does not fit, saturates.
    (INT32_MIN, INT32_MIN, INT32_MAX),
    # M0 = 2**31-1 is 1 - 2**-31: 1000*(2**31-1) + 2**30 = 1000*2**31 + 2**30 - 1000 -> 1000.
    (1000, INT32_MAX, 1000),
    # (2**31-1)**2 + 2**30 = 2**62 - 2**32 + 2**30 + 1; / 2**31 = 2**31 - 1.5 + tiny -> 2**31 - 2.
    (INT32_MAX, INT32_MAX, INT32_MAX - 1),
    # -2**31 * (2**31-1) = -2**62 + 2**31; + 1 - 2**30; / 2**31 = -2**31 + 0.5 + tiny,
    # truncated towards zero -> -2**31 + 1.
    (INT32_MIN, INT32_MAX, INT32_MIN + 1),
    # -2**31 * 1 = -2**31 (-1.0 in units of 2**31); + 1 - 2**30 -> -1.49.. -> -1.
    (INT32_MIN, 1, -1),
    # Negative product, exact: -1000 * 2**30 = -500 * 2**31; + 1 - 2**30 -> -500.49.. -> -500.
    (-1000, 1 << 30, -500),
    (1000, -(1 << 30), -500),
    # Exact halves round towards +infinity: 1.5 -> 2, -1.5 -> -1, 0.5 -> 1, -0.5 -> 0.
    (3, 1 << 30, 2),      # 3*2**30 + 2**30 = 2**32 -> 2
    (-3, 1 << 30, -1),    # -3*2**30 + 1 - 2**30 = -2**32 + 1 -> -1.99.. -> -1
    (1, 1 << 30, 1),      # 2**30 + 2**30 = 2**31 -> 1
    (-1, 1 << 30, 0),     # -2**30 + 1 - 2**30 = -2**31 + 1 -> -0.99.. -> 0
    # Just below -0.5: -(2**30 + 1) + 1 - 2**30 = -2**31 -> exactly -1.
    (-1, (1 << 30) + 1, -1),
    (0, INT32_MIN, 0),
])
def test_srdhm_hand_values(a, b, want):
    assert golden.srdhm(a, b) == want
    assert golden.srdhm(b, a) == want


def test_srdhm_broadcasts():
    assert golden.srdhm([3, -3, INT32_MIN], [1 << 30, 1 << 30, INT32_MIN]).tolist() == \
        [2, -1, INT32_MAX]


# -- rounding_divide_by_pot -----------------------------------------------------------------------

@pytest.mark.parametrize("x, exponent, want", [
    (5, 1, 3),      # 2.5 -> 3 (half away from zero)
    (-5, 1, -3),    # -2.5 -> -3
    (6, 2, 2),      # 1.5 -> 2
    (-6, 2, -2),    # -1.5 -> -2
    (7, 2, 2),      # 1.75 -> 2
    (-7, 2, -2),
    (5, 2, 1),      # 1.25 -> 1
    (-5, 2, -1),
    (4, 1, 2), (-4, 1, -2),
    (INT32_MIN, 0, INT32_MIN), (INT32_MAX, 0, INT32_MAX), (-3, 0, -3),
    (INT32_MAX, 31, 1),            # 0.99.. -> 1
    (INT32_MIN, 31, -1),           # exactly -1
    (1 << 30, 31, 1),              # 0.5 -> 1
    (-(1 << 30), 31, -1),          # -0.5 -> -1
    ((1 << 30) - 1, 31, 0),
    (-(1 << 30) + 1, 31, 0),
])
def test_rounding_divide_by_pot_hand_values(x, exponent, want):
    assert golden.rounding_divide_by_pot(x, exponent) == want


@pytest.mark.parametrize("exponent", [-1, 32])
def test_rounding_divide_by_pot_rejects_bad_shift(exponent):
    with pytest.raises(ValueError, match="shift"):
        golden.rounding_divide_by_pot(1, exponent)


# -- requantize / output_pipeline -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, want", [
    # srdhm(1000, 2**30) = 500, /4 = 125, +10 = 135, clamped to 127.
    (dict(acc=1000, multiplier=1 << 30, shift=2, zero_point=10), 127),
    # -500 / 4 = -125, +10 = -115.
    (dict(acc=-1000, multiplier=1 << 30, shift=2, zero_point=10), -115),
    # -125 - 10 = -135, clamped to -128.
    (dict(acc=-1000, multiplier=1 << 30, shift=2, zero_point=-10), -128),
    # ReLU with zero point -5: -20 - 5 = -25 -> lo = -5.
    (dict(acc=-40, multiplier=1 << 30, shift=0, zero_point=-5, lo=-5, hi=127), -5),
    # ReLU6 with zero point 3, 6.0 at 63: 100 + 3 = 103 -> 63.
    (dict(acc=200, multiplier=1 << 30, shift=0, zero_point=3, lo=3, hi=63), 63),
    (dict(acc=20, multiplier=1 << 30, shift=0, zero_point=3, lo=3, hi=63), 13),
    # Wide clamps: the int8 saturation still applies. srdhm(1000, 2**31-1) = 1000 -> 127.
    (dict(acc=1000, multiplier=INT32_MAX, shift=0, lo=-32768, hi=32767), 127),
    (dict(acc=-1000, multiplier=INT32_MAX, shift=0, lo=-32768, hi=32767), -128),
    # 4-bit outputs saturate to -8 .. 7.
    (dict(acc=9, multiplier=INT32_MAX, shift=0, lo=-100, hi=100, output_width=4), 7),
    (dict(acc=-9, multiplier=INT32_MAX, shift=0, lo=-100, hi=100, output_width=4), -8),
    (dict(acc=5, multiplier=INT32_MAX, shift=0, lo=-100, hi=100, output_width=4), 5),
    # M0 = INT32_MIN is -1.0: srdhm(-100, INT32_MIN) = 100, /2 = 50.
    (dict(acc=-100, multiplier=INT32_MIN, shift=1), 50),
    # A tie in the final shift: srdhm(10, 2**30) = 5, 5/2 = 2.5 -> 3; -2.5 -> -3.
    (dict(acc=10, multiplier=1 << 30, shift=1), 3),
    (dict(acc=-10, multiplier=1 << 30, shift=1), -3),
])
def test_requantize_hand_values(kwargs, want):
    assert golden.requantize(**kwargs) == want


def test_requantize_per_column_vectors():
    # Column 0: srdhm(100, 2**30) = 50, /2 = 25. Column 1: srdhm(100, 2**31-1) = 100.
    got = golden.requantize([[100, 100], [-100, -100]], [1 << 30, INT32_MAX], [1, 0])
    assert got.tolist() == [[25, 100], [-25, -100]]


def test_output_pipeline_bias_wraps_at_32_bits():
    assert golden.output_pipeline([INT32_MAX], bias=[1], out_int32=True).tolist() == [INT32_MIN]
    assert golden.output_pipeline([INT32_MIN], bias=[-1], out_int32=True).tolist() == [INT32_MAX]
    assert golden.output_pipeline([7], out_int32=True).tolist() == [7]
    # INT32_MAX + 1 wraps to INT32_MIN; srdhm(INT32_MIN, INT32_MAX) = INT32_MIN + 1;
    # / 2**31 = -0.99.. -> -1.
    assert golden.output_pipeline([INT32_MAX], bias=[1], multiplier=INT32_MAX,
                                  shift=31).tolist() == [-1]


# -- wrap, saturate, matmul -----------------------------------------------------------------------

@pytest.mark.parametrize("x, width, want", [
    (1 << 31, 32, INT32_MIN), (INT32_MIN - 1, 32, INT32_MAX), (255, 8, -1), (128, 8, -128),
    (127, 8, 127), (-129, 8, 127), (1 << 19, 20, -(1 << 19)), (1 << 20, 20, 0), (-1, 20, -1),
])
def test_wrap_hand_values(x, width, want):
    assert golden.wrap(x, width) == want


def test_saturate_hand_values():
    assert golden.saturate([200, -200, 5], 8).tolist() == [127, -128, 5]


def test_matmul_wraps_at_acc_width():
    # 4 * 127 * 127 = 64516 = 65536 - 1020 -> -1020 at 16 bits.
    a = np.full((1, 4), 127)
    b = np.full((4, 1), 127)
    assert golden.matmul(a, b, acc_width=16).tolist() == [[-1020]]
    assert golden.matmul(a, b, acc_width=32).tolist() == [[64516]]
    # 2**17 products of (-128)*(-128) = 2**14 sum to 2**31, which wraps to INT32_MIN.
    k = 1 << 17
    assert golden.matmul(np.full((1, k), -128), np.full((k, 1), -128)).tolist() == [[INT32_MIN]]
    # Operands wrap to their widths: 128 is -128 as int8, 9 is -7 as int4.
    assert golden.matmul([[128]], [[1]]).tolist() == [[-128]]
    assert golden.matmul([[1]], [[9]], weight_width=4).tolist() == [[-7]]


# -- quantize_multiplier --------------------------------------------------------------------------

@pytest.mark.parametrize("real, want", [
    (0.5, (1 << 30, 0)),                 # 0.5 = 2**30 * 2**-31
    (0.25, (1 << 30, 1)),
    (0.75, (3 << 29, 0)),                # 0.75 * 2**31
    (2.0 ** -32, (1 << 30, 31)),         # the smallest scale that still fits a shift of 31
    (2.0 ** -33, (0, 0)),                # too small: a zero multiplier
    # mantissa * 2**31 = 2**30 + 0.5 exactly: std::round goes up (round() would go to even).
    (0.5 + 2.0 ** -32, ((1 << 30) + 1, 0)),
    # rounds up to 1.0, which needs a left shift: INT32_MAX is the nearest representable M0.
    (1 - 2.0 ** -40, (INT32_MAX, 0)),
])
def test_quantize_multiplier_hand_values(real, want):
    assert golden.quantize_multiplier(real) == want


@pytest.mark.parametrize("real", [0.0, 1.0, -0.5, 2.0])
def test_quantize_multiplier_rejects_out_of_range(real):
    with pytest.raises(ValueError):
        golden.quantize_multiplier(real)


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=2.0 ** -31, max_value=1.0, exclude_max=True))
def test_quantize_multiplier_round_trip(real):
    m0, shift = golden.quantize_multiplier(real)
    assert 0 <= shift <= 31
    assert (1 << 30) <= m0 <= INT32_MAX
    # M0 has 31 significant bits: the relative error is at most half a unit of 2**-30.
    assert abs(Fraction(m0, 1 << (31 + shift)) - Fraction(real)) <= Fraction(real) * 2 ** -30


# -- against the transcription of the C++ ---------------------------------------------------------

@settings(max_examples=2000, deadline=None)
@given(int32_corners, int32_corners)
def test_srdhm_matches_the_cpp(a, b):
    want = ref_srdhm(a, b)
    assert golden.srdhm(a, b) == want
    # And the mathematical definition: nearest to a*b/2**31, ties towards +infinity.
    if not a == b == INT32_MIN:
        assert want == math.floor(Fraction(a * b, 1 << 31) + Fraction(1, 2))


@settings(max_examples=2000, deadline=None)
@given(int32_corners, shifts)
def test_rounding_divide_by_pot_matches_the_cpp(x, exponent):
    want = ref_rdbp(x, exponent)
    assert golden.rounding_divide_by_pot(x, exponent) == want
    # Nearest to x / 2**exponent, ties away from zero.
    q = Fraction(x, 1 << exponent)
    assert want == (math.floor(q + Fraction(1, 2)) if q >= 0 else -math.floor(-q + Fraction(1, 2)))


@settings(max_examples=2000, deadline=None)
@given(int32_corners, int32_corners, int32_corners, shifts, st.integers(-128, 127),
       st.integers(-200, 200), st.integers(-200, 200), st.sampled_from([4, 8]))
def test_output_pipeline_matches_the_cpp(acc, bias, m0, shift, zp, lo, hi, width):
    lo, hi = min(lo, hi), max(lo, hi)
    got = golden.output_pipeline([acc], bias=[bias], multiplier=m0, shift=shift, zero_point=zp,
                                 lo=lo, hi=hi, output_width=width)
    assert got.tolist() == [ref_output(acc, bias, m0, shift, zp, lo, hi, width)]
