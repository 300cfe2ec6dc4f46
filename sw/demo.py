"""``make demo``: a small int8 MLP on scikit-learn's bundled digits, run on the accelerator.

Trains a 64-32-10 MLP in float (numpy only), quantises it to int8 (symmetric, per-column
weight scales, int32 biases, TFLite requantisation with a fused ReLU), and prints the
test-set accuracy of the float model, of the int8 model computed with :mod:`sim.golden`, and
of the int8 model run on a backend (``--backend``, default golden).
"""

import argparse
import sys

import numpy as np

from hw.config import Config
from sim import golden
from sw.quant import activation_clamp, quantize_multipliers, quantize_symmetric, symmetric_scale
from sw.runtime import Runtime


__all__ = ["main", "train_mlp", "quantize_mlp", "reference_int8"]

PIXEL_MAX = 16.0    # load_digits pixels are 0..16


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("the demo needs scikit-learn's bundled digits data set: "
              ".venv/bin/python -m pip install scikit-learn", file=sys.stderr)
        sys.exit(1)
    digits = load_digits()
    return digits.data.astype(np.float64), digits.target.astype(np.int64)


def train_mlp(x, y, hidden=32, classes=10, epochs=60, lr=0.1, seed=0):
    """Float MLP ``relu(x W0 + b0) W1 + b1`` trained by minibatch SGD on cross-entropy."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0, np.sqrt(2 / x.shape[1]), (x.shape[1], hidden))
    w1 = rng.normal(0, np.sqrt(2 / hidden), (hidden, classes))
    b0, b1 = np.zeros(hidden), np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            h = np.maximum(x[idx] @ w0 + b0, 0)
            logits = h @ w1 + b1
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            g = (p - onehot[idx]) / len(idx)
            gh = (g @ w1.T) * (h > 0)
            w1 -= lr * h.T @ g
            b1 -= lr * g.sum(axis=0)
            w0 -= lr * x[idx].T @ gh
            b0 -= lr * gh.sum(axis=0)
    return w0, b0, w1, b1


def float_predict(x, params):
    w0, b0, w1, b1 = params
    return np.argmax(np.maximum(x @ w0 + b0, 0) @ w1 + b1, axis=1)


def quantize_mlp(params, x_calib):
    """int8 layers for :meth:`Runtime.mlp` (hidden: int8 ReLU; logits: int32) and the input scale."""
    w0, b0, w1, b1 = params
    s_x = PIXEL_MAX / 127
    s_w0, s_w1 = symmetric_scale(w0, axis=0), symmetric_scale(w1, axis=0)
    s_h = symmetric_scale(np.maximum(x_calib @ w0 + b0, 0))
    m0, sh0 = quantize_multipliers(s_x * s_w0 / s_h)
    layers = [
        dict(W=quantize_symmetric(w0, s_w0), bias=np.round(b0 / (s_x * s_w0)).astype(np.int32),
             multiplier=m0, shift=sh0, zero_point=0, clamp=activation_clamp("relu", s_h),
             out_dtype="int8"),
        dict(W=quantize_symmetric(w1, s_w1),
             bias=np.round(b1 / (s_h * s_w1)).astype(np.int32), out_dtype="int32"),
    ]
    return layers, s_x


def reference_int8(xq, layers):
    """The int8 model computed directly with :mod:`sim.golden` (what every backend must match)."""
    h = xq
    for layer in layers:
        acc = golden.matmul(h, layer["W"])
        if layer["out_dtype"] == "int32":
            h = golden.output_pipeline(acc, bias=layer["bias"], out_int32=True)
        else:
            lo, hi = layer["clamp"]
            h = golden.output_pipeline(acc, bias=layer["bias"], multiplier=layer["multiplier"],
                                       shift=layer["shift"], zero_point=layer["zero_point"],
                                       lo=lo, hi=hi)
    return h


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sw.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="golden")
    parser.add_argument("--config", help="config.json (default: the default Config)")
    parser.add_argument("--test-samples", type=int, default=0, help="limit the test set (0: all)")
    args = parser.parse_args(argv)
    cfg = Config.load(args.config) if args.config else Config()
    x, y = _load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    split = len(x) * 4 // 5
    train, test = order[:split], order[split:]
    if args.test_samples:
        test = test[:args.test_samples]
    params = train_mlp(x[train] / PIXEL_MAX, y[train])
    params = (params[0] / PIXEL_MAX, params[1], params[2], params[3])
    layers, s_x = quantize_mlp(params, x[train])
    xq = quantize_symmetric(x[test], s_x)
    golden_logits = reference_int8(xq, layers)
    logits, report = Runtime(cfg, args.backend).mlp(xq, layers)
    accuracy = {
        "float": np.mean(float_predict(x[test], params) == y[test]),
        "int8 (sim.golden)": np.mean(np.argmax(golden_logits, axis=1) == y[test]),
        f"int8 ({args.backend} backend)": np.mean(np.argmax(logits, axis=1) == y[test]),
    }
    print(f"digits test set: {len(test)} samples, MLP 64-32-10")
    for name, value in accuracy.items():
        print(f"  {name:<24} accuracy {100 * value:6.2f} %")
    exact = np.array_equal(logits, golden_logits)
    print(f"  {args.backend} logits {'match' if exact else 'DIFFER FROM'} the golden int8 model"
          f" ({report['instructions']} instructions, {report['macs']} MACs)")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
