"""Every board elaborates (platform.build(do_build=False): no tools run), its target is
consistent, and build reports are summarised correctly."""

import fnmatch
import importlib.util
import re

import pytest

from boards import __main__ as cli
from boards.targets import BOARDS
from boards.uart import uart_divisor


needs_tensor_core = pytest.mark.skipif(importlib.util.find_spec("hw.top") is None,
                                       reason="hw/top.py (TensorCore) is not there yet")


@pytest.mark.parametrize("board", BOARDS)
def test_target_is_consistent(board):
    target = BOARDS[board]
    platform = target.platform()
    assert platform.default_clk_frequency == target.clk_hz
    uart_divisor(target.clk_hz, target.baud)
    assert target.frame_timeout_cycles > 20 * uart_divisor(target.clk_hz, target.baud)
    assert target.cfg.dram_size + target.cfg.dram_base <= 1 << target.cfg.addr_width
    platform.request("uart", 0, dir="-")


@needs_tensor_core
@pytest.mark.parametrize("board", BOARDS)
def test_elaborate(board):
    target = BOARDS[board]
    _, plan = cli._build(target, do_build=False)
    script = plan.files[f"{board}.ys"]
    assert f"module \\{board}.soc.ram\n" in plan.files[f"{board}.il"]
    # The SPRAM board must lose the RAM's init (or yosys builds it from EBR), the others not.
    assert (f"delete {board}.soc.ram/t:$meminit_v2" in script) == (not target.ram_init)
    nextpnr = next(line for line in plan.files[f"build_{board}.sh"].splitlines()
                   if "--report" in line)
    assert f"--timing-allow-fail {target.nextpnr_opts}".strip() in nextpnr
    # Only the array multipliers beyond the DSP budget are built from LUTs, and each
    # selection names a module of the design (yosys would only warn about a stale one).
    soft = re.findall(r"(\S+)/t:\$mul", script)
    cells = target.cfg.rows * target.cfg.cols
    assert len(soft) == (0 if target.array_dsps is None else cells - target.array_dsps)
    modules = re.findall(r"^module \\(\S+)$", plan.files[f"{board}.il"], re.M)
    for pattern in soft:
        assert len(fnmatch.filter(modules, pattern)) == 1, pattern
    assert not any(p.endswith(".cell_0_0") for p in soft) or target.array_dsps == 0
    # A core clock other than the board's comes from the PLL.
    pll = "SB_PLL40_PAD" if "iCE40" in target.platform.device else "EHXPLLL"
    assert (pll in plan.files[f"{board}.il"]) == (target.core_hz is not None)


def test_program_without_bitstream_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["program", "icebreaker"]) == 2
    assert "run `python -m boards build icebreaker` first" in capsys.readouterr().err


def test_report_summary():
    nextpnr = {
        "utilization": {"ICESTORM_LC": {"used": 4000, "available": 5280},
                        "ICESTORM_SPRAM": {"used": 4, "available": 4},
                        "ICESTORM_PLL": {"used": 0, "available": 1}},
        "fmax": {"clk12_0__io": {"achieved": 13.5, "constraint": 12.0}},
    }
    report = cli.summarise(BOARDS["icebreaker"], nextpnr)
    assert report["timing_met"]
    assert "ICESTORM_PLL" not in report["utilization"]
    assert report["utilization"]["ICESTORM_LC"]["used"] == 4000
    text = cli.markdown(report)
    assert "| logic cells (LUT4 + FF) | 4000 | 5280 | 75.8 |" in text
    assert "| clk12_0__io | 13.5 | 12.0 | yes |" in text
    nextpnr["fmax"]["clk12_0__io"]["achieved"] = 11.9
    assert not cli.summarise(BOARDS["icebreaker"], nextpnr)["timing_met"]
    assert "**NO**" in cli.markdown(cli.summarise(BOARDS["icebreaker"], nextpnr))


def test_synth_cells_and_table_row(tmp_path):
    rpt = ("2.1 Printing statistics.\n  5 SB_LUT4\n\n"
           "2.59. Printing statistics.\n\n=== icebreaker ===\n"
           "  20 SB_MAC16\n  51 SB_RAM40_4K\n  283 SB_DFF\n  317 SB_DFFSR\n  10918 SB_LUT4\n"
           "\n=== design hierarchy ===\n  10918 SB_LUT4\n")
    cells = cli.synth_cells(rpt)
    assert cells == {"LUT": 10918, "FF": 600, "DSP": 20, "BRAM": 51}
    target = BOARDS["icebreaker"]
    report = dict(board="icebreaker", device=target.platform.device, config=target.cfg.to_dict(),
                  synth=cells, fmax={}, timing_met=False, failure="no BELs remaining")
    row = cli.table_row(report)
    assert "| 10918 / 5280 | 600 / 5280 | 20 / 8 | 51 / 30 |" in row
    assert "**NO** (no BELs remaining)" in row
    (tmp_path / "icebreaker").mkdir()
    (tmp_path / "icebreaker" / "report.json").write_text(__import__("json").dumps(report))
    assert row in cli.write_table(tmp_path).read_text()
    assert cli.overflow(cells, cli.DEVICE_TOTALS["iCE40UP5K"]) == (
        "LUT 10918 > 5280, DSP 20 > 8, BRAM 51 > 30")
    assert cli.overflow({"LUT": 5000}, cli.DEVICE_TOTALS["iCE40UP5K"]) == ""
    # LUTs and FFs may each fit while the logic cells holding them do not.
    log = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    6325/   5280   119%\n"
           "Info: \t        ICESTORM_RAM:      18/     30    60%\n")
    assert cli.packed_overflow(log) == "ICESTORM_LC 6325 > 5280"
    assert cli.packed_overflow(log.replace("6325", "5000")) == ""
