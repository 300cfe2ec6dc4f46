"""A small FIFO whose head is always its first register."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["ShiftFIFO"]


class ShiftFIFO(wiring.Component):
    """A drop-in for :class:`amaranth.lib.fifo.SyncFIFO` (same ports, same cycle behaviour)
    for a few entries: entries move one place towards the head on a read, so the head is a
    register and reading needs no multiplexer. Each entry but the last takes a 2:1 choice
    per bit (the write data or the entry behind it), which an iCE40 logic cell holds
    together with the bit's flip-flop; a memory of registers costs a read multiplexer on
    top of flip-flops that no logic packs with.

    Ports
      w_data, w_en, w_rdy   write: taken when ``w_en`` and ``w_rdy`` (not full).
      r_data, r_en, r_rdy   read (first-word fall-through): ``r_data`` is the oldest entry
                            while ``r_rdy`` (not empty); ``r_en`` drops it.
      level                 entries held.

    Latency: a written entry can be read the next cycle. Throughput: one write and one read
    per cycle (a write into a full FIFO waits, as in SyncFIFO, even if it is read).
    """

    def __init__(self, *, width, depth):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"ShiftFIFO depth must be a positive integer, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width),
            "w_en": In(1),
            "w_rdy": Out(1),
            "r_data": Out(width),
            "r_en": In(1),
            "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        # Only entries below `level` are read: their reset value does not matter.
        entries = [Signal(self.width, name=f"entry{i}", reset_less=True)
                   for i in range(self.depth)]
        write = Signal()
        read = Signal()
        m.d.comb += [
            self.w_rdy.eq(self.level != self.depth),
            self.r_rdy.eq(self.level != 0),
            self.r_data.eq(entries[0]),
            write.eq(self.w_en & self.w_rdy),
            read.eq(self.r_en & self.r_rdy),
        ]
        slot = self.level - read    # where a write lands, after this cycle's move
        for i, entry in enumerate(entries):
            with m.If(write & (slot == i)):
                m.d.sync += entry.eq(self.w_data)
            if i + 1 < self.depth:
                with m.Elif(read):
                    m.d.sync += entry.eq(entries[i + 1])
        m.d.sync += self.level.eq(self.level + write - read)
        return m
