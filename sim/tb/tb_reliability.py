"""cocotb reliability tests of ``tensor_core``: fuzzing against the golden model, abort,
start while busy, the bus watchdog and SLVERR/DECERR responses.

One simulator run executes many programs on one :class:`~sim.tb.harness.Accelerator`
(the DUT is reset once), so every program also checks that the previous one, whatever way
it ended, left the machine usable. Programs come from :mod:`sim.fuzz`; outcomes are
compared with :func:`sim.fuzz.compare`.

Environment: ``RELIABILITY_CONFIG`` (Config JSON), ``SEED`` (replay), ``FUZZ_PROGRAMS``,
``FUZZ_FAULT_RATE``, ``FUZZ_SUMMARY`` (a JSON summary written by the ``fuzz_programs`` test),
``ABORT_TRIALS``, ``BUS_ERROR_TRIALS``.
"""

import json
import os
import random
from collections import Counter

import cocotb
from cocotb.triggers import ClockCycles

from hw.axi import AxiResp
from hw.config import Config
from sim import fuzz
from sim.tb.harness import Accelerator
from sim.tb.tb_dma import ErrorRanges
from sw.isa import ErrorCause


RUN_TIMEOUT_CYCLES = 100_000   # the longest fuzz program takes ~20k cycles
WATCHDOG_CYCLES = 64
CTRL_START, CTRL_ABORT = 1, 2


def _config():
    return Config.from_json(os.environ["RELIABILITY_CONFIG"])


def _seed(name):
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"{name}: SEED={seed}")
    return seed


async def _accelerator(dut, seed):
    acc = Accelerator(dut, fuzz.MEMORY.size, seed=seed)
    acc.errors = ErrorRanges(acc.ram)
    await acc.reset()
    return acc


async def _start(acc, program):
    acc.ram.write(0, program.image)
    await acc.start(program.prog_base, len(program.words), program.window)


async def _finish(acc, timeout=RUN_TIMEOUT_CYCLES):
    """Wait for the interrupt; returns (dram, error, counters, hang). A hang (the last PC
    and STATUS) is aborted, and if even the abort does not stop it, that is raised."""
    hang = None
    try:
        await acc.wait_done(timeout)
    except TimeoutError as e:
        hang = str(e)
        acc.bus_pauses(0)
        await acc.write_reg("CTRL", CTRL_ABORT)
        try:
            await acc.wait_done(timeout)
        except TimeoutError as again:
            raise AssertionError(f"{hang}; CTRL.abort did not stop it either: {again}") from None
    status, counters, error = await acc.result()
    assert not status & 1, f"STATUS={status:#x} still busy after the interrupt"
    return acc.ram.read(0, fuzz.MEMORY.size), error, counters, hang


async def _run_and_compare(acc, cfg, program, bad_ranges=None):
    await _start(acc, program)
    try:
        dram, error, counters, hang = await _finish(acc)
    except AssertionError as e:
        raise AssertionError(_report(program, [str(e)])) from None
    gold = fuzz.golden_result(cfg, program, bad_ranges)
    problems = fuzz.compare(program, gold, dram, error, _macs(cfg, counters),
                            burst_bytes=cfg.bus_bytes * cfg.max_burst_beats)
    if hang:
        problems.insert(0, f"hang: {hang}")
    return problems, error


def _macs(cfg, counters):
    """PERF_MACS to compare with the golden count (None: the Config does not count them)."""
    return counters["macs_issued"] if cfg.perf_counters == "all" else None


def _report(program, problems):
    return f"MISMATCH {'; '.join(problems)}\n{program.listing()}"


async def _check_usable(acc, cfg, rng, what):
    program = fuzz.generate(rng.randrange(1 << 30), cfg)
    problems, _ = await _run_and_compare(acc, cfg, program)
    assert not problems, f"after {what}: " + _report(program, problems)


