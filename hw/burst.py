"""Splitting 2D DMA commands into window-checked AXI4 INCR bursts.

Shared by the read and the write engine of :class:`hw.dma.Dma`: both turn a command
``{addr, rows, row_bytes, stride}`` into the same sequence of bursts, followed by one
*end* entry that closes the command (and carries a window fault, if any).
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sw.isa import ErrorCause

from .axi import AXI_4K, AXI_LEN_WIDTH
from .config import Config


__all__ = ["ROWS_WIDTH", "ROW_BYTES_WIDTH", "STRIDE_WIDTH", "dma_cmd_layout",
           "dma_status_layout", "burst_layout", "BurstGen"]


ROWS_WIDTH = 16
ROW_BYTES_WIDTH = 16
STRIDE_WIDTH = 32


def dma_cmd_layout(cfg):
    """A 2D transfer: ``rows`` rows of ``row_bytes`` bytes, row ``r`` at ``addr + r*stride``."""
    return data.StructLayout({
        "addr": unsigned(cfg.addr_width),
        "rows": unsigned(ROWS_WIDTH),
        "row_bytes": unsigned(ROW_BYTES_WIDTH),
        "stride": unsigned(STRIDE_WIDTH),
    })


def dma_status_layout(cfg):
    """The outcome of a command: ``cause`` (``ErrorCause``) and the faulting address."""
    return data.StructLayout({
        "cause": ErrorCause,
        "addr": unsigned(cfg.addr_width),
    })


def burst_layout(cfg):
    """One entry of :attr:`BurstGen.o`.

    ``end = 0``: an INCR burst of ``len + 1`` beats at the bus-aligned ``addr``; ``offset`` is
    the byte lane of its row's first byte, ``row_bytes`` the row length, ``row_first`` /
    ``row_last`` / ``cmd_last`` mark the row's first and last burst and the command's last.
    ``end = 1``: the command is over; ``cause`` is ``DMA_WINDOW`` with the failing row at
    ``addr``, or ``NONE``. ``has_data`` is 0 for a command without bytes (rows or row_bytes 0).
    ``tag`` alternates from command to command, telling two commands in flight apart.
    """
    return data.StructLayout({
        "end": unsigned(1),
        "addr": unsigned(cfg.addr_width),
        "len": unsigned(AXI_LEN_WIDTH),
        "offset": unsigned(exact_log2(cfg.bus_bytes)),
        "row_bytes": unsigned(ROW_BYTES_WIDTH),
        "row_first": unsigned(1),
        "row_last": unsigned(1),
        "cmd_last": unsigned(1),
        "cause": ErrorCause,
        "has_data": unsigned(1),
        "tag": unsigned(1),
    })


class BurstGen(wiring.Component):
    """Command -> bursts: per row a window check, then INCR bursts covering the row.

    Each row ``[a, a + row_bytes)`` must lie inside ``[window_base, window_base + window_size)``
    and below ``2**addr_width``; the first row that does not ends the command (no burst of it
    or a later row is produced) with an end entry ``{cause: DMA_WINDOW, addr: a}``. A row is
    split into bursts that start at its bus-aligned address, hold at most
    ``cfg.max_burst_beats`` beats and never cross a 4 KiB boundary; consecutive bursts of a row
    are contiguous.

    Ports
      cmd          In(stream{addr, rows, row_bytes, stride}); accepted only while ``start``
                   is high and the previous command's end entry has gone out.
      o            Out(stream(burst_layout)): the bursts, then one end entry per command.
      start        In(1): the owner is ready for a new command.
      window_base, window_size   In(addr_width).

    Latency
      The first burst is valid the cycle after ``cmd`` is accepted.

    Throughput
      One burst (or end entry) per cycle; a row's window check costs no extra cycle.
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(dma_cmd_layout(cfg))),
            "o": Out(stream.Signature(burst_layout(cfg))),
            "start": In(1),
            "window_base": In(cfg.addr_width),
            "window_size": In(cfg.addr_width),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        bus_bytes = cfg.bus_bytes
        off_bits = exact_log2(bus_bytes)
        max_burst_bytes = cfg.max_burst_beats * bus_bytes
        # A row address is addr + r * stride for r < 2**ROWS_WIDTH: wide enough never to wrap,
        # so a row beyond the address space fails the window check instead of aliasing.
        wide = max(cfg.addr_width, STRIDE_WIDTH) + ROWS_WIDTH + 1

        cmd = Signal(dma_cmd_layout(cfg))
        row_addr = Signal(wide)
        rows_left = Signal(ROWS_WIDTH)
        pos = Signal(cfg.addr_width)
        rem = Signal(ROW_BYTES_WIDTH)
        row_first = Signal()
        cause = Signal(ErrorCause)
        fault_addr = Signal(cfg.addr_width)
        has_data = Signal()
        tag = Signal()

        row_end = row_addr + cmd.row_bytes
        window_end = self.window_base + self.window_size
        row_ok = ((row_addr >= self.window_base) & (row_end <= window_end)
                  & (row_end <= (1 << cfg.addr_width)))

        # The burst starting at the current position (the row start for the first burst).
        cur = Signal(cfg.addr_width)
        cur_rem = Signal(ROW_BYTES_WIDTH)
        to_4k = Signal(range(AXI_4K + 1))
        to_max = Signal(range(max_burst_bytes + 1))
        m.d.comb += [
            cur.eq(Mux(row_first, row_addr[:cfg.addr_width], pos)),
            cur_rem.eq(Mux(row_first, cmd.row_bytes, rem)),
            to_4k.eq(AXI_4K - cur[:exact_log2(AXI_4K)]),
            to_max.eq(max_burst_bytes - cur[:off_bits]),
        ]
        offset = cur[:off_bits]
        chunk = Signal(ROW_BYTES_WIDTH)
        m.d.comb += chunk.eq(cur_rem)
        with m.If(to_4k < cur_rem):
            m.d.comb += chunk.eq(to_4k)
        with m.If((to_max < to_4k) & (to_max < cur_rem)):
            m.d.comb += chunk.eq(to_max)
        span = offset + chunk
        beats = (span + bus_bytes - 1) >> off_bits
        last_of_row = chunk == cur_rem

        o = self.o.p
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(self.start)
                with m.If(self.cmd.valid & self.start):
                    m.d.sync += [
                        cmd.eq(self.cmd.p),
                        row_addr.eq(self.cmd.p.addr),
                        rows_left.eq(self.cmd.p.rows),
                        row_first.eq(1),
                        cause.eq(ErrorCause.NONE),
                        fault_addr.eq(0),
                        has_data.eq((self.cmd.p.rows != 0) & (self.cmd.p.row_bytes != 0)),
                        tag.eq(~tag),
                    ]
                    with m.If((self.cmd.p.rows == 0) | (self.cmd.p.row_bytes == 0)):
                        m.next = "END"
                    with m.Else():
                        m.next = "BURST"
            with m.State("BURST"):
                with m.If(row_first & ~row_ok):
                    m.d.sync += [cause.eq(ErrorCause.DMA_WINDOW),
                                 fault_addr.eq(row_addr[:cfg.addr_width])]
                    m.next = "END"
                with m.Else():
                    m.d.comb += [
                        self.o.valid.eq(1),
                        o.addr.eq(Cat(Const(0, off_bits), cur[off_bits:])),
                        o.len.eq(beats - 1),
                        o.offset.eq(row_addr[:off_bits]),
                        o.row_bytes.eq(cmd.row_bytes),
                        o.row_first.eq(row_first),
                        o.row_last.eq(last_of_row),
                        o.cmd_last.eq(last_of_row & (rows_left == 1)),
                        o.has_data.eq(1),
                        o.tag.eq(tag),
                    ]
                    with m.If(self.o.ready):
                        m.d.sync += [pos.eq(cur + chunk), rem.eq(cur_rem - chunk),
                                     row_first.eq(last_of_row)]
                        with m.If(last_of_row):
                            m.d.sync += [rows_left.eq(rows_left - 1),
                                         row_addr.eq(row_addr + cmd.stride)]
                            with m.If(rows_left == 1):
                                m.next = "END"
            with m.State("END"):
                m.d.comb += [
                    self.o.valid.eq(1),
                    o.end.eq(1),
                    o.cause.eq(cause),
                    o.addr.eq(fault_addr),
                    o.has_data.eq(has_data),
                    o.tag.eq(tag),
                ]
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
