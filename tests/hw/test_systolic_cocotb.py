"""The emitted Verilog of hw.systolic.SystolicArray under cocotb (sim/tb/tb_systolic.py)."""

import pytest
from amaranth.back import verilog

from hw.cli import to_verilog_with_grid
from hw.systolic import SystolicArray
from sim.runner import SIM_BUILD_ROOT, run_cocotb
from tests.hw.test_systolic import WS_BROADCAST, WS_BROADCAST_1BUF, array_config

TOP = "systolic_array"

# Both forms of the array: "flat" is Amaranth's Verilog of every cell (what boards
# synthesise), "grid" the generator's output (one cell module inside a generate-loop grid).
# A 16x16 array takes Verilator minutes to compile (256 cells, every signal public for
# cocotb): one build covers both dataflows, and it is marked slow. "clear" first leaves WS
# partial sums in the array and pulses `clear` (WS-only arrays do not reset them).
CASES = [
    pytest.param(4, 4, "both", 8, "flat", False, id="4x4-both-flat"),
    pytest.param(8, 4, "both", 6, "flat", False, id="8x4-both-flat"),
    pytest.param(5, 3, "both", 6, "flat", True, id="5x3-both-flat-clear"),
    pytest.param(5, 3, "both", 6, "grid", False, id="5x3-both-grid"),
    pytest.param(3, 6, "ws", 6, "grid", True, id="3x6-ws-grid-clear"),
    pytest.param(4, 5, "os", 6, "grid", False, id="4x5-os-grid"),
    pytest.param(4, 3, WS_BROADCAST, 6, "grid", True, id="4x3-ws-broadcast-grid-clear"),
    pytest.param(4, 4, WS_BROADCAST, 6, "flat", True, id="4x4-ws-broadcast-flat-clear"),
    pytest.param(4, 3, WS_BROADCAST_1BUF, 8, "grid", True, id="4x3-ws-broadcast-1buf-grid-clear"),
    pytest.param(4, 4, WS_BROADCAST_1BUF, 8, "flat", True, id="4x4-ws-broadcast-1buf-flat-clear"),
    pytest.param(16, 16, "both", 4, "flat", False, id="16x16-both-flat",
                 marks=pytest.mark.slow),
]


@pytest.mark.cocotb
@pytest.mark.parametrize("rows, cols, variant, groups, form, clear", CASES)
def test_systolic_cocotb(rows, cols, variant, groups, form, clear):
    cfg = array_config(rows, cols, variant)
    build_name = f"systolic_{rows}x{cols}_{variant.replace('/', '_')}_{form}"
    out_dir = SIM_BUILD_ROOT / build_name
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / f"{TOP}.v"
    if form == "grid":
        text = to_verilog_with_grid(SystolicArray(cfg), TOP, cfg)
    else:
        text = verilog.convert(SystolicArray(cfg), name=TOP, emit_src=False)
    if not source.exists() or source.read_text() != text:
        source.write_text(text)
    env = {"ROWS": rows, "COLS": cols, "DATAFLOW": cfg.dataflow, "INPUT_WIDTH": cfg.input_width,
           "WEIGHT_WIDTH": cfg.weight_width, "ACC_WIDTH": cfg.acc_width, "GROUPS": groups,
           "CLEAR_MID_STREAM": int(clear)}
    run_cocotb(verilog_sources=[source], toplevel=TOP, test_module="sim.tb.tb_systolic",
               build_name=build_name, extra_env=env)
