import gc
import os
import random
import warnings

import pytest
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from hw.accumulator import Accumulator, acc_addr_width, acc_column_writes, acc_read_unbuffered
from hw.config import Config, ConfigError
from sim import golden


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


def small_config(**kw):
    return Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, **kw)


def random_row(rng, cfg):
    lo, hi = -(1 << (cfg.acc_width - 1)), (1 << (cfg.acc_width - 1)) - 1
    return [rng.choice([lo, hi, -1, rng.randint(lo, hi), rng.randint(-1000, 1000)])
            for _ in range(cfg.cols)]


def wrap_row(cfg, row):
    return [int(v) for v in golden.wrap(row, cfg.acc_width)]


async def put(ctx, stream, payload, rng, p_valid):
    while rng.random() > p_valid:
        await ctx.tick()
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


def run_rounds(cfg, seed, rounds=6):
    """Each round writes a mix of overwrites and accumulates (hot rows hit back to back)
    while reading rows that the round does not write; then every row is read back."""
    rng = random.Random(seed)
    dut = Accumulator(cfg)
    model = {}
    columns = acc_column_writes(cfg)
    full = (1 << cfg.cols) - 1
    hot = rng.sample(range(cfg.acc_rows), 4)
    plan = []
    # Round 0 gives every row a known value; the memory contents have no reset.
    plan.append(([(a, random_row(rng, cfg), 0, full) for a in range(cfg.acc_rows)], []))
    for _ in range(rounds):
        written = set(hot) | set(rng.sample(range(cfg.acc_rows), 8))
        writes = []
        for _ in range(60):
            addr = rng.choice(hot) if rng.random() < 0.6 else rng.choice(sorted(written))
            accumulate = int(rng.random() < 0.7)
            # Column writes (the load unit's) overwrite some columns; results are whole rows.
            mask = rng.choice([full, 1 << rng.randrange(cfg.cols), rng.randint(1, full)]) \
                if columns and not accumulate else full
            writes.append((addr, random_row(rng, cfg), accumulate, mask))
        reads = [rng.choice([a for a in range(cfg.acc_rows) if a not in written])
                 for _ in range(40)]
        plan.append((writes, reads))
    plan.append(([], list(range(cfg.acc_rows))))

    # The expected data of each read is the model before its round's writes.
    expected = []
    for writes, reads in plan:
        expected += [model[a] for a in reads]
        for addr, row, accumulate, mask in writes:
            if accumulate:
                model[addr] = wrap_row(cfg, [o + d for o, d in zip(model[addr], row)])
            else:
                model[addr] = [d if mask >> j & 1 else o
                               for j, (o, d) in enumerate(zip(model.get(addr, row), row))]
    got = []
    progress = {"writes_done": 0, "reads_done": 0}

    async def writer(ctx):
        for n, (writes, _) in enumerate(plan):
            while progress["reads_done"] < n:
                await ctx.tick()
            p_valid = rng.choice([1.0, 0.6])
            for addr, row, accumulate, mask in writes:
                payload = {"addr": addr, "data": row, "accumulate": accumulate}
                if columns:
                    payload["mask"] = mask
                await put(ctx, dut.write, payload, rng, p_valid)
            progress["writes_done"] = n + 1

    async def reader(ctx):
        for n, (_, reads) in enumerate(plan):
            while progress["writes_done"] < n:
                await ctx.tick()
            for addr in reads:
                await put(ctx, dut.read_req, {"addr": addr}, rng, 0.7)
            while len(got) < sum(len(r) for _, r in plan[:n + 1]):
                await ctx.tick()
            progress["reads_done"] = n + 1

    async def responder(ctx):
        while len(got) < len(expected):
            # An unbuffered response must be taken in its cycle (the serial lane's reads).
            ctx.set(dut.read_resp.ready, int(acc_read_unbuffered(cfg) or rng.random() < 0.6))
            _, _, valid, ready, data = await ctx.tick().sample(
                dut.read_resp.valid, dut.read_resp.ready, dut.read_resp.payload.data)
            if valid and ready:
                got.append([data[j] for j in range(cfg.cols)])

    collisions = []

    async def collision_monitor(ctx):
        async for _, _, collision in ctx.tick().sample(dut.read_collision):
            if collision:
                collisions.append(collision)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.add_testbench(responder)
    if cfg.acc_forward == "stall":
        sim.add_process(collision_monitor)
    sim.run()
    assert not collisions, "a read port read the row written in its cycle"
    assert len(got) == len(expected)
    for n, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"read {n}: {g} != {e}"


