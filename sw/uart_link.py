"""Host side of the board's UART bridge: register and memory access with retries.

``UartLink(transport)`` works over anything with ``read(n) -> bytes`` (returning fewer bytes
once its timeout has passed, as ``serial.Serial`` does) and ``write(data)``: a serial port
(:func:`open_uart`) or a simulated board. Every failure ends in :class:`LinkError` with a
message meant for the command line.
"""

import random

from boards import protocol
from boards.protocol import Command, Status


__all__ = ["LinkError", "BusError", "UartLink", "open_uart", "DEFAULT_TIMEOUT", "DEFAULT_RETRIES"]

DEFAULT_TIMEOUT = 0.5      # seconds; must exceed the bridge's inter-byte timeout
DEFAULT_RETRIES = 3
# Bytes before a SYNC that are skipped as line noise before the answer counts as garbled.
MAX_NOISE_BYTES = 16


class LinkError(RuntimeError):
    """The board could not be reached or did not answer correctly."""


class BusError(LinkError):
    """The board answered, but the access failed on its bus (BUS_ERROR or TIMEOUT)."""


class _Garbled(Exception):
    """A transient failure: the request is sent again."""


class UartLink:
    """Register and memory access to a board through its UART bridge.

    ``name`` only appears in error messages. Each request is sent up to ``1 + retries``
    times; between attempts the link waits for the line to fall silent, which also lets the
    bridge drop any partial frame (see :mod:`boards.protocol`).
    """

    def __init__(self, transport, *, retries=DEFAULT_RETRIES, name="board", seq=None):
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self.transport = transport
        self.retries = retries
        self.name = name
        self._seq = random.randrange(256) if seq is None else seq & 0xFF
        self._max_payload = protocol.MAX_PAYLOAD
        self.stats = {"requests": 0, "retries": 0}

    # -- public API ---------------------------------------------------------------------------

    def ping(self):
        """The bridge's :class:`boards.protocol.BoardInfo`; also sizes later MEM transfers."""
        info = protocol.BoardInfo.decode(self._transact(Command.PING, 0, 0))
        if info.version != protocol.PROTOCOL_VERSION:
            raise LinkError(f"{self.name}: bridge speaks protocol version {info.version}, this"
                            f" host {protocol.PROTOCOL_VERSION}: rebuild the bitstream")
        self._max_payload = info.max_payload
        return info

    def reg_read(self, addr):
        return int.from_bytes(self._transact(Command.REG_READ, addr, protocol.REG_BYTES),
                              "little")

    def reg_write(self, addr, value):
        if not 0 <= value < 1 << (8 * protocol.REG_BYTES):
            raise ValueError(f"register value {value:#x} does not fit 32 bits")
        self._transact(Command.REG_WRITE, addr, protocol.REG_BYTES,
                       value.to_bytes(protocol.REG_BYTES, "little"))

    def mem_read(self, addr, size):
        chunks = []
        for offset in range(0, size, self._max_payload):
            n = min(self._max_payload, size - offset)
            chunks.append(self._transact(Command.MEM_READ, addr + offset, n))
        return b"".join(chunks)

    def mem_write(self, addr, data):
        data = bytes(data)
        for offset in range(0, len(data), self._max_payload):
            chunk = data[offset:offset + self._max_payload]
            self._transact(Command.MEM_WRITE, addr + offset, len(chunk), chunk)

    def close(self):
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one request --------------------------------------------------------------------------

    def _describe(self, command, addr, length):
        what = Command(command).name
        if command == Command.PING:
            return what
        if command in (Command.REG_READ, Command.REG_WRITE):
            return f"{what} {addr:#x}"
        return f"{what} {addr:#x} (+{length} bytes)"

    def _transact(self, command, addr, length, payload=b""):
        self._seq = (self._seq + 1) & 0xFF
        frame = protocol.encode_request(command, self._seq, addr, length, payload)
        self.stats["requests"] += 1
        problems = []
        for attempt in range(1 + self.retries):
            if attempt:
                self.stats["retries"] += 1
                self._resync()
            self.transport.write(frame)
            try:
                response = self._receive(command, length)
            except _Garbled as problem:
                problems.append(str(problem))
                continue
            if response.status == Status.OK:
                return response.payload
            if response.status == Status.BAD_CRC:
                problems.append("the board saw a bad CRC")
                continue
            what = self._describe(command, addr, length)
            if response.status in (Status.BUS_ERROR, Status.TIMEOUT):
                raise BusError(f"{self.name}: {what} failed on the board's bus:"
                               f" {Status(response.status).name}")
            raise LinkError(f"{self.name}: {what} was refused as BAD_COMMAND (host and"
                            f" bitstream disagree on the protocol, or the length is too big)")
        raise LinkError(f"{self.name}: {self._describe(command, addr, length)} failed after"
                        f" {1 + self.retries} attempts ({'; '.join(problems)}). Is the board"
                        f" programmed, on this port and at this baud rate?")

    def _read_exact(self, n):
        data = self.transport.read(n) if n else b""
        if len(data) < n:
            raise _Garbled(f"timeout after {len(data)} of {n} bytes" if data else "no answer")
        return data

    def _receive(self, command, length):
        for _ in range(MAX_NOISE_BYTES + 1):
            first = self._read_exact(1)
            if first[0] == protocol.SYNC:
                break
        else:
            raise _Garbled("no SYNC in the answer")
        head = self._read_exact(2)
        status, seq = head
        n = protocol.response_length(command, length, status)
        frame = first + head + self._read_exact(n + protocol.CRC_BYTES)
        try:
            response = protocol.decode_response(frame, command, length)
        except protocol.FrameError as error:
            raise _Garbled(f"garbled answer: {error}") from None
        if response.seq != self._seq:
            raise _Garbled(f"answer to request {response.seq}, expected {self._seq}")
        if response.status not in set(Status):
            raise _Garbled(f"unknown status {response.status:#04x}")
        return response

    def _resync(self):
        """Discard input until the line has been silent for one transport timeout."""
        reset = getattr(self.transport, "reset_input_buffer", None)
        if reset is not None:
            reset()
        while self.transport.read(64):
            pass


def open_uart(port, baud=protocol.DEFAULT_BAUD, *, timeout=DEFAULT_TIMEOUT,
              retries=DEFAULT_RETRIES):
    """A :class:`UartLink` on serial ``port``, checked with a PING."""
    try:
        import serial
    except ImportError:
        raise LinkError("the UART backend needs pyserial: pip install pyserial") from None
    try:
        transport = serial.Serial(port, baud, timeout=timeout)
    except (serial.SerialException, OSError) as error:
        raise LinkError(f"cannot open {port}: {error}") from None
    link = UartLink(transport, retries=retries, name=f"uart:{port}")
    try:
        link.ping()
    except LinkError:
        link.close()
        raise
    return link
