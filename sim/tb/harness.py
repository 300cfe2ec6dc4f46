"""cocotb harness of the accelerator top (``tensor_core``): DRAM, registers, run a program.

DRAM is cocotbext-axi's ``AxiRam`` on ``m_axi``, optionally with random pauses on all five
channels; the registers are driven by an ``AxiLiteMaster`` on ``s_axil``. The host's view
is the same as a driver's: write the image, program the registers, start, wait for the
interrupt (an edge, so the simulation runs without Python in the loop), read back.
"""

import logging
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from hw import regmap
from sw.isa import ErrorCause

__all__ = ["Accelerator", "run_program"]

CLOCK_NS = 10
ADDR = regmap.OFFSETS
STATUS_ERROR = 1 << regmap.FIELDS.STATUS.error.lsb


def _random_pauses(rng, probability):
    while True:
        yield rng.random() < probability


class Accelerator:
    """The top level under test with its DRAM and register bus."""

    def __init__(self, dut, dram_size, seed=None):
        self.dut = dut
        self.rng = random.Random(seed)
        self.dram_size = dram_size
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi", bus_separator="__"), dut.clk,
                          dut.rst, size=dram_size)
        self.regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"),
                                  dut.clk, dut.rst)
        for log in (self.ram.write_if.log, self.ram.read_if.log, self.regs.write_if.log,
                    self.regs.read_if.log):
            log.setLevel(logging.WARNING)

    async def reset(self):
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)

    def bus_pauses(self, probability):
        """Random stalls on all five AXI channels of the DRAM."""
        channels = (self.ram.write_if.aw_channel, self.ram.write_if.w_channel,
                    self.ram.write_if.b_channel, self.ram.read_if.ar_channel,
                    self.ram.read_if.r_channel)
        for channel in channels:
            if probability:
                channel.set_pause_generator(_random_pauses(self.rng, probability))
            else:
                # cocotbext-axi keeps the generator's last value: a channel cleared while
                # paused would stay paused for good.
                channel.clear_pause_generator()
                channel.pause = False

    async def read_reg(self, name):
        return int.from_bytes((await self.regs.read(ADDR[name], 4)).data, "little")

    async def write_reg(self, name, value):
        await self.regs.write(ADDR[name], int(value).to_bytes(4, "little"))

    async def start(self, prog_base, prog_count, window):
        await self.write_reg("DRAM_BASE", window[0])
        await self.write_reg("DRAM_SIZE", window[1])
        await self.write_reg("PROG_BASE", prog_base)
        await self.write_reg("PROG_COUNT", prog_count)
        await self.write_reg("IRQ_STATUS", 0b11)
        await self.write_reg("IRQ_ENABLE", 0b11)
        await self.write_reg("CTRL", 1)

    async def wait_done(self, timeout_cycles=None, progress=None, progress_every=200_000):
        """Wait for the interrupt; ``progress(cycles)`` is called every ``progress_every``."""
        waited = 0
        while not int(self.dut.irq.value):
            chunk = progress_every if timeout_cycles is None else min(
                progress_every, timeout_cycles - waited)
            if chunk <= 0:
                pc = await self.read_reg("PC")
                status = await self.read_reg("STATUS")
                raise TimeoutError(f"no interrupt after {waited} cycles: PC={pc}"
                                   f" STATUS={status:#x}")
            await First(RisingEdge(self.dut.irq), ClockCycles(self.dut.clk, chunk))
            waited += chunk
            if progress is not None and not int(self.dut.irq.value):
                progress(waited)

    async def result(self):
        status = await self.read_reg("STATUS")
        counters = {
            "cycles": await self.read_reg("PERF_CYCLES"),
            "busy_load": await self.read_reg("PERF_BUSY_LOAD"),
            "busy_exec": await self.read_reg("PERF_BUSY_EXEC"),
            "busy_store": await self.read_reg("PERF_BUSY_STORE"),
            "stall_exec": await self.read_reg("PERF_STALL"),
            "dma_bytes_read": await self.read_reg("PERF_DMA_RD_BYTES"),
            "dma_bytes_written": await self.read_reg("PERF_DMA_WR_BYTES"),
            "macs_issued": (await self.read_reg("PERF_MACS_LO"))
            | (await self.read_reg("PERF_MACS_HI")) << 32,
            "instructions": await self.read_reg("PC"),
        }
        error = None
        if status & STATUS_ERROR:
            error = [await self.read_reg("ERR_CAUSE"), await self.read_reg("ERR_PC"),
                     await self.read_reg("ERR_ADDR")]
        return status, counters, error


async def run_program(dut, image, dram_base, prog_base, prog_count, window=None,
                      backpressure=False, seed=None, timeout_cycles=None, progress_path=None):
    """Run one program on the top level; returns dram, cycles, counters and error."""
    size = dram_base + len(image)
    size = -(-size // 4096) * 4096
    acc = Accelerator(dut, size, seed=seed)
    acc.ram.write(dram_base, bytes(image))
    await acc.reset()
    if backpressure:
        acc.bus_pauses(0.3)
    window = window or (dram_base, len(image))

    def progress(cycles):
        if progress_path is not None:
            with open(progress_path, "a") as f:
                f.write(f"  ... {cycles} cycles simulated\n")

    await acc.start(prog_base, prog_count, window)
    await acc.wait_done(timeout_cycles, progress)
    if backpressure:
        acc.bus_pauses(0)
    status, counters, error = await acc.result()
    dram = acc.ram.read(dram_base, len(image))
    return {"dram": dram, "cycles": counters["cycles"], "counters": counters,
            "error": error, "status": status}