@pytest.mark.parametrize("acc_read_ports", [2, 1])
@pytest.mark.parametrize("acc_width", [32, 20])
@pytest.mark.parametrize("output_lane", ["pipelined", "serial"])
def test_random_writes_and_reads_match_a_dict_model(acc_width, acc_read_ports, output_lane):
    cfg = small_config(acc_width=acc_width, acc_read_ports=acc_read_ports,
                       output_lane=output_lane, output_lanes=1)
    run_rounds(cfg, _seed())


@pytest.mark.parametrize("acc_read_ports", [2, 1])
@pytest.mark.parametrize("output_lane", ["pipelined", "serial"])
def test_stall_random_writes_and_reads_match_a_dict_model(acc_read_ports, output_lane):
    """acc_forward="stall": the same traffic, exact, and no read meets a write to its row."""
    cfg = small_config(acc_read_ports=acc_read_ports, output_lane=output_lane, output_lanes=1,
                       acc_forward="stall")
    run_rounds(cfg, _seed())


@pytest.mark.parametrize("acc_forward", ["bypass", "stall"])
def test_column_writes_match_a_dict_model(acc_forward):
    """load_writes="columns": overwrites of some columns (mask) among whole-row accumulates."""
    cfg = small_config(acc_read_ports=1, output_lane="serial", output_lanes=1,
                       dma_data_width=32, load_writes="columns", acc_forward=acc_forward)
    assert acc_column_writes(cfg)
    run_rounds(cfg, _seed())


