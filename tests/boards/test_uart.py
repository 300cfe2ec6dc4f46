"""boards.uart: TX -> RX loopback with random bytes and stalls, framing errors, glitches."""

import os
import random

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from boards.uart import UartRx, UartTx, uart_divisor


DIVISOR = 6


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


def test_divisor():
    assert uart_divisor(12e6, 115200) == 104
    assert uart_divisor(48e6, 115200) == 417
    assert uart_divisor(25e6, 1_000_000) == 25
    with pytest.raises(ValueError, match="baud=6000000 is too fast"):
        uart_divisor(12e6, 6_000_000)
    with pytest.raises(ValueError, match="off"):
        uart_divisor(12e6, 1_500_000 * 1.1)
    with pytest.raises(ValueError, match="divisor"):
        UartRx(2)


def test_loopback_random_bytes_and_stalls():
    rng = random.Random(_seed())
    sent = [rng.randrange(256) for _ in range(60)] + [0x00, 0xFF, 0x55, 0xAA]
    m = Module()
    m.submodules.tx = tx = UartTx(DIVISOR)
    m.submodules.rx = rx = UartRx(DIVISOR)
    m.d.comb += rx.rx.eq(tx.tx)
    received = []

    async def producer(ctx):
        for value in sent:
            for _ in range(rng.choice([0, 0, 3, 40])):
                await ctx.tick()
            ctx.set(tx.i.payload.data, value)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def consumer(ctx):
        errors = 0
        while len(received) < len(sent):
            # Stalls shorter than a byte time never lose data; the sender is the bottleneck.
            ctx.set(rx.o.ready, rng.random() < 0.5)
            _, _, valid, ready, data, ferr, ovr = await ctx.tick().sample(
                rx.o.valid, rx.o.ready, rx.o.payload.data, rx.framing_error, rx.overrun)
            errors += ferr + ovr
            if valid and ready:
                received.append(data)
        assert errors == 0

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run_until(len(sent) * 60 * DIVISOR * 1e-6)
    assert received == sent


async def _drive_bits(ctx, pin, bits):
    for bit in bits:
        ctx.set(pin, bit)
        for _ in range(DIVISOR):
            await ctx.tick()


def _frame(value, stop=1):
    return [0] + [value >> i & 1 for i in range(8)] + [stop]


def test_framing_error_glitch_and_overrun():
    rx = UartRx(DIVISOR)
    events = {"bytes": [], "framing_error": 0, "overrun": 0}

    async def driver(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        # A glitch shorter than half a bit is not a start bit.
        ctx.set(rx.rx, 0)
        await ctx.tick()
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(3 * DIVISOR)
        await _drive_bits(ctx, rx.rx, _frame(0x3C, stop=0))
        # A long break after the bad stop bit produces no bytes.
        await _drive_bits(ctx, rx.rx, [0] * 15 + [1, 1])
        await _drive_bits(ctx, rx.rx, _frame(0xA7) + _frame(0x11) + [1, 1])
        await ctx.tick().repeat(3 * DIVISOR)
        # Read the first byte only now: the second one overran it.
        ctx.set(rx.o.ready, 1)
        await ctx.tick().repeat(2)
        ctx.set(rx.o.ready, 0)
        await _drive_bits(ctx, rx.rx, _frame(0x5A) + [1, 1])
        ctx.set(rx.o.ready, 1)
        await ctx.tick().repeat(3)

    async def monitor(ctx):
        async for _, _, valid, ready, data, ferr, ovr in ctx.tick().sample(
                rx.o.valid, rx.o.ready, rx.o.payload.data, rx.framing_error, rx.overrun):
            if valid and ready:
                events["bytes"].append(data)
            events["framing_error"] += ferr
            events["overrun"] += ovr

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert events == {"bytes": [0xA7, 0x5A], "framing_error": 1, "overrun": 1}
