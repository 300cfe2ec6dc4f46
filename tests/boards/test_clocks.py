"""PLL settings (checked against icepll / ecppll's answers) and the board clock domains."""

import pytest

from boards.clocks import PllError, ecp5_pll, ice40_pll
from boards.targets import BOARDS


def test_ice40_pll_matches_icepll():
    # `icepll -i 12 -o 24`: DIVR 0, DIVF 63, DIVQ 5, FILTER_RANGE 1.
    p = ice40_pll(12e6, 24e6)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.f_out) == (0, 63, 5, 1, 24e6)
    f_vco = 12e6 / (p.divr + 1) * (p.divf + 1)
    assert 533e6 <= f_vco <= 1066e6


def test_ecp5_pll_matches_ecppll():
    # `ecppll -i 25 -o 50`: CLKI_DIV 1, CLKFB_DIV 2, CLKOP_DIV 12 (VCO 600 MHz).
    p = ecp5_pll(25e6, 50e6)
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.f_out) == (1, 2, 12, 50e6)


def test_pll_never_overshoots_and_rejects_the_unreachable():
    assert ice40_pll(12e6, 25e6).f_out <= 25e6
    with pytest.raises(PllError, match="cannot make"):
        ice40_pll(12e6, 1e6)
    with pytest.raises(PllError, match="cannot make"):
        ecp5_pll(25e6, 1e9)
    with pytest.raises(PllError, match="must be positive"):
        ice40_pll(12e6, 0)


@pytest.mark.parametrize("board", BOARDS)
def test_core_clock_is_reachable(board):
    target = BOARDS[board]
    if target.core_hz is None:
        assert target.sync_hz == target.clk_hz
        return
    family = target.platform().family
    pll = ice40_pll if family == "iCE40" else ecp5_pll
    assert pll(target.clk_hz, target.core_hz).f_out == target.core_hz == target.sync_hz
