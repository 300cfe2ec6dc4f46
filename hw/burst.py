"""Splitting 2D DMA commands into window-checked AXI4 INCR bursts.

Shared by the read and the write engine of :class:`hw.dma.Dma`: both turn a command
``{addr, rows, row_bytes, stride}`` into the same sequence of bursts, followed by one
*end* entry that closes the command (and carries a window fault, if any).
"""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from sw import isa
from sw.isa import ErrorCause

from .axi import AXI_4K
from .config import Config
from .decoder import field_limits


__all__ = ["ROWS_WIDTH", "ROW_BYTES_WIDTH", "STRIDE_WIDTH", "dma_cmd_limits",
           "dma_rows_width", "dma_row_bytes_width", "rows_fit_a_burst", "dma_cmd_layout",
           "dma_status_layout", "burst_layout", "BurstGen"]


#: The ``rows`` / ``row_bytes`` widths of ``dma_cmd_fields="full"``; ``stride`` is always
#: as wide as an instruction's ``dram_stride``.
ROWS_WIDTH = 16
ROW_BYTES_WIDTH = 16
STRIDE_WIDTH = 32


def dma_cmd_limits(cfg):
    """``{"rows": n, "row_bytes": n}``: the largest values the DMA's users put in a command,
    a legal LOAD (``row_elems`` int32 elements at most), a legal STORE (int32 output) or an
    instruction fetch (``fetch_chunk`` rows of one instruction); the decoder rejects the
    instructions that would carry more, so ``dma_cmd_fields="legal"`` sizes the fields
    from these."""
    load, store = field_limits(cfg, "LOAD"), field_limits(cfg, "STORE")
    return {"rows": max(load["rows"], store["rows"], cfg.fetch_chunk),
            "row_bytes": max(4 * load["row_elems"], 4 * store["row_elems"], isa.INSTR_BYTES)}


def dma_rows_width(cfg):
    """Bits of a DMA command's ``rows`` (and of the DMA's row counters)."""
    if cfg.dma_cmd_fields == "legal":
        return bits_for(dma_cmd_limits(cfg)["rows"])
    return ROWS_WIDTH


def dma_row_bytes_width(cfg):
    """Bits of a DMA command's ``row_bytes`` (and of the DMA's byte-in-row counters)."""
    if cfg.dma_cmd_fields == "legal":
        return bits_for(dma_cmd_limits(cfg)["row_bytes"])
    return ROW_BYTES_WIDTH


