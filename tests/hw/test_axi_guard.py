"""hw.axi_guard.AxiGuard in amaranth.sim: a random master reset at a random cycle, a random
slave, and the AXI rules checked on the bus side every cycle."""

import os
import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from hw.axi_guard import AxiGuard

LIMIT = 3
AR = ("araddr", "arlen")
AW = ("awaddr", "awlen")


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


class Master:
    """An AXI master obeying the protocol: up to LIMIT bursts of each kind in flight, W beats
    sent as soon as their AW is presented (possibly before it is accepted). Reset, it drops
    every VALID and keeps its payload (as the DMA, whose payload registers are reset-less)."""

    def __init__(self, rng):
        self.rng = rng
        self.ar = self.aw = None
        self.w_queue = deque()     # lengths of bursts presented on AW whose W is not all sent
        self.w_sent = 0
        self.w_beat = None         # (data, strb, last) presented on W
        self.reads = self.writes = 0
        self.reset = False

    def drive(self):
        rng = self.rng
        if self.reset:
            return {"arvalid": 0, "awvalid": 0, "wvalid": 0, "rready": 0, "bready": 0}
        if self.ar is None and self.reads < LIMIT and rng.random() < 0.4:
            self.ar = {"araddr": rng.randrange(1 << 16) & ~15, "arlen": rng.randrange(4)}
        if self.aw is None and self.writes < LIMIT and rng.random() < 0.4:
            self.aw = {"awaddr": rng.randrange(1 << 16) & ~15, "awlen": rng.randrange(4)}
            self.w_queue.append(self.aw["awlen"])
        if self.w_beat is None and self.w_queue and rng.random() < 0.7:
            self.w_beat = (rng.randrange(1 << 32), 0xF, int(self.w_sent == self.w_queue[0]))
        out = {"arvalid": int(self.ar is not None), "awvalid": int(self.aw is not None),
               "wvalid": int(self.w_beat is not None), "rready": 1, "bready": 1}
        out.update(self.ar or {})
        out.update(self.aw or {})
        if self.w_beat:
            out.update(wdata=self.w_beat[0], wstrb=self.w_beat[1], wlast=self.w_beat[2])
        return out

    def observe(self, s):
        if self.reset:
            return
        if s["arvalid"] and s["arready"]:
            self.ar, self.reads = None, self.reads + 1
        if s["awvalid"] and s["awready"]:
            self.aw, self.writes = None, self.writes + 1
        if s["wvalid"] and s["wready"]:
            if self.w_beat[2]:
                self.w_queue.popleft()
                self.w_sent = 0
            else:
                self.w_sent += 1
            self.w_beat = None
        if s["rvalid"] and s["rready"] and s["rlast"]:
            self.reads -= 1
        if s["bvalid"] and s["bready"]:
            self.writes -= 1


class Slave:
    """A slave with random stalls; checks the AXI rules on everything it receives."""

    def __init__(self, rng):
        self.rng = rng
        self.read_bursts = deque()   # beats left per accepted AR
        self.aw_lengths = deque()    # AxLEN of accepted AWs whose W is not complete
        self.w_done = 0              # W bursts complete whose AW is not accepted yet
        self.w_count = 0
        self.b_due = 0
        self.presented = {}          # channel -> payload presented and not accepted
        self.bursts_written = 0

    def drive(self):
        rng = self.rng
        ready = lambda: int(rng.random() < 0.5)  # noqa: E731
        out = {"arready": ready(), "awready": ready(), "wready": ready(),
               "rvalid": int(bool(self.read_bursts) and rng.random() < 0.6), "rdata": 0,
               "rlast": int(bool(self.read_bursts) and self.read_bursts[0] == 1),
               "bvalid": int(self.b_due > 0 and rng.random() < 0.6)}
        return out

    def observe(self, b):
        for channel, fields in (("ar", AR), ("aw", AW),
                                ("w", ("wdata", "wstrb", "wlast"))):
            payload = tuple(b[f] for f in fields)
            if channel in self.presented:
                assert b[f"{channel}valid"], f"{channel.upper()}VALID withdrawn"
                assert payload == self.presented[channel], f"{channel.upper()} payload changed"
            if b[f"{channel}valid"] and not b[f"{channel}ready"]:
                self.presented[channel] = payload
            else:
                self.presented.pop(channel, None)
        if b["arvalid"] and b["arready"]:
            self.read_bursts.append(b["arlen"] + 1)
        if b["rvalid"] and b["rready"]:
            self.read_bursts[0] -= 1
            if self.read_bursts[0] == 0:
                self.read_bursts.popleft()
        if b["awvalid"] and b["awready"]:
            if self.w_done:
                self.w_done -= 1
                self.b_due += 1
            else:
                self.aw_lengths.append(b["awlen"])
        if b["wvalid"] and b["wready"]:
            expected_last = bool(self.aw_lengths) and self.w_count == self.aw_lengths[0]
            if self.aw_lengths:
                assert bool(b["wlast"]) == expected_last, "WLAST on the wrong beat"
            self.w_count += 1
            if b["wlast"]:
                self.w_count = 0
                self.bursts_written += 1
                if self.aw_lengths:
                    self.aw_lengths.popleft()
                    self.b_due += 1
                else:
                    self.w_done += 1
        if b["bvalid"] and b["bready"]:
            self.b_due -= 1

    @property
    def idle(self):
        return not (self.read_bursts or self.aw_lengths or self.w_done or self.w_count
                    or self.b_due)


