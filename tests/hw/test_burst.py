"""hw.burst.BurstGen: property test of the 2D command -> AXI burst splitter."""

import random

from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.axi import AXI_4K
from hw.burst import BurstGen, dma_row_bytes_width, dma_rows_width, rows_fit_a_burst
from hw.config import DMA_CMD_FIELDS, Config
from sw.isa import ErrorCause


ADDR_WIDTH = 20
#: The iCEBreaker's array and memories: with dma_cmd_fields="legal", 9-bit rows and 5-bit
#: row_bytes, rows that fit a burst of 16 beats or more.
SMALL_ARRAY = {"rows": 4, "cols": 4, "scratchpad_kib": 1, "scratchpad_banks": 2,
               "accumulator_kib": 1}


def _config(draw, width, max_beats, addr_width):
    """A BurstGen Config: full command fields, or legal ones for the default or a small
    array (narrow fields; with 16 beats or more a row fits in one burst)."""
    fields = draw(st.sampled_from(DMA_CMD_FIELDS))
    array = draw(st.sampled_from([{}, SMALL_ARRAY])) if fields == "legal" else {}
    return Config(dma_data_width=width, max_burst_beats=max_beats, addr_width=addr_width,
                  dram_size=1 << 12, dma_cmd_fields=fields, **array)


def _row_bytes(draw, cfg, full):
    """Draws from ``full`` for full command fields; else any value the field holds, and
    often the widest."""
    if cfg.dma_cmd_fields == "full":
        return draw(full)
    widest = (1 << dma_row_bytes_width(cfg)) - 1
    return draw(st.one_of(st.just(widest), st.integers(0, widest)))


