"""Formal harnesses: each wraps one block, constrains its inputs and checks its outputs.

A harness is an ``Elaboratable`` with no ports: every input of the block under test is a
free ``AnySeq`` value narrowed by ``Assume`` (a well-behaved AXI peer, well-formed streams),
and every promise of the block's bus interface is an ``Assert``. Properties are checked on
every cycle from reset (reset is held low; registers start at their ``init`` values).

``mutation`` names a deliberate bug inserted between the block and the checks (what the
checkers see differs from what the block drives, as if the block had that bug); a mutated
harness must fail, which shows that the properties bite.
"""

from typing import NamedTuple

from amaranth import Cat, Const, Module, Mux, ResetSignal, Signal, Value
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Array, Assert, Assume, Cover, Elaboratable, Fragment, ResetInserter
from amaranth.lib import wiring
from amaranth.utils import bits_for, exact_log2

from hw import regmap
from hw.axi import AXI_4K, AXI_LEN_WIDTH, AxiBurst, AxiResp
from hw.axi_guard import AxiGuard
from hw.config import Config
from hw.dma import Dma
from hw.registers import Registers
from sw.isa import ErrorCause


__all__ = ["RegistersHarness", "DmaHarness", "ControllerHarness", "DmaMutation",
           "REGISTERS_MUTATIONS", "DMA_MUTATIONS", "CONTROLLER_MUTATIONS", "controller_available",
           "formal_dma_config", "formal_registers_config"]


def formal_dma_config():
    """The smallest DMA worth checking: one 32-bit lane group, 4-beat bursts, 2 in flight."""
    return Config(rows=4, cols=4, dma_data_width=32, addr_width=16, id_width=1,
                  max_burst_beats=4, max_outstanding=2, dram_size=1 << 16)


def formal_registers_config():
    return Config(rows=4, cols=4)


# -- building blocks ------------------------------------------------------------------------


class _Props:
    """Per-harness helpers: one-cycle history, and the valid/ready rules for a channel."""

    def __init__(self, m):
        self.m = m
        self.past_valid = Signal()
        m.d.sync += self.past_valid.eq(1)
        m.d.comb += Assume(~ResetSignal())

    def past(self, value, name=None):
        value = Value.cast(value)
        reg = Signal(value.shape(), name=name)
        self.m.d.sync += reg.eq(value)
        return reg

    def stalled_before(self, valid, ready):
        """High when the channel was valid and not ready in the previous cycle."""
        return self.past_valid & self.past(valid & ~ready)

    def held(self, kind, valid, ready, payload, name):
        """``kind`` (Assert / Assume): VALID stays up, ``payload`` stays put, until READY."""
        payload = Cat(*payload)
        was = self.past(payload, name=f"{name}_past")
        with self.m.If(self.stalled_before(valid, ready)):
            self.m.d.comb += [kind(valid, f"{name}: VALID dropped before READY"),
                              kind(payload == was, f"{name}: payload changed while stalled")]


def _drive_inputs(m, component, only=None, exclude=()):
    """Every input of ``component`` (of its member ``only`` / not of the members named in
    ``exclude``) becomes a free value (narrowed later by assumptions)."""
    for path, member, value in component.signature.flatten(component):
        if only is not None and path[0] != only or path[0] in exclude:
            continue
        if member.flow.value == "In":
            value = Value.cast(value)
            m.d.comb += value.eq(AnySeq(len(value)))


def _init_checked_harness(harness, cfg, checks, mutation, mutations):
    """Validate and store a harness's property groups (from ``harness.CHECKS``) and
    ``mutation`` (a key of ``mutations`` or None)."""
    unknown = set(checks) - set(harness.CHECKS)
    if unknown:
        raise ValueError(f"checks: unknown property groups {sorted(unknown)}")
    if mutation is not None and mutation not in mutations:
        raise ValueError(f"mutation must be one of {sorted(mutations)}, not {mutation!r}")
    harness.cfg = cfg
    harness.checks = tuple(checks)
    harness.mutation = mutation


