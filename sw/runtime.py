"""The host runtime: compile a workload, run it on a backend, check and unpack the result.

A :class:`Backend` runs a DRAM image: ``run(image, dram_base, prog_base, prog_count,
window=(base, size)) -> RunResult``. ``golden`` runs :mod:`sim.machine`; more backends
(RTL simulators, boards) register themselves with :func:`register_backend` and are built by
:func:`get_backend`.

Report keys (``gemm`` / ``conv2d`` / ``mlp``): ``cycles`` (None on golden, which has no
timing), ``macs`` (useful multiply-accumulates of the workload, ``M*K*N`` per GEMM),
``ideal_cycles`` (``macs / (rows*cols)``), ``utilization`` (``ideal_cycles / cycles``, None
without cycles), ``dma_bytes_read`` / ``dma_bytes_written`` (LOAD / STORE payload bytes),
``backend``, ``instructions`` (retired).
"""

import importlib
from dataclasses import dataclass, field

import numpy as np

from sw import compiler
from sw.compiler import GemmQuant
from sw.isa import ErrorCause


__all__ = ["Backend", "GoldenBackend", "RunResult", "AcceleratorError", "Runtime",
           "register_backend", "get_backend", "backend_names"]


@dataclass
class RunResult:
    dram: bytes
    cycles: int | None
    counters: dict = field(default_factory=dict)
    error: tuple | None = None        # (cause, pc, addr)


class AcceleratorError(RuntimeError):
    """The accelerator stopped with an error: ``cause`` (ErrorCause), ``pc``, ``addr``."""

    def __init__(self, cause, pc, addr=0):
        self.cause, self.pc, self.addr = ErrorCause(cause), pc, addr
        super().__init__(f"accelerator error {self.cause.name} at instruction {pc}"
                         f" (address {addr:#x})")


class Backend:
    """Runs programs; subclasses implement :meth:`run`."""

    name = "abstract"

    def __init__(self, cfg):
        self.cfg = cfg

    def run(self, image, dram_base, prog_base, prog_count, window=None):
        raise NotImplementedError


class GoldenBackend(Backend):
    """The golden model (:mod:`sim.machine`): exact results, no timing (cycles = None).

    ``queue_depth`` bounds the instruction queues (None: unbounded), to check that a program
    cannot deadlock on hardware with short queues.
    """

    name = "golden"

    def __init__(self, cfg, queue_depth=None):
        super().__init__(cfg)
        self.queue_depth = queue_depth

    def run(self, image, dram_base, prog_base, prog_count, window=None):
        from sim.machine import Machine

        machine = Machine(self.cfg, image, dram_base=dram_base, window=window,
                          queue_depth=self.queue_depth)
        result = machine.run(prog_base, prog_count)
        error = result.error.as_tuple() if result.error is not None else None
        return RunResult(result.dram, None, result.counters, error)


_BACKENDS = {}
# Modules that register more backends when imported (the RTL simulators, boards); tried in
# order the first time an unknown backend is asked for.
BACKEND_MODULES = ["sim.backends", "sw.uart_backend"]


def register_backend(name, factory):
    """Make ``get_backend(name, cfg)`` (or ``name:ARG``) call ``factory(cfg, arg)``."""
    _BACKENDS[name] = factory


def backend_names():
    return sorted(_BACKENDS)


def get_backend(name, cfg):
    """The backend called ``name`` (``"golden"``, or ``"kind:ARG"`` such as ``uart:/dev/ttyUSB0``)."""
    kind, _, arg = name.partition(":")
    if kind not in _BACKENDS:
        _import_backend_modules()
    try:
        factory = _BACKENDS[kind]
    except KeyError:
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(backend_names())})") from None
    return factory(cfg, arg or None)


def _import_backend_modules():
    for module in BACKEND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise


register_backend("golden", lambda cfg, arg: GoldenBackend(cfg))


def _int_array(name, value, dtype, ndim=None):
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, not {array.dtype}")
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(f"{name} has values outside the {np.dtype(dtype).name} range "
                         f"{info.min}..{info.max}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, not shape {array.shape}")
    return array.astype(dtype)


def _quant_inputs(n, bias, multiplier, shift, zero_point, clamp, out_dtype, prefix=""):
    """(GemmQuant, extra pack inputs) for one GEMM with ``n`` output columns."""
    inputs = {}
    if bias is not None:
        bias = _int_array("bias", bias, np.int32, 1)
        if bias.shape != (n,):
            raise ValueError(f"bias has {bias.shape[0]} values but the output has {n} columns")
        inputs[f"bias{prefix}"] = bias
    per_column = False
    if out_dtype == "int8":
        if multiplier is None or shift is None:
            raise ValueError("int8 output needs a requantisation multiplier and shift "
                             "(or use int32 output)")
        per_column = np.ndim(multiplier) > 0 or np.ndim(shift) > 0
        if per_column:
            m = _int_array("multiplier", np.broadcast_to(multiplier, (n,)), np.int32)
            s = _int_array("shift", np.broadcast_to(shift, (n,)), np.int32)
            if np.any((s < 0) | (s > 31)):
                raise ValueError("shift values must be from 0 to 31")
            inputs[f"multiplier{prefix}"] = m
            inputs[f"shift{prefix}"] = s
            multiplier = shift = 0
    elif out_dtype != "int32":
        raise ValueError(f"out_dtype must be 'int8' or 'int32', not {out_dtype!r}")
    quant = GemmQuant(out_dtype, bias is not None, per_column,
                      int(multiplier or 0), int(shift or 0), int(zero_point),
                      tuple(int(c) for c in clamp) if clamp is not None else None)
    return quant, inputs