@st.composite
def scenarios(draw):
    width = draw(st.sampled_from([32, 64, 128]))
    max_beats = draw(st.sampled_from([1, 4, 16, 256]))
    cfg = _config(draw, width, max_beats, ADDR_WIDTH)
    space = 1 << ADDR_WIDTH
    base = draw(st.integers(0, space // 2))
    size = draw(st.integers(1, space - base - 1))
    # Long rows only where they split into a few dozen bursts, to keep the simulation short.
    long_row = min((1 << 16) - 1, 40 * max_beats * width // 8)
    cmds = []
    for _ in range(draw(st.integers(1, 4))):
        row_bytes = _row_bytes(draw, cfg, st.one_of(st.integers(0, 300),
                                                    st.integers(0, long_row)))
        rows = draw(st.integers(0, 5))
        stride = draw(st.one_of(st.integers(0, 5000), st.integers(0, (1 << 32) - 1)))
        addr = draw(st.one_of(st.integers(0, space - 1),
                              st.integers(1, 64).map(lambda d: (base // AXI_4K + 1) * AXI_4K - d)))
        cmds.append({"addr": addr % space, "rows": rows, "row_bytes": row_bytes,
                     "stride": stride})
    return cfg, (base, size), cmds, draw(st.integers(0, 1 << 32))


def expected_end(cmd, window, addr_width):
    base, size = window
    if cmd["rows"] == 0 or cmd["row_bytes"] == 0:
        return [], (ErrorCause.NONE, 0)
    rows = []
    for r in range(cmd["rows"]):
        addr = cmd["addr"] + r * cmd["stride"]
        end = addr + cmd["row_bytes"]
        if not (base <= addr and end <= base + size and end <= 1 << addr_width):
            return rows, (ErrorCause.DMA_WINDOW, addr % (1 << addr_width))
        rows.append(addr)
    return rows, (ErrorCause.NONE, 0)


def check_command(cfg, cmd, window, entries):
    bus = cfg.bus_bytes
    rows, (cause, fault) = expected_end(cmd, window, cfg.addr_width)
    *bursts, end = entries
    assert end["end"] and end["cause"] == cause and end["addr"] == fault, (cmd, end)
    assert end["has_data"] == (cmd["rows"] != 0 and cmd["row_bytes"] != 0)
    assert all(not b["end"] for b in bursts)
    i = 0
    for r, row_addr in enumerate(rows):
        lo = row_addr // bus * bus
        hi = -(-(row_addr + cmd["row_bytes"]) // bus) * bus
        at = lo
        first = True
        while True:
            b = bursts[i]
            i += 1
            beats = b["len"] + 1
            assert b["addr"] == at, (cmd, r, b, hex(at))
            assert beats <= cfg.max_burst_beats, (cmd, b)
            assert at // AXI_4K == (at + beats * bus - 1) // AXI_4K, (cmd, b)
            assert b["offset"] == row_addr % bus and b["row_bytes"] == cmd["row_bytes"]
            assert b["row_first"] == first
            at += beats * bus
            first = False
            assert at <= hi, (cmd, r, b)
            last_of_row = at == hi
            assert b["row_last"] == last_of_row, (cmd, b)
            assert b["cmd_last"] == (last_of_row and r == cmd["rows"] - 1)
            if last_of_row:
                break
    assert i == len(bursts), (cmd, bursts[i:])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_bursts_cover_rows(scenario):
    cfg, window, cmds, seed = scenario
    _run_and_check(cfg, window, cmds, seed)


def test_legal_fields_widest_command_at_page_ends():
    """dma_cmd_fields="legal" on the small array: the most rows and the widest rows the
    fields hold, each row crossing a 4 KiB page (cut once) or ending right at one."""
    cfg = Config(dma_data_width=32, max_burst_beats=16, addr_width=ADDR_WIDTH,
                 dram_size=1 << 12, dma_cmd_fields="legal", **SMALL_ARRAY)
    assert rows_fit_a_burst(cfg)
    rows, widest = (1 << dma_rows_width(cfg)) - 1, (1 << dma_row_bytes_width(cfg)) - 1
    assert (rows, widest) == (511, 31)
    cmds = [{"addr": AXI_4K - 7, "rows": rows, "row_bytes": widest, "stride": AXI_4K},
            {"addr": 3 * AXI_4K - widest, "rows": 3, "row_bytes": widest, "stride": AXI_4K},
            {"addr": 5 * AXI_4K - 1, "rows": 2, "row_bytes": 1, "stride": 1}]
    _run_and_check(cfg, (0, (1 << ADDR_WIDTH) - 1), cmds, seed=1)


def _run_and_check(cfg, window, cmds, seed):
    rng = random.Random(seed)
    dut = BurstGen(cfg)
    results = []

    async def tb(ctx):
        ctx.set(dut.window_base, window[0])
        ctx.set(dut.window_end, window[0] + window[1])
        ctx.set(dut.start, 1)
        for cmd in cmds:
            ctx.set(dut.cmd.p, cmd)
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            entries = []
            while True:
                ready = rng.random() < 0.7
                ctx.set(dut.o.ready, ready)
                _, _, valid, p = await ctx.tick().sample(dut.o.valid, dut.o.p)
                if valid and ready:
                    entry = {name: int(getattr(p, name)) for name, _ in dut.o.p.shape()}
                    entries.append(entry)
                    if entry["end"]:
                        break
            results.append(entries)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    for cmd, entries in zip(cmds, results, strict=True):
        check_command(cfg, cmd, window, entries)


NARROW_WIDTH = 16


@st.composite
def edge_scenarios(draw):
    """Commands at the edges of a narrow address space: rows running past its top, strides
    at or beyond 2**addr_width, windows ending at the top."""
    space = 1 << NARROW_WIDTH
    width = draw(st.sampled_from([32, 64, 128]))
    max_beats = draw(st.sampled_from([1, 4, 256]))
    cfg = _config(draw, width, max_beats, NARROW_WIDTH)
    base = draw(st.one_of(st.just(0), st.integers(0, space - 1),
                          st.integers(space - 600, space - 1)))
    size = draw(st.one_of(st.just(space - base), st.just(space - 1), st.integers(0, space - 1)))
    near_top = st.integers(1, 700).map(lambda d: space - d)
    cmds = []
    for _ in range(draw(st.integers(1, 3))):
        stride = draw(st.one_of(st.integers(0, 700), near_top, st.integers(space, space + 700),
                                st.integers(space, (1 << 32) - 1)))
        cmds.append({"addr": draw(st.one_of(near_top, st.integers(0, space - 1), st.just(0))),
                     "rows": draw(st.integers(1, 4)),
                     "row_bytes": max(1, _row_bytes(draw, cfg, st.integers(1, 700))),
                     "stride": stride})
    return cfg, (base, size % space), cmds, draw(st.integers(0, 1 << 32))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_scenarios())
def test_bursts_at_the_top_of_the_address_space(scenario):
    cfg, window, cmds, seed = scenario
    _run_and_check(cfg, window, cmds, seed)