def _internal_signals(fragment, owner, names):
    """The signals ``names`` that ``fragment`` (the elaborated ``owner``) assigns.

    k-induction starts from arbitrary states, so a proof can need invariants about state the
    block does not expose; they are looked up by name and checked like any other property.
    """
    found = {}
    for statements in fragment.statements.values():
        for statement in statements:
            for signal in statement._lhs_signals():
                if signal.name in names:
                    found[signal.name] = signal
    missing = sorted(set(names) - set(found))
    if missing:
        raise LookupError(f"{owner} no longer has the internal signal(s) {', '.join(missing)}"
                          f" that formal/props.py states invariants about")
    return found


class _Queue:
    """A FIFO of burst lengths in the harness (the AXI peer's view of issued bursts)."""

    def __init__(self, m, depth, name):
        self.depth = depth
        self.entries = Array(Signal(AXI_LEN_WIDTH, name=f"{name}_q{i}") for i in range(depth))
        self.head = Signal(range(depth), name=f"{name}_head")
        self.tail = Signal(range(depth), name=f"{name}_tail")
        self.count = Signal(range(depth + 1), name=f"{name}_count")
        self.push = Signal(name=f"{name}_push")
        self.push_len = Signal(AXI_LEN_WIDTH, name=f"{name}_push_len")
        self.pop = Signal(name=f"{name}_pop")
        m.d.sync += self.count.eq(self.count + self.push - self.pop)
        with m.If(self.push):
            m.d.sync += [self.entries[self.tail].eq(self.push_len),
                         self.tail.eq(self._next(self.tail))]
        with m.If(self.pop):
            m.d.sync += self.head.eq(self._next(self.head))

    def _next(self, ptr):
        return Mux(ptr == self.depth - 1, 0, ptr + 1)

    @property
    def first(self):
        return self.entries[self.head]


# -- AXI4-Lite slave: the register block --------------------------------------------------------


def _mutate_rvalid_drop(m, p, bus, mon):
    """RVALID falls for a cycle after a stall (a slave that does not hold its response)."""
    mon["rvalid"] = bus.rvalid & ~p.stalled_before(bus.rvalid, bus.rready)


def _mutate_b_early(m, p, bus, mon):
    """B answers as soon as AW is accepted, before the W data has arrived."""
    mon["bvalid"] = bus.bvalid | (bus.awvalid & bus.awready)


def _mutate_bresp_okay(m, p, bus, mon):
    """Every write answers OKAY, also those to read-only or unmapped addresses."""
    mon["bresp"] = Const(AxiResp.OKAY, len(bus.bresp))


REGISTERS_MUTATIONS = {
    "rvalid_drop": _mutate_rvalid_drop,
    "b_early": _mutate_b_early,
    "bresp_okay": _mutate_bresp_okay,
}


