"""The R x C grid of MAC cells with its skew and deskew registers.

Two descriptions of the same circuit live here, side by side:

* :class:`MacGrid`, an Amaranth component: what amaranth.sim simulates and what board
  builds synthesise.
* :func:`grid_verilog`, the same grid as a Verilog module of ``generate`` loops around one
  emitted :class:`~hw.mac.MacCell` module. Amaranth elaborates and emits every submodule and
  every net on its own, so a flat 256 x 256 grid (millions of nets) takes many minutes;
  inside :func:`hw.repeat.repeated_as_instances` the array instantiates this module (named
  ``{prefix}_mac_grid``) instead, and the generator's time no longer grows with R x C. The
  cocotb tests run this form.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.vendor import LatticeICE40Platform

from .config import Config
from .ice40_mac import MACS_PER_DSP, Ice40DualMac
from .mac import WEIGHT_BUFFERS, MacCell, mac_cell_signature
from .repeat import instance_of, instance_prefix


__all__ = ["MacGrid", "GRID_KIND", "CELL_KIND", "grid_verilog", "mac_cell_params",
           "place_grid", "psum_width"]

#: Module names of the emitted grid and cell, after the prefix of repeated_as_instances.
GRID_KIND = "mac_grid"
CELL_KIND = "mac_cell"


def psum_width(cfg):
    """Signed width of the cells' vertical register ``p`` and of the deskew registers.

    With OS built, ``p`` also carries the OS results: ``cfg.acc_width``. A WS-only array's
    partial sums are exact: the sum leaving the bottom of a column adds ``R`` products of
    ``input_width`` x ``weight_width`` signed bits, the largest of which is
    ``(-2**(input_width-1)) * (-2**(weight_width-1)) = 2**(input_width+weight_width-2)`` and
    the most negative smaller in magnitude, so every partial sum is within
    ``+-R * 2**(input_width+weight_width-2)``: one bit more than that bound's unsigned width
    (18 bits for 4 rows of int8: ``4 * 128 * 128 = 2**16`` needs 18), never more than
    ``acc_width`` (the sums wrap there anyway). ``result`` sign-extends it to ``acc_width``.
    """
    if cfg.has_os:
        return cfg.acc_width
    largest = cfg.rows << (cfg.input_width + cfg.weight_width - 2)
    return min(cfg.acc_width, largest.bit_length() + 1)


def mac_cell_params(cfg):
    """The :class:`~hw.mac.MacCell` parameters of ``cfg``'s array."""
    params = dict(input_width=cfg.input_width, weight_width=cfg.weight_width,
                  acc_width=psum_width(cfg), ws=cfg.has_ws, os=cfg.has_os,
                  broadcast=_broadcast(cfg))
    if _direct_weights(cfg):
        params["weight_buffers"] = 1
    return params


def _broadcast(cfg):
    """Whether each activation reaches its whole row at once (``cfg.array_feed``)."""
    return cfg.array_feed == "broadcast"


def _direct_weights(cfg):
    """Whether a tile loads straight into the active weights, row by row (``weight_buffers``
    1: no shadow weights; broadcast only)."""
    return cfg.weight_buffers == 1


def _weight_buffers(cfg):
    """Weight registers per cell shifting in tiles: two selected per activation, or one shadow
    register (broadcast, whose active register loads from it)."""
    return 1 if _broadcast(cfg) else WEIGHT_BUFFERS


def _registered_dsps(cfg):
    """Whether the cells' partial-sum registers are the SB_MAC16 output registers (a WS-only
    array built with ``ice40_dual``; an OS cell needs its sum registers in logic)."""
    return cfg.mac_dsp == "ice40_dual" and not cfg.has_os


def grid_signature(cfg):
    """The ports of the grid of ``cfg`` (see :class:`MacGrid`)."""
    cell = mac_cell_signature(**mac_cell_params(cfg))
    R, C = cfg.rows, cfg.cols
    members = {
        "en": In(1),
        "feed_h": In(data.ArrayLayout(cell.members["h_in"].shape, R)),
        "result": Out(data.ArrayLayout(signed(cfg.acc_width), C)),
    }
    if cfg.has_ws:
        members["w_top"] = In(data.ArrayLayout(signed(cfg.weight_width), C))
    if _direct_weights(cfg):
        members["w_load"] = In(R)
    elif cfg.has_ws:
        members["w_shift"] = In(_weight_buffers(cfg))
    if _broadcast(cfg) and not _direct_weights(cfg):
        members["w_load"] = In(1)
    if cfg.has_os:
        members["feed_b"] = In(data.ArrayLayout(signed(cfg.weight_width), C))
    if cfg.has_ws and cfg.has_os:
        members["os_mode"] = In(1)
    return wiring.Signature(members)


