"""cocotb testbench of the whole board design (``boards.top.BoardSoC``, top ``board_soc``).

The host is the real one: :class:`sw.runtime.Runtime` with :class:`sw.uart_backend.UartBackend`
over :class:`sw.uart_link.UartLink`. Its blocking calls run in a cocotb bridge thread; the
transport (:class:`SimSerial`) turns them into bit-level activity on the ``rx`` / ``tx`` pins.

Environment: ``TC_CONFIG`` (``Config.to_json()``), ``TC_UART_DIVISOR`` (clock cycles per bit
the design was emitted with), ``TC_FRAME_TIMEOUT`` (the bridge's inter-byte timeout in
cycles), ``SEED``.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, select
from cocotb.utils import get_sim_time

from boards import protocol
from boards.protocol import Command, Status
from hw import regmap
from hw.config import Config
from sw.isa import ErrorCause
from sw import compiler
from sw.runtime import AcceleratorError, GoldenBackend, Runtime
from sw.uart_backend import UartBackend
from sw.uart_link import UartLink


CLOCK_NS = 10
DATA_BITS = 8
# A simulated read returns early after this many byte times without a byte, plus the time
# the bridge takes to execute a full MEM_WRITE (~4 cycles a byte), like a serial timeout.
READ_TIMEOUT_BYTES = 12
MEM_WRITE_CYCLES_PER_BYTE = 8


class SimSerial:
    """A serial port wired to the design's UART pins, bit by bit (8N1, ``divisor`` cycles a
    bit). ``read`` / ``write`` are blocking (for bridge threads), like ``serial.Serial``'s.

    ``corrupt_writes`` holds indices of future ``write`` calls whose frame gets one payload
    bit flipped on the wire; ``log`` records every written and received frame.
    """

    def __init__(self, dut, divisor, read_timeout_cycles):
        self.dut = dut
        self.divisor = divisor
        self.read_timeout_cycles = read_timeout_cycles
        self.received = Queue()
        self.writes = 0
        self.corrupt_writes = set()
        self.corrupted = []
        dut.rx.value = 1
        cocotb.start_soon(self._receiver())
        self.read = resume(self._read)
        self.write = resume(self._write)
        self.reset_input_buffer = self._drain

    async def _receiver(self):
        dut, divisor = self.dut, self.divisor
        while True:
            await FallingEdge(dut.tx)
            await ClockCycles(dut.clk, divisor // 2)
            assert not int(dut.tx.value), "start bit glitch on tx"
            byte = 0
            for bit in range(DATA_BITS):
                await ClockCycles(dut.clk, divisor)
                byte |= int(dut.tx.value) << bit
            await ClockCycles(dut.clk, divisor)
            assert int(dut.tx.value), f"framing error on tx (byte {byte:#04x})"
            self.received.put_nowait(byte)

    async def _send_byte(self, byte):
        for level in [0] + [(byte >> i) & 1 for i in range(DATA_BITS)] + [1]:
            self.dut.rx.value = level
            await ClockCycles(self.dut.clk, self.divisor)

    async def _write(self, data):
        data = bytearray(data)
        if self.writes in self.corrupt_writes:
            data[len(data) // 2] ^= 0x10
            self.corrupted.append(bytes(data))
        self.writes += 1
        for byte in data:
            await self._send_byte(byte)
        return len(data)

    async def _read(self, n):
        data = bytearray()
        while len(data) < n:
            if self.received.empty():
                index, byte = await select(self.received.get(),
                                           ClockCycles(self.dut.clk, self.read_timeout_cycles))
                if index:
                    break
                data.append(byte)
            else:
                data.append(self.received.get_nowait())
        return bytes(data)

    def _drain(self):
        while not self.received.empty():
            self.received.get_nowait()


def _env():
    cfg = Config.from_json(os.environ["TC_CONFIG"])
    divisor = int(os.environ["TC_UART_DIVISOR"])
    frame_timeout = int(os.environ["TC_FRAME_TIMEOUT"])
    seed = int(os.environ.get("SEED", "0"))
    return cfg, divisor, frame_timeout, seed


async def _start(dut, divisor, frame_timeout):
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.rx.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    # Longer than the bridge's frame timeout, so a retry always finds it resynchronised.
    read_timeout = (max(READ_TIMEOUT_BYTES * 10 * divisor, 2 * frame_timeout)
                    + MEM_WRITE_CYCLES_PER_BYTE * protocol.MAX_PAYLOAD)
    return SimSerial(dut, divisor, read_timeout)


def _count_pulses(dut, name):
    counter = {"n": 0}

    async def count():
        # The pulses are one cycle long and never back to back: count edges, not cycles.
        signal = getattr(dut, name)
        while True:
            await RisingEdge(signal)
            counter["n"] += 1

    cocotb.start_soon(count())
    return counter


def _sim_seconds():
    return get_sim_time("ns") * 1e-9


def _backend(cfg, link, dut, timeout_s=0.05):
    @resume
    async def sleep(seconds):
        await ClockCycles(dut.clk, max(1, round(seconds * 1e9 / CLOCK_NS)))

    return UartBackend(cfg, link, timeout=timeout_s, poll_interval=2e-6, clock=_sim_seconds,
                       sleep=sleep)


def _gemm_case(rng, M, K, N):
    A = rng.integers(-128, 128, (M, K), dtype=np.int8)
    B = rng.integers(-128, 128, (K, N), dtype=np.int8)
    A[0, :] = -128                       # extremes: the largest products and saturation
    B[:, 0] = -128
    A[-1, :] = 127
    bias = rng.integers(-5000, 5000, N, dtype=np.int32)
    return dict(A=A, B=B, bias=bias, multiplier=1 << 30, shift=9, zero_point=3)


@cocotb.test()
async def corrupted_frame_is_rejected(dut):
    """A request with a flipped bit is answered BAD_CRC and has no effect; the next good
    request is served (the bridge is back in sync)."""
    cfg, divisor, frame_timeout, seed = _env()
    serial = await _start(dut, divisor, frame_timeout)
    bad = _count_pulses(dut, "bad_frame")
    addr, value = regmap.OFFSETS["PROG_BASE"], 0x1234_5678
    frame = bytearray(protocol.encode_request(Command.REG_WRITE, 7, addr,
                                              payload=value.to_bytes(4, "little")))
    frame[-4] ^= 0x01                    # a payload bit
    await serial._write(frame)
    answer = await serial._read(3 + protocol.CRC_BYTES)
    response = protocol.decode_response(answer, Command.REG_WRITE, 4)
    assert response.status == Status.BAD_CRC, response
    assert response.seq == 7
    assert bad["n"] == 1
    read = protocol.encode_request(Command.REG_READ, 8, addr)
    await serial._write(read)
    answer = await serial._read(3 + 4 + protocol.CRC_BYTES)
    response = protocol.decode_response(answer, Command.REG_READ, 4)
    assert response.status == Status.OK
    assert int.from_bytes(response.payload, "little") == 0, "the corrupted write took effect"


@cocotb.test()
async def gemm_through_the_board(dut):
    """A 5x7x6 int8 GEMM (bias, requantised) through Runtime + UartBackend + the bridge,
    bit-exact against the golden backend, with one MEM_WRITE frame of the image corrupted
    on the wire: the bridge rejects it, the link resends it, the result stays exact."""
    cfg, divisor, frame_timeout, seed = _env()
    serial = await _start(dut, divisor, frame_timeout)
    bad = _count_pulses(dut, "bad_frame")
    rng = np.random.default_rng(seed)
    case = _gemm_case(rng, 5, 7, 6)
    expected, golden_report = Runtime(cfg, "golden").gemm(**case)

    link = UartLink(serial, name="sim-board", seq=random.Random(seed).randrange(256))
    # Writes: 0 = PING, 1 = REG_READ ID, 2 = the image's first MEM_WRITE.
    serial.corrupt_writes = {2}
    backend = _backend(cfg, link, dut)

    @bridge
    def host():
        return Runtime(cfg, backend).gemm(**case)

    out, report = await host()
    dut._log.info(f"uart report: {report}; link {link.stats}")
    assert len(serial.corrupted) == 1
    assert serial.corrupted[0][1] == Command.MEM_WRITE
    assert bad["n"] == 1, f"{bad['n']} bad frames seen by the bridge"
    assert link.stats["retries"] == 1
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == expected.dtype
    assert report["backend"] == "uart"
    assert report["instructions"] == golden_report["instructions"]
    assert report["cycles"] > report["ideal_cycles"]
    assert report["dma_bytes_read"] > 0 and report["dma_bytes_written"] > 0


@cocotb.test()
async def accelerator_error_is_reported(dut):
    """A program whose DRAM window leaves out its operands stops on a DMA error; the error
    tuple read from ERR_CAUSE / ERR_PC / ERR_ADDR equals the golden model's."""
    cfg, divisor, frame_timeout, seed = _env()
    serial = await _start(dut, divisor, frame_timeout)
    rng = np.random.default_rng(seed + 1)
    case = _gemm_case(rng, 3, 4, 4)
    inputs = dict(A=case["A"], B=case["B"])
    program = compiler.compile_gemm(cfg, (3, 4), (4, 4), bias=False, out_dtype="int32")
    image = program.pack(inputs)
    window = (program.prog_base, program.dram_base + len(image) - program.prog_base)
    args = (image, program.dram_base, program.prog_base, program.prog_count)
    golden = GoldenBackend(cfg).run(*args, window=window)
    assert golden.error is not None and golden.error[0] == ErrorCause.DMA_WINDOW, golden.error
    backend = _backend(cfg, UartLink(serial, name="sim-board"), dut)
    result = await bridge(backend.run)(*args, window=window)
    assert result.error is not None
    assert tuple(result.error) == tuple(golden.error), (result.error, golden.error)
    dut._log.info(f"reported: {AcceleratorError(*result.error)}")