class RegistersHarness(Elaboratable):
    """Properties of :class:`hw.registers.Registers` behind a well-behaved AXI4-Lite master.

    ``checks`` selects the property groups:
      handshake   B / R held until accepted with stable BRESP / RDATA / RRESP; no B without
                  an accepted AW and W; no R without an accepted AR; at most one write and one
                  read outstanding; the observable READY/VALID state agrees with the count of
                  outstanding requests (which is what lets k-induction close).
      readback    every R returns what the map says for the address sampled at AR: the
                  ``const`` value, the ``ro`` input masked to its fields, the stored ``rw`` /
                  ``w1c`` value, 0 for ``cmd``, and 0 with SLVERR when unmapped.
      write       a write to a ``const`` / ``ro`` / unmapped address answers SLVERR and changes
                  no stored register and pulses no ``cmd``; a write to a writable one answers
                  OKAY.
    """

    CHECKS = ("handshake", "readback", "write")

    def __init__(self, cfg, checks=CHECKS, mutation=None):
        _init_checked_harness(self, cfg, checks, mutation, REGISTERS_MUTATIONS)

    def elaborate(self, platform):
        m = Module()
        dut = Registers(self.cfg)
        m.submodules.dut = dut
        p = _Props(m)
        _drive_inputs(m, dut)
        bus = dut.s_axil

        # The master: requests held with a stable payload until accepted.
        p.held(Assume, bus.awvalid, bus.awready, [bus.awaddr, bus.awprot], "AW")
        p.held(Assume, bus.wvalid, bus.wready, [bus.wdata, bus.wstrb], "W")
        p.held(Assume, bus.arvalid, bus.arready, [bus.araddr, bus.arprot], "AR")

        mon = {name: getattr(bus, name) for name in ("bvalid", "bresp", "rvalid", "rdata",
                                                     "rresp")}
        if self.mutation is not None:
            REGISTERS_MUTATIONS[self.mutation](m, p, bus, mon)

        aw_hs = bus.awvalid & bus.awready
        w_hs = bus.wvalid & bus.wready
        ar_hs = bus.arvalid & bus.arready
        b_hs = mon["bvalid"] & bus.bready
        r_hs = mon["rvalid"] & bus.rready
        # Requests accepted and not yet answered (2 bits: the checks keep them at most 1).
        aw_open = Signal(2)
        w_open = Signal(2)
        ar_open = Signal(2)
        m.d.sync += [aw_open.eq(aw_open + aw_hs - b_hs), w_open.eq(w_open + w_hs - b_hs),
                     ar_open.eq(ar_open + ar_hs - r_hs)]

        # Reachability (checked by the cover jobs): the proofs are not vacuous.
        m.d.comb += [Cover(r_hs), Cover(b_hs),
                     Cover(b_hs & (mon["bresp"] == AxiResp.SLVERR)),
                     Cover(b_hs & (mon["bresp"] == AxiResp.OKAY)),
                     Cover(r_hs & p.stalled_before(mon["rvalid"], bus.rready)),
                     Cover(b_hs & p.stalled_before(mon["bvalid"], bus.bready))]
        if "handshake" in self.checks:
            self._handshake(m, p, bus, mon, aw_open, w_open, ar_open)
        if "readback" in self.checks:
            self._readback(m, dut, bus, mon, ar_hs)
        if "write" in self.checks:
            self._write(m, p, dut, bus, mon, aw_hs, b_hs)
        return m

    def _handshake(self, m, p, bus, mon, aw_open, w_open, ar_open):
        p.held(Assert, mon["bvalid"], bus.bready, [mon["bresp"]], "B")
        p.held(Assert, mon["rvalid"], bus.rready, [mon["rdata"], mon["rresp"]], "R")
        m.d.comb += [
            Assert(aw_open <= 1, "more than one AW outstanding"),
            Assert(w_open <= 1, "more than one W outstanding"),
            Assert(ar_open <= 1, "more than one AR outstanding"),
            Assert(~mon["bvalid"] | ((aw_open == 1) & (w_open == 1)), "B without AW and W"),
            Assert(mon["rvalid"] == (ar_open == 1), "R without AR, or AR left unanswered"),
            Assert(bus.arready == ~mon["rvalid"], "AR accepted while a read is open"),
            # AW and W are taken together, as soon as both are valid and no B waits: a write
            # is open exactly while its B waits.
            Assert(bus.awready == bus.wready, "AW and W not taken together"),
            Assert(mon["bvalid"] | (bus.awready == (bus.awvalid & bus.wvalid)),
                   "AW and W both valid and not taken, or taken alone"),
            Assert(~mon["bvalid"] | (~bus.awready & ~bus.wready),
                   "a new write accepted while B waits"),
            Assert(aw_open == mon["bvalid"], "an open AW without its B, or a B without AW"),
            Assert(w_open == mon["bvalid"], "an open W without its B, or a B without W"),
        ]

    def _decode(self, m, addr, cases):
        """``cases(reg)`` -> statements, in a switch on the word address ``addr``."""
        word_lsb = exact_log2(regmap.REG_BYTES)
        with m.Switch(addr[word_lsb:]):
            for reg in self.cfg_registers:
                with m.Case(reg.offset >> word_lsb):
                    cases(reg)
            with m.Default():
                cases(None)

    @property
    def cfg_registers(self):
        return regmap.REGISTERS

    def _readback(self, m, dut, bus, mon, ar_hs):
        expect_data = Signal(regmap.REG_BITS)
        expect_resp = Signal(len(bus.rresp))

        def expected(reg):
            if reg is None:
                value, resp = 0, AxiResp.SLVERR
            elif reg.access == "const":
                value, resp = reg.reset_value(self.cfg), AxiResp.OKAY
            elif reg.access == "ro":
                value, resp = Value.cast(dut.port(reg.name)) & reg.mask, AxiResp.OKAY
            elif reg.access in ("rw", "w1c"):
                value, resp = Value.cast(dut.port(reg.name)), AxiResp.OKAY
            else:
                value, resp = 0, AxiResp.OKAY
            m.d.sync += [expect_data.eq(value), expect_resp.eq(resp)]

        with m.If(ar_hs):
            self._decode(m, bus.araddr, expected)
        with m.If(mon["rvalid"]):
            m.d.comb += [Assert(mon["rdata"] == expect_data, "RDATA is not the register value"),
                         Assert(mon["rresp"] == expect_resp, "RRESP is wrong for the address")]

    def _write(self, m, p, dut, bus, mon, aw_hs, b_hs):
        rejected = Signal()       # the open write targets a const / ro / unmapped address
        write_open = Signal()

        def classify(target):
            def case(reg):
                m.d.comb += target.eq(reg is None or reg.access not in regmap.WRITABLE)
            return case

        offered_rejected = Signal()
        self._decode(m, bus.awaddr, classify(offered_rejected))
        with m.If(aw_hs):
            m.d.sync += [write_open.eq(1), rejected.eq(offered_rejected)]
        with m.If(b_hs):
            m.d.sync += write_open.eq(0)

        with m.If(mon["bvalid"]):
            m.d.comb += Assert(mon["bresp"] == Mux(rejected, AxiResp.SLVERR, AxiResp.OKAY),
                               "BRESP does not match the access kind of the address")
        # A rejected write may leave no trace: every stored value stays as it was (w1c
        # registers still take hardware set pulses) and no command pulses.
        unchanged = []
        for reg in self.cfg_registers:
            if reg.access in ("rw", "w1c"):
                port = Value.cast(dut.port(reg.name))
                expect = p.past(port, name=f"{reg.name.lower()}_before")
                if reg.access == "w1c":
                    expect = expect | p.past(Value.cast(dut.set_port(reg.name)),
                                             name=f"{reg.name.lower()}_set_before")
                unchanged.append((port == expect, f"rejected write changed {reg.name}"))
            elif reg.access == "cmd":
                unchanged.append((Value.cast(dut.port(reg.name)) == 0,
                                  f"rejected write pulsed {reg.name}"))
        with m.If(write_open & rejected):
            m.d.comb += [Assert(test, message) for test, message in unchanged]


