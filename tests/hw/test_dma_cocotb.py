"""hw.dma.Dma under cocotb + Verilator, with cocotbext-axi's AxiRam as DRAM (sim/tb/tb_dma.py)."""

import pytest

from hw.config import Config
from sim.tb.tb_dma import run_dma_tb


def dma_test_config(width, **changes):
    """Short bursts and few outstanding reads, so splitting and credit limits are exercised."""
    return Config(dma_data_width=width, max_burst_beats=16, max_outstanding=4).replace(**changes)


@pytest.mark.cocotb
@pytest.mark.parametrize("width", [32, 64, 128])
def test_dma_cocotb(width):
    run_dma_tb(dma_test_config(width), f"dma_w{width}")
