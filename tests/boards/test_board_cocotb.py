"""The whole board design (accelerator + RAM + UART bridge) driven through its UART pins by
the runtime's own host code (sim/tb/tb_board.py), without hardware."""

import os
import random

import pytest
from amaranth.back import verilog

from boards.targets import BOARDS
from boards.top import BoardSoC
from sim.runner import SIM_BUILD_ROOT, run_cocotb


# The iCEBreaker Config with a smaller RAM (the simulated image is a few KiB).
CFG = BOARDS["icebreaker"].cfg.replace(dram_size=16 * 1024)
# The slowest rate the simulation can afford: a few cycles per bit.
DIVISOR = 6
CLK_HZ = 12e6
FRAME_TIMEOUT = 3 * 10 * DIVISOR                # three byte times
BUS_TIMEOUT = 256
NAME = "board_soc"


def _emit():
    out_dir = SIM_BUILD_ROOT / NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.v"
    soc = BoardSoC(CFG, clk_hz=CLK_HZ, baud=CLK_HZ / DIVISOR, frame_timeout=FRAME_TIMEOUT,
                   bus_timeout=BUS_TIMEOUT)
    assert soc.divisor == DIVISOR
    text = verilog.convert(soc, name=NAME, emit_src=False)
    # Rewriting an unchanged file would make the runner rebuild the simulator.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


# The whole board top (accelerator, RAM, bridge, bit-level UART) takes Verilator several
# minutes to compile: run it with `pytest -m slow tests/boards/test_board_cocotb.py`.
@pytest.mark.slow
@pytest.mark.cocotb
def test_board_over_simulated_uart():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    source = _emit()
    run_cocotb(verilog_sources=[source], toplevel=NAME, test_module="sim.tb.tb_board",
               build_name=NAME,
               extra_env={"TC_CONFIG": CFG.to_json(), "TC_UART_DIVISOR": DIVISOR,
                          "TC_FRAME_TIMEOUT": FRAME_TIMEOUT, "SEED": seed})
