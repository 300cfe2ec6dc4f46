"""The boards the accelerator is built for: platform, clock, Config and tool options.

The accelerator's DRAM on a board is on-chip RAM (``cfg.dram_size`` bytes at
``cfg.dram_base``), so each Config sizes its DRAM window to that RAM.
"""

from dataclasses import dataclass

from amaranth.build import Attrs
from amaranth.vendor import LatticeECP5Platform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_85FPlatform
from amaranth_boards.resources import UARTResource
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from hw.config import Config

from .protocol import DEFAULT_BAUD


__all__ = ["Target", "BOARDS", "get_target"]

KIB = 1024
# The bridge drops a partial frame after this much silence; the host waits longer than
# this (sw.uart_link.DEFAULT_TIMEOUT) before retrying. USB-serial adapters batch bytes
# into 1 ms USB frames, so gaps inside a frame stay far below it.
FRAME_TIMEOUT_S = 0.02
# A register access takes a few cycles; one that takes longer than this never will.
BUS_TIMEOUT_S = 0.001


class OrangeCrabUartPlatform(OrangeCrabR0_2_85FPlatform):
    """OrangeCrab r0.2 85F with a 3.3 V USB-serial adapter on the Feather pins 0 (RX) and 1
    (TX), and without the ``dfu-suffix`` step (not on PyPI; ``dfu-util`` loads the plain
    ``.bit`` with a warning)."""

    resources = OrangeCrabR0_2_85FPlatform.resources + [
        UARTResource(0, rx="0", tx="1", conn=("io", 0),
                     attrs=Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),
    ]

    @property
    def required_tools(self):
        return LatticeECP5Platform.required_tools.fget(self)

    @property
    def command_templates(self):
        return LatticeECP5Platform.command_templates.fget(self)


class ULX3SBuildPlatform(ULX3S_85F_Platform):
    """ULX3S 85F whose build does not require the programmer (``openFPGALoader`` is not on
    PyPI; ``python -m boards program ulx3s`` checks for it instead)."""

    @property
    def required_tools(self):
        return LatticeECP5Platform.required_tools.fget(self)


@dataclass(frozen=True)
class Target:
    """One board: ``platform`` (amaranth-boards class), ``clk_hz`` (its default clock),
    ``cfg`` (the accelerator built for it), yosys ``synth_opts``, the programmer tool and
    the environment variable amaranth-boards reads it from. ``ram_init=False`` drops the
    RAM's (all-zero) initial contents before synthesis: SB_SPRAM256KA cannot be initialised,
    so yosys would otherwise build the RAM from EBRs (the host loads it anyway).

    ``core_hz`` (when set) is the design's clock, made from ``clk_hz`` by the FPGA's PLL
    (:mod:`boards.clocks`); otherwise the design runs at ``clk_hz``. ``array_dsps`` (when
    set) is how many of the array's multipliers yosys may put in DSP blocks, the first
    cells in row-major order; the others are built from LUTs (for a part with fewer DSPs
    than multipliers, which nextpnr could not place). A Config with
    ``mac_dsp="ice40_dual"`` instead puts every multiplier in a DSP, two per block, and
    leaves ``array_dsps`` unset; its ``synth_opts`` must not ask for ``-dsp``: yosys's
    ``ice40_dsp`` pass (run by ``synth_ice40 -dsp``) takes every SB_MAC16 for a 16x16
    multiplier and rewrites it, 8x8 mode and adder inputs included. ``nextpnr_opts`` are
    extra options for nextpnr."""
    name: str
    platform: type
    clk_hz: float
    cfg: Config
    synth_opts: str
    programmer: str
    programmer_env: str
    ram_init: bool = True
    baud: int = DEFAULT_BAUD
    core_hz: float = None
    array_dsps: int = None
    nextpnr_opts: str = ""

    def __post_init__(self):
        if self.core_hz is not None and not self.core_hz > 0:
            raise ValueError(f"Target {self.name}: core_hz={self.core_hz!r} must be positive")
        cells = self.cfg.rows * self.cfg.cols
        if self.array_dsps is not None and not 0 <= self.array_dsps <= cells:
            raise ValueError(f"Target {self.name}: array_dsps={self.array_dsps!r} must be from"
                             f" 0 to rows*cols={cells}")
        if self.array_dsps is not None and self.cfg.mac_dsp != "generic":
            raise ValueError(f"Target {self.name}: array_dsps={self.array_dsps!r} applies to"
                             f" inferred multipliers only, not to mac_dsp={self.cfg.mac_dsp!r}")
        if self.cfg.mac_dsp == "ice40_dual" and "-dsp" in self.synth_opts.split():
            raise ValueError(f"Target {self.name}: synth_opts={self.synth_opts!r} with"
                             " mac_dsp='ice40_dual': yosys's -dsp would rewrite its SB_MAC16s")

    @property
    def sync_hz(self):
        """The frequency of the design's clock."""
        return self.clk_hz if self.core_hz is None else self.core_hz

    @property
    def frame_timeout_cycles(self):
        return round(self.sync_hz * FRAME_TIMEOUT_S)

    @property
    def bus_timeout_cycles(self):
        return round(self.sync_hz * BUS_TIMEOUT_S)

    def soft_multipliers(self):
        """The yosys selection of the array multipliers built from LUTs ("" for none)."""
        if self.array_dsps is None:
            return ""
        cells = [f"cell_{r}_{c}" for r in range(self.cfg.rows) for c in range(self.cfg.cols)]
        # The cells sit somewhere below the array module (in its grid).
        return " ".join(f"{self.name}.soc.core.array*.{cell}/t:$mul"
                        for cell in cells[self.array_dsps:])