# -- AXI4 master: the DMA --------------------------------------------------------------------


def _mutate_arlen_plus_one(m, p, axi, mon):
    """ARLEN one too large: the burst is a beat longer than the engine expects."""
    mon["arlen"] = (axi.arlen + 1)[:AXI_LEN_WIDTH]


def _mutate_wlast_early(m, p, axi, mon):
    """WLAST on every beat: multi-beat write bursts end early."""
    mon["wlast"] = axi.wvalid


class DmaMutation(NamedTuple):
    apply: object
    engines: tuple  # the engine whose harness shows the bug


DMA_MUTATIONS = {
    "arlen_plus_one": DmaMutation(_mutate_arlen_plus_one, ("read",)),
    "wlast_early": DmaMutation(_mutate_wlast_early, ("write",)),
}

_AR_PAYLOAD = ("araddr", "arlen", "arsize", "arburst", "arid", "arprot", "arcache", "arlock",
               "arqos")
_AW_PAYLOAD = tuple("aw" + name[2:] for name in _AR_PAYLOAD)
_W_PAYLOAD = ("wdata", "wstrb", "wlast")


class DmaHarness(Elaboratable):
    """Properties of :class:`hw.dma.Dma`'s AXI4 master against a well-behaved slave.

    The slave accepts AR / AW / W whenever it likes, answers R in order with exactly
    ``len + 1`` beats (RLAST on the last) only for accepted ARs, gives one B per write burst
    only after that burst's AW and last W beat, holds R and B with a stable payload until
    accepted, and may answer OKAY, SLVERR or DECERR. Commands, ``wr_data``, the window and
    the ready inputs are otherwise arbitrary (streams hold valid and payload until ready).

    Asserted: ARVALID / AWVALID / WVALID held until READY with a stable payload; ARSIZE /
    AWSIZE = log2(bus bytes), INCR, ID 0; every burst starts bus-aligned, has
    ``len + 1 <= max_burst_beats`` and stays in one 4 KiB page; WLAST exactly on the last
    beat of each announced burst and no W beat beyond the announced ones; read bursts
    issued and not fully answered <= ``max_outstanding``; write bursts issued and not
    answered by B <= ``max_outstanding``; RREADY high while read data is due; BREADY high.
    """

    ENGINES = ("read", "write")
    #: Commands are narrowed so that a bounded run reaches multi-burst rows, row ends and
    #: 4 KiB crossings within few cycles: at most this many rows of at most this many bursts.
    MAX_ROWS = 3
    MAX_ROW_BURSTS = 3

    def __init__(self, cfg, engines=ENGINES, mutation=None, guarded=False):
        unknown = set(engines) - set(self.ENGINES)
        if unknown or not engines:
            raise ValueError(f"engines must be a non-empty subset of {self.ENGINES},"
                             f" not {engines!r}")
        if mutation is not None and mutation not in DMA_MUTATIONS:
            raise ValueError(f"mutation must be one of {sorted(DMA_MUTATIONS)}, not {mutation!r}")
        self.cfg = cfg
        self.engines = tuple(engines)
        self.mutation = mutation
        self.guarded = guarded

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        dut = Dma(cfg)
        p = _Props(m)
        if self.guarded:
            # As in hw.top: the DMA behind the bus guard, reset at any cycle (the watchdog's
            # forced stop); the bus side must keep every rule.
            isolate = Signal()
            m.d.comb += isolate.eq(AnySeq(1))
            m.submodules.dut = ResetInserter(isolate)(dut)
            guard = m.submodules.guard = AxiGuard(
                addr_width=cfg.addr_width, data_width=cfg.dma_data_width,
                id_width=cfg.id_width, max_outstanding=cfg.max_outstanding)
            wiring.connect(m, dut.m_axi, guard.s_axi)
            m.d.comb += [guard.isolate.eq(isolate), dut.pause.eq(guard.draining)]
            _drive_inputs(m, dut, exclude=("m_axi", "pause"))
            _drive_inputs(m, guard, only="m_axi")
            axi = guard.m_axi
            if "read" in self.engines:
                m.d.comb += Cover(guard.draining & axi.rvalid & axi.rready)
            if "write" in self.engines:
                m.d.comb += Cover(guard.draining & axi.wvalid & axi.wready & (axi.wstrb == 0))
        else:
            m.submodules.dut = dut
            _drive_inputs(m, dut)
            axi = dut.m_axi
        self._axi = axi

        for name in ("rd_cmd", "wr_cmd", "wr_data"):
            port = getattr(dut, name)
            p.held(Assume, port.valid, port.ready, [port.payload], name)
        max_row_bytes = self.MAX_ROW_BURSTS * cfg.max_burst_beats * cfg.bus_bytes
        for engine, cmd in (("read", dut.rd_cmd), ("write", dut.wr_cmd)):
            if engine not in self.engines:
                # The engines share nothing but the bus signals (and, with
                # dma_burst_gens=1, the burst generator: checked with both engines at once).
                m.d.comb += Assume(~cmd.valid)
            m.d.comb += [Assume(cmd.p.rows <= self.MAX_ROWS),
                         Assume(cmd.p.row_bytes <= max_row_bytes),
                         Assume(cmd.p.stride < (1 << cfg.addr_width))]
        # Data never steers the bus, but wide free data slows the solver down: one free bit
        # per byte lane still shows where the realignment puts each byte.
        lane_bits = Const(sum(1 << (8 * lane) for lane in range(cfg.bus_bytes)),
                          cfg.dma_data_width)
        m.d.comb += [Assume((dut.wr_data.p.data & ~lane_bits) == 0),
                     Assume((axi.rdata & ~lane_bits) == 0)]
        # A window that moves under a running command would only test the harness.
        base, size = AnyConst(cfg.addr_width), AnyConst(cfg.addr_width)
        m.d.comb += [Assume(dut.window_base == base), Assume(dut.window_size == size)]

        mon = {name: getattr(axi, name) for name in
               _AR_PAYLOAD + _AW_PAYLOAD + _W_PAYLOAD + ("arvalid", "awvalid", "wvalid")}
        if self.mutation is not None:
            DMA_MUTATIONS[self.mutation].apply(m, p, axi, mon)

        self._master_rules(m, p, axi, mon)
        self._read_slave(m, p, dut, mon)
        self._write_slave(m, p, dut, mon)
        return m

    def _burst_rules(self, m, valid, addr, length, size, burst, ident, ch):
        cfg = self.cfg
        beats = length + 1
        page_offset = addr[:exact_log2(AXI_4K)]
        with m.If(valid):
            m.d.comb += [
                Assert(size == exact_log2(cfg.bus_bytes), f"{ch}SIZE is not the bus width"),
                Assert(burst == AxiBurst.INCR, f"{ch}BURST is not INCR"),
                Assert(ident == 0, f"{ch}ID is not 0"),
                Assert(addr[:exact_log2(cfg.bus_bytes)] == 0, f"{ch}ADDR not bus-aligned"),
                Assert(beats <= cfg.max_burst_beats, f"{ch}LEN beyond max_burst_beats"),
                Assert(page_offset + beats * cfg.bus_bytes <= AXI_4K,
                       f"{ch} burst crosses a 4 KiB boundary"),
            ]

    def _master_rules(self, m, p, axi, mon):
        p.held(Assert, mon["arvalid"], axi.arready, [mon[n] for n in _AR_PAYLOAD], "AR")
        p.held(Assert, mon["awvalid"], axi.awready, [mon[n] for n in _AW_PAYLOAD], "AW")
        p.held(Assert, mon["wvalid"], axi.wready, [mon[n] for n in _W_PAYLOAD], "W")
        self._burst_rules(m, mon["arvalid"], mon["araddr"], mon["arlen"], mon["arsize"],
                          mon["arburst"], mon["arid"], "AR")
        self._burst_rules(m, mon["awvalid"], mon["awaddr"], mon["awlen"], mon["awsize"],
                          mon["awburst"], mon["awid"], "AW")

    def _read_slave(self, m, p, dut, mon):
        cfg = self.cfg
        axi = self._axi
        queue = _Queue(m, cfg.max_outstanding, "ar")
        ar_hs = mon["arvalid"] & axi.arready
        r_hs = axi.rvalid & axi.rready
        beat = Signal(AXI_LEN_WIDTH)
        last = beat == queue.first
        m.d.comb += [queue.push.eq(ar_hs), queue.push_len.eq(mon["arlen"]),
                     queue.pop.eq(r_hs & last)]
        with m.If(r_hs):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))

        m.d.comb += [Assert(queue.count + mon["arvalid"] <= cfg.max_outstanding,
                            "more read bursts in flight than max_outstanding"),
                     Assert(axi.rready | (queue.count == 0),
                            "RREADY low while read data is due (the buffer must not fill)")]
        status = dut.rd_status
        if "read" in self.engines:
            m.d.comb += [Cover(queue.count == cfg.max_outstanding),
                         Cover(r_hs & last & (queue.first == cfg.max_burst_beats - 1)),
                         Cover(dut.rd_data.valid & dut.rd_data.p.last),
                         Cover(status.valid & (status.p.cause == ErrorCause.NONE)),
                         Cover(status.valid & (status.p.cause == ErrorCause.DMA_WINDOW))]
        p.held(Assume, axi.rvalid, axi.rready, [axi.rdata, axi.rresp, axi.rlast], "R")
        m.d.comb += [Assume(~axi.rvalid | (queue.count != 0)),
                     Assume(axi.rlast == last), Assume(axi.rid == 0)]

    def _write_slave(self, m, p, dut, mon):
        cfg = self.cfg
        axi = self._axi
        # W beats are matched against bursts in the order their AW was first presented:
        # W may run ahead of the AW handshake (as AXI allows), not ahead of the burst being
        # announced (a stricter rule, which interconnects routing W by AW rely on).
        announced = _Queue(m, cfg.max_outstanding + 1, "aw")
        new_aw = mon["awvalid"] & ~p.stalled_before(mon["awvalid"], axi.awready)
        w_hs = mon["wvalid"] & axi.wready
        beat = Signal(AXI_LEN_WIDTH)
        # A W beat in the cycle its burst's AW first appears belongs to that burst.
        current_len = Mux(announced.count != 0, announced.first, mon["awlen"])
        last = beat == current_len
        m.d.comb += [announced.push.eq(new_aw), announced.push_len.eq(mon["awlen"]),
                     announced.pop.eq(w_hs & last & ((announced.count != 0) | new_aw))]
        with m.If(w_hs):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
            m.d.comb += [
                Assert((announced.count != 0) | new_aw, "W beat without an announced burst"),
                Assert(mon["wlast"] == last, "WLAST not exactly on the burst's last beat"),
            ]

        # B is owed for a burst once both its AW and its last W beat have been accepted.
        width = bits_for(2 * cfg.max_outstanding + 2)
        aw_open = Signal(width)   # AW accepted, B not yet given
        w_done = Signal(width)    # last W beat accepted, B not yet given
        aw_hs = mon["awvalid"] & axi.awready
        b_hs = axi.bvalid & axi.bready
        m.d.sync += [aw_open.eq(aw_open + aw_hs - b_hs),
                     w_done.eq(w_done + (w_hs & mon["wlast"]) - b_hs)]
        m.d.comb += [Assert(aw_open + mon["awvalid"] <= cfg.max_outstanding,
                            "more write bursts awaiting B than max_outstanding"),
                     Assert(axi.bready, "BREADY dropped")]
        p.held(Assume, axi.bvalid, axi.bready, [axi.bresp], "B")
        status = dut.wr_status
        if "write" in self.engines:
            m.d.comb += [
                Cover(aw_open == cfg.max_outstanding),
                Cover(w_hs & mon["wlast"] & (announced.first == cfg.max_burst_beats - 1)),
                Cover(status.valid & (status.p.cause == ErrorCause.NONE)),
                Cover(status.valid & (status.p.cause == ErrorCause.DMA_SLVERR)),
            ]
        m.d.comb += [Assume(~axi.bvalid | ((aw_open != 0) & (w_done != 0))),
                     Assume(axi.bid == 0)]


