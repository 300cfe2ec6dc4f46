"""The accumulator memory: rows of ``C`` wrapping ``acc_width``-bit sums.

The systolic array writes result rows (overwriting or accumulating), the store path reads
them back for the output pipeline. The rows live in one block RAM with a registered read
port for the read-modify-write and one for the store path.
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .config import Config


__all__ = [
    "Accumulator", "acc_addr_width", "acc_row_layout", "acc_write_layout",
    "acc_read_req_layout", "acc_read_resp_layout", "acc_read_unbuffered",
]


def acc_addr_width(cfg):
    """Bits of an accumulator row address."""
    return ceil_log2(cfg.acc_rows)


def acc_row_layout(cfg):
    """One accumulator row: ``C`` signed ``acc_width``-bit values."""
    return data.ArrayLayout(signed(cfg.acc_width), cfg.cols)


def acc_write_layout(cfg):
    """Payload of :attr:`Accumulator.write`: ``accumulate`` adds ``data`` to the stored row."""
    return data.StructLayout({
        "addr": unsigned(acc_addr_width(cfg)),
        "data": acc_row_layout(cfg),
        "accumulate": unsigned(1),
    })


def acc_read_unbuffered(cfg):
    """The store path takes every read response in the cycle it is valid: the serial output
    lane (``cfg.output_lane == "serial"``) reads a row once per column, each when it is
    ready for it, so the accumulator holds no response (no skid register)."""
    return cfg.output_lane == "serial"


def acc_read_req_layout(cfg):
    return data.StructLayout({"addr": unsigned(acc_addr_width(cfg))})


def acc_read_resp_layout(cfg):
    return data.StructLayout({"data": acc_row_layout(cfg)})


class Accumulator(wiring.Component):
    """``cfg.acc_rows`` rows of ``cfg.cols`` signed ``cfg.acc_width``-bit accumulators.

    Ports
      write      In(stream{addr, data, accumulate}). Always ready: one row per cycle.
                 ``accumulate = 0`` stores ``data``; ``accumulate = 1`` stores
                 ``row + data`` (each value wrapping at ``acc_width`` bits).
      read_req   In(stream{addr}). One request per cycle while ``read_resp`` keeps up.
      read_resp  Out(stream{data}). Responses in request order; backpressure is honoured
                 (a two-entry output stage holds the responses, so none is lost), except
                 with :func:`acc_read_unbuffered`: a response is valid for its one cycle
                 and ``read_resp.ready`` must then be high.

    Latency
      A write is in the memory 2 cycles after it is accepted; read-modify-writes forward the
      row being written, so back-to-back accumulates (to one row or not) are exact.
      A read response is valid the cycle after its request is accepted. A read sees every
      write accepted in an earlier cycle (the read ports are transparent to the write port).

    Throughput
      ``cfg.acc_read_ports == 2``: one write and one read per cycle, concurrently.
      ``cfg.acc_read_ports == 1``: the read requests share the read-modify-write port, so a
      read is accepted only in a cycle without a write (writes never wait), and at most every
      other cycle (every cycle without a write with :func:`acc_read_unbuffered`); the rows
      then need one copy of block RAM instead of two.
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "write": In(stream.Signature(acc_write_layout(cfg))),
            "read_req": In(stream.Signature(acc_read_req_layout(cfg))),
            "read_resp": Out(stream.Signature(acc_read_resp_layout(cfg))),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=acc_row_layout(cfg), depth=cfg.acc_rows,
                                               init=[])
        wr = mem.write_port()
        # Transparency forwards the row written in the same cycle: that is the row the
        # previous beat is producing, so accumulates to one row on consecutive cycles chain.
        rmw = mem.read_port(transparent_for=(wr,))
        read_accept = Signal()
        mem_valid = Signal()    # the read port's output register holds a requested row
        if cfg.acc_read_ports == 2:
            rd = mem.read_port(transparent_for=(wr,))
            self._read_path(m, rd, read_accept, mem_valid, read_allowed=1)
            m.d.comb += [rd.addr.eq(self.read_req.payload.addr), rd.en.eq(read_accept)]
        else:
            # A write may take the port while a read response waits in the skid, so a read
            # waits until the previous row has left the port's output register (an unbuffered
            # response leaves in its cycle).
            allowed = ~self.write.valid
            if not acc_read_unbuffered(cfg):
                allowed &= ~mem_valid
            self._read_path(m, rmw, read_accept, mem_valid, read_allowed=allowed)
        self._write_path(m, wr, rmw)
        if cfg.acc_read_ports == 1:
            # A read borrows the port in a cycle without a write.
            with m.If(read_accept):
                m.d.comb += [rmw.addr.eq(self.read_req.payload.addr), rmw.en.eq(1)]
        return m

    def _write_path(self, m, wr, rmw):
        cfg = self._cfg
        # Stage 1 holds the accepted beat while its row is read; it is written at the end.
        s1_valid = Signal()
        s1 = Signal(acc_write_layout(cfg))
        m.d.comb += [
            self.write.ready.eq(1),
            rmw.addr.eq(self.write.payload.addr),
            rmw.en.eq(self.write.valid),
        ]
        m.d.sync += [
            s1_valid.eq(self.write.valid),
            s1.eq(self.write.payload),
        ]
        m.d.comb += [
            wr.addr.eq(s1.addr),
            wr.en.eq(s1_valid),
        ]
        for col in range(cfg.cols):
            with m.If(s1.accumulate):
                m.d.comb += wr.data[col].eq(rmw.data[col] + s1.data[col])
            with m.Else():
                m.d.comb += wr.data[col].eq(s1.data[col])

    def _read_path(self, m, rd, accept, mem_valid, read_allowed):
        """The response side of read port ``rd``; ``accept`` is driven here, ``rd``'s address
        and enable by the caller."""
        cfg = self._cfg
        if acc_read_unbuffered(cfg):
            m.d.comb += [
                self.read_req.ready.eq(read_allowed),
                accept.eq(self.read_req.valid & self.read_req.ready),
                self.read_resp.valid.eq(mem_valid),
                self.read_resp.payload.data.eq(rd.data),
            ]
            m.d.sync += mem_valid.eq(accept)
            return
        # The memory output register is stage one; a skid register catches its row when
        # read_resp stalls, so read_req.ready is a register, not a path from read_resp.ready
        # (with a shared port it also depends on write.valid).
        skid_valid = Signal()
        skid = Signal(acc_row_layout(cfg))
        m.d.comb += [
            self.read_req.ready.eq(~skid_valid & read_allowed),
            accept.eq(self.read_req.valid & self.read_req.ready),
            self.read_resp.valid.eq(skid_valid | mem_valid),
        ]
        with m.If(skid_valid):
            m.d.comb += self.read_resp.payload.data.eq(skid)
            with m.If(self.read_resp.ready):
                m.d.sync += skid_valid.eq(0)
        with m.Else():
            m.d.comb += self.read_resp.payload.data.eq(rd.data)
            # The memory row leaves now or moves to the skid; either way stage one empties.
            with m.If(mem_valid & ~self.read_resp.ready):
                m.d.sync += [skid_valid.eq(1), skid.eq(rd.data)]
            m.d.sync += mem_valid.eq(accept)