# iCE40UP5K: 5280 LUTs, 8 DSPs, 30 x 4 Kib EBR, 4 x 32 KiB SPRAM. The SPRAMs are the DRAM
# (128 KiB, 32 bits wide); the 4x4 weight-stationary array with one output lane and small
# scratchpad / accumulator leaves the EBRs to them and the logic to fit. One-deep unit
# queues and one-instruction fetches keep the instruction words (128 bits each) out of the
# flip-flops: the UP5K has no distributed RAM, so every buffered word costs 160 FFs.
# Its 8 DSPs hold the 16 array multipliers, two per SB_MAC16 in its dual 8x8 mode, with the
# low 16 bits of each add (mac_dsp="ice40_dual", hw/ice40_mac.py); so no -dsp for yosys.
# Each activation reaches its 4-cell row at once (array_feed="broadcast"): no horizontal or
# deskew registers in the array.
# One weight buffer (weight_buffers=1): tiles load straight into the SB_MAC16 B registers
# between groups, no 128 shadow-weight flip-flops.
# The one fetched instruction row sits in 8 EBRs (fetch_storage="block_ram"), not 128 FFs.
# A LOAD writes accumulator and qparam rows a column per beat (load_writes="columns"): no
# 96-FF row assembly in the load unit, no column select in the store unit.
# iCE40 block RAM has no transparent read port, so an accumulate (or read) of the row
# being written waits a cycle (acc_forward="stall") instead of a 129-register bypass.
# The DMA's row counters are only as wide as legal commands need (dma_cmd_fields="legal"):
# 9-bit rows, 5-bit row_bytes, and every row fits one burst, so rows are cut only at a page.
# One DMA burst generator for both directions (dma_burst_gens=1): 108 LUT, 87 carry, 54 FF
# fewer; loads (and instruction fetches) wait while a store's write holds it (a 16x16x16
# GEMM takes 6% more cycles with int8 results, 32% more with int32).
# unit_reports="registered" (the units' completions and faults taken from a register) cuts
# the paths from the units into the controller's error capture for 18 logic cells; at 99% of
# the cells that did not help: 20.95 MHz against 24 and 18.79 against 19.5, inside the
# spread between placements (README, Boards), so the board keeps "direct".
ICEBREAKER_CFG = Config(
    rows=4, cols=4, dataflow="ws", mac_dsp="ice40_dual", array_feed="broadcast",
    scratchpad_kib=1, scratchpad_banks=2, accumulator_kib=1, weight_buffers=1,
    output_lanes=1, output_lane="serial", acc_read_ports=1, dma_data_width=32, addr_width=17,
    id_width=1, max_burst_beats=16, max_outstanding=1, dram_base=0, dram_size=128 * KIB,
    queue_depth=1, fetch_chunk=1, fetch_buffer=1, perf_counters="basic", unit_commands="queue",
    sp_read_buffer=1, dma_cmd_fields="legal", acc_forward="stall", fetch_storage="block_ram",
    load_writes="columns", dma_burst_gens=1)

# LFE5U-85F: 84k LUTs, 156 multipliers, 208 DP16KD. DRAM is 128 KiB of DP16KD (64 blocks).
# An 8x8 array: a 16x16 one (weight-stationary, broadcast feed, 116 of its multipliers in
# LUTs) synthesises to 25k LUT and 21k FF and places, but nextpnr did not finish routing
# it in the time a session has here (README, Boards).
ECP5_85F_CFG = Config(
    rows=8, cols=8, dataflow="both", scratchpad_kib=16, scratchpad_banks=4, accumulator_kib=8,
    dma_data_width=64, addr_width=17, id_width=2, max_burst_beats=32, max_outstanding=2,
    dram_base=0, dram_size=128 * KIB)

# The ECP5 boards' cores run from the PLL: the ULX3S's at 40 MHz (25 MHz board clock), the
# OrangeCrab's at 52 MHz (48 MHz oscillator; 50 is not a PLL setting from 48). The ULX3S's
# speed-grade-6 part routes the 8x8 build at 41.67 MHz against 40 (43.34 against 25; against
# 50 it reached 40.46); the OrangeCrab's speed-grade-8 part at 57.85 MHz against 52. The
# slowest paths are the DMA's read-side ready chain (rd_buf through the read arbiter and the
# load unit into the burst bookkeeping) and the array's multiply-add.
# The iCEBreaker's core runs at 19.5 MHz from the PLL: at 98% of the logic cells it routes
# at 19.8 to 20.8 MHz, short of the 24 MHz aimed at. The slowest paths (README, Boards) run
# from the DMA's read buffer through the read arbiter, the load unit's completion and the
# controller's error capture (48 ns), and from the array's output through the
# accumulator's write into the exec unit's retirement and the same controller logic.
BOARDS = {
    "icebreaker": Target("icebreaker", ICEBreakerPlatform, 12e6, ICEBREAKER_CFG,
                         synth_opts="-spram", programmer="iceprog",
                         programmer_env="ICEPROG", ram_init=False, core_hz=19.5e6),
    "ulx3s": Target("ulx3s", ULX3SBuildPlatform, 25e6, ECP5_85F_CFG, synth_opts="",
                    programmer="openFPGALoader", programmer_env="OPENFPGALOADER",
                    core_hz=40e6),
    "orangecrab": Target("orangecrab", OrangeCrabUartPlatform, 48e6, ECP5_85F_CFG,
                         synth_opts="", programmer="dfu-util", programmer_env="DFU_UTIL",
                         core_hz=52e6),
}


def get_target(name):
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; the boards are {', '.join(BOARDS)}") from None
