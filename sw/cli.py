"""``python -m sw``: run GEMM and conv2d on the accelerator from ``.npy`` files.

::

    python -m sw gemm A.npy B.npy -o C.npy [--bias BIAS.npy]
        [--multiplier M0 --shift S | --multiplier-file M.npy --shift-file S.npy]
        [--zero-point Z] [--clamp LO HI] [--activation none|relu|relu6 [--output-scale F]]
        [--out-dtype int8|int32] [--dataflow ws|os] [--backend golden|verilator|icarus]
        [--config build/default/config.json] [--report REPORT.json]
    python -m sw conv2d X.npy W.npy -o Y.npy --stride S --padding same|valid|P  (same flags)

int32 output is ``A @ B (+ bias)`` wrapping at 32 bits; int8 output is the TFLite
requantisation and needs a multiplier and shift. ``--activation relu`` clamps below at the
zero point, ``relu6`` also above at ``zero_point + round(6 / output_scale)``. Bad input exits
with status 1 and one ``error: ...`` line on stderr.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hw.config import Config
from sw import quant
from sw.runtime import Runtime


__all__ = ["main", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = Path("build/default/config.json")


class CliError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CliError(message)


def _add_common(parser):
    parser.add_argument("-o", "--output", required=True, help="output .npy")
    parser.add_argument("--bias", help="int32 bias .npy (one value per output channel)")
    parser.add_argument("--multiplier", type=int, help="per-tensor requantisation multiplier M0")
    parser.add_argument("--shift", type=int, help="per-tensor right shift (0..31)")
    parser.add_argument("--multiplier-file", help="per-channel M0 .npy")
    parser.add_argument("--shift-file", help="per-channel shift .npy")
    parser.add_argument("--zero-point", type=int, default=0, help="output zero point")
    parser.add_argument("--clamp", type=int, nargs=2, metavar=("LO", "HI"),
                        help="output clamp (default: the output range)")
    parser.add_argument("--activation", choices=quant.ACTIVATIONS, default="none",
                        help="fused activation, applied as a clamp")
    parser.add_argument("--output-scale", type=float,
                        help="output scale (needed by --activation relu6)")
    parser.add_argument("--out-dtype", choices=("int8", "int32"), default="int8")
    parser.add_argument("--dataflow", choices=("ws", "os"), help="default: ws when built")
    parser.add_argument("--backend", default="golden",
                        help="golden (default), verilator, icarus or uart:PORT")
    parser.add_argument("--config", help=f"config.json (default: {DEFAULT_CONFIG} if present)")
    parser.add_argument("--report", help="write the run report as JSON here")


def _parser():
    parser = _Parser(prog="python -m sw", description="Run int8 workloads on the accelerator.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gemm = commands.add_parser("gemm", help="C = A @ B (+ bias), requantised")
    gemm.add_argument("a", metavar="A.npy")
    gemm.add_argument("b", metavar="B.npy")
    _add_common(gemm)
    conv = commands.add_parser("conv2d", help="NHWC x HWIO convolution")
    conv.add_argument("x", metavar="X.npy")
    conv.add_argument("w", metavar="W.npy")
    conv.add_argument("--stride", type=int, default=1)
    conv.add_argument("--padding", default="valid", help="same, valid or an int")
    _add_common(conv)
    return parser


def _load(path, what):
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{what} file {path} does not exist") from None
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {what} file {path}: {e}") from None
    if not np.issubdtype(array.dtype, np.integer):
        raise CliError(f"{what} ({path}) must hold integers, not {array.dtype}")
    return array


def _check_range(array, what, dtype):
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise CliError(f"{what} has values outside the {np.dtype(dtype).name} range "
                       f"{info.min}..{info.max}")
    return array.astype(dtype)


def _config(path):
    if path is None:
        return Config.load(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else Config()
    if not Path(path).exists():
        raise CliError(f"config file {path} does not exist")
    return Config.load(path)


def _requant(args, n_out):
    """``multiplier, shift, clamp`` from the quantisation flags."""
    if args.multiplier_file or args.shift_file:
        if args.multiplier is not None or args.shift is not None:
            raise CliError("give --multiplier/--shift or --multiplier-file/--shift-file, not both")
        if not (args.multiplier_file and args.shift_file):
            raise CliError("--multiplier-file and --shift-file go together")
        multiplier = _check_range(_load(args.multiplier_file, "multiplier"), "multiplier", np.int32)
        shift = _load(args.shift_file, "shift")
        for name, values in (("multiplier", multiplier), ("shift", shift)):
            if values.shape != (n_out,):
                raise CliError(f"the {name} file must hold {n_out} values (one per output "
                               f"channel), not shape {values.shape}")
    else:
        multiplier, shift = args.multiplier, args.shift
        if (multiplier is None) != (shift is None):
            raise CliError("--multiplier and --shift go together")
    if args.out_dtype == "int8" and multiplier is None:
        raise CliError("int8 output needs --multiplier M0 --shift S (or --multiplier-file and "
                       "--shift-file), e.g. from sim.golden.quantize_multiplier(scale); or use "
                       "--out-dtype int32")
    if shift is not None and np.any((np.asarray(shift) < 0) | (np.asarray(shift) > 31)):
        raise CliError("shift must be from 0 to 31")
    return multiplier, shift, _clamp(args)


def _clamp(args):
    if args.activation != "none" and args.clamp:
        raise CliError("give --clamp or --activation, not both")
    if args.activation == "relu6" and args.output_scale is None:
        raise CliError("--activation relu6 needs --output-scale (the clamp is zp + 6/scale)")
    if args.clamp:
        return tuple(args.clamp)
    if args.activation == "none":
        return None
    return quant.activation_clamp(args.activation, args.output_scale or 1.0, args.zero_point)


def _run(args):
    cfg = _config(args.config)
    first, second = (args.a, args.b) if args.command == "gemm" else (args.x, args.w)
    names = ("A", "B") if args.command == "gemm" else ("X", "W")
    x = _check_range(_load(first, names[0]), names[0], np.int8)
    w = _check_range(_load(second, names[1]), names[1], np.int8)
    dims = 2 if args.command == "gemm" else 4
    for name, array in zip(names, (x, w)):
        if array.ndim != dims:
            raise CliError(f"{name} must have {dims} dimensions, not shape {array.shape}")
    n_out = w.shape[-1]
    bias = None
    if args.bias:
        bias = _check_range(_load(args.bias, "bias"), "bias", np.int32)
        if bias.shape != (n_out,):
            raise CliError(f"bias must hold {n_out} values, not shape {bias.shape}")
    multiplier, shift, clamp = _requant(args, n_out)
    runtime = Runtime(cfg, args.backend)
    kwargs = dict(bias=bias, multiplier=multiplier, shift=shift, zero_point=args.zero_point,
                  clamp=clamp, out_dtype=args.out_dtype, dataflow=args.dataflow)
    if args.command == "gemm":
        out, report = runtime.gemm(x, w, **kwargs)
    else:
        padding = args.padding if args.padding in ("same", "valid") else _int_padding(args.padding)
        out, report = runtime.conv2d(x, w, stride=args.stride, padding=padding, **kwargs)
    np.save(args.output, out)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")


def _int_padding(text):
    try:
        value = int(text)
    except ValueError:
        raise CliError(f"--padding must be same, valid or a non-negative int, not {text!r}") from None
    if value < 0:
        raise CliError(f"--padding must be non-negative, not {value}")
    return value


def main(argv=None):
    try:
        args = _parser().parse_args(argv)
        _run(args)
    except (CliError, ValueError, RuntimeError, OSError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug still gets the one-line contract, with its type for reports
        print(f"error: internal error ({type(e).__name__}): {' '.join(str(e).split())}",
              file=sys.stderr)
        return 1
    return 0
