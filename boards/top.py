"""The board design: accelerator + on-chip DRAM + UART bridge, and its pin wrapper."""

from amaranth import ClockDomain, Elaboratable, Module, Signal
from amaranth.build import ResourceError
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from hw.axi_sram import AxiSram
from hw.config import Config

from .bridge import Bridge
from .clocks import pll_domain
from .uart import UartRx, UartTx, uart_divisor


__all__ = ["BoardSoC", "BoardTop", "FLASH_S"]

FLASH_S = 0.2      # long enough to see a single bad frame on the LED


class BoardSoC(wiring.Component):
    """``hw.top.TensorCore(cfg)`` with ``cfg.dram_size`` bytes of on-chip RAM at
    ``cfg.dram_base`` as its DRAM, and a UART bridge to its registers and that RAM.

    Ports
      rx, tx      the UART pins (8N1 at ``baud``), idle high.
      irq         the accelerator's interrupt.
      bad_frame   one-cycle pulse per rejected or dropped request frame.

    Latency / throughput: those of the UART (one byte per 10 bit times) plus a few cycles
    per request; the accelerator reaches its RAM at one beat per cycle.
    """

    def __init__(self, cfg, *, clk_hz, baud, frame_timeout, bus_timeout):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        self.cfg = cfg
        self.divisor = uart_divisor(clk_hz, baud)
        self.frame_timeout = frame_timeout
        self.bus_timeout = bus_timeout
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "irq": Out(1),
            "bad_frame": Out(1),
        })

    def elaborate(self, platform):
        from hw.top import TensorCore

        cfg = self.cfg
        m = Module()
        m.submodules.core = core = TensorCore(cfg)
        m.submodules.ram = ram = AxiSram(cfg.dram_size, cfg.dma_data_width, cfg.id_width,
                                         cfg.addr_width, base=cfg.dram_base)
        m.submodules.bridge = bridge = Bridge(
            mem_base=cfg.dram_base, mem_size=cfg.dram_size,
            mem_addr_width=ram.word_addr_width, mem_data_width=cfg.dma_data_width,
            reg_addr_width=core.s_axil.signature.addr_width,
            frame_timeout=self.frame_timeout, bus_timeout=self.bus_timeout)
        m.submodules.uart_rx = uart_rx = UartRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UartTx(self.divisor)

        wiring.connect(m, core.m_axi, ram.s_axi)
        wiring.connect(m, bridge.m_axil, core.s_axil)
        wiring.connect(m, bridge.mem, ram.host)
        wiring.connect(m, uart_rx.o, bridge.rx)
        wiring.connect(m, bridge.tx, uart_tx.i)
        m.d.comb += [
            uart_rx.rx.eq(self.rx),
            self.tx.eq(uart_tx.tx),
            self.irq.eq(core.irq),
            self.bad_frame.eq(bridge.bad_frame),
        ]
        return m


class BoardTop(Elaboratable):
    """:class:`BoardSoC` on the pins of a :class:`boards.targets.Target`: the UART, LED 0 =
    IRQ, LED 1 lit for :data:`FLASH_S` after each bad request frame (boards without LEDs
    simply lack them). The design runs at ``target.sync_hz``: from the PLL when the target
    sets ``core_hz``, else from the board clock."""

    RAM_PATH = "soc.ram"     # the RAM's module below the top, for synthesis scripts

    def __init__(self, target):
        self.target = target
        self.soc = BoardSoC(target.cfg, clk_hz=target.sync_hz, baud=target.baud,
                            frame_timeout=target.frame_timeout_cycles,
                            bus_timeout=target.bus_timeout_cycles)

    def elaborate(self, platform):
        m = Module()
        if self.target.core_hz is not None:
            m.domains.sync = ClockDomain("sync")
            m.submodules.clocks = pll_domain(platform, self.target.clk_hz, self.target.core_hz)
        m.submodules.soc = soc = self.soc
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [soc.rx.eq(rx_buffer.i), tx_buffer.o.eq(soc.tx)]
        flash_cycles = round(self.target.sync_hz * FLASH_S)
        flash = Signal(range(flash_cycles + 1))
        with m.If(soc.bad_frame):
            m.d.sync += flash.eq(flash_cycles)
        with m.Elif(flash != 0):
            m.d.sync += flash.eq(flash - 1)
        for index, signal in enumerate((soc.irq, flash != 0)):
            try:
                led = platform.request("led", index, dir="-")
            except ResourceError:
                continue
            m.submodules[f"led{index}_buffer"] = buffer = io.Buffer("o", led)
            m.d.comb += buffer.o.eq(signal)
        return m
