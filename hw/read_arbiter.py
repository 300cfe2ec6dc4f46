"""Shares the DMA read engine between instruction fetch and the load unit."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .burst import dma_cmd_layout, dma_status_layout
from .dma import dma_data_layout


__all__ = ["ReadClient", "ReadArbiter"]


class ReadClient(wiring.Signature):
    """A read engine's command side, as its user sees it (user = master)."""

    def __init__(self, cfg):
        super().__init__({
            "cmd": Out(stream.Signature(dma_cmd_layout(cfg))),
            "data": In(stream.Signature(dma_data_layout(cfg))),
            "status": In(stream.Signature(dma_status_layout(cfg))),
        })


class ReadArbiter(wiring.Component):
    """Grants the DMA read engine to one client for a whole command, lowest index first.

    Ports
      clients[i]   In(ReadClient): the users (0 has priority when both wait).
      rd_cmd, rd_data, rd_status   the DMA read engine.

    The grant is taken when a client's command is accepted and released with its status,
    so data and status always return to the client that asked. Latency: 0 cycles
    (combinational routing); one command at a time.
    """

    def __init__(self, cfg, clients=2):
        self.cfg = cfg
        super().__init__({
            "clients": In(ReadClient(cfg)).array(clients),
            "rd_cmd": Out(stream.Signature(dma_cmd_layout(cfg))),
            "rd_data": In(stream.Signature(dma_data_layout(cfg))),
            "rd_status": In(stream.Signature(dma_status_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        owner = Signal(range(len(self.clients)))
        owned = Signal()

        chosen = Signal(range(len(self.clients)))
        for i in reversed(range(len(self.clients))):
            with m.If(self.clients[i].cmd.valid):
                m.d.comb += chosen.eq(i)
        for i, client in enumerate(self.clients):
            # The payload follows `chosen` alone (it only counts with `valid`): a bit of it
            # is then a function of three inputs, which fits in the LUT of the register the
            # DMA loads it into.
            with m.If(chosen == i):
                m.d.comb += self.rd_cmd.payload.eq(client.cmd.payload)
            with m.If(~owned & (chosen == i)):
                m.d.comb += [self.rd_cmd.valid.eq(client.cmd.valid),
                             client.cmd.ready.eq(self.rd_cmd.ready)]
            m.d.comb += [client.data.payload.eq(self.rd_data.payload),
                         client.status.payload.eq(self.rd_status.payload)]
            with m.If(owned & (owner == i)):
                m.d.comb += [client.data.valid.eq(self.rd_data.valid),
                             self.rd_data.ready.eq(client.data.ready),
                             client.status.valid.eq(self.rd_status.valid),
                             self.rd_status.ready.eq(client.status.ready)]
        with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
            m.d.sync += [owned.eq(1), owner.eq(chosen)]
        with m.If(self.rd_status.valid & self.rd_status.ready):
            m.d.sync += owned.eq(0)
        return m
