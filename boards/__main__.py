"""``python -m boards elaborate|build|program BOARD``.

``elaborate`` prepares the build files without running any tool (the test suite does this
for every board). ``build`` runs yosys + nextpnr + the bitstream packer into build/BOARD,
then writes build/BOARD/report.json and report.md (utilisation and Fmax per clock) and exits
with 1 when timing is not met. ``program`` loads build/BOARD onto a connected board.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hw  # noqa: F401  (points Amaranth at the YoWASP tools)

from .targets import BOARDS, get_target
from .top import BoardTop


NEXTPNR_REPORT = "nextpnr_report.json"
# The cells worth a line in the report even when unused, with readable names.
KEY_CELLS = {
    "ICESTORM_LC": "logic cells (LUT4 + FF)", "ICESTORM_RAM": "EBR (4 Kib)",
    "ICESTORM_SPRAM": "SPRAM (32 KiB)", "ICESTORM_DSP": "DSP (SB_MAC16)",
    "TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "DP16KD": "EBR (DP16KD)",
    "MULT18X18D": "DSP (MULT18X18D)",
}


class BoardError(Exception):
    """A failure with a message for the command line."""


def build_dir(board):
    return Path("build") / board


def _build(target, *, do_build):
    platform = target.platform()
    top = BoardTop(target)
    overrides = {}
    if not target.ram_init:
        overrides["script_after_read"] = f"delete {target.name}.{top.RAM_PATH}/t:$meminit_v2"
    return platform, platform.build(
        top, name=target.name, build_dir=str(build_dir(target.name)),
        do_build=do_build, do_program=False, synth_opts=target.synth_opts, **overrides,
        # Timing failures are reported from the parsed report, not as a nextpnr error.
        nextpnr_opts=f"--report {NEXTPNR_REPORT} --timing-allow-fail")


def summarise(target, nextpnr):
    """Our report (a dict) from nextpnr's ``--report`` JSON."""
    utilisation = {
        cell: {"used": u["used"], "available": u["available"],
               "name": KEY_CELLS.get(cell, cell)}
        for cell, u in sorted(nextpnr.get("utilization", {}).items())
        if u["used"] or cell in KEY_CELLS}
    fmax = {
        clock: {"achieved_mhz": round(f["achieved"], 2),
                "constraint_mhz": round(f["constraint"], 2),
                "met": f["achieved"] >= f["constraint"]}
        for clock, f in sorted(nextpnr.get("fmax", {}).items())}
    return {"board": target.name, "device": target.platform.device,
            "clk_hz": target.clk_hz, "config": target.cfg.to_dict(),
            "utilization": utilisation, "fmax": fmax,
            "timing_met": bool(fmax) and all(f["met"] for f in fmax.values())}


def markdown(report):
    lines = [f"## {report['board']} ({report['device']})", "",
             "| resource | used | available | % |", "|---|---:|---:|---:|"]
    for cell, u in report["utilization"].items():
        pct = 100 * u["used"] / u["available"] if u["available"] else 0
        lines.append(f"| {u['name']} | {u['used']} | {u['available']} | {pct:.1f} |")
    lines += ["", "| clock | achieved MHz | constraint MHz | met |", "|---|---:|---:|---|"]
    for clock, f in report["fmax"].items():
        lines.append(f"| {clock} | {f['achieved_mhz']} | {f['constraint_mhz']} |"
                     f" {'yes' if f['met'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


def cmd_elaborate(target):
    _, plan = _build(target, do_build=False)
    print(f"{target.name}: elaborated {len(plan.files)} build files"
          f" ({target.cfg.rows}x{target.cfg.cols} array, {target.cfg.dram_size // 1024} KiB RAM,"
          f" {target.baud} baud)")
    return 0


def cmd_build(target):
    try:
        _build(target, do_build=True)
    except subprocess.CalledProcessError as error:
        raise BoardError(f"{target.name}: the toolchain failed ({error});"
                         f" see the logs in {build_dir(target.name)}") from None
    path = build_dir(target.name)
    with open(path / NEXTPNR_REPORT) as f:
        report = summarise(target, json.load(f))
    (path / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (path / "report.md").write_text(text)
    print(text)
    if not report["timing_met"]:
        print(f"{target.name}: timing NOT met", file=sys.stderr)
        return 1
    return 0


def cmd_program(target):
    from amaranth.build.run import LocalBuildProducts

    path = build_dir(target.name)
    if not any(path.glob(f"{target.name}.bi[nt]")):
        raise BoardError(f"{target.name}: no bitstream in {path};"
                         f" run `python -m boards build {target.name}` first")
    tool = os.environ.get(target.programmer_env, target.programmer)
    if shutil.which(tool) is None:
        raise BoardError(f"{target.name}: the programmer `{tool}` is not installed (or set"
                         f" {target.programmer_env} to its path)")
    try:
        target.platform().toolchain_program(LocalBuildProducts(str(path)), target.name)
    except (subprocess.CalledProcessError, OSError) as error:
        raise BoardError(f"{target.name}: `{tool}` failed ({error}); is the board connected"
                         f" (and, for the OrangeCrab, in its DFU bootloader)?") from None
    return 0


COMMANDS = {"elaborate": cmd_elaborate, "build": cmd_build, "program": cmd_program}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m boards", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("board", choices=BOARDS)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](get_target(args.board))
    except BoardError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
