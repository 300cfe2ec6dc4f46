"""boards.protocol frames and CRC, and sw.uart_link against a Python board with faults."""

import os
import random

import pytest

from boards import protocol
from boards.protocol import BoardInfo, Command, FrameError, Status
from sw.uart_link import BusError, LinkError, UartLink


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 32)))
    print(f"SEED={seed}")
    return seed


# -- CRC and frames --------------------------------------------------------------------------

def test_crc_check_value():
    assert protocol.crc16(b"123456789") == 0x29B1
    assert protocol.crc16(b"") == 0xFFFF
    assert protocol.crc16(b"\x00") == 0xE1F0


def test_crc_residue_of_a_sealed_frame_is_zero():
    frame = protocol.encode_request(Command.MEM_WRITE, 7, 0x1234, payload=b"hello")
    assert protocol.crc16(frame[1:]) == 0


def test_request_layout():
    frame = protocol.encode_request(Command.REG_WRITE, 0x42, 0x10,
                                    payload=(0xDEADBEEF).to_bytes(4, "little"))
    assert frame[:11] == bytes([protocol.SYNC, Command.REG_WRITE, 0x42,
                                0x10, 0, 0, 0, 4, 0, 0xEF, 0xBE])
    assert len(frame) == 1 + protocol.HEADER_BYTES + 4 + protocol.CRC_BYTES
    assert frame[-2:] == protocol.crc16(frame[1:-2]).to_bytes(2, "big")


@pytest.mark.parametrize("command,payload,length", [
    (Command.PING, b"", 0), (Command.REG_READ, b"", 4), (Command.REG_WRITE, b"\1\2\3\4", 4),
    (Command.MEM_READ, b"", 200), (Command.MEM_WRITE, bytes(range(37)), 37),
])
def test_request_round_trip(command, payload, length):
    frame = protocol.encode_request(command, 9, 0xCAFE0000, length, payload)
    assert protocol.decode_request(frame) == protocol.Request(command, 9, 0xCAFE0000, length,
                                                              payload)


def test_response_round_trip():
    info = BoardInfo(1, 256, 0, 1 << 17)
    frame = protocol.encode_response(Status.OK, 3, info.encode())
    response = protocol.decode_response(frame, Command.PING, 0)
    assert response == protocol.Response(Status.OK, 3, info.encode())
    assert BoardInfo.decode(response.payload) == info
    error = protocol.encode_response(Status.BUS_ERROR, 4)
    assert protocol.decode_response(error, Command.MEM_READ, 16).payload == b""


def test_every_single_byte_corruption_is_detected():
    rng = random.Random(_seed())
    frame = protocol.encode_request(Command.MEM_WRITE, 1, 0x100, payload=rng.randbytes(40))
    for i in range(1, len(frame)):
        for _ in range(4):
            bad = bytearray(frame)
            bad[i] ^= rng.randrange(1, 256)
            with pytest.raises(FrameError):
                protocol.decode_request(bad)


def test_truncated_and_bad_frames():
    frame = protocol.encode_request(Command.MEM_WRITE, 1, 0x100, payload=b"abcdef")
    for n in (0, 1, 5, len(frame) - 1):
        with pytest.raises(FrameError):
            protocol.decode_request(frame[:n])
    with pytest.raises(FrameError, match="SYNC"):
        protocol.decode_request(b"\0" + frame[1:])
    response = protocol.encode_response(Status.OK, 1, b"\1\2\3\4")
    with pytest.raises(FrameError, match="implies"):
        protocol.decode_response(response[:-1], Command.REG_READ, 4)
    with pytest.raises(FrameError, match="CRC"):
        protocol.decode_response(response[:3] + b"\x09" + response[4:], Command.REG_READ, 4)


def test_encode_checks_fields():
    with pytest.raises(ValueError, match="seq"):
        protocol.encode_request(Command.PING, 256)
    with pytest.raises(ValueError, match="addr"):
        protocol.encode_request(Command.PING, 0, 1 << 32)
    with pytest.raises(ValueError, match="length"):
        protocol.encode_request(Command.MEM_READ, 0, 0, 1 << 16)


# -- UartLink against a Python model of the bridge ---------------------------------------------