def rows_fit_a_burst(cfg):
    """Whether every row a command can carry spans at most ``cfg.max_burst_beats`` bus beats
    (at any alignment; such a row is at most 4 KiB long, as a burst is)."""
    widest = (1 << dma_row_bytes_width(cfg)) - 1
    return -(-(widest + cfg.bus_bytes - 1) // cfg.bus_bytes) <= cfg.max_burst_beats


def dma_cmd_layout(cfg):
    """A 2D transfer: ``rows`` rows of ``row_bytes`` bytes, row ``r`` at ``addr + r*stride``
    (``rows`` / ``row_bytes`` widths: :func:`dma_rows_width`, :func:`dma_row_bytes_width`)."""
    return data.StructLayout({
        "addr": unsigned(cfg.addr_width),
        "rows": unsigned(dma_rows_width(cfg)),
        "row_bytes": unsigned(dma_row_bytes_width(cfg)),
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
        "len": unsigned(exact_log2(cfg.max_burst_beats)),  # AxLEN < max_burst_beats
        "offset": unsigned(exact_log2(cfg.bus_bytes)),
        "row_bytes": unsigned(dma_row_bytes_width(cfg)),
        "row_first": unsigned(1),
        "row_last": unsigned(1),
        "cmd_last": unsigned(1),
        "cause": ErrorCause,
        "has_data": unsigned(1),
        "tag": unsigned(1),
    })


class BurstGen(wiring.Component):
    """Command -> bursts: per row a window check, then INCR bursts covering the row.

    Each row ``[a, a + row_bytes)`` must lie inside ``[window_base, window_end)``
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
      window_base  In(addr_width), window_end  In(addr_width + 1): the window; its end is
                   an input so that the read and the write generator share one adder.
      row_bytes    Out(dma_row_bytes_width): the current command's ``row_bytes``, and
      has_data, result   Out(1), Out(stream{cause, addr}) payload: its end entry's
                   ``has_data`` / ``{cause, addr}``, valid from the end entry on. All three
                   hold until the next command is accepted, so an owner that takes one
                   command at a time reads them here instead of carrying them in its queues.
                   Such an owner passes ``end_result=False``: an end entry's ``cause`` and
                   ``addr`` are then unspecified (no multiplexer puts them on ``o``).

    Latency
      The first burst is valid the cycle after ``cmd`` is accepted.

    Throughput
      One burst (or end entry) per cycle; a row's window check costs no extra cycle.
    """

    def __init__(self, cfg, *, end_result=True):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        self._cfg = cfg
        self._end_result = end_result
        super().__init__({
            "cmd": In(stream.Signature(dma_cmd_layout(cfg))),
            "o": Out(stream.Signature(burst_layout(cfg))),
            "start": In(1),
            "window_base": In(cfg.addr_width),
            "window_end": In(cfg.addr_width + 1),
            "row_bytes": Out(dma_row_bytes_width(cfg)),
            "has_data": Out(1),
            "result": Out(dma_status_layout(cfg)),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        aw = cfg.addr_width
        bus_bytes = cfg.bus_bytes
        off_bits = exact_log2(bus_bytes)
        page_beats = AXI_4K // bus_bytes
        # The split works in bus beats: every burst but a row's first starts bus-aligned, so
        # a position is a beat address; the row ends in the beat holding byte row_end - 1.
        beat_bits = exact_log2(cfg.max_burst_beats) + 1

        row_bytes = self.row_bytes
        stride = Signal(aw)
        stride_far = Signal()       # stride >= 2**addr_width: the next row is beyond the space
        # Row addresses only matter below 2**addr_width: a row at or beyond it fails the
        # window check, reporting its address modulo 2**addr_width. So a row address is kept
        # modulo 2**addr_width with `beyond` set once the true address has left the space.
        row_addr = Signal(aw)
        beyond = Signal()
        rows_left = Signal(dma_rows_width(cfg))
        row_first = Signal()
        fault = Signal()            # the row at `row_addr` failed the window check
        has_data = self.has_data
        tag = Signal()

        offset = row_addr[:off_bits]
        row_end = row_addr + row_bytes
        row_ok = (~beyond & (row_addr >= self.window_base) & (row_end <= self.window_end)
                  & (row_end <= (1 << aw)))

        # The burst on offer starts at beat address `cur` (the row start for the first burst)
        # and runs up to the 4 KiB page end and max_burst_beats (`limit` beats), or to the row
        # end if that comes first (the row's last burst). Only a row that passed the check
        # gets bursts, so row_end <= 2**addr_width here.
        cur = Signal(aw - off_bits)
        limit = Signal(beat_bits)
        if rows_fit_a_burst(cfg):
            # Every row the command can carry fits in one burst, and a page (a burst is at
            # most a page): a row is cut only by a page end, and at most once. Its second
            # burst starts at the page of its end: no position register and no adder.
            page_bits = exact_log2(AXI_4K)
            crossing = ((row_end[page_bits:] != row_addr[page_bits:])
                        & (row_end[:page_bits] != 0))
            m.d.comb += [
                cur.eq(Mux(row_first, row_addr[off_bits:],
                           Cat(Const(0, page_bits - off_bits), row_end[page_bits:aw]))),
                # Used only for a crossing row's first burst, shorter than the row.
                limit.eq(page_beats - cur[:page_bits - off_bits]),
            ]
            last_of_row = ~row_first | ~crossing
            advance = []
        else:
            # Both are powers of two, so min(beats to the page end, max_burst_beats) only
            # takes a subtraction in the page's last max_burst_beats-aligned block.
            pos = Signal.like(cur)          # beat address of the next burst of the row
            reach = Signal(len(pos) + 1)
            block_bits = exact_log2(min(page_beats, cfg.max_burst_beats))
            block_beats = 1 << block_bits
            last_block = cur[block_bits:exact_log2(page_beats)].all()
            m.d.comb += [
                cur.eq(Mux(row_first, row_addr[off_bits:], pos)),
                limit.eq(Mux(last_block, block_beats - cur[:block_bits], block_beats)),
                reach.eq(cur + limit),
            ]
            last_of_row = Cat(Const(0, off_bits), reach) >= row_end
            advance = [pos.eq(reach)]
        # The last burst's beats: ceil(row_end / bus_bytes) - cur, which is at most `limit`.
        tail = (row_end[off_bits:][:beat_bits] - cur[:beat_bits]
                + (row_end[:off_bits] != 0))[:beat_bits]
        beats = Mux(last_of_row, tail, limit)

        m.d.comb += [self.result.cause.eq(Mux(fault, ErrorCause.DMA_WINDOW, ErrorCause.NONE)),
                     self.result.addr.eq(Mux(fault, row_addr, 0))]

        o = self.o.p
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(self.start)
                with m.If(self.cmd.valid & self.start):
                    m.d.sync += [
                        row_bytes.eq(self.cmd.p.row_bytes),
                        stride.eq(self.cmd.p.stride[:aw]),
                        stride_far.eq(self.cmd.p.stride[aw:] != 0),
                        row_addr.eq(self.cmd.p.addr),
                        beyond.eq(0),
                        rows_left.eq(self.cmd.p.rows),
                        row_first.eq(1),
                        fault.eq(0),
                        has_data.eq((self.cmd.p.rows != 0) & (self.cmd.p.row_bytes != 0)),
                        tag.eq(~tag),
                    ]
                    with m.If((self.cmd.p.rows == 0) | (self.cmd.p.row_bytes == 0)):
                        m.next = "END"
                    with m.Else():
                        m.next = "BURST"
            with m.State("BURST"):
                with m.If(row_first & ~row_ok):
                    m.d.sync += fault.eq(1)
                    m.next = "END"
                with m.Else():
                    m.d.comb += [
                        self.o.valid.eq(1),
                        o.addr.eq(Cat(Const(0, off_bits), cur)),
                        o.len.eq(beats - 1),
                        o.offset.eq(offset),
                        o.row_bytes.eq(row_bytes),
                        o.row_first.eq(row_first),
                        o.row_last.eq(last_of_row),
                        o.cmd_last.eq(last_of_row & (rows_left == 1)),
                        o.has_data.eq(1),
                        o.tag.eq(tag),
                    ]
                    with m.If(self.o.ready):
                        m.d.sync += [*advance, row_first.eq(last_of_row)]
                        with m.If(last_of_row):
                            # A row is only left after it passed the check, so `beyond` is
                            # clear here: the next row is beyond on a carry or a far stride.
                            next_row = row_addr + stride
                            m.d.sync += [rows_left.eq(rows_left - 1),
                                         Cat(row_addr, beyond).eq(next_row | (stride_far << aw))]
                            with m.If(rows_left == 1):
                                m.next = "END"
            with m.State("END"):
                m.d.comb += [
                    self.o.valid.eq(1),
                    o.end.eq(1),
                    o.has_data.eq(has_data),
                    o.tag.eq(tag),
                ]
                if self._end_result:
                    m.d.comb += [o.cause.eq(self.result.cause), o.addr.eq(self.result.addr)]
                else:
                    # The bursts' address expression: o.addr then needs no multiplexer.
                    m.d.comb += o.addr.eq(Cat(Const(0, off_bits), cur))
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
