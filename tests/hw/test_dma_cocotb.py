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


@pytest.mark.cocotb
def test_dma_cocotb_default_config():
    """The default Config (256-beat bursts, ``max_outstanding`` reads in flight) under every
    test, and single-beat rows at the full read rate: ``max_outstanding`` covers AxiRam's
    AR -> R round trip (4 in flight reached 0.66 beats/cycle)."""
    run_dma_tb(Config(), "dma_default",
               extra_env={"DMA_MIN_READ_RATE": 0.95, "DMA_MIN_WRITE_RATE": 0.75})


@pytest.mark.cocotb
def test_dma_cocotb_small_config():
    """The iCEBreaker's DMA (32-bit bus, 17-bit addresses, 16-beat bursts, one read burst
    in flight) under every test, with random stalls on all five channels and the streams."""
    cfg = Config(dma_data_width=32, addr_width=17, id_width=1, max_burst_beats=16,
                 max_outstanding=1, dram_base=0, dram_size=1 << 17)
    run_dma_tb(cfg, "dma_small")


@pytest.mark.cocotb
@pytest.mark.parametrize("width", [32, 64])
def test_dma_cocotb_shared_burst_gen(width):
    """``dma_burst_gens=1``: reads and writes through one burst generator under every test
    (concurrent random traffic with stalls, pipelined reads, faults), on the iCEBreaker's
    DMA and on a wider one with reads in flight."""
    if width == 32:
        cfg = Config(dma_data_width=32, addr_width=17, id_width=1, max_burst_beats=16,
                     max_outstanding=1, dram_base=0, dram_size=1 << 17, dma_burst_gens=1)
    else:
        cfg = dma_test_config(width, dma_burst_gens=1)
    run_dma_tb(cfg, f"dma_shared_w{width}")