class FakeBoard:
    """A transport that answers like the bridge gateware, with injected faults.

    ``faults`` is a list consumed one per request: None (clean), "drop_request",
    "corrupt_request", "truncate_request", "drop_response", "corrupt_response", "noise".
    """

    def __init__(self, mem_size=4096, max_payload=64):
        self.mem = bytearray(mem_size)
        self.regs = {}
        self.info = BoardInfo(protocol.PROTOCOL_VERSION, max_payload, 0, mem_size)
        self.faults = []
        self.out = bytearray()
        self.executed = []
        self.last_write = None

    def read(self, n):
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data

    def write(self, frame):
        fault = self.faults.pop(0) if self.faults else None
        frame = bytearray(frame)
        if fault == "drop_request":
            return
        if fault == "truncate_request":
            return          # the bridge drops a partial frame after its inter-byte timeout
        if fault == "corrupt_request":
            frame[5] ^= 0x10
        response = self._answer(bytes(frame))
        if fault == "drop_response":
            return
        if fault == "corrupt_response":
            response = bytearray(response)
            response[-3] ^= 0x01
        if fault == "noise":
            response = b"\x00\xff" + response
        self.out += response

    def _answer(self, frame):
        try:
            request = protocol.decode_request(frame)
        except FrameError:
            return protocol.encode_response(Status.BAD_CRC, frame[2])
        is_write = request.command in (Command.REG_WRITE, Command.MEM_WRITE)
        if is_write and self.last_write and self.last_write[0] == request.seq:
            return protocol.encode_response(self.last_write[1], request.seq)
        if not is_write:
            self.last_write = None
        status, payload = self._execute(request)
        if is_write:
            self.last_write = (request.seq, status)
        return protocol.encode_response(status, request.seq, payload)

    def _execute(self, r):
        self.executed.append((Command(r.command).name, r.addr))
        if r.command == Command.PING:
            return Status.OK, self.info.encode()
        if r.command == Command.REG_READ:
            if r.addr not in self.regs:
                return Status.BUS_ERROR, b""
            return Status.OK, self.regs[r.addr].to_bytes(4, "little")
        if r.command == Command.REG_WRITE:
            self.regs[r.addr] = int.from_bytes(r.payload, "little")
            return Status.OK, b""
        if not 1 <= r.length <= self.info.max_payload:
            return Status.BAD_COMMAND, b""
        if r.addr + r.length > len(self.mem):
            return Status.BUS_ERROR, b""
        if r.command == Command.MEM_READ:
            return Status.OK, bytes(self.mem[r.addr:r.addr + r.length])
        self.mem[r.addr:r.addr + r.length] = r.payload
        return Status.OK, b""


def test_link_clean_path():
    rng = random.Random(_seed())
    board = FakeBoard()
    link = UartLink(board, seq=0)
    assert link.ping() == board.info
    link.reg_write(0x10, 0xDEADBEEF)
    assert board.regs[0x10] == 0xDEADBEEF
    assert link.reg_read(0x10) == 0xDEADBEEF
    data = rng.randbytes(1000)
    link.mem_write(100, data)
    assert board.mem[100:1100] == data
    assert link.mem_read(100, 1000) == data
    assert link.stats["retries"] == 0


@pytest.mark.parametrize("fault", ["drop_request", "corrupt_request", "truncate_request",
                                   "drop_response", "corrupt_response", "noise"])
def test_link_recovers_from_one_fault(fault):
    board = FakeBoard()
    link = UartLink(board, seq=0)
    board.faults = [fault]
    link.mem_write(0, b"\x11" * 10)
    board.faults = [fault]
    assert link.mem_read(0, 10) == b"\x11" * 10
    assert link.stats["retries"] == (0 if fault == "noise" else 2)


def test_lost_write_answer_does_not_repeat_the_write():
    board = FakeBoard()
    link = UartLink(board, seq=0)
    board.faults = ["drop_response"]
    link.reg_write(0x20, 1)
    assert board.executed == [("REG_WRITE", 0x20)]
    link.reg_write(0x20, 1)
    assert board.executed == [("REG_WRITE", 0x20)] * 2


def test_link_gives_up_with_a_clear_error():
    board = FakeBoard()
    link = UartLink(board, retries=2, name="uart:/dev/null")
    board.faults = ["drop_request"] * 3
    with pytest.raises(LinkError, match=r"uart:/dev/null: REG_READ 0x4 failed after 3 attempts"
                                        r" \(no answer; no answer; no answer\)"):
        link.reg_read(0x4)


def test_link_bus_errors_are_not_retried():
    board = FakeBoard()
    link = UartLink(board)
    with pytest.raises(BusError, match="BUS_ERROR"):
        link.reg_read(0x44)
    with pytest.raises(BusError, match="MEM_READ 0xff0"):
        link.mem_read(0xFF0, 32)
    assert link.stats["retries"] == 0
