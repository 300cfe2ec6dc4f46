"""`python -m hw verilog` emits lint-clean Verilog with no trace of the build machine."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hw.cli import lint, main
from hw.config import Config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_design(tmp_path_factory):
    out = tmp_path_factory.mktemp("r4c4")
    assert main(["verilog", "--rows", "4", "--cols", "4", "--scratchpad-kib", "4",
                 "--accumulator-kib", "1", "--out", str(out)]) == 0
    return out


def test_emits_top_module_and_config(small_design):
    text = (small_design / "tensor_core.v").read_text()
    assert "module tensor_core(" in text
    for port in ("m_axi__awaddr", "m_axi__rdata", "s_axil__araddr", "irq"):
        assert port in text
    cfg = Config.load(small_design / "config.json")
    assert (cfg.rows, cfg.cols) == (4, 4)
    assert json.loads((small_design / "config.json").read_text())["derived"]["sp_row_elems"] == 4


def test_no_absolute_paths_of_the_build_machine(small_design):
    text = (small_design / "tensor_core.v").read_text()
    for fragment in {str(REPO), os.path.expanduser("~"), str(small_design)}:
        assert fragment not in text


def test_verilator_lint_has_no_errors(small_design):
    assert lint(small_design / "tensor_core.v") == 0


def test_invalid_knob_is_a_one_line_error():
    result = subprocess.run([sys.executable, "-m", "hw", "verilog", "--cols", "0",
                             "--out", "build/never"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Config.cols=0 is invalid: must be an integer from 1 to 512"]
