# amaranth: UnusedElaboratable=no
"""hw.systolic.SystolicArray in amaranth.sim against sim.golden.matmul."""

import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.config import Config, ConfigError
from hw.mac import MacCell
from hw.mac_grid import MacGrid, psum_width
from hw.systolic import SystolicArray
from sim.golden import matmul
from sim.tb.tb_systolic import random_values


def make_config(rows, cols, dataflow, **knobs):
    """A Config of any shape: memories sized so that every rectangular shape is legal."""
    return Config(rows=rows, cols=cols, dataflow=dataflow, scratchpad_kib=max(rows, cols),
                  accumulator_kib=cols, **knobs)


# The WS-only array with each activation broadcast along its row (array_feed="broadcast"),
# and the same with one weight buffer (weight_buffers=1: no shadow weights).
WS_BROADCAST = "ws/broadcast"
WS_BROADCAST_1BUF = "ws/broadcast/1buf"


def array_config(rows, cols, variant, **knobs):
    """make_config for a dataflow, or for WS_BROADCAST / WS_BROADCAST_1BUF."""
    if variant == WS_BROADCAST:
        return make_config(rows, cols, "ws", array_feed="broadcast", **knobs)
    if variant == WS_BROADCAST_1BUF:
        return make_config(rows, cols, "ws", array_feed="broadcast", weight_buffers=1, **knobs)
    return make_config(rows, cols, variant, **knobs)


def seed_for(name):
    seed = int(os.environ.get("SEED", np.random.SeedSequence().entropy % (1 << 32)))
    print(f"{name}: SEED={seed}")
    return seed


