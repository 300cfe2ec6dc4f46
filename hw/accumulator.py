"""The accumulator memory: rows of ``C`` wrapping ``acc_width``-bit sums.

The systolic array writes result rows (overwriting or accumulating), the store path reads
them back for the output pipeline. The rows live in one block RAM with a registered read
port for the read-modify-write and one for the store path.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .config import Config
from .ram import registered_read


__all__ = [
    "Accumulator", "acc_addr_width", "acc_column_writes", "acc_row_layout", "acc_write_layout",
    "acc_read_req_layout", "acc_read_resp_layout", "acc_read_unbuffered",
]


def acc_addr_width(cfg):
    """Bits of an accumulator row address."""
    return ceil_log2(cfg.acc_rows)


def acc_row_layout(cfg):
    """One accumulator row: ``C`` signed ``acc_width``-bit values."""
    return data.ArrayLayout(signed(cfg.acc_width), cfg.cols)


def acc_column_writes(cfg):
    """Whether a write names the columns it writes (``mask``): the load unit's LOAD writes
    one column at a time with ``cfg.load_writes == "columns"``."""
    return cfg.load_writes == "columns"


def acc_write_layout(cfg):
    """Payload of :attr:`Accumulator.write`: ``accumulate`` adds ``data`` to the stored row;
    with :func:`acc_column_writes`, only the columns set in ``mask`` are written."""
    fields = {
        "addr": unsigned(acc_addr_width(cfg)),
        "data": acc_row_layout(cfg),
        "accumulate": unsigned(1),
    }
    if acc_column_writes(cfg):
        fields["mask"] = unsigned(cfg.cols)
    return data.StructLayout(fields)


def acc_read_unbuffered(cfg):
    """The store path takes every read response in the cycle it is valid: the serial output
    lane (``cfg.output_lane == "serial"``) reads a row once per column, each when it is
    ready for it, so the accumulator holds no response (no skid register)."""
    return cfg.output_lane == "serial"


def acc_read_req_layout(cfg):
    return data.StructLayout({"addr": unsigned(acc_addr_width(cfg))})


def acc_read_resp_layout(cfg):
    return data.StructLayout({"data": acc_row_layout(cfg)})


class _RegisteredRead:
    """An asynchronous read port's ``addr``, and its ``data`` registered under ``en``."""

    def __init__(self, m, port, name):
        self.addr = port.addr
        self.en = Signal(name=f"{name}_en")
        self.data = registered_read(m, port, self.en, name=f"{name}_data")


