"""One multiply-accumulate cell of the systolic array."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["MacCell", "WEIGHT_BUFFERS", "mac_cell_signature"]

#: Weight registers per cell in WS: the active tile and the shadow tile shifting in.
WEIGHT_BUFFERS = 2


def mac_cell_signature(*, input_width, weight_width, acc_width, ws=True, os=True,
                       broadcast=False, weight_buffers=WEIGHT_BUFFERS, external_mac=False,
                       registered_mac=False, registered_weight=False):
    """The ports of a :class:`MacCell` with these parameters (validated)."""
    for name, value in (("input_width", input_width), ("weight_width", weight_width),
                        ("acc_width", acc_width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"MacCell {name}={value!r} must be a positive integer")
    if acc_width < input_width + weight_width:
        raise ValueError(f"MacCell acc_width={acc_width} must be at least input_width +"
                         f" weight_width = {input_width + weight_width}")
    if not (ws or os):
        raise ValueError("MacCell needs at least one of ws, os")
    if broadcast and os:
        raise ValueError("MacCell broadcast is for WS alone: OS passes the A operand and the"
                         " drain wavefront along the row")
    if registered_mac and not (external_mac and ws and not os):
        raise ValueError("MacCell registered_mac needs external_mac and the WS dataflow alone"
                         " (an OS cell keeps its own sum registers)")
    if weight_buffers not in (1, WEIGHT_BUFFERS):
        raise ValueError(f"MacCell weight_buffers={weight_buffers!r} must be 1 or"
                         f" {WEIGHT_BUFFERS}")
    if weight_buffers == 1 and not broadcast:
        raise ValueError("MacCell weight_buffers=1 needs broadcast (a systolic row selects"
                         " between its two buffers per activation)")
    if registered_weight and not (registered_mac and broadcast):
        raise ValueError("MacCell registered_weight needs registered_mac and broadcast")
    h_fields = {"a": signed(input_width)}
    v_fields = {"p": signed(acc_width)}
    if ws and not broadcast:
        h_fields["sel"] = range(WEIGHT_BUFFERS)
    if os:
        h_fields["last"] = 1
        v_fields["b"] = signed(weight_width)
        v_fields["shift"] = 1
    h_layout, v_layout = data.StructLayout(h_fields), data.StructLayout(v_fields)
    members = {"en": In(1), "h_in": In(h_layout)}
    if not broadcast:
        members["h_out"] = Out(h_layout)
    members.update(v_in=In(v_layout), v_out=Out(v_layout))
    if broadcast and weight_buffers == 1:
        members.update(w_in=In(signed(weight_width)), load=In(1))
    elif broadcast:
        members.update(w_in=In(signed(weight_width)), w_out=Out(signed(weight_width)),
                       w_shift=In(1), load=In(1))
    elif ws:
        w_layout = data.ArrayLayout(signed(weight_width), WEIGHT_BUFFERS)
        members.update(w_in=In(w_layout), w_out=Out(w_layout), w_shift=In(WEIGHT_BUFFERS))
    if os:
        members["drain"] = In(1)
    if ws and os:
        members["os_mode"] = In(1)
    if external_mac:
        members["mac_in"] = Out(data.StructLayout({
            "a": signed(input_width), "b": signed(weight_width), "c": signed(acc_width)}))
        members["mac_out"] = In(signed(acc_width))
    return wiring.Signature(members)


class MacCell(wiring.Component):
    """A MAC cell: operands arrive from the left (``h_in``) and the top (``v_in``) and
    leave, one register later, to the right (``h_out``) and the bottom (``v_out``).

    Parameters
    ----------
    input_width, weight_width, acc_width : int
        Signed widths of an activation, a weight and the cell's sums (wrapping): the vertical
        ``p`` and the OS accumulator. A WS-only array passes the width its exact partial
        sums need (:func:`hw.mac_grid.psum_width`), which may be less than the Config's.
    ws, os : bool
        Which dataflows the cell supports (at least one).
    broadcast : bool
        (WS only) The grid gives each activation to its whole row at once: the cell has no
        ``h_out``, and instead of two weight buffers selected per activation it has a shadow
        weight, shifting in with the tile, and an active one, loaded from it on ``load``.
    weight_buffers : int
        (``broadcast``) 2: the shadow and the active weight, as above; 1: the active weight
        alone, loaded straight from ``w_in`` on ``load`` (no ``w_out`` / ``w_shift``).
    external_mac : bool
        The multiply-add is outside the cell (``mac_in`` / ``mac_out``), e.g. half of a DSP
        block shared by two cells (:mod:`hw.ice40_mac`); otherwise the cell computes it.
    registered_mac : bool
        (``external_mac``, WS only) The external multiply-add registers its sum: its register
        is the cell's partial-sum register, and ``v_out.p`` is ``mac_out``.
    registered_weight : bool
        (``registered_mac``, ``broadcast``) The external multiply-add holds the active weight
        too: ``mac_in.b`` is the shadow weight (``weight_buffers=1``: ``w_in``), which it
        registers on ``load`` with ``en``.

    Ports
    -----
    en : In(1)
        Clock enable of every register in the cell (the array's global stall).
    h_in, h_out : In/Out(h_layout) (no ``h_out`` with ``broadcast``)
        Horizontal operand: ``a`` (activation), ``sel`` (WS but ``broadcast``: weight buffer
        used by this activation) and ``last`` (OS: the final beat of a group; the cell moves
        its sum into ``p`` and restarts from zero).
    v_in, v_out : In/Out(v_layout)
        Vertical operand: ``p`` (WS: partial sum; OS: finished result draining down),
        ``b`` (OS: the B operand) and ``shift`` (OS: the drain wavefront, see below).
        In a WS-only cell the ``p`` register has no reset: a WS partial sum needs none (see
        :class:`hw.systolic.SystolicArray`), and an SB_MAC16 output register that may hold it
        (``registered_mac``) has only an asynchronous one.
    w_in, w_out, w_shift : (WS)
        The two weight buffers; buffer ``i`` takes ``w_in[i]`` (the cell above) when
        ``w_shift[i]``, so a column of cells is a shift register per buffer. ``broadcast``:
        the shadow weight, taking ``w_in`` when ``w_shift``; with ``weight_buffers=1`` only
        ``w_in``, the next active weight.
    load : In(1) (``broadcast``)
        The active weight takes the shadow weight (``weight_buffers=1``: ``w_in``): the
        weight of the activations from the next cycle on.
    drain : In(1) (OS)
        Pulses once per group, for the whole column, when the column's results are complete.
        A cell then takes ``p`` from above for as many cycles as it has cells above it (the
        ``shift`` flag runs down one cell per cycle), so a column drains bottom row first
        while each cell becomes free for the next group's result as soon as its last value
        below has left it.
    os_mode : In(1) (both dataflows)
        1: OS arithmetic, 0: WS arithmetic. Changed only while the array is empty.
    mac_in, mac_out : Out / In (``external_mac``)
        The cell's operands this cycle: ``a``, ``b`` (the weight, or OS ``b``) and ``c`` (the
        partial sum from above, or the OS accumulator), and in the same cycle
        ``a * b + c`` (wrapping to ``acc_width``) from the external, combinational,
        multiply-add; with ``registered_mac``, that sum for the operands of the last cycle
        with ``en`` (the external adder's register advances with ``en``).

    Latency 1 cycle (every output is a register); throughput one operand set per cycle.
    """

    def __init__(self, *, input_width, weight_width, acc_width, ws=True, os=True,
                 broadcast=False, weight_buffers=WEIGHT_BUFFERS, external_mac=False,
                 registered_mac=False, registered_weight=False):
        signature = mac_cell_signature(input_width=input_width, weight_width=weight_width,
                                       acc_width=acc_width, ws=ws, os=os, broadcast=broadcast,
                                       weight_buffers=weight_buffers,
                                       external_mac=external_mac,
                                       registered_mac=registered_mac,
                                       registered_weight=registered_weight)
        self.input_width, self.weight_width, self.acc_width = input_width, weight_width, acc_width
        self.ws, self.os, self.broadcast = ws, os, broadcast
        self.weight_buffers = weight_buffers
        self.external_mac, self.registered_mac = external_mac, registered_mac
        self.registered_weight = registered_weight
        self.h_layout = signature.members["h_in"].shape
        self.v_layout = signature.members["v_in"].shape
        if ws:
            self.w_layout = signature.members["w_in"].shape
        super().__init__(signature)

    def elaborate(self, platform):
        m = Module()

        if not self.broadcast:
            h = Signal(self.h_layout)
            m.d.comb += self.h_out.eq(h)
        if self.registered_mac:
            m.d.comb += self.v_out.p.eq(self.mac_out)
        else:
            v = Signal(self.v_layout, reset_less=not self.os)
            m.d.comb += self.v_out.eq(v)

        a = self.h_in.a
        if self.broadcast:
            if self.weight_buffers == 1:
                next_weight = self.w_in
            else:
                next_weight = Signal(self.w_layout, name="shadow")
                m.d.comb += self.w_out.eq(next_weight)
                with m.If(self.en & self.w_shift):
                    m.d.sync += next_weight.eq(self.w_in)
            if self.registered_weight:
                weight = next_weight
            else:
                # Like the partial sums, not reset: a group's first beat loads it in every row
                # before its products use it (weight_buffers=1: its tile has loaded it), and
                # after `clear` none is accepted before a whole tile has shifted in.
                weight = Signal(self.w_layout, reset_less=True)
                with m.If(self.en & self.load):
                    m.d.sync += weight.eq(next_weight)
        elif self.ws:
            weights = Signal(self.w_layout)
            m.d.comb += self.w_out.eq(weights)
            with m.If(self.en):
                for i in range(WEIGHT_BUFFERS):
                    with m.If(self.w_shift[i]):
                        m.d.sync += weights[i].eq(self.w_in[i])
            weight = weights[self.h_in.sel]
        if self.os:
            acc = Signal(signed(self.acc_width))
            shift = Signal()
            m.d.comb += shift.eq(self.drain | self.v_in.shift)

        if self.ws and self.os:
            operand = Mux(self.os_mode, self.v_in.b, weight)
        elif self.ws:
            operand = weight
        else:
            operand = self.v_in.b
        if self.external_mac:
            if self.ws and self.os:
                addend = Mux(self.os_mode, acc, self.v_in.p)
            else:
                addend = self.v_in.p if self.ws else acc
            m.d.comb += [self.mac_in.a.eq(a), self.mac_in.b.eq(operand),
                         self.mac_in.c.eq(addend)]
            ws_sum = os_sum = self.mac_out
        else:
            product = Signal(signed(self.input_width + self.weight_width))
            m.d.comb += product.eq(a * operand)
            if self.ws:
                ws_sum = self.v_in.p + product
            if self.os:
                os_sum = acc + product

        def ws_step():
            if not self.registered_mac:
                m.d.sync += v.p.eq(ws_sum)

        def os_step():
            with m.If(self.h_in.last):
                m.d.sync += [v.p.eq(os_sum), acc.eq(0)]
            with m.Else():
                m.d.sync += acc.eq(os_sum)
                with m.If(shift):
                    m.d.sync += v.p.eq(self.v_in.p)

        with m.If(self.en):
            if not self.broadcast:
                m.d.sync += h.eq(self.h_in)
            if self.os:
                m.d.sync += [v.b.eq(self.v_in.b), v.shift.eq(shift)]
            if self.ws and self.os:
                with m.If(self.os_mode):
                    os_step()
                with m.Else():
                    ws_step()
            elif self.ws:
                ws_step()
            else:
                os_step()

        return m
