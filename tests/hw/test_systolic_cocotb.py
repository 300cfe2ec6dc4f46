"""The emitted Verilog of hw.systolic.SystolicArray under cocotb (sim/tb/tb_systolic.py)."""

import pytest
from amaranth.back import verilog

from hw.systolic import SystolicArray
from sim.runner import SIM_BUILD_ROOT, run_cocotb
from tests.hw.test_systolic import make_config

TOP = "systolic_array"

# A 16x16 array takes Verilator minutes to compile (256 cells, every signal public for
# cocotb): one build covers both dataflows, and it is marked slow.
CASES = [
    pytest.param(4, 4, "both", 8, id="4x4-both"),
    pytest.param(8, 4, "both", 6, id="8x4-both"),
    pytest.param(5, 3, "both", 6, id="5x3-both"),
    pytest.param(16, 16, "both", 4, id="16x16-both", marks=pytest.mark.slow),
]


@pytest.mark.cocotb
@pytest.mark.parametrize("rows, cols, dataflow, groups", CASES)
def test_systolic_cocotb(rows, cols, dataflow, groups):
    cfg = make_config(rows, cols, dataflow)
    build_name = f"systolic_{rows}x{cols}_{dataflow}"
    out_dir = SIM_BUILD_ROOT / build_name
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / f"{TOP}.v"
    text = verilog.convert(SystolicArray(cfg), name=TOP, emit_src=False)
    if not source.exists() or source.read_text() != text:
        source.write_text(text)
    env = {"ROWS": rows, "COLS": cols, "DATAFLOW": dataflow, "INPUT_WIDTH": cfg.input_width,
           "WEIGHT_WIDTH": cfg.weight_width, "ACC_WIDTH": cfg.acc_width, "GROUPS": groups}
    run_cocotb(verilog_sources=[source], toplevel=TOP, test_module="sim.tb.tb_systolic",
               build_name=build_name, extra_env=env)
