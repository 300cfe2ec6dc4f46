"""The emitted Verilog of hw.systolic.SystolicArray under cocotb (sim/tb/tb_systolic.py)."""

import pytest
from amaranth.back import verilog

from hw.systolic import SystolicArray
from sim.runner import SIM_BUILD_ROOT, run_cocotb
from tests.hw.test_systolic import make_config

TOP = "systolic_array"

CASES = [(4, 4, "both", 6), (8, 4, "both", 4), (16, 16, "ws", 3), (16, 16, "os", 3)]


@pytest.mark.cocotb
@pytest.mark.parametrize("rows, cols, dataflow, groups", CASES,
                         ids=[f"{r}x{c}-{d}" for r, c, d, _ in CASES])
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