S_OUT = ("arvalid", "araddr", "arlen", "awvalid", "awaddr", "awlen", "wvalid", "wdata",
         "wstrb", "wlast", "rready", "bready")
M_OUT = ("arready", "awready", "wready", "rvalid", "rdata", "rlast", "bvalid")
BUS = ("arvalid", "arready", "araddr", "arlen", "awvalid", "awready", "awaddr", "awlen",
       "wvalid", "wready", "wdata", "wstrb", "wlast", "rvalid", "rready", "rlast", "bvalid",
       "bready")


def _run(seed, isolate_at, cycles=1500):
    dut = AxiGuard(addr_width=16, data_width=32, id_width=1, max_outstanding=LIMIT)
    rng = random.Random(seed)
    master, slave = Master(rng), Slave(rng)
    log = {"drain_cycles": None}

    async def bench(ctx):
        drain_start = None
        for cycle in range(cycles):
            for name, value in master.drive().items():
                ctx.set(getattr(dut.s_axi, name), value)
            for name, value in slave.drive().items():
                ctx.set(getattr(dut.m_axi, name), value)
            ctx.set(dut.isolate, int(cycle == isolate_at))
            bus = {name: ctx.get(getattr(dut.m_axi, name)) for name in BUS}
            side = {name: ctx.get(getattr(dut.s_axi, name)) for name in BUS}
            slave.observe(bus)
            master.observe(side)
            if cycle == isolate_at:
                master.reset = True          # the master is reset at the end of this cycle
                drain_start = cycle
            if master.reset and not ctx.get(dut.draining) and cycle > isolate_at:
                assert slave.idle, ("drain ended with transactions still open",
                                    slave.__dict__)
                log["drain_cycles"] = cycle - drain_start
                return
            await ctx.tick()
        raise AssertionError("the drain never finished")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return log["drain_cycles"]


@pytest.mark.parametrize("case", range(40))
def test_reset_master_at_a_random_cycle_keeps_the_bus_legal(case):
    seed = _seed() + case
    drain = _run(seed, isolate_at=random.Random(seed).randrange(5, 200))
    assert drain is not None


def test_passes_through_without_latency():
    """Not isolated, the bus side is the master side in the same cycle."""
    dut = AxiGuard(addr_width=16, data_width=32, id_width=1, max_outstanding=LIMIT)

    async def bench(ctx):
        ctx.set(dut.s_axi.arvalid, 1)
        ctx.set(dut.s_axi.araddr, 0x1230)
        ctx.set(dut.m_axi.arready, 1)
        ctx.set(dut.m_axi.rvalid, 1)
        ctx.set(dut.m_axi.rdata, 0xDEADBEEF)
        assert ctx.get(dut.m_axi.arvalid) == 1 and ctx.get(dut.m_axi.araddr) == 0x1230
        assert ctx.get(dut.s_axi.arready) == 1
        assert ctx.get(dut.s_axi.rvalid) == 1 and ctx.get(dut.s_axi.rdata) == 0xDEADBEEF

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_invalid_limit_names_the_parameter():
    with pytest.raises(ValueError, match="max_outstanding"):
        AxiGuard(addr_width=16, data_width=32, id_width=1, max_outstanding=0)


def test_interrupted_request_is_replayed_from_the_master_payload():
    """An AR / AW pending at the reset stays valid on the bus with the master's payload,
    which the master keeps across its reset (the DMA's payload registers are reset-less)."""
    dut = AxiGuard(addr_width=16, data_width=32, id_width=1, max_outstanding=LIMIT)
    request = {"addr": 0x40, "len": 3, "size": 2, "burst": 1, "id": 1, "prot": 5,
               "cache": 3, "lock": 1, "qos": 7}

    async def bench(ctx):
        for ch in ("ar", "aw"):
            ctx.set(getattr(dut.s_axi, f"{ch}valid"), 1)
            for field, value in request.items():
                ctx.set(getattr(dut.s_axi, f"{ch}{field}"), value)
        ctx.set(dut.isolate, 1)
        await ctx.tick()
        ctx.set(dut.isolate, 0)
        # The master is reset: no VALID, the payload kept.
        for ch in ("ar", "aw"):
            ctx.set(getattr(dut.s_axi, f"{ch}valid"), 0)
        assert ctx.get(dut.draining)
        for ch in ("ar", "aw"):
            assert ctx.get(getattr(dut.m_axi, f"{ch}valid")) == 1
            for field, value in request.items():
                assert ctx.get(getattr(dut.m_axi, f"{ch}{field}")) == value, (ch, field)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
