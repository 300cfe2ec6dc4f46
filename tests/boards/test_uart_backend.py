"""sw.uart_backend against a scripted fake link (no hardware, no simulator); the whole path
through the gateware is tests/boards/test_board_cocotb.py."""

import pytest

from boards.protocol import BoardInfo, PROTOCOL_VERSION
from hw import regmap
from sw.isa import ErrorCause
from sw.runtime import get_backend
from sw.uart_backend import RunTimeout, UartBackend

from boards.targets import BOARDS


CFG = BOARDS["icebreaker"].cfg
ADDR = regmap.OFFSETS


class FakeLink:
    """Registers as a dict; STATUS follows ``statuses`` (the last one repeats)."""

    name = "fake"

    def __init__(self, statuses, regs=None):
        self.statuses = list(statuses)
        self.regs = {ADDR["ID"]: regmap.ID_MAGIC, **(regs or {})}
        self.mem = bytearray(CFG.dram_size)
        self.writes = []
        self.stats = {"requests": 0, "retries": 0}

    def ping(self):
        return BoardInfo(PROTOCOL_VERSION, 256, CFG.dram_base, CFG.dram_size)

    def reg_read(self, addr):
        if addr == ADDR["STATUS"]:
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return self.regs.get(addr, 0)

    def reg_write(self, addr, value):
        self.writes.append((addr, value))

    def mem_write(self, addr, data):
        self.mem[addr:addr + len(data)] = data

    def mem_read(self, addr, size):
        return bytes(self.mem[addr:addr + size])


def _status(**fields):
    return regmap.by_name("STATUS").pack(**fields)


def test_run_programs_the_registers_and_reads_counters():
    link = FakeLink([_status(busy=1), _status(done=1)],
                    {ADDR["PERF_CYCLES"]: 123, ADDR["PERF_MACS_HI"]: 1, ADDR["PC"]: 7})
    backend = UartBackend(CFG, link, poll_interval=0)
    result = backend.run(b"\x01\x02\x03\x04", 0, 64, 7, window=(0, 4096))
    assert result.dram == b"\x01\x02\x03\x04" and result.error is None
    assert result.cycles == 123
    assert result.counters["macs_issued"] == 1 << 32
    assert result.counters["instructions"] == 7
    regs = dict(link.writes)
    assert regs[ADDR["PROG_BASE"]] == 64 and regs[ADDR["PROG_COUNT"]] == 7
    assert regs[ADDR["DRAM_SIZE"]] == 4096
    assert link.writes[-1] == (ADDR["CTRL"], 1), "CTRL.start must come last"


def test_error_tuple_comes_from_the_error_registers():
    link = FakeLink([_status(error=1)], {ADDR["ERR_CAUSE"]: ErrorCause.DMA_WINDOW,
                                         ADDR["ERR_PC"]: 3, ADDR["ERR_ADDR"]: 0x40})
    result = UartBackend(CFG, link, poll_interval=0).run(b"\0" * 8, 0, 0, 4)
    assert result.error == (ErrorCause.DMA_WINDOW, 3, 0x40)


def test_timeout_names_the_last_pc():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    link = FakeLink([_status(busy=1)], {ADDR["PC"]: 5})
    backend = UartBackend(CFG, link, timeout=1.0, poll_interval=0.1, clock=lambda: now[0],
                          sleep=sleep)
    with pytest.raises(RunTimeout, match="PC=5"):
        backend.run(b"\0" * 8, 0, 0, 4)


def test_wrong_board_is_refused():
    link = FakeLink([_status(done=1)], {ADDR["ID"]: 0xDEADBEEF})
    with pytest.raises(RuntimeError, match="ID register"):
        UartBackend(CFG, link).run(b"\0" * 8, 0, 0, 4)


def test_backend_name_needs_a_port():
    with pytest.raises(ValueError, match="needs a serial port"):
        get_backend("uart", CFG)
    with pytest.raises(ValueError, match="baud"):
        get_backend("uart:/dev/ttyUSB1@fast", CFG)