def test_unbuffered_shared_port_reads_every_cycle_without_writes():
    """The serial lane's reads (no response held): a read each cycle while no write comes."""
    cfg = small_config(acc_read_ports=1, output_lane="serial", output_lanes=1)
    assert acc_read_unbuffered(cfg)
    dut = Accumulator(cfg)
    rows = [[a, -a, a << 20, -(a << 20)] for a in range(4)]
    got = []

    async def bench(ctx):
        ctx.set(dut.read_resp.ready, 1)
        ctx.set(dut.write.valid, 1)
        for a, row in enumerate(rows):
            ctx.set(dut.write.payload, {"addr": a, "data": row, "accumulate": 0})
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        await ctx.tick()
        ctx.set(dut.read_req.valid, 1)
        for a in range(len(rows) + 1):
            if a < len(rows):
                assert ctx.get(dut.read_req.ready)
                ctx.set(dut.read_req.payload.addr, a)
            else:
                ctx.set(dut.read_req.valid, 0)
            assert ctx.get(dut.read_resp.valid) == (a > 0)
            if a > 0:
                got.append([ctx.get(dut.read_resp.payload.data[j]) for j in range(cfg.cols)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == rows


@pytest.mark.parametrize("acc_forward", ["bypass", "stall"])
@pytest.mark.parametrize("acc_read_ports", [2, 1])
def test_back_to_back_accumulates_to_one_row_then_read_next_cycle(acc_read_ports, acc_forward):
    """Writes offered every cycle: "bypass" takes one per cycle and the read right after;
    "stall" makes each accumulate, and the read, wait one cycle for the write before it."""
    cfg = small_config(acc_read_ports=acc_read_ports, acc_forward=acc_forward)
    dut = Accumulator(cfg)
    base = [golden.INT32_MAX, golden.INT32_MIN, 5, -7]
    adds = [[1, -1, 3, 7], [2, -2, -10, 0], [golden.INT32_MAX, 1, 1, 1]]
    results = []
    wait = 1 if acc_forward == "stall" else 0

    async def offer(ctx, stream):
        """Hold ``stream`` valid until taken; the cycles it waited."""
        ctx.set(stream.valid, 1)
        waited = 0
        while not ctx.get(stream.ready):
            await ctx.tick()
            waited += 1
        await ctx.tick()
        ctx.set(stream.valid, 0)
        return waited

    async def bench(ctx):
        ctx.set(dut.read_resp.ready, 1)
        ctx.set(dut.write.payload, {"addr": 3, "data": base, "accumulate": 0})
        assert await offer(ctx, dut.write) == 0
        for row in adds:
            ctx.set(dut.write.payload, {"addr": 3, "data": row, "accumulate": 1})
            assert await offer(ctx, dut.write) == wait
        # Read in the cycle right after the last write was accepted.
        ctx.set(dut.read_req.payload.addr, 3)
        assert await offer(ctx, dut.read_req) == wait
        _, _, valid, data = await ctx.tick().sample(dut.read_resp.valid,
                                                    dut.read_resp.payload.data)
        assert valid
        results.append([data[j] for j in range(cfg.cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = base
    for row in adds:
        want = wrap_row(cfg, [a + b for a, b in zip(want, row)])
    # INT32_MAX + 1 + 2 + INT32_MAX = 2**32 + 1 wraps to 1; INT32_MIN - 1 - 2 + 1 to INT32_MAX - 1.
    assert want == [1, golden.INT32_MAX - 1, -1, 1]
    assert results == [want]


def test_a_shared_port_reads_only_between_writes():
    """With one read port a write wins the port: the read waits, then returns the row as
    written, while writes keep going one per cycle."""
    cfg = small_config(acc_read_ports=1)
    dut = Accumulator(cfg)
    row = [7, -8, golden.INT32_MAX, golden.INT32_MIN]

    async def bench(ctx):
        ctx.set(dut.read_resp.ready, 1)
        ctx.set(dut.write.valid, 1)
        ctx.set(dut.write.payload, {"addr": 5, "data": row, "accumulate": 0})
        ctx.set(dut.read_req.valid, 1)
        ctx.set(dut.read_req.payload.addr, 5)
        for _ in range(3):
            assert ctx.get(dut.write.ready) and not ctx.get(dut.read_req.ready)
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        assert ctx.get(dut.read_req.ready)
        await ctx.tick()
        ctx.set(dut.read_req.valid, 0)
        assert ctx.get(dut.read_resp.valid)
        assert [ctx.get(dut.read_resp.payload.data[j]) for j in range(cfg.cols)] == row

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_address_width():
    cfg = small_config()
    assert cfg.acc_rows == 64 and acc_addr_width(cfg) == 6


def test_rejects_a_non_config():
    with warnings.catch_warnings():
        # The half-built component is collected here, not in a later test.
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(TypeError, match="cfg"):
            Accumulator(None)
        gc.collect()


def test_acc_forward_is_validated():
    with pytest.raises(ConfigError, match="acc_forward"):
        Config(acc_forward="forward")
    assert Config().acc_forward == "bypass"


def test_stall_waits_after_a_write_of_the_same_parity_only():
    """acc_forward="stall" checks the lowest address bit: an accumulate waits one cycle after
    a write of a row of its parity (its own or another), never after one of the other parity,
    and an overwrite never waits; the sums stay exact."""
    cfg = small_config(acc_read_ports=1, acc_forward="stall")
    dut = Accumulator(cfg)
    # (addr, accumulate, cycles the write must wait when offered right after the one before)
    plan = [(2, 0, 0), (4, 1, 1), (5, 1, 0), (6, 1, 0), (6, 1, 1), (8, 0, 0), (7, 1, 0)]
    rows = {}

    async def bench(ctx):
        ctx.set(dut.write.valid, 1)
        for n, (addr, accumulate, wait) in enumerate(plan):
            data = [n + 1, -(n + 1), 1000 * n, 7]
            ctx.set(dut.write.payload, {"addr": addr, "data": data, "accumulate": accumulate})
            waited = 0
            while not ctx.get(dut.write.ready):
                await ctx.tick()
                waited += 1
            assert waited == wait, (n, addr)
            old = rows.get(addr, [0] * cfg.cols) if accumulate else [0] * cfg.cols
            rows[addr] = [golden.wrap(o + d, cfg.acc_width) for o, d in zip(old, data)]
            await ctx.tick()
        ctx.set(dut.write.valid, 0)
        await ctx.tick()
        ctx.set(dut.read_resp.ready, 1)
        for addr, want in sorted(rows.items()):
            ctx.set(dut.read_req.valid, 1)
            ctx.set(dut.read_req.payload.addr, addr)
            while not ctx.get(dut.read_req.ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(dut.read_req.valid, 0)
            while not ctx.get(dut.read_resp.valid):
                await ctx.tick()
            assert [ctx.get(dut.read_resp.payload.data[j]) for j in range(cfg.cols)] == want
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