class MacGrid(wiring.Component):
    """``R x C`` :class:`~hw.mac.MacCell` with the skew and deskew registers around them.

    Physical row ``r`` is row ``r`` of cells counted from the top; column ``c`` from the left.

    Ports
      en          In(1): clock enable of every register (the array's global stall).
      feed_h      In(ArrayLayout(h_layout, R)): the horizontal operand entering physical row
                  ``r`` (``a``, ``sel``, ``last``); it reaches cell ``(r, 0)`` through ``r + 1``
                  skew registers (``array_feed="broadcast"``: every cell of the row).
      feed_b      In(ArrayLayout(signed(weight_width), C)) (OS): the B operand entering column
                  ``c``; it reaches cell ``(0, c)`` through ``c + 1`` skew registers.
      w_top       In(ArrayLayout(signed(weight_width), C)) (WS): the weight entering the top
                  cell of column ``c``, into the buffers selected by ``w_shift``
                  (``weight_buffers=1``: the weight of column ``c`` for the rows ``w_load``
                  selects).
      w_shift     In(2) (WS): buffer ``i`` of every cell shifts down one row. Broadcast:
                  In(1), the shadow weights shift down one row.
      w_load      In(1) (broadcast): the first beat of a group enters ``feed_h``: each row's
                  active weights take its shadow weights as the beat enters the row's last
                  skew register (so row ``r`` ``r`` cycles later), for the products of that
                  beat and the following ones.
                  ``weight_buffers=1``: In(R), no ``w_shift``: bit ``r`` loads ``w_top`` into
                  the active weights of row ``r``, for the products from the next cycle on.
      os_mode     In(1) (both dataflows): see :class:`~hw.mac.MacCell`.
      result      Out(ArrayLayout(signed(acc_width), C)): the bottom row's ``p`` of column
                  ``c`` through ``C - 1 - c`` deskew registers (broadcast: none), sign-extended
                  from :func:`psum_width` bits.

    A column drains (OS) when the bottom cell of the column passes on an operand marked
    ``last``. Latency: an operand entering row ``r`` in cycle ``T`` is in cell ``(r, c)`` in
    cycle ``T + r + c + 1``; the bottom-row sum of column ``c`` computed then appears on
    ``result[c]`` ``C - c`` cycles later. Broadcast: in every cell ``(r, c)`` in cycle
    ``T + r + 1``, on ``result`` one cycle after the bottom row (the cells' registers).
    All registers are synchronous-reset to zero but, in a WS-only grid, the partial sums (the
    cells' ``p`` and the deskew registers): WS needs no reset of them (see
    :class:`hw.systolic.SystolicArray`).

    Multiply-adds: with ``cfg.mac_dsp == "ice40_dual"`` and an iCE40 platform, consecutive
    cells in row-major order (horizontal neighbours when ``C`` is even) share one SB_MAC16
    (:class:`~hw.ice40_mac.Ice40DualMac`, combinational, so the timing above holds); in a
    WS-only grid the block's output registers hold the low 16 bits of the cells' partial
    sums instead (``registered``: the same timing, the registers advancing with ``en``), and
    in a broadcast grid whose rows pair up (``C`` even) its B input register holds the active
    weights of the pair.
    Otherwise (simulation, other FPGAs) every cell computes its own.
    """

    def __init__(self, cfg):
        if not isinstance(cfg, Config):
            raise TypeError(f"MacGrid cfg must be a hw.config.Config, not {cfg!r}")
        self.cfg = cfg
        super().__init__(grid_signature(cfg))

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        ws, os = cfg.has_ws, cfg.has_os
        dual = cfg.mac_dsp == "ice40_dual" and isinstance(platform, LatticeICE40Platform)
        registered = dual and _registered_dsps(cfg)
        broadcast = _broadcast(cfg)
        registered_weight = registered and broadcast and C % MACS_PER_DSP == 0
        direct = _direct_weights(cfg)
        cells = [[MacCell(**mac_cell_params(cfg), external_mac=dual, registered_mac=registered,
                          registered_weight=registered_weight)
                  for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"cell_{r}_{c}"] = cells[r][c]
        if dual:
            _share_dsps(m, cfg, [cell for row in cells for cell in row], self.en, registered,
                        registered_weight)
        if direct:
            for r in range(R):
                m.d.comb += [cell.load.eq(self.w_load[r]) for cell in cells[r]]
        elif broadcast:
            # A group's first beat reaches row r's last skew register r cycles after row 0's.
            for r in range(R):
                load = _delay(m, self.en, self.w_load, r, f"load_{r}")
                m.d.comb += [cell.load.eq(load) for cell in cells[r]]

        for r in range(R):
            skewed = _delay(m, self.en, self.feed_h[r], r + 1, f"skew_h_{r}")
            fed = cells[r] if broadcast else cells[r][:1]
            m.d.comb += [cell.h_in.eq(skewed) for cell in fed]
        for c in range(C):
            top = Signal(cells[0][c].v_layout, name=f"top_{c}")
            if os:
                m.d.comb += top.b.eq(_delay(m, self.en, self.feed_b[c], c + 1, f"skew_b_{c}"))
            m.d.comb += cells[0][c].v_in.eq(top)

        for r in range(R):
            for c in range(C):
                cell = cells[r][c]
                m.d.comb += cell.en.eq(self.en)
                if c > 0 and not broadcast:
                    m.d.comb += cell.h_in.eq(cells[r][c - 1].h_out)
                if r > 0:
                    m.d.comb += cell.v_in.eq(cells[r - 1][c].v_out)
                if direct:
                    m.d.comb += cell.w_in.eq(self.w_top[c])
                elif ws:
                    m.d.comb += cell.w_shift.eq(self.w_shift)
                    if r == 0 and broadcast:
                        m.d.comb += cell.w_in.eq(self.w_top[c])
                    elif r == 0:
                        m.d.comb += [cell.w_in[i].eq(self.w_top[c])
                                     for i in range(WEIGHT_BUFFERS)]
                    else:
                        m.d.comb += cell.w_in.eq(cells[r - 1][c].w_out)
                if os:
                    m.d.comb += cell.drain.eq(cells[R - 1][c].h_out.last)
                if ws and os:
                    m.d.comb += cell.os_mode.eq(self.os_mode)

        for c in range(C):
            column = _delay(m, self.en, cells[R - 1][c].v_out.p, 0 if broadcast else C - 1 - c,
                            f"deskew_{c}", reset_less=not os)
            m.d.comb += self.result[c].eq(column)
        return m


def _share_dsps(m, cfg, cells, en, registered, registered_b):
    """One :class:`~hw.ice40_mac.Ice40DualMac` per ``MACS_PER_DSP`` of ``cells`` (the last
    one half used when their number is odd), its output registers advancing with ``en`` when
    ``registered``, its B register loading with the cells' ``load`` when ``registered_b``
    (two cells of a row)."""
    for first in range(0, len(cells), MACS_PER_DSP):
        dsp = Ice40DualMac(a_width=cfg.input_width, b_width=cfg.weight_width,
                           acc_width=psum_width(cfg), registered=registered,
                           registered_b=registered_b)
        m.submodules[f"dsp_{first // MACS_PER_DSP}"] = dsp
        if registered:
            m.d.comb += dsp.en.eq(en)
        if registered_b:
            m.d.comb += dsp.load.eq(cells[first].load)
        for half, cell in enumerate(cells[first:first + MACS_PER_DSP]):
            m.d.comb += [dsp.a[half].eq(cell.mac_in.a), dsp.b[half].eq(cell.mac_in.b),
                         dsp.c[half].eq(cell.mac_in.c), cell.mac_out.eq(dsp.s[half])]


def _delay(m, en, value, cycles, name, reset_less=False):
    """``value`` through ``cycles`` registers advancing with ``en``."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_{i}", reset_less=reset_less)
        with m.If(en):
            m.d.sync += reg.eq(value)
        value = reg
    return value


# -- emitted form ---------------------------------------------------------------------------

def place_grid(m, cfg, *, clear):
    """Add the grid of ``cfg`` to ``m`` as submodule ``grid``; returns its ports.

    Normally that is a :class:`MacGrid` (cleared by the caller's ``ResetInserter``); inside
    :func:`hw.repeat.repeated_as_instances`, signals wired to an ``Instance`` of the grid
    module ``{prefix}_mac_grid`` (which the caller writes with :func:`grid_verilog`), whose
    reset is the domain's reset or ``clear`` (``ResetInserter`` does not reach into
    instances).
    """
    prefix = instance_prefix()
    if prefix is None:
        grid = m.submodules.grid = MacGrid(cfg)
        return grid
    ports, m.submodules.grid = instance_of(grid_signature(cfg), f"{prefix}_{GRID_KIND}", "grid",
                                           reset=clear)
    return ports


def grid_verilog(cfg, module_name, cell_module_name):
    """Verilog text of :class:`MacGrid` for ``cfg`` as module ``module_name``, built from
    ``generate`` loops around the cell module ``cell_module_name`` (a :class:`MacCell` with
    :func:`mac_cell_params`, emitted by Amaranth). Ports as :class:`MacGrid` (plus ``clk``
    and ``rst``), each ``ArrayLayout`` flattened element 0 first, as Amaranth packs it."""
    R, C = cfg.rows, cfg.cols
    ws, os = cfg.has_ws, cfg.has_os
    cell = mac_cell_signature(**mac_cell_params(cfg))
    h_layout, v_layout = cell.members["h_in"].shape, cell.members["v_in"].shape
    H, V, WT, P = h_layout.size, v_layout.size, cfg.weight_width, cfg.acc_width
    p_field = v_layout["p"]
    # A WS-only grid's deskew registers are S = psum_width bits wide and not reset.
    S = psum_width(cfg)
    narrow = S != P
    deskew_width = "S" if narrow else "P"
    broadcast = _broadcast(cfg)
    direct = _direct_weights(cfg)
    NB = _weight_buffers(cfg)

    ports = ["input clk", "input rst", "input en", f"input [{R * H - 1}:0] feed_h",
             f"output [{C * P - 1}:0] result"]
    if direct:
        ports += [f"input [{C * WT - 1}:0] w_top", f"input [{R - 1}:0] w_load"]
    elif ws:
        ports += [f"input [{C * WT - 1}:0] w_top", f"input [{NB - 1}:0] w_shift"]
    if broadcast and not direct:
        ports.append("input w_load")
    if os:
        ports.append(f"input [{C * WT - 1}:0] feed_b")
    if ws and os:
        ports.append("input os_mode")

    # h: the operand entering cell (r, c) at index r*(C+1)+c (index C of a row: what leaves
    # it; broadcast: index r*(C+1) enters every cell of the row). v: the operand entering
    # cell (r, c) at r*C+c (row R: what leaves the bottom).
    lines = [
        f"// The {R} x {C} MAC grid of hw.mac_grid.MacGrid (see grid_verilog).",
        f"module {module_name} (",
        ",\n".join(f"  {p}" for p in ports),
        ");",
        f"  localparam R = {R}, C = {C}, H = {H}, V = {V}, WT = {WT}, P = {P}"
        + (f", S = {S};" if narrow else ";"),
        "  wire [R*(C+1)*H-1:0] h;",
        "  wire [(R+1)*C*V-1:0] v;",
    ]
    if ws and not direct:
        lines.append(f"  wire [(R+1)*C*{NB}*WT-1:0] w;")
    if broadcast and not direct:
        lines.append("  wire [R-1:0] load;")
    lines += [
        "  genvar r, c, k;",
        "  generate",
        "    for (r = 0; r < R; r = r + 1) begin : skew_h",
        "      wire [(r+2)*H-1:0] chain;",
        "      assign chain[H-1:0] = feed_h[r*H +: H];",
        "      for (k = 0; k <= r; k = k + 1) begin : stage",
        "        reg [H-1:0] q;",
        "        always @(posedge clk)",
        "          if (rst) q <= 0;",
        "          else if (en) q <= chain[k*H +: H];",
        "        assign chain[(k+1)*H +: H] = q;",
        "      end",
        "      assign h[r*(C+1)*H +: H] = chain[(r+1)*H +: H];",
        "    end",
        "    for (c = 0; c < C; c = c + 1) begin : top",
    ]
    if os:
        b_field = v_layout["b"]
        lines += [
            "      wire [(c+2)*WT-1:0] chain;",
            "      assign chain[WT-1:0] = feed_b[c*WT +: WT];",
            "      for (k = 0; k <= c; k = k + 1) begin : stage",
            "        reg [WT-1:0] q;",
            "        always @(posedge clk)",
            "          if (rst) q <= 0;",
            "          else if (en) q <= chain[k*WT +: WT];",
            "        assign chain[(k+1)*WT +: WT] = q;",
            "      end",
            f"      assign v[c*V +: V] = {{{{{V - b_field.offset - WT}{{1'b0}}}},"
            f" chain[(c+1)*WT +: WT], {{{b_field.offset}{{1'b0}}}}}};",
        ]
    else:
        lines.append("      assign v[c*V +: V] = 0;")
    if ws and not direct:
        lines.append(f"      assign w[c*{NB}*WT +: {NB}*WT] = {{{NB}{{w_top[c*WT +: WT]}}}};"
                     if NB > 1 else "      assign w[c*WT +: WT] = w_top[c*WT +: WT];")
    lines.append("    end")
    if broadcast and not direct:
        # Row r loads its active weights r cycles after row 0 (see MacGrid).
        lines += [
            "    assign load[0] = w_load;",
            "    for (r = 1; r < R; r = r + 1) begin : load_delay",
            "      reg q;",
            "      always @(posedge clk)",
            "        if (rst) q <= 0;",
            "        else if (en) q <= load[r-1];",
            "      assign load[r] = q;",
            "    end",
        ]
    lines += [
        "    for (r = 0; r < R; r = r + 1) begin : row",
        "      for (c = 0; c < C; c = c + 1) begin : col",
        f"        {cell_module_name} mac (",
        "          .clk(clk), .rst(rst), .en(en),",
        "          .h_in(h[(r*(C+1))*H +: H])," if broadcast else
        "          .h_in(h[(r*(C+1)+c)*H +: H]), .h_out(h[(r*(C+1)+c+1)*H +: H]),",
        "          .v_in(v[(r*C+c)*V +: V]), .v_out(v[((r+1)*C+c)*V +: V])",
    ]
    if direct:
        # Every row takes column c's weight, when its bit of w_load is set.
        lines[-1] += ","
        lines.append("          .w_in(w_top[c*WT +: WT]), .load(w_load[r])")
    elif ws:
        wb = f"{NB}*WT" if NB > 1 else "WT"
        lines[-1] += ","
        lines += [f"          .w_in(w[(r*C+c)*{wb} +: {wb}]),"
                  f" .w_out(w[((r+1)*C+c)*{wb} +: {wb}]),",
                  "          .w_shift(w_shift)" + (", .load(load[r])" if broadcast else "")]
    if os:
        lines[-1] += ","
        lines.append(f"          .drain(h[((R-1)*(C+1)+c+1)*H + {h_layout['last'].offset}])")
    if ws and os:
        lines[-1] += ","
        lines.append("          .os_mode(os_mode)")
    W = deskew_width
    bottom = f"v[(R*C+c)*V + {p_field.offset} +: {W}]"
    if broadcast:
        # The bottom row's sums are aligned: no deskew.
        lines += [
            "        );",
            "      end",
            "    end",
            "    for (c = 0; c < C; c = c + 1) begin : bottom",
            f"      assign result[c*P +: P] = $signed({bottom});",
            "    end",
        ]
    else:
        if os:
            deskew_update = ["          if (rst) q <= 0;",
                             f"          else if (en) q <= chain[k*{W} +: {W}];"]
        else:
            deskew_update = [f"          if (en) q <= chain[k*{W} +: {W}];"]
        column = f"chain[(C-1-c)*{W} +: {W}]"
        lines += [
            "        );",
            "      end",
            "    end",
            "    for (c = 0; c < C; c = c + 1) begin : deskew",
            f"      wire [(C-c)*{W}-1:0] chain;",
            f"      assign chain[{W}-1:0] = {bottom};",
            "      for (k = 0; k < C-1-c; k = k + 1) begin : stage",
            f"        reg [{W}-1:0] q;",
            "        always @(posedge clk)",
            *deskew_update,
            f"        assign chain[(k+1)*{W} +: {W}] = q;",
            "      end",
            f"      assign result[c*P +: P] = {f'$signed({column})' if narrow else column};",
            "    end",
        ]
    lines += [
        "  endgenerate",
        "endmodule",
        "",
    ]
    return "\n".join(lines)
