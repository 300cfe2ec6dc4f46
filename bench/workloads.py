"""The benchmark workloads: GEMM sweep, ResNet / MobileNet conv layers, the MLP demo, a dense layer.

Each :class:`Workload` knows its GEMM shapes (what the analytic models need), how to make
its int8 inputs (deterministic per workload) and how to run them on a
:class:`sw.runtime.Runtime`. Convolutions go through the runtime's im2col path, so a conv
layer is the GEMM ``(N*OH*OW) x (KH*KW*Cin) @ (KH*KW*Cin) x Cout``. Depthwise layers
(MobileNet) are left out: the runtime has no grouped convolution.
"""

import zlib
from dataclasses import dataclass, field

import numpy as np

from sw.compiler import conv2d_output_shape


__all__ = ["Workload", "GROUPS", "QUICK_MAX_MACS", "all_workloads", "select"]

GROUPS = ("gemm", "conv", "mlp", "dense")
# --quick keeps workloads up to this many MACs: every GEMM up to 128^3, the CIFAR-size
# convs, the MLP demo and the dense layer, which simulate in seconds to a minute each.
QUICK_MAX_MACS = 1 << 22

# Requantisation of int8 outputs: M0 = 0.5 in Q31 and a right shift, a typical TFLite scale.
_MULTIPLIER = 1 << 30
_SHIFT = 10
# The digits MLP demo (sw/demo.py): 64-32-10, test set of 360 samples (20 % of 1797).
_DIGITS_TEST_SAMPLES = 360
_DIGITS_SIZES = (64, 32, 10)


