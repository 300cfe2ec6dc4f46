"""Bit-exact numpy model of the accelerator's arithmetic.

This module is the oracle: the gateware, the compiler and the runtime are all checked
against it. Everything is computed in int64 and reduced explicitly, so each wrap, round and
saturation is visible here rather than left to numpy's overflow behaviour.

The requantisation is TFLite / gemmlowp's, bit for bit::

    y = clamp(zero_point + rounding_divide_by_pot(
                  saturating_rounding_doubling_high_mul(acc + bias, M0), shift), lo, hi)

with ``M0`` any int32 and ``shift`` a right shift from 0 to 31.
"""

import numpy as np


__all__ = [
    "INT32_MIN", "INT32_MAX", "wrap", "saturate", "srdhm", "rounding_divide_by_pot",
    "requantize", "output_pipeline", "matmul", "quantize_multiplier",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _i64(x):
    return np.asarray(x, dtype=np.int64)


def wrap(x, width):
    """Two's-complement wrap of integers to ``width`` bits (what a register of that width holds)."""
    x = _i64(x)
    mask = (1 << width) - 1
    x = x & mask
    return np.where(x >= (1 << (width - 1)), x - (1 << width), x)


def saturate(x, width):
    """Clamp to the signed range of ``width`` bits."""
    return np.clip(_i64(x), -(1 << (width - 1)), (1 << (width - 1)) - 1)


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul of int32 ``a`` and ``b``.

    The high 32 bits of ``2*a*b``, rounded to nearest with ties towards +infinity (the
    negative nudge ``1 - 2**30`` plus C's truncating division make ``-0.5`` round to 0);
    the one overflowing case (``a == b == INT32_MIN``) saturates to INT32_MAX.
    """
    a, b = np.broadcast_arrays(_i64(a), _i64(b))
    product = a * b
    nudge = np.where(product >= 0, 1 << 30, 1 - (1 << 30))
    total = product + nudge
    # C integer division truncates toward zero; numpy's >> floors, so handle the sign.
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero."""
    x, exponent = np.broadcast_arrays(_i64(x), _i64(exponent))
    if np.any((exponent < 0) | (exponent > 31)):
        raise ValueError("shift must be from 0 to 31")
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(acc, multiplier, shift, zero_point=0, lo=-128, hi=127, output_width=8):
    """TFLite requantisation of int32 ``acc`` to a signed ``output_width``-bit value.

    ``multiplier`` and ``shift`` broadcast against ``acc`` (scalars for per-tensor, vectors
    over the last axis for per-column quantisation).
    """
    scaled = rounding_divide_by_pot(srdhm(acc, multiplier), shift)
    y = np.clip(scaled + _i64(zero_point), _i64(lo), _i64(hi))
    return saturate(y, output_width)


def output_pipeline(acc, *, bias=None, multiplier=None, shift=None, zero_point=0,
                    lo=-128, hi=127, output_width=8, out_int32=False):
    """What the accumulator read path produces from accumulator values ``acc``.

    ``acc + bias`` wraps at 32 bits; ``out_int32`` returns that sum unrequantised,
    otherwise it is requantised with :func:`requantize`.
    """
    value = _i64(acc)
    if bias is not None:
        value = wrap(value + _i64(bias), 32)
    if out_int32:
        return value
    return requantize(value, multiplier, shift, zero_point, lo, hi, output_width)


def matmul(a, b, acc_width=32, input_width=8, weight_width=8):
    """``a @ b`` as the array computes it: operands reduced to their widths, sums wrapping."""
    a = wrap(a, input_width)
    b = wrap(b, weight_width)
    # Exact in int64 for any K below 2**47 at 8 bits; the accumulator then wraps.
    return wrap(a @ b, acc_width)


def quantize_multiplier(real_multiplier):
    """TFLite QuantizeMultiplier for a real scale in (0, 1): returns ``(M0, shift)``.

    ``real = M0 * 2**(-31 - shift)`` with ``M0`` in ``[2**30, 2**31)`` and ``shift`` a right
    shift from 0 to 31 (scales that need a left shift are not representable here).
    """
    if not 0.0 < real_multiplier < 1.0:
        raise ValueError(f"real multiplier {real_multiplier} must be in (0, 1)")
    mantissa, exponent = np.frexp(real_multiplier)
    # TfLiteRound is std::round (half away from zero), not Python's round-half-to-even.
    m0 = int(np.floor(mantissa * (1 << 31) + 0.5))
    if m0 == 1 << 31:
        m0 //= 2
        exponent += 1
    shift = -int(exponent)
    if shift < 0:
        # The scale rounded up to 1.0, which needs a left shift: INT32_MAX is the nearest M0.
        return INT32_MAX, 0
    if shift > 31:
        return 0, 0
    return m0, shift
