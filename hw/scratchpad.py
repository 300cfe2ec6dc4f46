"""The scratchpad: rows of ``E`` int8 elements in single-port banks.

The bank of a row is its high address bits, so buffers the compiler places in different
banks (ping / pong, activations / weights) are read and written in the same cycle.
"""

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .config import Config
from .ram import registered_read


__all__ = [
    "Scratchpad", "sp_addr_width", "sp_bank_bits", "sp_row_layout", "sp_write_layout",
    "sp_read_req_layout", "sp_read_resp_layout",
]

def sp_addr_width(cfg):
    """Bits of a scratchpad row address."""
    return ceil_log2(cfg.sp_rows)


def sp_bank_bits(cfg):
    """Bits of a row address inside its bank (the bank is the bits above)."""
    return ceil_log2(cfg.sp_bank_rows)


def sp_row_layout(cfg):
    """One scratchpad row: ``E`` bytes (int8 elements as stored, reinterpreted by readers)."""
    return data.ArrayLayout(unsigned(8), cfg.sp_row_elems)


def sp_write_layout(cfg):
    return data.StructLayout({"addr": unsigned(sp_addr_width(cfg)), "data": sp_row_layout(cfg)})


def sp_read_req_layout(cfg):
    return data.StructLayout({"addr": unsigned(sp_addr_width(cfg))})


def sp_read_resp_layout(cfg):
    return data.StructLayout({"data": sp_row_layout(cfg)})


