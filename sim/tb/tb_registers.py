"""cocotb testbench of the register block (``hw.registers.Registers``, top ``registers``).

The Config comes from the ``TC_CONFIG`` environment variable (``Config.to_json()``); random
values derive from ``SEED``. The bus master is cocotbext-axi's ``AxiLiteMaster``, which
reports a response code in ``.resp`` rather than raising.
"""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from hw import regmap
from hw.config import Config


def _config():
    return Config.from_json(os.environ["TC_CONFIG"])


def _rng(name):
    seed = int(os.environ.get("SEED", "0"))
    return random.Random(f"{seed}-{name}")


def _word(data):
    return int.from_bytes(data, "little")


def _bytes(word):
    return word.to_bytes(regmap.REG_BYTES, "little")


async def _start(dut):
    """Clock, reset, idle inputs and a bus master on ``s_axil__*``."""
    Clock(dut.clk, 10, unit="ns").start()
    for reg in regmap.REGISTERS:
        if reg.access == "ro":
            getattr(dut, reg.name.lower()).value = 0
        if reg.access == "w1c":
            getattr(dut, f"{reg.name.lower()}_set").value = 0
    dut.rst.value = 1
    master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__"),
                           dut.clk, dut.rst)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return master


async def _read(master, reg_or_addr):
    addr = reg_or_addr.offset if isinstance(reg_or_addr, regmap.Register) else reg_or_addr
    result = await master.read(addr, regmap.REG_BYTES)
    return _word(result.data), result.resp


async def _write(master, reg_or_addr, word):
    addr = reg_or_addr.offset if isinstance(reg_or_addr, regmap.Register) else reg_or_addr
    result = await master.write(addr, _bytes(word))
    return result.resp


def _regs(access):
    return [reg for reg in regmap.REGISTERS if reg.access == access]


@cocotb.test()
async def const_registers_match_the_config(dut):
    master = await _start(dut)
    cfg = _config()
    for name, word in regmap.const_values(cfg).items():
        assert await _read(master, regmap.by_name(name)) == (word, AxiResp.OKAY), name
    widths = regmap.by_name("CONFIG_WIDTHS").unpack((await _read(master, regmap.ADDR.CONFIG_WIDTHS))[0])
    assert widths["acc"] == cfg.acc_width and widths["ws"] == int(cfg.has_ws)


@cocotb.test()
async def rw_registers_reset_and_round_trip(dut):
    master = await _start(dut)
    cfg = _config()
    rng = _rng("rw")
    for reg in _regs("rw"):
        assert await _read(master, reg) == (reg.reset_value(cfg), AxiResp.OKAY), reg.name
    for reg in _regs("rw"):
        for word in (rng.getrandbits(regmap.REG_BITS), rng.getrandbits(cfg.addr_width)):
            # A WARL register holds and reads back the legal value (saturated, clipped).
            held = reg.legal_value(cfg, word)
            assert await _write(master, reg, word) == AxiResp.OKAY
            assert await _read(master, reg) == (held, AxiResp.OKAY), reg.name
            assert getattr(dut, reg.name.lower()).value.to_unsigned() == held, reg.name
    # A one-byte write is a write with one WSTRB bit: the other bytes keep their value.
    prog_base = regmap.by_name("PROG_BASE")
    assert await _write(master, prog_base, 0x11223344) == AxiResp.OKAY
    assert (await master.write(prog_base.offset + 2, b"\xab")).resp == AxiResp.OKAY
    assert await _read(master, prog_base) == (prog_base.legal_value(cfg, 0x11AB3344),
                                              AxiResp.OKAY)


@cocotb.test()
async def ro_registers_read_their_inputs(dut):
    master = await _start(dut)
    rng = _rng("ro")
    values = {}
    for reg in _regs("ro"):
        values[reg.name] = rng.getrandbits(reg.width)
        getattr(dut, reg.name.lower()).value = values[reg.name]
    for reg in _regs("ro"):
        assert await _read(master, reg) == (values[reg.name], AxiResp.OKAY), reg.name


@cocotb.test()
async def slverr_on_unmapped_and_read_only(dut):
    master = await _start(dut)
    cfg = _config()
    mapped = set(regmap.OFFSETS.values())
    unmapped = [a for a in range(0, 1 << regmap.ADDR_WIDTH, regmap.REG_BYTES)
                if a not in mapped]
    for addr in unmapped[:2] + unmapped[-1:]:
        assert await _read(master, addr) == (0, AxiResp.SLVERR), hex(addr)
        assert await _write(master, addr, 0xFFFFFFFF) == AxiResp.SLVERR, hex(addr)
    dut.status.value = 0b101
    for reg in _regs("const") + _regs("ro"):
        before = await _read(master, reg)
        assert await _write(master, reg, ~before[0] & 0xFFFFFFFF) == AxiResp.SLVERR, reg.name
        assert await _read(master, reg) == before, reg.name
    for reg in _regs("rw"):
        assert await _read(master, reg) == (reg.reset_value(cfg), AxiResp.OKAY), reg.name


@cocotb.test()
async def ctrl_pulses_one_cycle_and_irq_status_is_w1c(dut):
    master = await _start(dut)
    ctrl, irq = regmap.by_name("CTRL"), regmap.by_name("IRQ_STATUS")
    pulses = []

    async def monitor():
        while True:
            await RisingEdge(dut.clk)
            value = dut.ctrl.value.to_unsigned()
            if value:
                pulses.append(value)

    task = cocotb.start_soon(monitor())
    start, abort = ctrl.pack(start=1), ctrl.pack(abort=1)
    assert await _write(master, ctrl, start) == AxiResp.OKAY
    assert await _write(master, ctrl, abort) == AxiResp.OKAY
    assert await _read(master, ctrl) == (0, AxiResp.OKAY)
    await ClockCycles(dut.clk, 3)
    task.cancel()
    assert pulses == [start, abort], f"one single-cycle pulse per write, got {pulses}"

    done, error = irq.pack(done=1), irq.pack(error=1)
    await RisingEdge(dut.clk)
    dut.irq_status_set.value = done | error
    await RisingEdge(dut.clk)
    dut.irq_status_set.value = 0
    assert await _read(master, irq) == (done | error, AxiResp.OKAY)
    assert await _write(master, irq, done) == AxiResp.OKAY
    assert await _read(master, irq) == (error, AxiResp.OKAY)
    assert dut.irq_status.value.to_unsigned() == error
