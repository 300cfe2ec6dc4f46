"""The design's clock from a board clock through the FPGA's PLL (iCE40 SB_PLL40_PAD, ECP5
EHXPLLL), with the divider settings computed here rather than by icepll / ecppll."""

from dataclasses import dataclass

from amaranth import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer


__all__ = ["PllError", "Ice40Pll", "Ecp5Pll", "ice40_pll", "ecp5_pll", "pll_domain"]

MHZ = 1e6
# iCE40 sysCLOCK PLL (iCE40 sysCLOCK PLL Design and Usage Guide, TN1251): phase detector and
# VCO ranges, divider ranges, and the loop filter setting for each phase-detector frequency
# band (the table icepll uses).
_ICE40_PFD = (10 * MHZ, 133 * MHZ)
_ICE40_VCO = (533 * MHZ, 1066 * MHZ)
_ICE40_DIVR, _ICE40_DIVF, _ICE40_DIVQ = range(16), range(128), range(1, 7)
_ICE40_FILTER = ((17 * MHZ, 1), (26 * MHZ, 2), (44 * MHZ, 3), (66 * MHZ, 4), (101 * MHZ, 5))
_ICE40_FILTER_MAX = 6
# ECP5 EHXPLLL (FPGA-TN-02200): input, phase detector, VCO and output ranges, divider range.
_ECP5_PFD = (3.125 * MHZ, 400 * MHZ)
_ECP5_VCO = (400 * MHZ, 800 * MHZ)
_ECP5_DIV = range(1, 129)
_EXACT_HZ = 1


class PllError(ValueError):
    """No PLL setting reaches the requested frequency."""


@dataclass(frozen=True)
class Ice40Pll:
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_out: float


@dataclass(frozen=True)
class Ecp5Pll:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_out: float


def _check_target(f_in, f_out, tolerance):
    if not (f_in > 0 and f_out > 0 and 0 <= tolerance < 1):
        raise PllError(f"f_in={f_in!r}, f_out={f_out!r} must be positive and"
                       f" tolerance={tolerance!r} from 0 to 1")


def ice40_pll(f_in, f_out, tolerance=0.01):
    """The SIMPLE-feedback iCE40 PLL setting closest to ``f_out`` (never above it)."""
    _check_target(f_in, f_out, tolerance)
    best = None
    for divr in _ICE40_DIVR:
        f_pfd = f_in / (divr + 1)
        if not _ICE40_PFD[0] <= f_pfd <= _ICE40_PFD[1]:
            continue
        for divf in _ICE40_DIVF:
            f_vco = f_pfd * (divf + 1)
            if not _ICE40_VCO[0] <= f_vco <= _ICE40_VCO[1]:
                continue
            for divq in _ICE40_DIVQ:
                f = f_vco / (1 << divq)
                if f <= f_out and (best is None or f > best.f_out):
                    band = next((n for limit, n in _ICE40_FILTER if f_pfd < limit),
                                _ICE40_FILTER_MAX)
                    best = Ice40Pll(divr, divf, divq, band, f)
    if best is None or best.f_out < f_out * (1 - tolerance):
        raise PllError(f"the iCE40 PLL cannot make {f_out / MHZ:g} MHz from"
                       f" {f_in / MHZ:g} MHz within {tolerance:.0%}")
    return best


def ecp5_pll(f_in, f_out, tolerance=0.01):
    """The ECP5 EHXPLLL setting (CLKOP fed back) closest to ``f_out`` (never above it)."""
    _check_target(f_in, f_out, tolerance)
    best = None
    for clki_div in _ECP5_DIV:
        f_pfd = f_in / clki_div
        if not _ECP5_PFD[0] <= f_pfd <= _ECP5_PFD[1]:
            continue
        for clkfb_div in _ECP5_DIV:
            f = f_pfd * clkfb_div
            if f > f_out or (best is not None and f <= best.f_out):
                continue
            # The VCO nearest the middle of its range, as ecppll chooses.
            dividers = [d for d in _ECP5_DIV if _ECP5_VCO[0] <= f * d <= _ECP5_VCO[1]]
            if dividers:
                clkop_div = min(dividers, key=lambda d: abs(f * d - sum(_ECP5_VCO) / 2))
                best = Ecp5Pll(clki_div, clkfb_div, clkop_div, f)
    if best is None or best.f_out < f_out * (1 - tolerance):
        raise PllError(f"the ECP5 PLL cannot make {f_out / MHZ:g} MHz from"
                       f" {f_in / MHZ:g} MHz within {tolerance:.0%}")
    return best


def pll_domain(platform, f_in, f_out):
    """A module driving the clock of the ``sync`` domain (which the caller defines) from the
    PLL at ``f_out`` (exactly, or :class:`PllError`), made from ``platform``'s default clock
    at ``f_in``; the domain is held in reset until the PLL locks."""
    m = Module()
    clk = Signal()
    lock = Signal()
    pin = platform.request(platform.default_clk, dir="-")
    if platform.family == "iCE40":
        p = ice40_pll(f_in, f_out)
        # The board clock pin is a PLL pad: the PLL takes it directly, before any buffer.
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf,
            p_DIVQ=p.divq, p_FILTER_RANGE=p.filter_range,
            io_PACKAGEPIN=pin.io, i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk, o_LOCK=lock)
    elif platform.family == "ecp5":
        p = ecp5_pll(f_in, f_out)
        m.submodules.clk_buf = clk_buf = io.Buffer("i", pin)
        m.submodules.pll = Instance(
            "EHXPLLL", a_FREQUENCY_PIN_CLKI=f"{f_in / MHZ:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p.f_out / MHZ:g}",
            p_CLKI_DIV=p.clki_div, p_CLKFB_DIV=p.clkfb_div, p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_div - 1, p_CLKOP_FPHASE=0, p_CLKOP_ENABLE="ENABLED",
            p_FEEDBK_PATH="CLKOP", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            i_CLKI=clk_buf.i, i_CLKFB=clk, i_RST=Const(0), i_STDBY=Const(0),
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(0),
            i_PHASESTEP=Const(0), i_PHASELOADREG=Const(0), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0), o_CLKOP=clk, o_LOCK=lock)
    else:
        raise PllError(f"no PLL support for the {platform.family} family")
    if abs(p.f_out - f_out) > _EXACT_HZ:
        # Everything timed in cycles (UART divisor, timeouts) assumes f_out exactly.
        raise PllError(f"the PLL makes {p.f_out / MHZ:g} MHz, not {f_out / MHZ:g} MHz:"
                       f" choose a frequency it reaches exactly")
    m.d.comb += ClockSignal("sync").eq(clk)
    # No constraint on `clk`: nextpnr derives the PLL output's from the board clock's and
    # the divider settings.
    m.submodules.reset_sync = ResetSynchronizer(~lock, domain="sync")
    return m
