import os
import random

import pytest
from amaranth.back import verilog

from hw.config import Config
from hw.output_pipeline import OutputPipeline
from sim.runner import SIM_BUILD_ROOT, run_cocotb


@pytest.mark.cocotb
@pytest.mark.parametrize("cols, lanes", [(4, 2), (16, 16)])
def test_output_pipeline_verilog(cols, lanes):
    cfg = Config(rows=4, cols=cols, output_lanes=lanes, scratchpad_kib=16, accumulator_kib=4)
    name = f"output_pipeline_c{cols}_l{lanes}"
    out_dir = SIM_BUILD_ROOT / name
    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "output_pipeline.v"
    source.write_text(verilog.convert(OutputPipeline(cfg), name="output_pipeline",
                                      emit_src=False))
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    run_cocotb(verilog_sources=[source], toplevel="output_pipeline",
               test_module="sim.tb.tb_output_pipeline", build_name=name,
               extra_env={"CONFIG": cfg.to_json(), "SEED": seed})
