"""The tensor core: an R x C systolic array of MAC cells (weight- and output-stationary)."""

from amaranth.hdl import Array, Cat, Module, ResetInserter, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import Config
from .mac import WEIGHT_BUFFERS
from .mac_grid import place_grid


__all__ = ["SystolicArray"]


class SystolicArray(wiring.Component):
    """An ``R x C`` array of :class:`~hw.mac.MacCell` with weight-stationary (WS) and/or
    output-stationary (OS) dataflow, as ``cfg.dataflow`` asks.

    Ports (``R = cfg.rows``, ``C = cfg.cols``; streams are ``lib.stream`` valid/ready)
    -----
    clear : In(1)
        Synchronous reset of every register of the array (abort / soft reset), but the WS
        partial sums of a WS-only array (see below).
    preload : In(stream{data: ArrayLayout(signed(weight_width), C)}) — WS
        A weight tile is exactly ``R`` beats, beat ``k`` = array row ``k`` (row ``k`` of B).
    ws_in : In(stream{data: ArrayLayout(signed(input_width), R), last}) — WS
        One activation row per beat; a group ends with ``last``. Group ``i`` uses tile ``i``.
    os_in : In(stream{a: ArrayLayout(signed(input_width), R), b: ArrayLayout(signed(weight_width), C), last}) — OS
        Beat ``k`` = column ``k`` of the A tile and row ``k`` of the B tile; ``last`` on beat K-1.
    out : Out(stream{data: ArrayLayout(signed(acc_width), C), last})
        WS: one row ``a @ W`` per ``ws_in`` beat, ``last`` copied. OS: the ``R`` rows of
        ``A @ B`` (row 0 first, ``last`` on row R-1). Outputs in the order groups were accepted.

    Structure
    ---------
    Physical array row ``r`` holds logical row ``R-1-r`` (reduction index ``k`` in WS, output
    row ``i`` in OS): weights shift in downwards, so beat 0 of a tile lands at the bottom, and
    the OS results drain downwards, bottom row (logical row 0) first.
    Activations (and the OS A operand) enter row ``r`` through ``r+1`` skew registers and move
    right one cell per cycle; the OS B operand enters column ``c`` through ``c+1`` skew
    registers and moves down. WS partial sums move down; column ``c`` leaves the bottom through
    ``C-1-c`` deskew registers, so ``out`` carries whole aligned rows. With
    ``cfg.array_feed == "broadcast"`` (WS only) an activation reaches every cell of its row in
    the same cycle instead, and the columns leave the bottom aligned (no horizontal or deskew
    registers).

    WS partial sums are exact (no wrap) in a WS-only array, so their registers are
    :func:`hw.mac_grid.psum_width` bits (18 for 4 rows of int8), sign-extended on ``out``.
    Nor are they reset, by ``clear`` or the domain's reset: a row is presented on ``out`` only
    from a valid output slot, and its sum was built from the constant zero entering the top
    row, with one product per row, all in the cycles after its beat was accepted: what a
    partial-sum register held before never reaches a valid row, and after ``clear`` no slot
    is valid for a beat accepted before it. (With OS built the same registers hold OS results
    and are reset as before.) This lets the SB_MAC16 output registers, which have only an
    asynchronous reset, hold them (``mac_dsp="ice40_dual"``, :mod:`hw.ice40_mac`).

    WS double buffering: every cell holds two weights. Tile ``i`` shifts into buffer ``i % 2``
    (all cells of the buffer shift together on a ``preload`` beat) and each activation carries
    the index of its buffer through the array, so groups stream back to back across tiles
    without draining. A tile may shift into a buffer only while no tile waits there and the
    group that used it has left the array: the last beat of a group accepted in cycle ``T``
    meets the bottom-right cell in cycle ``T + R + C - 1`` (:attr:`ws_reuse_delay`), the first
    cycle in which a preload beat for that buffer is accepted. The tile is usable the cycle
    after its ``R``-th beat. So tile ``i+2`` (the buffer of group ``i``) is in time for group
    ``i+2`` to follow group ``i+1`` without a bubble when group ``i+1`` has at least
    ``2R + C - 2`` beats and the tile is offered as soon as allowed.

    Broadcast rows hold their weights differently: every cell has a shadow weight, into which
    tile ``i+1`` shifts, and an active one, which takes the shadow weight as the first beat
    of group ``i+1`` reaches the cell's row (so all cells of a row switch tiles together,
    and with ``mac_dsp="ice40_dual"`` and ``C`` even the SB_MAC16 B registers hold the
    active weights). A tile may shift in while no tile waits in the shadow weights and from
    the cycle in which the bottom row copies them, ``R - 1`` cycles after the first beat of
    the previous group (:attr:`ws_reuse_delay`); so tile ``i+1`` is in time for group ``i+1``
    to follow group ``i`` without a bubble when group ``i`` has at least ``2R - 1`` beats.

    One weight buffer (``cfg.weight_buffers == 1``, broadcast only): no shadow weights; a
    tile loads straight into the active weights (on iCE40 the SB_MAC16 B registers), beat
    ``k`` into physical row ``k`` (which here holds logical row ``k``: the first rows to load
    are the first to be free). ``preload`` is ready from the cycle after the previous group's
    last beat is accepted (:attr:`ws_reuse_delay`; row ``r`` multiplies that beat ``r + 1``
    cycles after its acceptance, and beat ``r`` of the tile comes at least ``r + 1`` cycles
    after it), and ``ws_in`` from the cycle after the tile's last beat. So a tile and its
    group of ``M`` beats take ``R + M`` cycles, back to back (two buffers: ``M``, for groups
    long enough to hide the next tile as above).

    OS: each cell accumulates in its own register; the beat marked ``last`` moves the sum into
    the vertical register and restarts the accumulator, and the column drains downwards while
    the next group computes. The ``last`` beat of a group is accepted at least ``R`` cycles
    after the previous group's (``os_in.ready`` is low for a ``last`` beat until the previous
    group's ``R`` rows are on their way), so groups of ``K >= R`` beats stream without gaps and
    ``out`` carries one row per cycle.

    With both dataflows, the dataflow switches between groups, only once the array is empty;
    between groups the stream of the current dataflow has priority.

    Backpressure: a global clock enable, ``en = ~out.valid | out.ready``, advances every
    register of the datapath (``out`` is driven straight from registers, and a stall freezes
    the whole array); every input stream is ready only when ``en``, so ``out.ready`` reaches
    the input ``ready`` signals combinationally.

    Latency: ``R + C`` cycles (broadcast: ``R + 1``; :attr:`latency`) from the cycle a
    ``ws_in`` beat (WS) or the ``last`` beat of a group (OS, first result row; row ``s`` at
    ``+s``) is accepted to the cycle its row is presented on ``out`` (without stalls).
    Throughput: one row per cycle on every stream (within the WS tile and OS drain rules
    above; switching dataflow costs the time to empty the array).
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"SystolicArray cfg must be a hw.config.Config, not {cfg!r}")
        self.cfg = cfg
        R, C = cfg.rows, cfg.cols
        members = {
            "clear": In(1),
            "out": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(cfg.acc_width), C), "last": 1}))),
        }
        if cfg.has_ws:
            members["preload"] = In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(cfg.weight_width), C)})))
            members["ws_in"] = In(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(cfg.input_width), R), "last": 1})))
        if cfg.has_os:
            members["os_in"] = In(stream.Signature(data.StructLayout({
                "a": data.ArrayLayout(signed(cfg.input_width), R),
                "b": data.ArrayLayout(signed(cfg.weight_width), C), "last": 1})))
        super().__init__(members)

    @property
    def latency(self):
        """Cycles from an accepted input beat to its output row (see the class docstring)."""
        # R skew registers to the bottom row, then its cells' registers; systolic rows add
        # C - 1 cycles (across the row, or the deskew).
        if self.cfg.array_feed == "broadcast":
            return self.cfg.rows + 1
        return self.cfg.rows + self.cfg.cols

    @property
    def ws_reuse_delay(self):
        """Cycles after a WS group's last beat (broadcast: first beat; ``weight_buffers=1``:
        last beat) before its buffer (the shadow weights; ``weight_buffers=1``: the active
        ones) may take a new tile."""
        if self.cfg.weight_buffers == 1:
            # Row 0 multiplies the last beat in the next cycle, and loads in that one.
            return 1
        if self.cfg.array_feed == "broadcast":
            # The bottom row copies the shadow weights R - 1 cycles after the first beat (row
            # 0 in its cycle: the next one at the earliest).
            return max(self.cfg.rows - 1, 1)
        # The last beat uses the weight of the bottom(-right) cell in the cycle before its row
        # reaches `out`.
        return self.latency - 1

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        ws, os = cfg.has_ws, cfg.has_os

        grid = place_grid(m, cfg, clear=self.clear)
        en = grid.en
        m.d.comb += en.eq(~self.out.valid | self.out.ready)

        # Rows in flight towards `out`: a (valid, last) slot per cycle of latency.
        slot = data.StructLayout({"valid": 1, "last": 1})
        inject = Signal(slot)
        stages = [Signal(slot, name=f"stage_{i}") for i in range(self.latency)]
        with m.If(en):
            m.d.sync += stages[0].eq(inject)
            m.d.sync += [stages[i].eq(stages[i - 1]) for i in range(1, self.latency)]
        m.d.comb += [self.out.valid.eq(stages[-1].valid),
                     self.out.payload.last.eq(stages[-1].last)]

        in_group = Signal()
        if ws and os:
            os_mode = Signal()
            ws_active, os_active = ~os_mode, os_mode
        else:
            os_mode, ws_active, os_active = None, 1, 1

        # What enters the skew triangles this cycle: zeros unless a beat is accepted, so a
        # bubble adds nothing to an OS accumulator.
        feed_h = grid.feed_h  # by physical row
        if ws:
            if cfg.weight_buffers == 1:
                ws_fire = self._ws_direct_control(m, grid, en, feed_h, inject)
            elif cfg.array_feed == "broadcast":
                ws_fire = self._ws_broadcast_control(m, grid, en, feed_h, inject, in_group)
            else:
                ws_fire = self._ws_control(m, grid, en, ws_active, feed_h, inject)
            with m.If(ws_fire):
                m.d.sync += in_group.eq(~self.ws_in.payload.last)
        if os:
            idle = Signal()
            os_fire = self._os_control(m, en, os_active, feed_h, grid.feed_b, inject, idle)
            with m.If(os_fire):
                m.d.sync += in_group.eq(~self.os_in.payload.last)

        if ws and os:
            empty = Signal()
            m.d.comb += empty.eq(~Cat(s.valid for s in stages).any() & idle)
            with m.If(~in_group & empty):
                with m.If(os_mode & ~self.os_in.valid & self.ws_in.valid):
                    m.d.sync += os_mode.eq(0)
                with m.If(~os_mode & ~self.ws_in.valid & self.os_in.valid):
                    m.d.sync += os_mode.eq(1)

        if ws and os:
            m.d.comb += grid.os_mode.eq(os_mode)
        m.d.comb += self.out.payload.data.eq(grid.result)

        return ResetInserter(self.clear)(m)

    def _ws_control(self, m, grid, en, active, feed_h, inject):
        """Weight tiles, their pairing with groups and the buffer-reuse rule."""
        R = self.cfg.rows
        full = Array(Signal(name=f"tile_full_{i}") for i in range(WEIGHT_BUFFERS))
        # Cycles until the group that used a buffer has left the array.
        in_use = Array(Signal(range(self.ws_reuse_delay + 1), name=f"tile_in_use_{i}")
                       for i in range(WEIGHT_BUFFERS))
        load_buf = Signal(range(WEIGHT_BUFFERS))
        load_row = Signal(range(R))
        group_buf = Signal(range(WEIGHT_BUFFERS))

        preload_fire = Signal()
        ws_fire = Signal()
        m.d.comb += [
            self.preload.ready.eq(en & ~full[load_buf] & (in_use[load_buf] == 0)),
            preload_fire.eq(self.preload.valid & self.preload.ready),
            self.ws_in.ready.eq(en & active & full[group_buf]),
            ws_fire.eq(self.ws_in.valid & self.ws_in.ready),
        ]

        with m.If(en):
            for i in range(WEIGHT_BUFFERS):
                with m.If(in_use[i] != 0):
                    m.d.sync += in_use[i].eq(in_use[i] - 1)
        with m.If(preload_fire):
            m.d.sync += load_row.eq(load_row + 1)
            with m.If(load_row == R - 1):
                m.d.sync += [load_row.eq(0), full[load_buf].eq(1),
                             load_buf.eq(load_buf + 1)]
        with m.If(ws_fire):
            m.d.comb += [inject.valid.eq(1), inject.last.eq(self.ws_in.payload.last)]
            with m.If(self.ws_in.payload.last):
                # The last beat uses the buffer in its cycle of arrival at each cell; the
                # bottom-right cell is reached ws_reuse_delay cycles after acceptance.
                m.d.sync += [full[group_buf].eq(0),
                             in_use[group_buf].eq(self.ws_reuse_delay - 1),
                             group_buf.eq(group_buf + 1)]

        for r in range(R):
            m.d.comb += feed_h[r].sel.eq(group_buf)
            with m.If(ws_fire):
                m.d.comb += feed_h[r].a.eq(self.ws_in.payload.data[R - 1 - r])
        m.d.comb += grid.w_top.eq(self.preload.payload.data)
        for i in range(WEIGHT_BUFFERS):
            m.d.comb += grid.w_shift[i].eq(preload_fire & (load_buf == i))
        return ws_fire

    def _ws_broadcast_control(self, m, grid, en, feed_h, inject, in_group):
        """Broadcast rows: one tile in the shadow weights, copied into the active ones by the
        first beat of its group."""
        R = self.cfg.rows
        full = Signal()
        load_row = Signal(range(R))
        # Cycles until the cycle in which the bottom row copies the shadow weights, the first
        # in which they may shift again.
        copy_wait = Signal(range(R))
        preload_fire = Signal()
        ws_fire = Signal()
        first = Signal()
        m.d.comb += [
            self.preload.ready.eq(en & ~full & (copy_wait == 0)),
            preload_fire.eq(self.preload.valid & self.preload.ready),
            self.ws_in.ready.eq(en & (in_group | full)),
            ws_fire.eq(self.ws_in.valid & self.ws_in.ready),
            first.eq(ws_fire & ~in_group),
        ]
        with m.If(en & (copy_wait != 0)):
            m.d.sync += copy_wait.eq(copy_wait - 1)
        self._count_tile_rows(m, preload_fire, load_row, full)
        with m.If(ws_fire):
            m.d.comb += [inject.valid.eq(1), inject.last.eq(self.ws_in.payload.last)]
        with m.If(first):
            m.d.sync += full.eq(0)
            if R > 1:
                m.d.sync += copy_wait.eq(R - 2)

        for r in range(R):
            with m.If(ws_fire):
                m.d.comb += feed_h[r].a.eq(self.ws_in.payload.data[R - 1 - r])
        m.d.comb += [grid.w_top.eq(self.preload.payload.data), grid.w_shift.eq(preload_fire),
                     grid.w_load.eq(first)]
        return ws_fire

    def _count_tile_rows(self, m, preload_fire, load_row, full):
        """Broadcast rows: ``load_row`` counts a tile's preload beats; the last sets ``full``."""
        with m.If(preload_fire):
            m.d.sync += load_row.eq(load_row + 1)
            with m.If(load_row == self.cfg.rows - 1):
                m.d.sync += [load_row.eq(0), full.eq(1)]

    def _ws_direct_control(self, m, grid, en, feed_h, inject):
        """One weight buffer (broadcast): a tile loads row by row straight into the active
        weights, between the last beat of the previous group and the first of its own."""
        R = self.cfg.rows
        # The tile is in the active weights and its group has not ended.
        full = Signal()
        load_row = Signal(range(R))
        preload_fire = Signal()
        ws_fire = Signal()
        m.d.comb += [
            self.preload.ready.eq(en & ~full),
            preload_fire.eq(self.preload.valid & self.preload.ready),
            self.ws_in.ready.eq(en & full),
            ws_fire.eq(self.ws_in.valid & self.ws_in.ready),
        ]
        self._count_tile_rows(m, preload_fire, load_row, full)
        with m.If(ws_fire):
            m.d.comb += [inject.valid.eq(1), inject.last.eq(self.ws_in.payload.last)]
            with m.If(self.ws_in.payload.last):
                m.d.sync += full.eq(0)

        # Physical row r holds logical row r here, so the rows free first (the top ones)
        # load first: row r multiplies a beat r + 1 cycles after its acceptance.
        for r in range(R):
            # Not gated by ws_fire: a WS row is summed from zero at the top, and a bubble's
            # products reach no valid output slot.
            m.d.comb += feed_h[r].a.eq(self.ws_in.payload.data[r])
            m.d.comb += grid.w_load[r].eq(preload_fire & (load_row == r))
        m.d.comb += grid.w_top.eq(self.preload.payload.data)
        return ws_fire

    def _os_control(self, m, en, active, feed_h, feed_b, inject, idle):
        """OS beats, and the R result rows each group injects into the output slots."""
        R, C = self.cfg.rows, self.cfg.cols
        rows_left = Signal(range(R))
        last = self.os_in.payload.last
        os_fire = Signal()
        m.d.comb += [
            # A group's results drain through the same registers as the previous group's:
            # its last beat must come R cycles after the previous last beat.
            self.os_in.ready.eq(en & active & ~(last & (rows_left != 0))),
            os_fire.eq(self.os_in.valid & self.os_in.ready),
            idle.eq(rows_left == 0),
        ]
        with m.If(os_fire & last):
            m.d.comb += [inject.valid.eq(1), inject.last.eq(R == 1)]
            m.d.sync += rows_left.eq(R - 1)
        with m.Elif(rows_left != 0):
            m.d.comb += [inject.valid.eq(1), inject.last.eq(rows_left == 1)]
            with m.If(en):
                m.d.sync += rows_left.eq(rows_left - 1)

        for r in range(R):
            with m.If(os_fire):
                m.d.comb += [feed_h[r].a.eq(self.os_in.payload.a[R - 1 - r]),
                             feed_h[r].last.eq(last)]
        for c in range(C):
            with m.If(os_fire):
                m.d.comb += feed_b[c].eq(self.os_in.payload.b[c])
        return os_fire