class Accumulator(wiring.Component):
    """``cfg.acc_rows`` rows of ``cfg.cols`` signed ``cfg.acc_width``-bit accumulators.

    Ports
      write      In(stream{addr, data, accumulate[, mask]}). One row per cycle (with
                 :func:`acc_column_writes`, the columns set in ``mask``): always ready with
                 ``cfg.acc_forward == "bypass"``; with "stall" an accumulate waits one
                 cycle (``ready`` low) after a write of the same row, or of any row with the
                 same lowest address bit (rows in sequence never wait).
                 ``accumulate = 0`` stores ``data``; ``accumulate = 1`` stores
                 ``row + data`` (each value wrapping at ``acc_width`` bits).
      read_req   In(stream{addr}). One request per cycle while ``read_resp`` keeps up.
      read_resp  Out(stream{data}). Responses in request order; backpressure is honoured
                 (a two-entry output stage holds the responses, so none is lost), except
                 with :func:`acc_read_unbuffered`: a response is valid for its one cycle
                 and ``read_resp.ready`` must then be high.

    Latency
      A write is in the memory 2 cycles after it is accepted; read-modify-writes forward the
      row being written ("bypass") or wait for it ("stall"), so back-to-back accumulates (to
      one row or not) are exact. A read response is valid the cycle after its request is
      accepted. A read sees every write accepted in an earlier cycle ("bypass": the read
      ports are transparent to the write port; "stall": a read request for the row accepted
      by the write port in the previous cycle waits one cycle).

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
        #: Simulation check, not a port: a read port reads the row written in its cycle,
        #: whose data the block RAM does not define ("stall" never does).
        self.read_collision = Signal()
        super().__init__({
            "write": In(stream.Signature(acc_write_layout(cfg))),
            "read_req": In(stream.Signature(acc_read_req_layout(cfg))),
            "read_resp": Out(stream.Signature(acc_read_resp_layout(cfg))),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        stall = cfg.acc_forward == "stall"
        # With "stall" no read ever uses a row read in the cycle it is written (see
        # _write_path), so the block RAM may do what it likes then (no_rw_check: yosys adds
        # no bypass).
        m.submodules.mem = mem = memory.Memory(shape=acc_row_layout(cfg), depth=cfg.acc_rows,
                                               init=[], attrs={"no_rw_check": 1} if stall else {})
        wr = mem.write_port(granularity=1 if acc_column_writes(cfg) else None)
        # "bypass": transparency forwards the row written in the same cycle, the row the
        # previous beat is producing, so accumulates to one row on consecutive cycles chain.
        rmw = self._read_port(m, mem, wr, "rmw")
        # The row in stage 1 is written this cycle; with "stall" it cannot be read now.
        s1_valid = Signal()
        s1 = Signal(acc_write_layout(cfg))
        def in_flight(addr):
            return s1_valid & (s1.addr == addr)
        read_accept = Signal()
        mem_valid = Signal()    # the read port's output register holds a requested row
        read_free = ~in_flight(self.read_req.payload.addr) if stall else 1
        if cfg.acc_read_ports == 2:
            rd = self._read_port(m, mem, wr, "rd")
            self._read_path(m, rd, read_accept, mem_valid, read_allowed=read_free)
            m.d.comb += [rd.addr.eq(self.read_req.payload.addr), rd.en.eq(read_accept)]
        else:
            # A write may take the port while a read response waits in the skid, so a read
            # waits until the previous row has left the port's output register (an unbuffered
            # response leaves in its cycle).
            allowed = ~self.write.valid
            if stall:
                allowed &= read_free
            if not acc_read_unbuffered(cfg):
                allowed &= ~mem_valid
            self._read_path(m, rmw, read_accept, mem_valid, read_allowed=allowed)
        self._write_path(m, wr, rmw, s1_valid, s1)
        if cfg.acc_read_ports == 1:
            # A read borrows the port in a cycle without a write.
            with m.If(read_accept):
                m.d.comb += [rmw.addr.eq(self.read_req.payload.addr), rmw.en.eq(1)]
        if stall:
            ports = (rmw,) if cfg.acc_read_ports == 1 else (rmw, rd)
            m.d.comb += self.read_collision.eq(
                wr.en.any() & Cat(port.en & (port.addr == wr.addr) for port in ports).any())
        return m

    def _read_port(self, m, mem, wr, name):
        """A read port of ``mem`` with ``addr``, ``en`` and a registered ``data``: transparent
        to ``wr`` ("bypass"), or an asynchronous port and a reset-less register, which yosys
        folds into the block RAM as a port with no defined read-during-write ("stall")."""
        if self._cfg.acc_forward == "bypass":
            return mem.read_port(transparent_for=(wr,))
        return _RegisteredRead(m, mem.read_port(domain="comb"), name)

    def _write_path(self, m, wr, rmw, s1_valid, s1):
        cfg = self._cfg
        # Stage 1 holds the accepted beat while its row is read; it is written at the end.
        # With "stall" an accumulate to the row in stage 1 waits a cycle: its read would
        # not see that write.
        write = self.write
        if cfg.acc_forward == "stall":
            # The check is on the lowest address bit only (rows written in sequence alternate
            # it, so they never wait): one LUT, where a full comparator would put the
            # writer's address adder in front of ``ready``. An accumulate to another row of
            # that parity waits a cycle it need not; that is all it costs.
            same_parity = s1.addr[0] == write.payload.addr[0]
            m.d.comb += write.ready.eq(~(write.payload.accumulate & s1_valid & same_parity))
        else:
            m.d.comb += write.ready.eq(1)
        # ("stall": only an accumulate reads its row, so no read meets a write to its row.)
        reads_row = write.valid & write.ready
        if cfg.acc_forward == "stall":
            reads_row &= write.payload.accumulate
        m.d.comb += [
            rmw.addr.eq(write.payload.addr),
            rmw.en.eq(reads_row),
        ]
        m.d.sync += [
            s1_valid.eq(write.valid & write.ready),
            s1.eq(write.payload),
        ]
        m.d.comb += wr.addr.eq(s1.addr)
        if acc_column_writes(cfg):
            m.d.comb += wr.en.eq(Mux(s1_valid, s1.mask, 0))
        else:
            m.d.comb += wr.en.eq(s1_valid)
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
