import os
import random

import pytest
from amaranth.back import verilog

from hw.config import Config
from hw.registers import Registers
from sim.runner import SIM_BUILD_ROOT, run_cocotb


CFG = Config(rows=8, cols=4, scratchpad_kib=4, scratchpad_banks=2, accumulator_kib=1,
             dma_data_width=64, max_burst_beats=16, max_outstanding=2,
             dram_base=0x4000_0000, dram_size=0x0100_0000)


def _emit(cfg, name):
    out_dir = SIM_BUILD_ROOT / name
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    text = verilog.convert(Registers(cfg), name=name, emit_src=False)
    # Rewriting an unchanged file would make the runner rebuild the simulator.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


# The iCEBreaker's register block: 17-bit addresses, so the WARL registers are narrow.
SMALL_CFG = Config(rows=4, cols=4, scratchpad_kib=1, scratchpad_banks=2, accumulator_kib=1,
                   dma_data_width=32, addr_width=17, max_burst_beats=16, max_outstanding=1,
                   dram_base=0, dram_size=1 << 17)


@pytest.mark.cocotb
@pytest.mark.parametrize("name, cfg", [("registers", CFG), ("registers_small", SMALL_CFG)])
def test_registers_with_cocotbext_axi(name, cfg):
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    source = _emit(cfg, name)
    run_cocotb(verilog_sources=[source], toplevel=name,
               test_module="sim.tb.tb_registers", build_name=name,
               extra_env={"TC_CONFIG": cfg.to_json(), "SEED": seed})
