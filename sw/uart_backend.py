"""The ``uart`` runtime backend: run a DRAM image on a board through its UART bridge.

``uart:PORT`` (e.g. ``uart:/dev/ttyUSB1``, optionally ``uart:PORT@BAUD``) opens the serial
port with :func:`sw.uart_link.open_uart`. :class:`UartBackend` also takes any
:class:`sw.uart_link.UartLink`, so a simulated board (``sim/tb/tb_board.py``) runs the very
same host code.

A run is what a driver does: write the image into the board's RAM, program DRAM_BASE/SIZE
and PROG_BASE/COUNT, clear the interrupt flags, write CTRL.start, poll STATUS until the
program is done or failed, then read the RAM back and the PERF_* counters. Counter keys are
those of :mod:`sim.tb.harness`.
"""

import time

from hw import regmap
from sw.runtime import Backend, RunResult, register_backend


__all__ = ["UartBackend", "RunTimeout", "DEFAULT_RUN_TIMEOUT"]

ADDR = regmap.OFFSETS
STATUS = regmap.FIELDS.STATUS
CTRL = regmap.by_name("CTRL")
IRQ_STATUS = regmap.by_name("IRQ_STATUS")
DEFAULT_RUN_TIMEOUT = 60.0     # seconds a program may run before the host gives up
POLL_INTERVAL = 0.005          # seconds between STATUS reads (each is a UART round trip anyway)

# The counters read after a run, in harness key order: (key, register).
COUNTER_REGISTERS = (
    ("cycles", "PERF_CYCLES"),
    ("busy_load", "PERF_BUSY_LOAD"),
    ("busy_exec", "PERF_BUSY_EXEC"),
    ("busy_store", "PERF_BUSY_STORE"),
    ("stall_exec", "PERF_STALL"),
    ("dma_bytes_read", "PERF_DMA_RD_BYTES"),
    ("dma_bytes_written", "PERF_DMA_WR_BYTES"),
)


class RunTimeout(TimeoutError):
    """The program did not finish in time; the message names the last PC and STATUS."""


class UartBackend(Backend):
    """Runs programs on a board through ``link`` (a :class:`sw.uart_link.UartLink`).

    ``timeout`` bounds one program run (seconds of ``clock``); ``clock`` and ``sleep`` are
    injectable so a simulated board can measure time in its own way.
    """

    name = "uart"

    def __init__(self, cfg, link, *, timeout=DEFAULT_RUN_TIMEOUT, poll_interval=POLL_INTERVAL,
                 clock=time.monotonic, sleep=time.sleep):
        super().__init__(cfg)
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if not poll_interval >= 0:
            raise ValueError(f"poll_interval must be non-negative, not {poll_interval!r}")
        self.link = link
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep

    def _check_board(self, window):
        info = self.link.ping()
        base, size = window
        if base < info.mem_base or base + size > info.mem_base + info.mem_size:
            raise ValueError(f"{self.link.name}: DRAM window {base:#x}+{size:#x} is outside the"
                             f" board's RAM {info.mem_base:#x}+{info.mem_size:#x}")
        magic = self.link.reg_read(ADDR["ID"])
        if magic != regmap.ID_MAGIC:
            raise RuntimeError(f"{self.link.name}: ID register reads {magic:#010x}, not the"
                               f" accelerator's {regmap.ID_MAGIC:#010x}")

    def _wait_done(self):
        deadline = self.clock() + self.timeout
        while True:
            status = self.link.reg_read(ADDR["STATUS"])
            if not STATUS.busy.extract(status) and (STATUS.done.extract(status)
                                                    or STATUS.error.extract(status)):
                return status
            if self.clock() > deadline:
                pc = self.link.reg_read(ADDR["PC"])
                raise RunTimeout(f"{self.link.name}: the program did not finish in"
                                 f" {self.timeout:g} s: PC={pc} STATUS={status:#x}")
            self.sleep(self.poll_interval)

    def run(self, image, dram_base, prog_base, prog_count, window=None):
        link = self.link
        image = bytes(image)
        window = window or (self.cfg.dram_base, self.cfg.dram_size)
        self._check_board((dram_base, len(image)))
        link.mem_write(dram_base, image)
        for name, value in (("DRAM_BASE", window[0]), ("DRAM_SIZE", window[1]),
                            ("PROG_BASE", prog_base), ("PROG_COUNT", prog_count),
                            ("IRQ_STATUS", IRQ_STATUS.mask)):
            link.reg_write(ADDR[name], value)
        link.reg_write(ADDR["CTRL"], CTRL.pack(start=1))
        status = self._wait_done()
        counters = {key: link.reg_read(ADDR[reg]) for key, reg in COUNTER_REGISTERS}
        counters["macs_issued"] = (link.reg_read(ADDR["PERF_MACS_LO"])
                                   | link.reg_read(ADDR["PERF_MACS_HI"]) << regmap.REG_BITS)
        counters["instructions"] = link.reg_read(ADDR["PC"])
        counters.update({f"link_{key}": value for key, value in link.stats.items()})
        error = None
        if STATUS.error.extract(status):
            error = (link.reg_read(ADDR["ERR_CAUSE"]), link.reg_read(ADDR["ERR_PC"]),
                     link.reg_read(ADDR["ERR_ADDR"]))
        dram = link.mem_read(dram_base, len(image))
        return RunResult(dram, counters["cycles"], counters, error)


def _parse_port(arg):
    from boards.protocol import DEFAULT_BAUD

    if not arg:
        raise ValueError("the uart backend needs a serial port: uart:/dev/ttyUSB1"
                         " (or uart:PORT@BAUD)")
    port, _, baud = arg.partition("@")
    if not baud:
        return port, DEFAULT_BAUD
    try:
        return port, int(baud)
    except ValueError:
        raise ValueError(f"uart:{arg}: the baud rate after '@' must be an integer") from None


def _factory(cfg, arg):
    from sw.uart_link import open_uart

    port, baud = _parse_port(arg)
    return UartBackend(cfg, open_uart(port, baud))


register_backend("uart", _factory)
