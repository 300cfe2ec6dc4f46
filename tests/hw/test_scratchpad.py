import gc
import os
import random

import pytest
from amaranth.sim import Simulator

from hw.config import Config
from hw.scratchpad import Scratchpad, sp_bank_bits


CFG = Config(rows=8, cols=4, scratchpad_kib=1, scratchpad_banks=4, accumulator_kib=1)
# A read port holding one row (``read_req.ready`` follows ``read_resp.ready``).
CFG_ONE_ROW = CFG.replace(sp_read_buffer=1)
ROW_BITS = 8 * CFG.sp_row_elems
BANK_ROWS = CFG.sp_bank_rows
TIMEOUT = 2000


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


def _addr(rng, bank):
    return (bank << sp_bank_bits(CFG)) | rng.randrange(BANK_ROWS)


def _row(rng):
    # Extremes of int8 as bytes (0x80 = -128, 0x7f = 127) as well as random rows.
    return rng.choice([
        rng.getrandbits(ROW_BITS),
        int.from_bytes(bytes([0x80, 0x7F] * (CFG.sp_row_elems // 2)), "little"),
        (1 << ROW_BITS) - 1,
    ])


def _simulate(dut, benches, background=()):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    sim.run()


def _writer(dut, jobs, rng, log, max_gap):
    async def bench(ctx):
        cycle = 0
        for addr, row in jobs:
            for _ in range(rng.choice([0, 0, rng.randrange(max_gap + 1)])):
                await ctx.tick()
                cycle += 1
            ctx.set(dut.write.payload.addr, addr)
            ctx.set(dut.write.payload.data.as_value(), row)
            ctx.set(dut.write.valid, 1)
            while True:
                _, _, fire = await ctx.tick().sample(dut.write.ready)
                cycle += 1
                if fire:
                    log.append((cycle - 1, addr, row))
                    break
                assert cycle < TIMEOUT, "write starved"
            ctx.set(dut.write.valid, 0)
    return bench


def _requester(dut, port, addrs, rng, log, max_gap):
    req = dut.read_req[port]

    async def bench(ctx):
        cycle = 0
        for addr in addrs:
            for _ in range(rng.choice([0, 0, rng.randrange(max_gap + 1)])):
                await ctx.tick()
                cycle += 1
            ctx.set(req.payload.addr, addr)
            ctx.set(req.valid, 1)
            while True:
                _, _, fire = await ctx.tick().sample(req.ready)
                cycle += 1
                if fire:
                    log.append((cycle - 1, addr))
                    break
                assert cycle < TIMEOUT, f"read port {port} starved"
            ctx.set(req.valid, 0)
    return bench


def _consumer(dut, port, count, rng, out, stall):
    resp = dut.read_resp[port]

    async def bench(ctx):
        cycle = 0
        held = None
        while len(out) < count:
            ready = rng.random() >= stall
            ctx.set(resp.ready, ready)
            _, _, valid, data = await ctx.tick().sample(resp.valid, resp.payload.data.as_value())
            if held is not None:
                assert valid and data == held, f"port {port}: response changed while stalled"
            if valid and ready:
                out.append((cycle, data))
                held = None
            elif valid:
                held = data
            cycle += 1
            assert cycle < TIMEOUT, f"read port {port}: responses missing"
        ctx.set(resp.ready, 0)
    return bench


def _priority_monitor(dut, violations):
    """Fixed priority: a read that fires denies the bank to lower reads and to the write; a
    read that asks for a bank, even one waiting for room, denies it to the write."""
    bank_bits = sp_bank_bits(CFG)
    ports = [dut.read_req[0], dut.read_req[1], dut.write]

    async def bench(ctx):
        signals = [s for port in ports for s in (port.valid, port.ready, port.payload.addr)]
        async for _, _, *values in ctx.tick().sample(*signals):
            busy, asked = set(), set()
            for i in range(len(ports)):
                valid, ready, addr = values[3 * i:3 * i + 3]
                bank = addr >> bank_bits
                denied = asked if ports[i] is dut.write else busy
                if valid and bank in denied and ready:
                    violations.append((i, bank))
                if valid and ready:
                    busy.add(bank)
                if valid:
                    asked.add(bank)
    return bench


def _expected_reads(write_log, read_log):
    """Each read returns the latest write accepted in an earlier cycle (zeros if none)."""
    expected = []
    for cycle, addr in read_log:
        value = 0
        for w_cycle, w_addr, row in write_log:
            if w_cycle < cycle and w_addr == addr:
                value = row
        expected.append(value)
    return expected


@pytest.mark.parametrize("cfg", [CFG, CFG_ONE_ROW], ids=["two_rows", "one_row"])
@pytest.mark.parametrize("traffic", ["random_banks", "one_bank", "two_banks"])
def test_random_traffic_matches_model(traffic, cfg):
    seed = _seed()
    rng = random.Random(f"{seed}-{traffic}")
    dut = Scratchpad(cfg, read_ports=2)
    banks = {"random_banks": range(CFG.scratchpad_banks), "one_bank": [1],
             "two_banks": [0, 3]}[traffic]
    # Few distinct rows, so reads often hit rows written moments before.
    rows = [_addr(rng, rng.choice(banks)) for _ in range(12)]
    n = 150
    writes = [(rng.choice(rows), _row(rng)) for _ in range(n)]
    reads = [[rng.choice(rows) for _ in range(n)] for _ in range(2)]
    write_log, read_logs, outs, violations = [], [[], []], [[], []], []
    benches = [_writer(dut, writes, rng, write_log, 3)]
    for port in range(2):
        benches.append(_requester(dut, port, reads[port], random.Random(rng.random()),
                                  read_logs[port], 3))
        benches.append(_consumer(dut, port, n, random.Random(rng.random()), outs[port],
                                 stall=0.3))
    _simulate(dut, benches, background=[_priority_monitor(dut, violations)])

    assert not violations, f"priority violated (port, bank): {violations[:5]}"
    assert [(a, r) for _, a, r in write_log] == writes
    for port in range(2):
        assert [a for _, a in read_logs[port]] == reads[port]
        expected = _expected_reads(write_log, read_logs[port])
        got = [data for _, data in outs[port]]
        mismatches = [(k, hex(g), hex(e)) for k, (g, e) in enumerate(zip(got, expected)) if g != e]
        assert not mismatches, f"port {port} (index, got, expected): {mismatches[:5]}"
        for (req_cycle, _), (resp_cycle, _) in zip(read_logs[port], outs[port]):
            assert resp_cycle > req_cycle, "a response came before its request"


@pytest.mark.parametrize("cfg", [CFG, CFG_ONE_ROW], ids=["two_rows", "one_row"])
def test_disjoint_banks_run_at_full_throughput(cfg):
    """Reader 0 on bank 0, reader 1 on bank 1 and the writer on bank 2, all streaming with
    no backpressure: each is accepted every cycle and every response comes 1 cycle later."""
    rng = random.Random(0)
    dut = Scratchpad(cfg, read_ports=2)
    n = 24
    reads = [[_addr(rng, 0) for _ in range(n)], [_addr(rng, 1) for _ in range(n)]]
    writes = [(_addr(rng, 2), _row(rng)) for _ in range(n)]
    write_log, read_logs, outs = [], [[], []], [[], []]
    benches = [_writer(dut, writes, random.Random(1), write_log, 0)]
    for port in range(2):
        benches.append(_requester(dut, port, reads[port], random.Random(2), read_logs[port], 0))
        benches.append(_consumer(dut, port, n, random.Random(3), outs[port], stall=0.0))
    _simulate(dut, benches)

    assert [c for c, _, _ in write_log] == list(range(n))
    for port in range(2):
        assert [c for c, _ in read_logs[port]] == list(range(n))
        assert [c for c, _ in outs[port]] == list(range(1, n + 1))


def test_same_bank_priority_is_cycle_exact():
    """All three on one bank: read port 0 streams first, then port 1, then the write."""
    rng = random.Random(0)
    dut = Scratchpad(CFG, read_ports=2)
    n = 6
    reads = [[_addr(rng, 3) for _ in range(n)] for _ in range(2)]
    writes = [(_addr(rng, 3), _row(rng)) for _ in range(n)]
    write_log, read_logs, outs = [], [[], []], [[], []]
    benches = [_writer(dut, writes, random.Random(1), write_log, 0)]
    for port in range(2):
        benches.append(_requester(dut, port, reads[port], random.Random(2), read_logs[port], 0))
        benches.append(_consumer(dut, port, n, random.Random(3), outs[port], stall=0.0))
    _simulate(dut, benches)

    assert [c for c, _ in read_logs[0]] == list(range(n))
    assert [c for c, _ in read_logs[1]] == list(range(n, 2 * n))
    assert [c for c, _, _ in write_log] == list(range(2 * n, 3 * n))


def test_write_ready_does_not_follow_a_readers_ready():
    """A one-row port whose row is not taken keeps asking for bank 0: the write to bank 0
    waits whatever ``read_resp.ready`` does (no path from the reader's ``ready`` to the
    writer's), and a write to bank 1 goes at once."""
    rng = random.Random(0)
    dut = Scratchpad(CFG_ONE_ROW, read_ports=1)

    async def bench(ctx):
        req, resp = dut.read_req[0], dut.read_resp[0]
        ctx.set(resp.ready, 0)
        ctx.set(req.valid, 1)
        ctx.set(req.payload.addr, _addr(rng, 0))
        await ctx.tick()                            # the port now holds one row
        ctx.set(dut.write.valid, 1)
        ctx.set(dut.write.payload.addr, _addr(rng, 0))
        for ready in (0, 1):
            ctx.set(resp.ready, ready)
            assert ctx.get(req.ready) == ready      # the read could go when its row leaves
            assert not ctx.get(dut.write.ready)
        ctx.set(resp.ready, 0)
        ctx.set(dut.write.payload.addr, _addr(rng, 1))
        assert ctx.get(dut.write.ready)

    _simulate(dut, [bench])


@pytest.mark.parametrize("cfg", [CFG, CFG_ONE_ROW], ids=["two_rows", "one_row"])
def test_stalled_port_holds_its_rows_then_stops(cfg):
    rows = cfg.sp_read_buffer
    rng = random.Random(0)
    dut = Scratchpad(cfg, read_ports=1)
    addrs = [_addr(rng, 0) for _ in range(4)]

    async def bench(ctx):
        req, resp = dut.read_req[0], dut.read_resp[0]
        ctx.set(resp.ready, 0)
        ctx.set(req.valid, 1)
        accepted = []
        for cycle in range(6):
            ctx.set(req.payload.addr, addrs[len(accepted)])
            if ctx.get(req.ready):
                accepted.append(cycle)
            await ctx.tick()
        assert accepted == list(range(rows)), "the port's rows fit, the next request waits"
        ctx.set(req.valid, 0)
        ctx.set(resp.ready, 1)
        for _ in range(rows):
            assert ctx.get(resp.valid)
            await ctx.tick()
        assert not ctx.get(resp.valid)

    _simulate(dut, [bench])


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="read_ports"):
        Scratchpad(CFG, read_ports=0)
    with pytest.raises(TypeError, match="cfg"):
        Scratchpad(None)
    gc.collect()