# -- dependency-token counters: the controller ---------------------------------------------


def _mutate_pop_without_token(m, p, ctrl, mon):
    """A unit is granted its pop whenever it asks, tokens or not."""
    for unit, flag in mon["pops"]:
        port = getattr(ctrl, unit)
        mon["pops"][(unit, flag)] = port.request & getattr(port, flag)


CONTROLLER_MUTATIONS = {
    "pop_without_token": _mutate_pop_without_token,
}


def controller_available():
    """True once ``hw.controller`` exists (the token jobs are added then)."""
    import importlib.util
    return importlib.util.find_spec("hw.controller") is not None


class ControllerHarness(Elaboratable):
    """Token counters of :class:`hw.controller.Controller` with arbitrary units and program.

    Asserted for each of the four counters (load->exec, exec->load, exec->store,
    store->exec): a pop is granted only when the counter is nonzero; from one cycle to the
    next the counter moves by the push / pop of that cycle and never wraps (a push at
    ``TOKEN_MAX`` leaves it at ``TOKEN_MAX``); it is cleared only by a start or the end of a
    program; an overflowing push while the program runs stops the machine with an error,
    ``TOKEN_OVERFLOW`` unless a higher-priority fault (watchdog, abort, unit error) came in
    the same cycle. Proven by k-induction (the properties relate consecutive cycles only).
    """

    EDGES = {
        "l2e": ("load", "push_next", "exec", "pop_prev"),
        "e2l": ("exec", "push_prev", "load", "pop_next"),
        "e2s": ("exec", "push_next", "store", "pop_prev"),
        "s2e": ("store", "push_prev", "exec", "pop_next"),
    }

    CHECKS = ("counters", "overflow")

    def __init__(self, cfg, checks=CHECKS, mutation=None):
        _init_checked_harness(self, cfg, checks, mutation, CONTROLLER_MUTATIONS)

    def elaborate(self, platform):
        from hw.controller import Controller
        from sw.isa import TOKEN_MAX

        m = Module()
        ctrl = Controller(self.cfg)
        m.submodules.dut = fragment = Fragment.get(ctrl, platform)
        units = ("load", "exec", "store")
        internal = _internal_signals(
            fragment, "hw.controller.Controller",
            ["running", "stopping"] + [f"tokens_{name}" for name in self.EDGES]
            + [f"grant_{unit}" for unit in units])
        p = _Props(m)
        _drive_inputs(m, ctrl)

        mon = {"pops": {(unit, flag): internal[f"grant_{unit}"]
                        & getattr(getattr(ctrl, unit), flag)
                        for _, _, unit, flag in self.EDGES.values()}}
        if self.mutation is not None:
            CONTROLLER_MUTATIONS[self.mutation](m, p, ctrl, mon)

        running, stopping = internal["running"], internal["stopping"]
        cleared = p.past(ctrl.soft_reset | ctrl.fetch_start, name="tokens_cleared")
        higher = ctrl.watchdog_expired | ctrl.abort
        for unit in units:
            higher = higher | getattr(ctrl, unit).error_valid
        for name, (pusher, push_flag, popper, pop_flag) in self.EDGES.items():
            counter = internal[f"tokens_{name}"]
            push = getattr(getattr(ctrl, pusher), push_flag)
            pop = mon["pops"][(popper, pop_flag)]
            before = p.past(counter, name=f"{name}_before")
            was_push = p.past(push & ~pop, name=f"{name}_pushed")
            was_pop = p.past(pop & ~push, name=f"{name}_popped")
            overflowing = push & ~pop & (counter == TOKEN_MAX) & running & ~stopping
            was_overflow = p.past(overflowing, name=f"{name}_overflowed")
            was_alone = p.past(overflowing & ~higher, name=f"{name}_overflowed_alone")
            m.d.comb += Cover(pop)
            if "counters" in self.checks:
                self._counter(m, p, name, counter, pop, before, was_push, was_pop, cleared)
            if "overflow" in self.checks:
                with m.If(p.past_valid & was_overflow):
                    m.d.comb += Assert(stopping & ctrl.failed, f"{name}: overflow did not stop")
                with m.If(p.past_valid & was_alone):
                    m.d.comb += Assert(ctrl.err_cause == ErrorCause.TOKEN_OVERFLOW,
                                       f"{name}: overflow not reported as TOKEN_OVERFLOW")
        return m

    def _counter(self, m, p, name, counter, pop, before, was_push, was_pop, cleared):
        from sw.isa import TOKEN_MAX

        m.d.comb += Assert(~pop | (counter != 0), f"{name}: pop granted with no token")
        with m.If(p.past_valid & ~cleared):
            with m.If(was_push):
                m.d.comb += Assert(counter == Mux(before == TOKEN_MAX, TOKEN_MAX, before + 1),
                                   f"{name}: push did not count up without wrapping")
            with m.Elif(was_pop):
                m.d.comb += Assert((before != 0) & (counter == before - 1),
                                   f"{name}: pop did not count down without wrapping")
            with m.Else():
                m.d.comb += Assert(counter == before, f"{name}: changed without push/pop")
        with m.If(p.past_valid & cleared):
            m.d.comb += Assert(counter == 0, f"{name}: not cleared by start / end")
