"""Quantisation helpers for the host: scales -> (M0, shift), float -> int8, activations -> clamps.

Conventions (TFLite): ``real = scale * (q - zero_point)``; weights are quantised symmetrically
(zero point 0); the accumulator of ``int8 x int8`` has scale ``s_in * s_w`` and the output
multiplier is ``s_in * s_w / s_out``.
"""

import numpy as np

from sim.golden import quantize_multiplier


__all__ = ["ACTIVATIONS", "quantize_multipliers", "quantize_symmetric", "symmetric_scale",
           "activation_clamp"]

ACTIVATIONS = ("none", "relu", "relu6")


def quantize_multipliers(real_scales):
    """QuantizeMultiplier for a scalar (per-tensor) or a vector of scales (per-column).

    Returns ``(M0, shift)``: ints for a scalar, int64 arrays for a vector.
    """
    scales = np.asarray(real_scales, dtype=np.float64)
    if scales.ndim == 0:
        return quantize_multiplier(float(scales))
    pairs = [quantize_multiplier(float(s)) for s in scales.ravel()]
    m0 = np.array([p[0] for p in pairs], dtype=np.int64).reshape(scales.shape)
    shift = np.array([p[1] for p in pairs], dtype=np.int64).reshape(scales.shape)
    return m0, shift


def symmetric_scale(x, axis=None, bits=8):
    """The symmetric scale ``max|x| / qmax`` (over ``axis``; zeros map to scale 1)."""
    qmax = (1 << (bits - 1)) - 1
    peak = np.max(np.abs(np.asarray(x, dtype=np.float64)), axis=axis)
    return np.where(peak > 0, peak / qmax, 1.0)


def quantize_symmetric(x, scale, bits=8):
    """``round(x / scale)`` saturated to the symmetric range ``[-qmax, qmax]``, as int8."""
    qmax = (1 << (bits - 1)) - 1
    q = np.round(np.asarray(x, dtype=np.float64) / scale)
    return np.clip(q, -qmax, qmax).astype(np.int8)


def activation_clamp(activation, scale=1.0, zero_point=0, bits=8):
    """The output clamp ``(lo, hi)`` implementing ``activation`` for an output quantised with
    ``scale`` and ``zero_point`` to ``bits`` (ReLU: ``lo = zp``; ReLU6: ``hi = zp + round(6/scale)``)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")
    if activation == "none":
        return lo, hi
    relu_lo = int(np.clip(zero_point, lo, hi))
    if activation == "relu":
        return relu_lo, hi
    six = int(np.floor(6.0 / scale + 0.5))
    return relu_lo, int(np.clip(zero_point + six, relu_lo, hi))