@cocotb.test()
async def fuzz_programs(dut):
    """Random programs (valid, or with one injected fault) under random AXI stalls."""
    cfg = _config()
    seed = _seed("fuzz")
    rng = random.Random(seed)
    acc = await _accelerator(dut, seed)
    programs = int(os.environ.get("FUZZ_PROGRAMS", 20))
    fault_rate = float(os.environ.get("FUZZ_FAULT_RATE", 0.5))
    by_fault, outcomes, mismatches = Counter(), Counter(), []
    for index in range(programs):
        fault = rng.choice(fuzz.FAULTS) if rng.random() < fault_rate else None
        program = fuzz.generate(rng.randrange(1 << 30), cfg, fault)
        pauses = rng.choice([0, 0.1, 0.3, 0.6])
        dut._log.info(f"program {index}: seed {program.seed} fault {fault} stalls {pauses}")
        acc.bus_pauses(pauses)
        problems, error = await _run_and_compare(acc, cfg, program)
        acc.bus_pauses(0)
        by_fault[fault or "none"] += 1
        outcomes[ErrorCause(error[0]).name if error else "OK"] += 1
        if problems:
            mismatches.append(f"program {index}: " + _report(program, problems))
            dut._log.error(mismatches[-1])
            if problems[0].startswith("hang"):
                # A machine that hung once tends to hang on every later program.
                programs = index + 1
                break
    summary = {"seed": seed, "programs": programs, "faults": programs - by_fault["none"],
               "by_fault": dict(by_fault), "outcomes": dict(outcomes),
               "mismatches": mismatches}
    dut._log.info(f"fuzz summary: {json.dumps({k: v for k, v in summary.items() if k != 'mismatches'})}"
                  f" mismatches={len(mismatches)}")
    if os.environ.get("FUZZ_SUMMARY"):
        with open(os.environ["FUZZ_SUMMARY"], "w") as f:
            json.dump(summary, f)
    assert not mismatches, f"{len(mismatches)} of {programs} programs differ (SEED={seed})"


@cocotb.test()
async def abort_at_random_cycles(dut):
    """CTRL.abort at a random cycle stops the program (ABORTED, or done if it was over);
    nothing outside the window is written and the same program then runs correctly."""
    cfg = _config()
    seed = _seed("abort")
    rng = random.Random(seed)
    acc = await _accelerator(dut, seed)
    trials = int(os.environ.get("ABORT_TRIALS", 6))
    aborted = 0
    for _ in range(trials):
        program = fuzz.generate(rng.randrange(1 << 30), cfg, blocks=4)
        pauses = rng.choice([0, 0.3])
        acc.bus_pauses(pauses)
        await _start(acc, program)
        dram, error, counters, hang = await _finish(acc)
        assert error is None and hang is None, _report(program, [f"{error} {hang}"])
        at = rng.randrange(counters["cycles"] + 20)
        await _start(acc, program)
        await ClockCycles(dut.clk, at)
        await acc.write_reg("CTRL", CTRL_ABORT)
        dram, error, _, hang = await _finish(acc)
        assert hang is None, hang
        end = program.window[0] + program.window[1]
        assert dram[end:] == program.image[end:], "abort: DRAM outside the window written"
        if error is not None:
            aborted += 1
            assert error[0] == ErrorCause.ABORTED, (at, error)
            assert error[1] <= len(program.words), (at, error)
        acc.bus_pauses(0)
        problems, _ = await _run_and_compare(acc, cfg, program)
        assert not problems, f"rerun after an abort at cycle {at}: " + _report(program, problems)
    dut._log.info(f"abort: {trials} abort cycles tested, {aborted} stopped a running program")
    assert aborted, "no abort landed while a program ran"


@cocotb.test()
async def start_while_busy_is_refused(dut):
    """CTRL.start during a run changes nothing (STATUS, PC); the program's result is right."""
    cfg = _config()
    seed = _seed("start_while_busy")
    rng = random.Random(seed)
    acc = await _accelerator(dut, seed)
    program = fuzz.generate(rng.randrange(1 << 30), cfg, blocks=3)
    await _start(acc, program)
    await ClockCycles(dut.clk, rng.randrange(20, 200))
    acc.bus_pauses(1.0)            # freeze the run so PC cannot move by itself
    pc = -1
    while pc != (pc := await acc.read_reg("PC")):
        await ClockCycles(dut.clk, 50)
    status = await acc.read_reg("STATUS")
    assert status & 1, f"STATUS={status:#x}: the program should still be running"
    await acc.write_reg("PROG_COUNT", 1)
    await acc.write_reg("CTRL", CTRL_START)
    await ClockCycles(dut.clk, 20)
    assert await acc.read_reg("STATUS") == status
    assert await acc.read_reg("PC") == pc, "a refused start moved the PC"
    acc.bus_pauses(0)
    dram, error, counters, _ = await _finish(acc)
    problems = fuzz.compare(program, fuzz.golden_result(cfg, program), dram, error,
                            _macs(cfg, counters))
    assert not problems, _report(program, problems)


_CHANNELS = ("ar_channel", "r_channel", "aw_channel", "w_channel", "b_channel")


def _channel(acc, name):
    iface = acc.ram.read_if if name in ("ar_channel", "r_channel") else acc.ram.write_if
    return getattr(iface, name)