@dataclass(frozen=True)
class Workload:
    """One benchmark: ``kind`` is ``gemm``, ``conv2d`` or ``mlp``; ``params`` its shapes.

    ``target`` is ``(metric, minimum)`` with metric ``utilization`` or ``dma_fraction``.
    """
    name: str
    group: str
    kind: str
    params: dict
    description: str
    target: tuple | None = None
    gemms: tuple = field(init=False)

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"group must be one of {GROUPS}, not {self.group!r}")
        object.__setattr__(self, "gemms", tuple(self._gemm_shapes()))

    def _gemm_shapes(self):
        p = self.params
        if self.kind == "gemm":
            return [(p["M"], p["K"], p["N"])]
        if self.kind == "conv2d":
            n, oh, ow, cout = conv2d_output_shape(p["x_shape"], p["w_shape"], p["stride"],
                                                  p["padding"])
            kh, kw, cin, _ = p["w_shape"]
            return [(n * oh * ow, kh * kw * cin, cout)]
        if self.kind == "mlp":
            return [(p["batch"], k, n) for k, n in zip(p["sizes"], p["sizes"][1:])]
        raise ValueError(f"kind must be gemm, conv2d or mlp, not {self.kind!r}")

    @property
    def macs(self):
        return sum(M * K * N for M, K, N in self.gemms)

    @property
    def shape_text(self):
        return " + ".join(f"{M}x{K}x{N}" for M, K, N in self.gemms)

    def make_inputs(self):
        """Random int8 operands and int32 biases, the same on every call."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))

        def int8(shape):
            return rng.integers(-128, 128, shape, dtype=np.int8)

        def bias(n):
            return rng.integers(-(1 << 16), 1 << 16, n, dtype=np.int32)

        p = self.params
        if self.kind == "gemm":
            return dict(A=int8((p["M"], p["K"])), B=int8((p["K"], p["N"])), bias=bias(p["N"]))
        if self.kind == "conv2d":
            return dict(X=int8(p["x_shape"]), W=int8(p["w_shape"]), bias=bias(p["w_shape"][3]))
        sizes = p["sizes"]
        layers = [dict(W=int8((k, n)), bias=bias(n)) for k, n in zip(sizes, sizes[1:])]
        return dict(X=int8((p["batch"], sizes[0])), layers=layers)

    def run(self, runtime, inputs, dataflow=None):
        """Run on ``runtime``; returns ``(output, report)``."""
        quant = dict(multiplier=_MULTIPLIER, shift=_SHIFT, out_dtype="int8")
        p = self.params
        if self.kind == "gemm":
            return runtime.gemm(inputs["A"], inputs["B"], bias=inputs["bias"], dataflow=dataflow,
                                **quant)
        if self.kind == "conv2d":
            return runtime.conv2d(inputs["X"], inputs["W"], stride=p["stride"],
                                  padding=p["padding"], bias=inputs["bias"], dataflow=dataflow,
                                  **quant)
        layers = [dict(layer, **quant, clamp=(0, 127)) for layer in inputs["layers"][:-1]]
        layers.append(dict(inputs["layers"][-1], out_dtype="int32"))
        return runtime.mlp(inputs["X"], layers, dataflow=dataflow)


def _gemm(n, target=None):
    return Workload(f"gemm_{n}", "gemm", "gemm", dict(M=n, K=n, N=n), f"GEMM {n}^3",
                    ("utilization", target) if target else None)


def _conv(name, hw, cin, cout, kernel, stride, description, target=None):
    params = dict(x_shape=(1, hw, hw, cin), w_shape=(kernel, kernel, cin, cout), stride=stride,
                  padding=kernel // 2)
    return Workload(name, "conv", "conv2d", params,
                    f"{description}: {kernel}x{kernel}/{stride} {hw}x{hw}x{cin} -> {cout}",
                    ("utilization", target) if target else None)


def all_workloads():
    """Every workload in the order they run (small first, so --quick is a prefix in spirit)."""
    gemm_targets = {128: 0.85, 512: 0.95}
    return [
        *(_gemm(n, gemm_targets.get(n)) for n in (16, 32, 64, 128, 256, 512)),
        _conv("cifar_resnet_conv1", 32, 16, 16, 3, 1, "CIFAR ResNet-20 stage 1"),
        _conv("cifar_resnet_conv2", 16, 32, 32, 3, 1, "CIFAR ResNet-20 stage 2"),
        _conv("cifar_resnet_conv3", 8, 64, 64, 3, 1, "CIFAR ResNet-20 stage 3"),
        _conv("resnet18_conv1", 224, 3, 64, 7, 2, "ResNet-18 stem"),
        _conv("resnet18_layer1", 56, 64, 64, 3, 1, "ResNet-18 layer1", target=0.85),
        _conv("resnet18_layer2_down", 56, 64, 128, 3, 2, "ResNet-18 layer2 first"),
        _conv("resnet18_layer2_skip", 56, 64, 128, 1, 2, "ResNet-18 layer2 shortcut"),
        _conv("resnet18_layer2", 28, 128, 128, 3, 1, "ResNet-18 layer2"),
        _conv("resnet18_layer3", 14, 256, 256, 3, 1, "ResNet-18 layer3"),
        _conv("resnet18_layer4", 7, 512, 512, 3, 1, "ResNet-18 layer4"),
        _conv("mobilenet_conv1", 224, 3, 32, 3, 2, "MobileNetV1 stem"),
        _conv("mobilenet_pw2", 112, 32, 64, 1, 1, "MobileNetV1 pointwise 2"),
        _conv("mobilenet_pw4", 56, 128, 128, 1, 1, "MobileNetV1 pointwise 4"),
        _conv("mobilenet_pw6", 28, 256, 256, 1, 1, "MobileNetV1 pointwise 6"),
        _conv("mobilenet_pw8", 14, 512, 512, 1, 1, "MobileNetV1 pointwise 8"),
        _conv("mobilenet_pw13", 7, 1024, 1024, 1, 1, "MobileNetV1 pointwise 13"),
        Workload("mlp_digits", "mlp", "mlp",
                 dict(batch=_DIGITS_TEST_SAMPLES, sizes=_DIGITS_SIZES),
                 f"MLP demo 64-32-10 on {_DIGITS_TEST_SAMPLES} digits"),
        Workload("dense_1024", "dense", "gemm", dict(M=1, K=1024, N=1024),
                 "dense 1x1024 @ 1024x1024 (batch 1, memory bound)", ("dma_fraction", 0.80)),
    ]


def select(groups=None, quick=False, names=None):
    """Workloads in ``groups`` (all if None), only small ones with ``quick``, or by ``names``."""
    chosen = []
    for workload in all_workloads():
        if groups is not None and workload.group not in groups:
            continue
        if names is not None and workload.name not in names:
            continue
        if quick and workload.macs > QUICK_MAX_MACS:
            continue
        chosen.append(workload)
    return chosen
