"""``python -m boards elaborate|build|program BOARD``.

``elaborate`` prepares the build files without running any tool (the test suite does this
for every board). ``build`` runs yosys + nextpnr + the bitstream packer into build/BOARD,
then writes build/BOARD/report.json and report.md (utilisation and Fmax per clock) and exits
with 1 when timing is not met. ``program`` loads build/BOARD onto a connected board.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hw  # noqa: F401  (points Amaranth at the YoWASP tools)
from hw.ram import UNSET_RAM_READ_INIT

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


# What yosys maps to each resource the table shows (cells of its final statistics), and the
# totals of the devices (for a design that nextpnr could not place, so gave no report).
SYNTH_CELLS = {
    "LUT": ("SB_LUT4", "LUT4"), "FF": ("SB_DFF", "TRELLIS_FF"),
    "DSP": ("SB_MAC16", "MULT18X18D"), "BRAM": ("SB_RAM40_4K", "DP16KD"),
}
DEVICE_TOTALS = {
    "iCE40UP5K": {"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30},
    "LFE5U-85F": {"LUT": 83640, "FF": 83640, "DSP": 156, "BRAM": 208},
}
TABLE = "boards.md"


class BoardError(Exception):
    """A failure with a message for the command line."""


def build_dir(board):
    return Path("build") / board


def _build(target, *, do_build):
    platform = target.platform()
    top = BoardTop(target)
    overrides = {}
    # Block RAM read registers lose their (unused) power-up value: see hw/ram.py.
    script = [UNSET_RAM_READ_INIT]
    if not target.ram_init:
        script.append(f"delete {target.name}.{top.RAM_PATH}/t:$meminit_v2")
    if target.soft_multipliers():
        # synth_ice40 -dsp maps every $mul to a DSP; these become Booth-encoded adders first
        # (booth skips modules that still hold processes).
        script += ["proc", f"booth {target.soft_multipliers()}"]
    overrides["script_after_read"] = "\n".join(script)
    return platform, platform.build(
        top, name=target.name, build_dir=str(build_dir(target.name)),
        do_build=do_build, do_program=False, synth_opts=target.synth_opts, **overrides,
        # Timing failures are reported from the parsed report, not as a nextpnr error.
        nextpnr_opts=" ".join(filter(None, (f"--report {NEXTPNR_REPORT}",
                                             "--timing-allow-fail", target.nextpnr_opts))))


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
            "clk_hz": target.sync_hz, "config": target.cfg.to_dict(),
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


def synth_cells(rpt_text):
    """Used LUT / FF / DSP / BRAM from the last statistics in a yosys log (``name.rpt``)."""
    stats = rpt_text[rpt_text.rfind("Printing statistics"):]
    # The flattened top's own section holds every cell; the hierarchy summary repeats them.
    stats = stats.split("=== design hierarchy ===")[0]
    counts = {}
    for count, cell in re.findall(r"^\s+(\d+)\s+(\S+)\s*$", stats, re.M):
        counts[cell] = counts.get(cell, 0) + int(count)
    return {resource: sum(n for cell, n in counts.items() if cell.startswith(prefixes))
            for resource, prefixes in SYNTH_CELLS.items()}


def table_row(report):
    """One line of the board table: synthesised resources / device, Fmax / constraint."""
    cfg = report["config"]
    totals = DEVICE_TOTALS.get(report["device"], {})
    used = report.get("synth", {})
    cells = " | ".join(f"{used.get(r, '?')} / {totals.get(r, '?')}" for r in SYNTH_CELLS)
    if report["fmax"]:
        fmax = ", ".join(f"{f['achieved_mhz']} / {f['constraint_mhz']}"
                         for f in report["fmax"].values())
        met = "yes" if report["timing_met"] else "**NO**"
    else:
        fmax, met = "-", f"**NO** ({report.get('failure', 'no timing report')})"
    return (f"| {report['board']} | {cfg['rows']}x{cfg['cols']} {cfg['dataflow']},"
            f" {cfg['dma_data_width']}-bit DMA, {cfg['dram_size'] // 1024} KiB RAM | {cells} |"
            f" {fmax} | {met} |")


def write_table(root=Path("build")):
    """build/boards.md: one row per board with a report.json."""
    lines = ["| board | config | LUT | FF | DSP | BRAM | Fmax / constraint (MHz) | met |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for board in BOARDS:
        path = root / board / "report.json"
        if path.exists():
            lines.append(table_row(json.loads(path.read_text())))
    (root / TABLE).write_text("\n".join(lines) + "\n")
    return root / TABLE


def _synth_report(target, path):
    rpt = path / f"{target.name}.rpt"
    return synth_cells(rpt.read_text()) if rpt.exists() else {}


def _failure(target, path):
    """A report for a build that stopped in nextpnr (typically: the design does not fit)."""
    log = path / f"{target.name}.tim"
    errors = re.findall(r"^ERROR: (.*)$", log.read_text(), re.M) if log.exists() else []
    synth = _synth_report(target, path)
    over = (overflow(synth, DEVICE_TOTALS.get(target.platform.device, {}))
            or packed_overflow(log.read_text() if log.exists() else ""))
    if over:
        failure = f"does not fit: {over}"
    else:
        failure = errors[0] if errors else "the toolchain failed"
    return {"board": target.name, "device": target.platform.device, "clk_hz": target.sync_hz,
            "config": target.cfg.to_dict(), "utilization": {}, "fmax": {},
            "synth": synth, "timing_met": False, "failure": failure}


def packed_overflow(nextpnr_log):
    """The packed cell types nextpnr found more of than the device has, from its
    "Device utilisation" lines, e.g. ``"ICESTORM_LC 6325 > 5280"`` ("" if none): LUTs and
    flip-flops may each fit while the logic cells holding them do not."""
    return ", ".join(f"{name} {used} > {avail}" for name, used, avail in re.findall(
        r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%$", nextpnr_log, re.M)
        if int(used) > int(avail))


def overflow(synth, totals):
    """The synthesised resources beyond the device's, e.g. ``"LUT 10205 > 5280"`` ("" if
    none)."""
    return ", ".join(f"{name} {synth[name]} > {total}" for name, total in totals.items()
                     if synth.get(name, 0) > total)


def cmd_elaborate(target):
    _, plan = _build(target, do_build=False)
    print(f"{target.name}: elaborated {len(plan.files)} build files"
          f" ({target.cfg.rows}x{target.cfg.cols} array, {target.cfg.dram_size // 1024} KiB RAM,"
          f" {target.baud} baud)")
    return 0


def cmd_build(target):
    path = build_dir(target.name)
    try:
        _build(target, do_build=True)
    except subprocess.CalledProcessError as error:
        report = _failure(target, path)
        (path / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        write_table()
        raise BoardError(f"{target.name}: the toolchain failed ({error}): {report['failure']};"
                         f" synthesised {report['synth']} of"
                         f" {DEVICE_TOTALS.get(report['device'])}; see the logs in {path}"
                         ) from None
    with open(path / NEXTPNR_REPORT) as f:
        report = summarise(target, json.load(f))
    report["synth"] = _synth_report(target, path)
    (path / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_table()
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
