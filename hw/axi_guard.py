"""Lets an AXI4 master be reset at any cycle without breaking the protocol on the bus."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI_LEN_WIDTH, AXI4Signature


__all__ = ["AxiGuard"]

# Master fields that pass straight through: AxSIZE, AxBURST, AxID, AxPROT, AxCACHE, AxLOCK and
# AxQOS are constants; AxADDR / AxLEN keep their value across the master's reset.
_PASSED_FIELDS = ("addr", "len", "size", "burst", "id", "prot", "cache", "lock", "qos")


class AxiGuard(wiring.Component):
    """Between an AXI4 master (the DMA) and the bus: when the master is reset mid-transfer
    (the watchdog's forced stop), finishes what the master started, so the bus never sees a
    withdrawn VALID, a burst without all its W beats, or responses nobody takes.

    Parameters
      addr_width, data_width, id_width   the AXI4 interface.
      max_outstanding   read bursts, and write bursts awaiting B, that may be in flight
                        (the master's own limit; the guard enforces it too).

    Ports
      s_axi       In(AXI4Signature): the master.
      m_axi       Out(AXI4Signature): the bus.
      isolate     In(1): the master is reset at the end of this cycle. Its AxADDR, AxLEN,
                  WDATA, WSTRB and WLAST must keep their values through that reset, and the
                  master must not present new requests while ``draining`` (the DMA's
                  payload registers are reset-less and its ``pause`` input is ``draining``):
                  a request the reset interrupted is re-presented from them, so the guard
                  stores no payload. Its AxSIZE, AxBURST, AxID, AxPROT, AxCACHE, AxLOCK and
                  AxQOS must be constants (as the DMA's are).
      draining    Out(1): transactions the master started before ``isolate`` are still
                  being completed; the master's new requests wait until it is low.

    Passing through (``draining`` low) every channel is wired straight through: no latency,
    no throughput cost. AR (AW) waits only while ``max_outstanding`` read bursts (write
    bursts) are in flight.

    Draining (from the cycle after ``isolate`` until everything is complete): an AR, AW or W
    beat that the master presented but was not accepted in the ``isolate`` cycle stays
    valid, with the master's unchanged payload, until accepted (an AW waiting for a free
    slot may already have W beats out);
    the remaining W beats of every write burst are sent with WSTRB = 0 (and WLAST on the
    burst's last beat); R beats and B responses are accepted and dropped. The master sees no
    READY and no VALID (R and B payloads pass through: without VALID they carry nothing).
    Throughput in the drain: one beat per cycle.
    """

    def __init__(self, *, addr_width, data_width, id_width, max_outstanding):
        if not isinstance(max_outstanding, int) or max_outstanding < 1:
            raise ValueError(f"AxiGuard max_outstanding={max_outstanding!r} must be a positive"
                             " integer")
        self._max_outstanding = max_outstanding
        signature = AXI4Signature(addr_width, data_width, id_width)
        super().__init__({
            "s_axi": In(signature),
            "m_axi": Out(signature),
            "isolate": In(1),
            "draining": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        s, bus = self.s_axi, self.m_axi
        limit = self._max_outstanding
        draining = self.draining

        # ---- bookkeeping of what is in flight on the bus, whoever drives it ------------------
        ar_fire = bus.arvalid & bus.arready
        aw_fire = bus.awvalid & bus.awready
        w_fire = bus.wvalid & bus.wready
        r_last_fire = bus.rvalid & bus.rready & bus.rlast
        b_fire = bus.bvalid & bus.bready

        reads = Signal(range(limit + 1))     # AR accepted, last R beat not yet
        writes = Signal(range(limit + 1))    # AW accepted, B not yet
        m.d.sync += reads.eq(reads + ar_fire - r_last_fire)
        m.d.sync += writes.eq(writes + aw_fire - b_fire)

        # W beats follow their AWs in order but may run ahead of the AW handshake:
        # `w_lengths` holds AxLEN of accepted AWs whose W burst is not complete,
        # `w_ahead` counts complete W bursts whose AW is not accepted yet.
        m.submodules.w_lengths = w_lengths = fifo.SyncFIFO(width=AXI_LEN_WIDTH, depth=limit)
        w_ahead = Signal(range(limit + 1))
        w_sent = Signal(AXI_LEN_WIDTH)       # beats of the current W burst already sent
        w_last_fire = w_fire & bus.wlast
        ahead = w_last_fire & ~w_lengths.r_rdy      # a W burst completes before its AW...
        matched = aw_fire & (w_ahead == 0) & ahead  # ...which is accepted in the same cycle
        m.d.comb += [
            w_lengths.w_data.eq(bus.awlen),
            w_lengths.w_en.eq(aw_fire & (w_ahead == 0) & ~ahead),
            w_lengths.r_en.eq(w_last_fire & w_lengths.r_rdy),
        ]
        m.d.sync += w_ahead.eq(w_ahead + (ahead & ~matched) - (aw_fire & (w_ahead != 0)))
        with m.If(w_fire):
            m.d.sync += w_sent.eq(Mux(bus.wlast, 0, w_sent + 1))

        # ---- requests presented but not accepted when the master is reset ------------------
        # Their payload is still on the master's side (see ``isolate``): only VALID is kept.
        m.d.comb += [getattr(bus, ch + f).eq(getattr(s, ch + f))
                     for ch in ("ar", "aw") for f in _PASSED_FIELDS]
        m.d.comb += bus.wdata.eq(s.wdata)
        ar_held, aw_held, w_held = Signal(), Signal(), Signal()
        with m.If(self.isolate & ~draining):
            m.d.sync += [
                draining.eq(1),
                ar_held.eq(s.arvalid & ~ar_fire),
                aw_held.eq(s.awvalid & ~aw_fire),
                w_held.eq(s.wvalid & ~w_fire),
            ]

        # Responses reach the master only with VALID, so their payload needs no gating.
        m.d.comb += [s.rdata.eq(bus.rdata), s.rresp.eq(bus.rresp), s.rid.eq(bus.rid),
                     s.rlast.eq(bus.rlast), s.bresp.eq(bus.bresp), s.bid.eq(bus.bid)]
        with m.If(~draining):
            m.d.comb += [
                bus.arvalid.eq(s.arvalid & (reads != limit)),
                s.arready.eq(bus.arready & (reads != limit)),
                bus.awvalid.eq(s.awvalid & (writes != limit)),
                s.awready.eq(bus.awready & (writes != limit)),
                bus.wvalid.eq(s.wvalid), bus.wstrb.eq(s.wstrb), bus.wlast.eq(s.wlast),
                s.wready.eq(bus.wready),
                s.rvalid.eq(bus.rvalid), bus.rready.eq(s.rready),
                s.bvalid.eq(bus.bvalid), bus.bready.eq(s.bready),
            ]
        with m.Else():
            m.d.comb += [bus.rready.eq(1), bus.bready.eq(1),
                         bus.arvalid.eq(ar_held & (reads != limit)),
                         bus.awvalid.eq(aw_held & (writes != limit))]
            with m.If(ar_fire):
                m.d.sync += ar_held.eq(0)
            with m.If(aw_fire):
                m.d.sync += aw_held.eq(0)
            # The W burst in progress: the oldest accepted AW's, else the held AW's.
            # (W beats go out only for bursts announced on AW, as the master sends them.)
            owed = w_lengths.r_rdy | (bus.awvalid & (w_ahead == 0))
            length = Mux(w_lengths.r_rdy, w_lengths.r_data, s.awlen)
            with m.If(w_held):
                m.d.comb += [bus.wvalid.eq(1), bus.wstrb.eq(s.wstrb), bus.wlast.eq(s.wlast)]
                with m.If(bus.wready):
                    m.d.sync += w_held.eq(0)
            with m.Elif(owed):
                m.d.comb += [bus.wvalid.eq(1), bus.wstrb.eq(0),
                             bus.wlast.eq(w_sent == length)]
            done = ~ar_held & ~aw_held & ~w_held & ~owed & (reads == 0) & (writes == 0)
            with m.If(done):
                m.d.sync += draining.eq(0)
        return m