class Runtime:
    """``gemm`` / ``conv2d`` / ``mlp`` on ``backend`` (a name or a :class:`Backend`)."""

    def __init__(self, cfg, backend="golden"):
        self.cfg = cfg
        self.backend = get_backend(backend, cfg) if isinstance(backend, str) else backend

    def run(self, program, inputs, window=None):
        """Pack, run and unpack ``program``; returns ``(output, report)``."""
        image = program.pack(inputs)
        window = window or (self.cfg.dram_base, self.cfg.dram_size)
        result = self.backend.run(image, program.dram_base, program.prog_base,
                                  program.prog_count, window=window)
        if result.error is not None:
            raise AcceleratorError(*result.error)
        return program.unpack(result.dram), self._report(program, result)

    def _report(self, program, result):
        peak = self.cfg.rows * self.cfg.cols
        ideal = program.macs / peak
        cycles = result.cycles
        return dict(cycles=cycles, macs=program.macs, ideal_cycles=ideal,
                    utilization=(ideal / cycles) if cycles else None,
                    dma_bytes_read=result.counters.get("dma_bytes_read"),
                    dma_bytes_written=result.counters.get("dma_bytes_written"),
                    backend=self.backend.name,
                    instructions=result.counters.get("instructions"))

    def gemm(self, A, B, bias=None, multiplier=None, shift=None, zero_point=0, clamp=None,
             out_dtype="int8", dataflow=None):
        """``C = A @ B (+ bias)``: int32 (wrapping) or requantised int8 (TFLite formula)."""
        A = _int_array("A", A, np.int8, 2)
        B = _int_array("B", B, np.int8, 2)
        if A.shape[1] != B.shape[0]:
            raise ValueError(f"A is {A.shape[0]}x{A.shape[1]} but B is "
                             f"{B.shape[0]}x{B.shape[1]}: inner dimensions differ")
        quant, inputs = _quant_inputs(B.shape[1], bias, multiplier, shift, zero_point, clamp,
                                      out_dtype)
        program = compiler.compile_gemm(
            self.cfg, A.shape, B.shape, bias=quant.bias, per_column=quant.per_column,
            multiplier=quant.multiplier, shift=quant.shift, zero_point=quant.zero_point,
            clamp=quant.clamp, out_dtype=out_dtype, dataflow=dataflow)
        return self.run(program, dict(A=A, B=B, **inputs))

    def conv2d(self, X, W, stride=1, padding="valid", bias=None, multiplier=None, shift=None,
               zero_point=0, clamp=None, out_dtype="int8", dataflow=None):
        """NHWC ``X`` conv HWIO ``W`` (zero padding) with the GEMM output pipeline."""
        X = _int_array("X", X, np.int8, 4)
        W = _int_array("W", W, np.int8, 4)
        quant, inputs = _quant_inputs(W.shape[3], bias, multiplier, shift, zero_point, clamp,
                                      out_dtype)
        program = compiler.compile_conv2d(
            self.cfg, X.shape, W.shape, stride=stride, padding=padding, bias=quant.bias,
            per_column=quant.per_column, multiplier=quant.multiplier, shift=quant.shift,
            zero_point=quant.zero_point, clamp=quant.clamp, out_dtype=out_dtype,
            dataflow=dataflow)
        return self.run(program, dict(X=X, W=W, **inputs))

    def mlp(self, X, layers, dataflow=None):
        """Dense layers in one program. ``layers``: dicts with ``W`` (K x N int8) and the
        ``gemm`` keywords ``bias, multiplier, shift, zero_point, clamp, out_dtype``."""
        X = _int_array("X", X, np.int8, 2)
        sizes, quants, inputs = [X.shape[1]], [], dict(X=X)
        for index, layer in enumerate(layers):
            W = _int_array(f"layers[{index}].W", layer["W"], np.int8, 2)
            if W.shape[0] != sizes[-1]:
                raise ValueError(f"layer {index} expects {W.shape[0]} inputs, gets {sizes[-1]}")
            quant, extra = _quant_inputs(
                W.shape[1], layer.get("bias"), layer.get("multiplier"), layer.get("shift"),
                layer.get("zero_point", 0), layer.get("clamp"), layer.get("out_dtype", "int8"),
                prefix=str(index))
            sizes.append(W.shape[1])
            quants.append(quant)
            inputs.update(extra)
            inputs[f"W{index}"] = W
        program = compiler.compile_mlp(self.cfg, X.shape[0], sizes, quants, dataflow=dataflow)
        return self.run(program, inputs)