def _forever():
    while True:
        yield True


@cocotb.test()
async def watchdog_turns_a_dead_bus_into_an_error(dut):
    """Each AXI channel of the DRAM stuck in turn: with WATCHDOG set the program stops with
    WATCHDOG instead of hanging, and after the bus is released the next program is right."""
    cfg = _config()
    seed = _seed("watchdog")
    rng = random.Random(seed)
    acc = await _accelerator(dut, seed)
    await acc.write_reg("WATCHDOG", WATCHDOG_CYCLES)
    unusable = []
    for name in _CHANNELS:
        program = fuzz.generate(rng.randrange(1 << 30), cfg, blocks=2)
        await _start(acc, program)
        await ClockCycles(dut.clk, rng.randrange(0, 30))
        _channel(acc, name).set_pause_generator(_forever())
        try:
            await acc.wait_done(50 * WATCHDOG_CYCLES + 20_000)
        finally:
            _channel(acc, name).clear_pause_generator()
            _channel(acc, name).pause = False
        status, counters, error = await acc.result()
        assert error is not None and error[0] == ErrorCause.WATCHDOG, (name, status, error)
        await ClockCycles(dut.clk, 100)
        dut._log.info(f"watchdog: {name} stuck -> WATCHDOG at pc {error[1]}")
        try:
            await _check_usable(acc, cfg, rng, f"a watchdog stop on {name}")
        except AssertionError as e:
            dut._log.error(str(e))
            unusable.append(name)
            # Start the next channel's case from a clean machine (and DRAM model).
            dut.rst.value = 1
            await ClockCycles(dut.clk, 4)
            dut.rst.value = 0
            await ClockCycles(dut.clk, 2)
            await acc.write_reg("WATCHDOG", WATCHDOG_CYCLES)
    await acc.write_reg("WATCHDOG", 0)
    await _check_usable(acc, cfg, rng, "turning the watchdog off")
    assert not unusable, f"wrong results after a watchdog stop on {unusable} (SEED={seed})"


@cocotb.test()
async def bus_errors_report_cause_and_instruction(dut):
    """SLVERR / DECERR on one byte of a LOAD or STORE row: DMA_SLVERR / DMA_DECERR with that
    instruction's index and the row's address, as the golden model with the same bad range."""
    cfg = _config()
    seed = _seed("bus_errors")
    rng = random.Random(seed)
    acc = await _accelerator(dut, seed)
    trials = int(os.environ.get("BUS_ERROR_TRIALS", 6))
    for trial in range(trials):
        program = fuzz.generate(rng.randrange(1 << 30), cfg)
        pc, name, row, addr, nbytes = rng.choice(fuzz.dma_rows(program.words))
        resp = (AxiResp.SLVERR, AxiResp.DECERR)[trial % 2]
        cause = (ErrorCause.DMA_SLVERR, ErrorCause.DMA_DECERR)[trial % 2]
        # AxiRam checks reads a whole beat at a time: poison the beat holding a row byte.
        start = (addr + rng.randrange(nbytes)) // cfg.bus_bytes * cfg.bus_bytes
        bad = range(start, start + cfg.bus_bytes)
        acc.errors.ranges = {bad: resp}
        acc.bus_pauses(rng.choice([0, 0.3]))
        problems, error = await _run_and_compare(acc, cfg, program, {bad: cause})
        acc.bus_pauses(0)
        acc.errors.ranges = {}
        assert not problems, (f"{resp.name} at {bad.start:#x} ({name} pc {pc} row {row}): "
                              + _report(program, problems))
        assert error is not None and error[0] == cause, error
        await _check_usable(acc, cfg, rng, f"{resp.name}")


@cocotb.test(skip=not os.environ.get("FUZZ_REPLAY"))
async def replay(dut):
    """``FUZZ_REPLAY="seed:fault:stalls,..."`` (fault ``None`` or one of sim.fuzz.FAULTS):
    those programs in order on one machine, as the fuzz test printed them."""
    cfg = _config()
    acc = await _accelerator(dut, 0)
    failures = []
    for item in os.environ["FUZZ_REPLAY"].split(","):
        seed, fault, pauses = item.split(":")
        program = fuzz.generate(int(seed), cfg, None if fault == "None" else fault)
        acc.bus_pauses(float(pauses))
        problems, error = await _run_and_compare(acc, cfg, program)
        acc.bus_pauses(0)
        dut._log.info(f"replay {item}: {error} {problems or 'matches golden'}")
        if problems:
            failures.append(_report(program, problems))
    assert not failures, "\n".join(failures)
