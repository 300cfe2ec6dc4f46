"""The framed protocol between a host and the board's UART bridge (pure Python).

Both directions carry frames that start with :data:`SYNC` and end with a CRC-16/CCITT-FALSE
(polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR) of every byte after
SYNC, sent most significant byte first, so the CRC run over a whole frame after SYNC
(CRC bytes included) leaves 0: that is how the gateware checks it. Multi-byte fields are
little-endian.

Request (host -> board)::

    SYNC  command  seq  addr[4]  length[2]  payload[n]  crc[2]

``payload`` is present only for REG_WRITE (4 bytes, the register value) and MEM_WRITE
(``length`` bytes). ``length`` is 4 for REG_READ / REG_WRITE, the byte count (1 ..
``max_payload``) for MEM_READ / MEM_WRITE and 0 for PING.

Response (board -> host)::

    SYNC  status  seq  payload[n]  crc[2]

``seq`` echoes the request. The payload is empty unless the status is OK; then it is
:func:`response_length` bytes: 4 for REG_READ, ``length`` for MEM_READ, :data:`PING_LENGTH`
for PING (:class:`BoardInfo`).

Robustness rules the bridge follows:

* A request whose CRC does not check is answered BAD_CRC and has no effect.
* A request that stops mid-frame for longer than the inter-byte timeout is dropped without
  answer; the parser waits for the next SYNC, so a host that waits longer than that timeout
  before retrying always finds the bridge resynchronised.
* A REG_WRITE or MEM_WRITE whose ``seq`` equals that of the write executed just before it
  (with no other command in between) is a retry whose response was lost: it is answered with
  the status of the first execution and not executed again, so register commands with side
  effects (START) happen once.
"""

import enum
import struct
from dataclasses import dataclass


__all__ = [
    "SYNC", "Command", "Status", "REG_BYTES", "MAX_PAYLOAD", "PROTOCOL_VERSION",
    "PING_LENGTH", "HEADER_BYTES", "CRC_BYTES", "DEFAULT_BAUD", "BoardInfo", "Request",
    "Response", "FrameError", "crc16", "encode_request", "decode_request", "encode_response",
    "decode_response", "request_has_payload", "response_length",
]

SYNC = 0xA5
PROTOCOL_VERSION = 1
REG_BYTES = 4
MAX_PAYLOAD = 256          # bytes the bridge buffers for a MEM_WRITE (one iCE40 EBR)
HEADER_BYTES = 8           # command, seq, addr[4], length[2]
CRC_BYTES = 2
DEFAULT_BAUD = 115200
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF


class Command(enum.IntEnum):
    PING = 0x01
    REG_READ = 0x02
    REG_WRITE = 0x03
    MEM_READ = 0x04
    MEM_WRITE = 0x05


class Status(enum.IntEnum):
    OK = 0x00
    BAD_CRC = 0x01
    BAD_COMMAND = 0x02    # unknown command or a length the command does not allow
    BUS_ERROR = 0x03      # SLVERR / DECERR from the register bus, or a MEM range off the RAM
    TIMEOUT = 0x04        # the register bus did not answer in time


@dataclass(frozen=True)
class BoardInfo:
    """The PING payload: what the host needs to talk to this bridge."""
    version: int
    max_payload: int
    mem_base: int
    mem_size: int

    FORMAT = "<BHII"

    def encode(self):
        return struct.pack(self.FORMAT, self.version, self.max_payload, self.mem_base,
                           self.mem_size)

    @classmethod
    def decode(cls, payload):
        return cls(*struct.unpack(cls.FORMAT, payload))


PING_LENGTH = struct.calcsize(BoardInfo.FORMAT)


class FrameError(ValueError):
    """Bytes that are not a well-formed frame (the message says which part is wrong)."""


@dataclass(frozen=True)
class Request:
    command: int
    seq: int
    addr: int
    length: int
    payload: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    seq: int
    payload: bytes = b""


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data`` (continuing from ``crc``); ``crc16(b"123456789")`` is
    0x29B1."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def _seal(body):
    return bytes([SYNC]) + body + crc16(body).to_bytes(CRC_BYTES, "big")


def request_has_payload(command):
    return command in (Command.REG_WRITE, Command.MEM_WRITE)


def response_length(command, length, status):
    """Payload bytes of the response to ``command`` with ``length`` answered ``status``."""
    if status != Status.OK:
        return 0
    return {Command.PING: PING_LENGTH, Command.REG_READ: REG_BYTES,
            Command.MEM_READ: length}.get(command, 0)


def encode_request(command, seq, addr=0, length=None, payload=b""):
    """A request frame; ``length`` defaults to what ``command`` and ``payload`` imply."""
    payload = bytes(payload)
    if length is None:
        length = {Command.PING: 0, Command.REG_READ: REG_BYTES,
                  Command.REG_WRITE: REG_BYTES}.get(command, len(payload))
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq must be from 0 to 255, not {seq}")
    if not 0 <= addr <= 0xFFFFFFFF:
        raise ValueError(f"addr must fit 32 bits, not {addr:#x}")
    if not 0 <= length <= 0xFFFF:
        raise ValueError(f"length must fit 16 bits, not {length}")
    return _seal(struct.pack("<BBIH", command, seq, addr, length) + payload)


def _check_crc(frame):
    if crc16(frame[1:]) != 0:
        got = int.from_bytes(frame[-CRC_BYTES:], "big")
        raise FrameError(f"CRC mismatch: frame carries {got:#06x},"
                         f" contents give {crc16(frame[1:-CRC_BYTES]):#06x}")


def decode_request(frame):
    """The :class:`Request` in ``frame`` (one whole frame, SYNC first)."""
    frame = bytes(frame)
    if not frame or frame[0] != SYNC:
        raise FrameError(f"request does not start with SYNC {SYNC:#04x}")
    if len(frame) < 1 + HEADER_BYTES + CRC_BYTES:
        raise FrameError(f"request truncated: {len(frame)} bytes")
    command, seq, addr, length = struct.unpack_from("<BBIH", frame, 1)
    n = length if request_has_payload(command) else 0
    expected = 1 + HEADER_BYTES + n + CRC_BYTES
    if len(frame) != expected:
        raise FrameError(f"request is {len(frame)} bytes, its header implies {expected}")
    _check_crc(frame)
    return Request(command, seq, addr, length, frame[1 + HEADER_BYTES:-CRC_BYTES])


def encode_response(status, seq, payload=b""):
    return _seal(bytes([status, seq]) + bytes(payload))


def decode_response(frame, command, length):
    """The :class:`Response` in ``frame``, the answer to a ``command`` of ``length``."""
    frame = bytes(frame)
    if not frame or frame[0] != SYNC:
        raise FrameError(f"response does not start with SYNC {SYNC:#04x}")
    if len(frame) < 3 + CRC_BYTES:
        raise FrameError(f"response truncated: {len(frame)} bytes")
    status, seq = frame[1], frame[2]
    expected = 3 + response_length(command, length, status) + CRC_BYTES
    if len(frame) != expected:
        raise FrameError(f"response is {len(frame)} bytes, status {status:#04x} implies"
                         f" {expected}")
    _check_crc(frame)
    return Response(status, seq, frame[3:-CRC_BYTES])