class Job:
    """Groups offered to the array in order, the WS tiles they use, and the rows expected."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.groups = []   # ("ws", A[M, R]) or ("os", A[R, K], B[K, C])
        self.tiles = []    # W[R, C], one per WS group, in order

    def ws(self, a, w):
        self.groups.append(("ws", np.asarray(a)))
        self.tiles.append(np.asarray(w))

    def os(self, a, b):
        self.groups.append(("os", np.asarray(a), np.asarray(b)))

    def expected(self):
        cfg = self.cfg
        rows = []
        tiles = iter(self.tiles)
        for group in self.groups:
            if group[0] == "ws":
                result = matmul(group[1], next(tiles), cfg.acc_width, cfg.input_width,
                                cfg.weight_width)
            else:
                result = matmul(group[1], group[2], cfg.acc_width, cfg.input_width,
                                cfg.weight_width)
            rows += [(list(row), i == len(result) - 1) for i, row in enumerate(result)]
        return rows


class Trace:
    """Cycle numbers of every handshake, and the output rows."""

    def __init__(self):
        self.ws = []        # cycles of accepted ws_in beats
        self.os_last = []   # cycles of accepted os_in beats with last
        self.preload = []   # cycles of accepted preload beats
        self.out = []       # (cycle, data, last)


def run(cfg, job, *, seed=0, gap=0.0, ready=1.0, max_cycles=None, dirty_beats=0,
        dirty_ws=False):
    """Simulate `job` with random valid gaps (probability `gap` per beat, repeated) and a
    random `out.ready` (probability `ready`); return the Trace. With `dirty_beats`, first
    leave the array mid-work (that many OS beats of an unfinished group, a partial WS tile)
    and pulse `clear`. With `dirty_ws` instead, that many WS beats of an unfinished group
    (after a whole tile), back to back, and `clear` in the next cycle: their partial sums are
    in the array, none has reached `out`."""
    dut = SystolicArray(cfg)
    rng = np.random.default_rng(seed)
    expected_rows = len(job.expected())
    trace = Trace()
    if max_cycles is None:
        beats = sum(len(g[1]) if g[0] == "ws" else g[1].shape[1] + cfg.rows for g in job.groups)
        beats += len(job.tiles) * cfg.rows
        max_cycles = int((beats + 4 * (cfg.rows + cfg.cols)) * 4 / min(ready, 1 - gap) + 100)

    async def send(ctx, stream, payload, gap=gap):
        while rng.random() < gap:
            await ctx.tick()
        ctx.set(stream.payload, payload)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    cleared = not dirty_beats

    async def make_dirty(ctx):
        nonlocal cleared
        values = lambda n, w: [int(v) for v in random_values(rng, n, w)]  # noqa: E731
        if dirty_ws:
            assert dirty_beats < min(dut.latency, cfg.rows), "a row would leave before clear"
            # A whole tile, then the beats with no gap.
            for _ in range(cfg.rows):
                await send(ctx, dut.preload, {"data": values(cfg.cols, cfg.weight_width)})
            for _ in range(dirty_beats):
                await send(ctx, dut.ws_in, {"data": values(cfg.rows, cfg.input_width),
                                            "last": 0}, gap=0)
        for _ in range(0 if dirty_ws else dirty_beats):
            if cfg.has_os:
                await send(ctx, dut.os_in, {"a": values(cfg.rows, cfg.input_width),
                                            "b": values(cfg.cols, cfg.weight_width),
                                            "last": 0})
            if cfg.has_ws and cfg.rows > 1:
                await send(ctx, dut.preload, {"data": values(cfg.cols, cfg.weight_width)})
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        cleared = True

    async def wait_cleared(ctx):
        while not cleared:
            await ctx.tick()

    async def preload_driver(ctx):
        await wait_cleared(ctx)
        for tile in job.tiles:
            for row in tile:
                await send(ctx, dut.preload, {"data": [int(v) for v in row]})

    async def group_driver(ctx):
        if dirty_beats:
            await make_dirty(ctx)
        for group in job.groups:
            if group[0] == "ws":
                a = group[1]
                for m, row in enumerate(a):
                    await send(ctx, dut.ws_in, {"data": [int(v) for v in row],
                                                "last": int(m == len(a) - 1)})
            else:
                a, b = group[1], group[2]
                depth = a.shape[1]
                for k in range(depth):
                    await send(ctx, dut.os_in, {"a": [int(v) for v in a[:, k]],
                                                "b": [int(v) for v in b[k]],
                                                "last": int(k == depth - 1)})

    async def sink(ctx):
        for _ in range(max_cycles):
            ctx.set(dut.out.ready, int(rng.random() < ready))
            await ctx.tick()
            if len(trace.out) == expected_rows:
                return
        raise AssertionError(f"timeout: {len(trace.out)} of {expected_rows} rows after"
                             f" {max_cycles} cycles")

    watched = [dut.out.valid, dut.out.ready, dut.out.payload]
    if cfg.has_ws:
        watched += [dut.ws_in.valid, dut.ws_in.ready, dut.preload.valid, dut.preload.ready]
    if cfg.has_os:
        watched += [dut.os_in.valid, dut.os_in.ready, dut.os_in.payload]

    async def monitor(ctx):
        cycle = 0
        async for _clk, _rst, *values in ctx.tick().sample(*watched):
            out_valid, out_ready, out_payload, *rest = values
            if out_valid and out_ready:
                trace.out.append((cycle, list(out_payload.data), bool(out_payload.last)))
            if cfg.has_ws:
                ws_valid, ws_ready, pl_valid, pl_ready, *rest = rest
                if ws_valid and ws_ready:
                    trace.ws.append(cycle)
                if pl_valid and pl_ready:
                    trace.preload.append(cycle)
            if cfg.has_os:
                os_valid, os_ready, os_payload = rest
                if os_valid and os_ready and os_payload.last:
                    trace.os_last.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    if cfg.has_ws:
        sim.add_testbench(preload_driver)
    sim.add_testbench(group_driver)
    sim.add_testbench(sink)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return trace


def check(cfg, job, trace):
    got = [(data, last) for _, data, last in trace.out]
    want = job.expected()
    assert len(got) == len(want)
    for i, ((data, last), (want_data, want_last)) in enumerate(zip(got, want)):
        assert data == [int(v) for v in want_data], f"row {i}: {data} != {list(want_data)}"
        assert last == want_last, f"row {i}: last={last}, expected {want_last}"


def random_job(cfg, rng, groups, max_len):
    job = Job(cfg)
    R, C = cfg.rows, cfg.cols
    kinds = {"ws": ["ws"], "os": ["os"], "both": ["ws", "os"]}[cfg.dataflow]
    for g in range(groups):
        kind = kinds[rng.integers(len(kinds))]
        # Lengths of 1, below R + C and longer ones.
        length = int(rng.choice([1, rng.integers(1, R + C + 1), rng.integers(1, max_len + 1)]))
        if kind == "ws":
            job.ws(random_values(rng, (length, R), cfg.input_width),
                   random_values(rng, (R, C), cfg.weight_width))
        else:
            job.os(random_values(rng, (R, length), cfg.input_width),
                   random_values(rng, (length, C), cfg.weight_width))
    return job


SHAPES = [(1, 1), (2, 3), (4, 4), (8, 4), (3, 7)]


@pytest.mark.parametrize("dataflow", ["ws", "os", "both", WS_BROADCAST, WS_BROADCAST_1BUF])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{r}x{c}" for r, c in SHAPES])
def test_random_groups_with_stalls(shape, dataflow):
    cfg = array_config(*shape, dataflow)
    seed = seed_for(f"random {shape} {dataflow}")
    rng = np.random.default_rng(seed)
    job = random_job(cfg, rng, groups=6, max_len=3 * (cfg.rows + cfg.cols))
    trace = run(cfg, job, seed=seed, gap=0.3, ready=0.6)
    check(cfg, job, trace)


@pytest.mark.parametrize("dataflow", ["ws", "os", "both"])
def test_clear_mid_work_leaves_a_clean_array(dataflow):
    """`clear` during an unfinished OS group and a partial WS tile: what follows is exact."""
    cfg = make_config(4, 3, dataflow)
    seed = seed_for(f"clear {dataflow}")
    rng = np.random.default_rng(seed)
    job = random_job(cfg, rng, groups=4, max_len=2 * (cfg.rows + cfg.cols))
    trace = run(cfg, job, seed=seed, gap=0.2, ready=0.7, dirty_beats=cfg.rows - 1)
    check(cfg, job, trace)


@pytest.mark.parametrize("dataflow", ["ws", "both", WS_BROADCAST, WS_BROADCAST_1BUF])
def test_clear_mid_ws_stream_leaves_exact_results(dataflow):
    """`clear` while WS partial sums are in the array (a WS-only array does not reset them):
    every row after it is exact."""
    cfg = array_config(4, 3, dataflow)
    seed = seed_for(f"clear mid-stream {dataflow}")
    rng = np.random.default_rng(seed)
    job = random_job(cfg, rng, groups=4, max_len=2 * (cfg.rows + cfg.cols))
    trace = run(cfg, job, seed=seed, gap=0.2, ready=0.7, dirty_beats=cfg.rows - 1,
                dirty_ws=True)
    check(cfg, job, trace)


@pytest.mark.parametrize("dataflow", ["ws", "os", "both", WS_BROADCAST, WS_BROADCAST_1BUF])
def test_random_groups_full_rate(dataflow):
    cfg = array_config(4, 4, dataflow)
    seed = seed_for(f"full rate {dataflow}")
    rng = np.random.default_rng(seed)
    job = random_job(cfg, rng, groups=8, max_len=20)
    check(cfg, job, run(cfg, job, seed=seed))


def test_narrow_widths_and_accumulator_wrap():
    # 16-bit accumulators wrap after a few hundred extreme products.
    cfg = make_config(3, 2, "both", input_width=5, weight_width=4, acc_width=16)
    seed = seed_for("wrap")
    rng = np.random.default_rng(seed)
    job = Job(cfg)
    depth = 600
    job.os(np.full((3, depth), -16), np.full((depth, 2), -8))
    job.os(random_values(rng, (3, depth), 5), random_values(rng, (depth, 2), 4))
    job.ws(random_values(rng, (5, 3), 5), random_values(rng, (3, 2), 4))
    assert int(matmul(np.full((1, depth), -16), np.full((depth, 1), -8), 16)[0, 0]) \
        != 16 * 8 * depth
    check(cfg, job, run(cfg, job, seed=seed, gap=0.2, ready=0.7))


def test_ws_partial_sum_width_is_the_exact_bound():
    # R products of -2**(iw-1) * -2**(ww-1) = 2**(iw+ww-2) each: 4 * 2**14 = 2**16 needs 18
    # bits, 17 for 3 rows (3 * 2**14 < 2**16), the product's 16 for one row.
    for rows, width in [(1, 16), (2, 17), (3, 17), (4, 18), (5, 18), (8, 19), (16, 20)]:
        cfg = make_config(rows, 2, "ws")
        assert psum_width(cfg) == width
        largest = rows * (-128) * (-128)
        assert largest <= (1 << (width - 1)) - 1 and largest > (1 << (width - 2)) - 1
    assert psum_width(make_config(4, 4, "ws", input_width=5, weight_width=4, acc_width=16)) == 11
    # Never wider than the accumulator, and full width wherever OS is built.
    assert psum_width(make_config(8, 2, "ws", acc_width=16)) == 16
    assert psum_width(make_config(4, 4, "both")) == psum_width(make_config(4, 4, "os")) == 32


WS_EXTREME_SHAPES = [(4, 4), (1, 3), (3, 2), (8, 4)]


@pytest.mark.parametrize("variant", ["ws", WS_BROADCAST, WS_BROADCAST_1BUF])
@pytest.mark.parametrize("shape", WS_EXTREME_SHAPES, ids=[f"{r}x{c}" for r, c in WS_EXTREME_SHAPES])
def test_ws_narrow_partial_sums_at_the_extremes(shape, variant):
    """A WS-only array's partial sums are psum_width bits: every sign combination of the
    extreme operands (all -128 columns give the largest sum, R * 2**14), mixed columns and
    random values, with random stalls."""
    R, C = shape
    cfg = array_config(R, C, variant)
    seed = seed_for(f"ws extremes {shape}")
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (cfg.input_width - 1)), (1 << (cfg.input_width - 1)) - 1
    job = Job(cfg)
    for a, w in [(lo, lo), (lo, hi), (hi, lo), (hi, hi)]:
        job.ws(np.full((3, R), a), np.full((R, C), w))
    mixed_w = np.array([[lo if (j + k) % 2 else hi for j in range(C)] for k in range(R)])
    job.ws(np.array([[lo if (m + k) % 3 else hi for k in range(R)] for m in range(5)]), mixed_w)
    job.ws(np.full((2, R), lo), np.array([[lo if j % 2 else hi for j in range(C)]] * R))
    for _ in range(3):
        job.ws(random_values(rng, (int(rng.integers(1, 3 * (R + C))), R), cfg.input_width),
               random_values(rng, (R, C), cfg.weight_width))
    check(cfg, job, run(cfg, job, seed=seed, gap=0.3, ready=0.6))


def test_ws_narrow_partial_sums_wrap_like_the_accumulator():
    # 8 rows of -128 * -128 = 2**17 wraps a 16-bit accumulator: the sums are 16 bits wide.
    cfg = make_config(8, 3, "ws", acc_width=16)
    seed = seed_for("ws wrap")
    rng = np.random.default_rng(seed)
    job = Job(cfg)
    job.ws(np.full((4, 8), -128), np.full((8, 3), -128))
    job.ws(random_values(rng, (20, 8), 8), random_values(rng, (8, 3), 8))
    assert int(job.expected()[0][0][0]) == 0
    check(cfg, job, run(cfg, job, seed=seed, gap=0.2, ready=0.7))


@pytest.mark.parametrize("shape", [(4, 4), (3, 7)], ids=["4x4", "3x7"])
def test_ws_latency_and_back_to_back_tiles(shape):
    R, C = shape
    cfg = make_config(R, C, "ws")
    dut = SystolicArray(cfg)
    assert dut.latency == R + C
    rng = np.random.default_rng(1)
    # Tile 2 reuses group 0's buffer: it may start R + C - 1 cycles after group 0's last beat
    # and takes R beats, so group 1 must have 2R + C - 2 beats to hide it entirely.
    lengths = [5, 2 * R + C - 2, 3, 1, 2 * R + C - 2, 2]
    job = Job(cfg)
    for m in lengths:
        job.ws(random_values(rng, (m, R), 8), random_values(rng, (R, C), 8))
    trace = run(cfg, job)
    check(cfg, job, trace)
    # No bubbles on ws_in from group 0 to group 2 inclusive; afterwards group 3 (after the
    # 3-beat group 2) waits for its tile.
    first = trace.ws[0]
    span = sum(lengths[:3])
    assert trace.ws[:span] == list(range(first, first + span))
    assert trace.ws[span] > trace.ws[span - 1] + 1
    # One output row per cycle, each exactly R + C cycles after its input row.
    assert [cycle for cycle, _, _ in trace.out] == [c + R + C for c in trace.ws]
    # The reuse rule is exact: tile 2 begins right when group 0's last beat has left.
    end_group0 = trace.ws[lengths[0] - 1]
    assert trace.preload[2 * R] == end_group0 + dut.ws_reuse_delay


def test_ws_reuse_rule_one_beat_short():
    R, C = 4, 4
    cfg = make_config(R, C, "ws")
    rng = np.random.default_rng(2)
    lengths = [5, 2 * R + C - 3, 4]
    job = Job(cfg)
    for m in lengths:
        job.ws(random_values(rng, (m, R), 8), random_values(rng, (R, C), 8))
    trace = run(cfg, job)
    check(cfg, job, trace)
    start2 = sum(lengths[:2])
    # Exactly one bubble before group 2.
    assert trace.ws[start2] == trace.ws[start2 - 1] + 2
    assert trace.ws[:start2] == list(range(trace.ws[0], trace.ws[0] + start2))


@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (1, 3)], ids=["4x4", "3x7", "1x3"])
def test_broadcast_latency_and_tiles_behind_the_first_beat(shape):
    R, C = shape
    cfg = array_config(R, C, WS_BROADCAST)
    dut = SystolicArray(cfg)
    assert dut.latency == R + 1
    rng = np.random.default_rng(4)
    # Tile i+1 may start R - 1 cycles after group i's first beat (the cycle after it, for one
    # row) and takes R beats, so a group of 2R - 1 beats (R + 1 for one row) hides the next.
    hidden = dut.ws_reuse_delay + R
    lengths = [hidden, hidden, 1, 2, hidden]
    job = Job(cfg)
    for m in lengths:
        job.ws(random_values(rng, (m, R), 8), random_values(rng, (R, C), 8))
    trace = run(cfg, job)
    check(cfg, job, trace)
    # No bubbles from group 0 to group 2 inclusive; group 3 (after one beat) waits.
    first = trace.ws[0]
    span = sum(lengths[:3])
    assert trace.ws[:span] == list(range(first, first + span))
    assert trace.ws[span] > trace.ws[span - 1] + 1
    assert [cycle for cycle, _, _ in trace.out] == [c + dut.latency for c in trace.ws]
    # The rule is exact: tile 1 begins right when the bottom row has copied tile 0.
    assert trace.preload[R] == first + dut.ws_reuse_delay


def test_broadcast_tile_rule_one_beat_short():
    R, C = 4, 4
    cfg = array_config(R, C, WS_BROADCAST)
    rng = np.random.default_rng(5)
    lengths = [2 * R - 2, 3]
    job = Job(cfg)
    for m in lengths:
        job.ws(random_values(rng, (m, R), 8), random_values(rng, (R, C), 8))
    trace = run(cfg, job)
    check(cfg, job, trace)
    # Exactly one bubble before group 1.
    assert trace.ws[lengths[0]] == trace.ws[lengths[0] - 1] + 2


def differing_tiles(rng, cfg, count):
    """``count`` random tiles, each different from the one before in every element (a row
    that multiplied with a stale weight would show)."""
    tiles = [random_values(rng, (cfg.rows, cfg.cols), cfg.weight_width)]
    for _ in range(count - 1):
        tile = random_values(rng, (cfg.rows, cfg.cols), cfg.weight_width)
        same = tile == tiles[-1]
        tile[same] = -1 - tiles[-1][same]
        tiles.append(tile)
    return tiles


@pytest.mark.parametrize("shape", [(4, 4), (3, 7), (1, 3), (8, 4)],
                         ids=["4x4", "3x7", "1x3", "8x4"])
def test_broadcast_one_buffer_tiles_between_groups(shape):
    """weight_buffers=1: each tile loads from the cycle after its predecessor's group's last
    beat (the earliest allowed: the preload is always offered), its group starts the cycle
    after its last row, and consecutive groups with differing tiles are exact."""
    R, C = shape
    cfg = array_config(R, C, WS_BROADCAST_1BUF)
    dut = SystolicArray(cfg)
    assert dut.latency == R + 1
    assert dut.ws_reuse_delay == 1
    rng = np.random.default_rng(6)
    lengths = [1, 5, 2, 1, 2 * R + 1, 3, 1]
    job = Job(cfg)
    for m, w in zip(lengths, differing_tiles(rng, cfg, len(lengths))):
        job.ws(random_values(rng, (m, R), cfg.input_width), w)
    trace = run(cfg, job)
    check(cfg, job, trace)
    first = 0
    for i, m in enumerate(lengths):
        tile = trace.preload[i * R:(i + 1) * R]
        group = trace.ws[first:first + m]
        assert tile == list(range(tile[0], tile[0] + R)), f"tile {i} not back to back"
        assert group == list(range(tile[-1] + 1, tile[-1] + 1 + m)), f"group {i}"
        if i > 0:
            # The exact rule: the tile's first row loads as the previous group's last beat
            # is multiplied in the top row, R - 1 cycles before it leaves the bottom row.
            assert tile[0] == trace.ws[first - 1] + dut.ws_reuse_delay
        first += m
    # A tile and its group: R + M cycles.
    assert trace.ws[-1] - trace.preload[0] + 1 == sum(lengths) + R * len(lengths)
    assert [cycle for cycle, _, _ in trace.out] == [c + dut.latency for c in trace.ws]


@pytest.mark.parametrize("shape", [(4, 4), (5, 2)], ids=["4x4", "5x2"])
def test_broadcast_one_buffer_back_to_back_extremes_with_stalls(shape):
    """weight_buffers=1: short groups at the extremes (-128 / 127 tiles alternating with
    their opposites, so every weight changes between groups), random gaps and stalls."""
    R, C = shape
    cfg = array_config(R, C, WS_BROADCAST_1BUF)
    seed = seed_for(f"one buffer extremes {shape}")
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (cfg.input_width - 1)), (1 << (cfg.input_width - 1)) - 1
    job = Job(cfg)
    for i in range(12):
        w = np.array([[lo if (i + j + k) % 2 else hi for j in range(C)] for k in range(R)])
        m = int(rng.integers(1, R + 2))
        a = np.where(rng.random((m, R)) < 0.5, lo, hi)
        job.ws(a, w)
    check(cfg, job, run(cfg, job, seed=seed, gap=0.3, ready=0.6))


@pytest.mark.parametrize("early", [False, True], ids=["exact", "one-cycle-early"])
def test_one_buffer_row_is_free_the_cycle_after_its_last_product(early):
    """The grid under the weight_buffers=1 rule: a beat entering the rows in cycle T is
    multiplied in row r in cycle T + r + 1, so row r may load the next tile then (row 0 the
    cycle after T, as the array's preload.ready allows), and a beat right after the tile
    sees all of it. Loading each row one cycle earlier corrupts the beat before."""
    R, C = 3, 2
    cfg = array_config(R, C, WS_BROADCAST_1BUF)
    grid = MacGrid(cfg)
    rng = np.random.default_rng(7)
    a_tile, b_tile = differing_tiles(rng, cfg, 2)
    x, y = random_values(rng, (2, R), cfg.input_width)
    x[x == 0] = 1
    results = {}

    async def bench(ctx):
        ctx.set(grid.en, 1)
        cycle = 0

        async def step(loads=(), w=None, beat=None):
            nonlocal cycle
            ctx.set(grid.w_load, sum(1 << r for r in loads))
            if w is not None:
                ctx.set(grid.w_top, [int(v) for v in w])
            for r in range(R):
                ctx.set(grid.feed_h[r].a, 0 if beat is None else int(beat[r]))
            results[cycle] = [ctx.get(grid.result[c]) for c in range(C)]
            await ctx.tick()
            cycle += 1

        for r in range(R):
            await step(loads=[r], w=a_tile[r])
        T = cycle
        await step(beat=x, loads=[0] if early else [], w=b_tile[0])
        for r in range(int(early), R):
            await step(loads=[r], w=b_tile[r])
        if early:
            await step()
        await step(beat=y)
        for _ in range(R + 2):
            await step()
        results["T"] = T

    sim = Simulator(grid)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    T = results["T"]
    want = matmul(np.array([x, y]), np.array(a_tile), cfg.acc_width)
    want_y = matmul(np.array([y]), np.array(b_tile), cfg.acc_width)[0]
    got_x, got_y = results[T + R + 1], results[T + 2 * R + 2]
    assert got_y == [int(v) for v in want_y]
    assert (got_x == [int(v) for v in want[0]]) != early


@pytest.mark.parametrize("shape", [(4, 4), (2, 5)], ids=["4x4", "2x5"])
def test_os_latency_and_overlapped_drain(shape):
    R, C = shape
    cfg = make_config(R, C, "os")
    rng = np.random.default_rng(3)
    job = Job(cfg)
    depths = [R, R, R + 3, 1, 2]
    for k in depths:
        job.os(random_values(rng, (R, k), 8), random_values(rng, (k, C), 8))
    trace = run(cfg, job)
    check(cfg, job, trace)
    out_cycles = [cycle for cycle, _, _ in trace.out]
    # Row s of a group leaves R + C + s cycles after the group's last beat.
    assert out_cycles == [t + R + C + s for t in trace.os_last for s in range(R)]
    # A group of K = R beats drains while the next computes: rows of groups 0, 1 back to back.
    assert out_cycles[:2 * R] == list(range(out_cycles[0], out_cycles[0] + 2 * R))
    # A group's last beat waits for the previous group's drain slot (K = 1 < R).
    assert trace.os_last[3] == trace.os_last[2] + R


def test_both_dataflows_interleaved_in_order():
    cfg = make_config(3, 4, "both")
    seed = seed_for("interleaved")
    rng = np.random.default_rng(seed)
    job = Job(cfg)
    for i in range(6):
        if i % 2 == 0:
            job.ws(random_values(rng, (int(rng.integers(1, 9)), 3), 8),
                   random_values(rng, (3, 4), 8))
        else:
            k = int(rng.integers(1, 9))
            job.os(random_values(rng, (3, k), 8), random_values(rng, (k, 4), 8))
    check(cfg, job, run(cfg, job, seed=seed, gap=0.2, ready=0.7))


def test_ports_follow_dataflow():
    assert not hasattr(SystolicArray(make_config(2, 2, "ws")), "os_in")
    assert not hasattr(SystolicArray(make_config(2, 2, "os")), "ws_in")
    both = SystolicArray(make_config(2, 2, "both"))
    assert all(hasattr(both, name) for name in ("preload", "ws_in", "os_in", "out"))


def test_parameter_errors():
    with pytest.raises(TypeError, match="cfg"):
        SystolicArray({"rows": 4})
    with pytest.raises(ValueError, match="acc_width"):
        MacCell(input_width=8, weight_width=8, acc_width=12)
    with pytest.raises(ValueError, match="input_width"):
        MacCell(input_width=0, weight_width=8, acc_width=32)
    with pytest.raises(ConfigError, match="dataflow"):
        make_config(2, 2, "xs")
    for dataflow in ("os", "both"):
        with pytest.raises(ConfigError, match="array_feed"):
            make_config(2, 2, dataflow, array_feed="broadcast")
    with pytest.raises(ConfigError, match="array_feed"):
        make_config(2, 2, "ws", array_feed="wave")
    for feed, buffers in (("systolic", 1), ("broadcast", 0), ("broadcast", 3)):
        with pytest.raises(ConfigError, match="weight_buffers"):
            make_config(2, 2, "ws", array_feed=feed, weight_buffers=buffers)
    with pytest.raises(ValueError, match="weight_buffers"):
        MacCell(input_width=8, weight_width=8, acc_width=32, os=False, weight_buffers=1)
    with pytest.raises(ValueError, match="weight_buffers"):
        MacCell(input_width=8, weight_width=8, acc_width=32, os=False, broadcast=True,
                weight_buffers=3)
    with pytest.raises(ValueError, match="broadcast"):
        MacCell(input_width=8, weight_width=8, acc_width=32, broadcast=True)
    with pytest.raises(ValueError, match="registered_weight"):
        MacCell(input_width=8, weight_width=8, acc_width=32, os=False, external_mac=True,
                registered_mac=True, registered_weight=True)
    with pytest.raises(ValueError, match="registered_mac"):
        MacCell(input_width=8, weight_width=8, acc_width=32, ws=True, os=False,
                registered_mac=True)