class Scratchpad(wiring.Component):
    """``cfg.sp_rows`` rows of ``cfg.sp_row_elems`` bytes in ``cfg.scratchpad_banks`` banks.

    Each bank is one single-port ``lib.memory.Memory`` of ``cfg.sp_bank_rows`` rows (one
    address shared by its read and write port, contents not reset; its read is registered:
    an asynchronous port into a register loaded in the cycles the bank is read, which
    synthesis folds into the memory), so it maps to block RAM or SPRAM. Row ``a`` is in bank
    ``a >> sp_bank_bits(cfg)``.

    Ports
      write         In(stream{addr, data}).
      read_req[i]   In(stream{addr}), ``i < read_ports``.
      read_resp[i]  Out(stream{data}): the rows of port ``i``'s requests, in order;
                    backpressure is honoured (a port holds up to ``cfg.sp_read_buffer`` rows,
                    then stops taking requests).

    Arbitration
      One access per bank per cycle, fixed priority read port 0 > read port 1 > ... > write.
      A request that loses its bank (or a read port whose rows are still held) waits with
      ``ready`` low; the write also waits while a read of its bank waits for room. A read
      sees every write accepted in an earlier cycle. With ``cfg.sp_read_buffer == 2`` a
      port's ``ready`` is a register: one row from the bank and one stalled on
      ``read_resp`` fit at full throughput. With 1 it holds one row, and
      takes a request in a cycle its rows all leave (``read_resp.ready`` counts).

    Latency
      ``read_resp`` is valid the cycle after its request is accepted (when the port holds no
      older rows). A write is in the memory the cycle after it is accepted.

    Throughput
      One request per port per cycle when the ports use different banks and ``read_resp``
      is accepted; requests to one bank share its one access per cycle by priority.
    """

    def __init__(self, cfg, read_ports=2):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        if not isinstance(read_ports, int) or read_ports < 1:
            raise ValueError(f"read_ports must be a positive integer, not {read_ports!r}")
        self._cfg = cfg
        self._read_ports = read_ports
        super().__init__({
            "write": In(stream.Signature(sp_write_layout(cfg))),
            "read_req": In(stream.Signature(sp_read_req_layout(cfg))).array(read_ports),
            "read_resp": Out(stream.Signature(sp_read_resp_layout(cfg))).array(read_ports),
        })

    @property
    def read_ports(self):
        return self._read_ports

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        banks = cfg.scratchpad_banks
        bank_bits = sp_bank_bits(cfg)

        def bank_of(addr):
            return addr[bank_bits:] if banks > 1 else 0

        # A bank's read and write never share a cycle, and its read register is loaded under
        # an enable that says so (``~wr.en``): a block RAM's read and write of one address
        # in one cycle give no defined result, so a read register the synthesis tool cannot
        # prove idle during writes costs flip-flops to emulate one.
        ports = []
        for b in range(banks):
            mem = memory.Memory(shape=sp_row_layout(cfg), depth=cfg.sp_bank_rows, init=[])
            m.submodules[f"bank{b}"] = mem
            rd = mem.read_port(domain="comb")
            wr = mem.write_port()
            rd_en = Signal(name=f"read_bank{b}")
            rd_data = registered_read(m, rd, rd_en & ~wr.en, name=f"bank{b}_row")
            ports.append((rd, wr, rd_en, rd_data))

        # Requesters in priority order: the read ports, then the write. A read port is
        # offered a bank when no higher port takes it; the write, when no read port asks for
        # it, even one that must wait for room: so the write's ``ready`` never depends on a
        # reader's ``ready`` (on small FPGAs that chain ran from the accumulator through the
        # array into the DMA). ``ready`` is the offer: it never depends on the requester's
        # own ``valid``.
        room = [Signal(name=f"room{i}") for i in range(self._read_ports)]
        requesters = [(req.valid, room[i], req.payload.addr)
                      for i, req in enumerate(self.read_req)]
        requesters.append((self.write.valid, 1, self.write.payload.addr))
        offer = [[Signal(name=f"offer{i}_bank{b}") for b in range(banks)]
                 for i in range(len(requesters))]
        access = [[Signal(name=f"access{i}_bank{b}") for b in range(banks)]
                  for i in range(len(requesters))]
        *reads, (write_valid, _, write_addr) = requesters
        for b in range(banks):
            claimed = asked = 0
            for i, (valid, can, addr) in enumerate(reads):
                wanted = bank_of(addr) == b
                m.d.comb += [
                    offer[i][b].eq(can & wanted & ~claimed),
                    access[i][b].eq(offer[i][b] & valid),
                ]
                claimed = claimed | access[i][b]
                asked = asked | (valid & wanted)
            m.d.comb += [
                offer[-1][b].eq((bank_of(write_addr) == b) & ~asked),
                access[-1][b].eq(offer[-1][b] & write_valid),
            ]

        for b, (rd, wr, rd_en, _) in enumerate(ports):
            for i, (_, _, addr) in enumerate(requesters):
                with m.If(access[i][b]):
                    m.d.comb += [rd.addr.eq(addr[:bank_bits]), wr.addr.eq(addr[:bank_bits])]
            m.d.comb += [
                rd_en.eq(Cat(access[i][b] for i in range(self._read_ports)).any()),
                wr.en.eq(access[-1][b]),
                wr.data.eq(self.write.payload.data),
            ]
        m.d.comb += self.write.ready.eq(Cat(offer[-1]).any())

        for i in range(self._read_ports):
            self._read_port(m, i, room[i], offer[i], access[i], [data for *_, data in ports])
        return m

    def _read_port(self, m, i, room, offer, access, bank_reads):
        cfg = self._cfg
        req, resp = self.read_req[i], self.read_resp[i]
        m.d.comb += req.ready.eq(Cat(offer).any())

        # The bank's output register is only this port's for one cycle (another port may
        # read the bank next), so the row is used at once or copied into the port's buffer.
        pending = Signal(name=f"pending{i}")
        pending_bank = Signal(range(cfg.scratchpad_banks), name=f"pending_bank{i}")
        m.d.sync += pending.eq(req.valid & req.ready)
        for b in range(cfg.scratchpad_banks):
            with m.If(access[b]):
                m.d.sync += pending_bank.eq(b)
        bank_row = Signal(sp_row_layout(cfg), name=f"bank_row{i}")
        with m.Switch(pending_bank):
            for b, data in enumerate(bank_reads):
                with m.Case(b):
                    m.d.comb += bank_row.eq(data)

        depth = cfg.sp_read_buffer
        held = Signal(range(depth + 1), name=f"held{i}")
        buffer = [Signal(sp_row_layout(cfg), name=f"buffer{i}_{k}") for k in range(depth)]
        m.d.comb += resp.valid.eq((held != 0) | pending)
        if depth == 1:
            m.d.comb += room.eq(held + pending - (resp.valid & resp.ready) == 0)
        else:
            m.d.comb += room.eq(held + pending < depth)
        with m.If(held != 0):
            m.d.comb += resp.payload.data.eq(buffer[0])
        with m.Else():
            m.d.comb += resp.payload.data.eq(bank_row)

        pop = Signal(name=f"pop{i}")
        push = Signal(name=f"push{i}")
        m.d.comb += [
            pop.eq((held != 0) & resp.ready),
            push.eq(pending & ~((held == 0) & resp.ready)),
        ]
        with m.If(pop):
            for k in range(depth - 1):
                m.d.sync += buffer[k].eq(buffer[k + 1])
        with m.If(push):
            with m.Switch(held - pop):
                for k in range(depth):
                    with m.Case(k):
                        m.d.sync += buffer[k].eq(bank_row)
        m.d.sync += held.eq(held + push - pop)

