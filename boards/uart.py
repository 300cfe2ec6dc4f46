"""8N1 UART transmitter and receiver with byte streams."""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["BYTE_LAYOUT", "ByteStream", "uart_divisor", "UartTx", "UartRx"]

BYTE_LAYOUT = data.StructLayout({"data": 8})
DATA_BITS = 8
MIN_DIVISOR = 4            # the receiver samples mid-bit: it needs a few cycles per bit
MAX_BAUD_ERROR = 0.02      # 8N1 tolerates ~4.5 % total; leave half for the other end


def ByteStream():
    return stream.Signature(BYTE_LAYOUT)


def uart_divisor(clk_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clk_hz``; raises if the rate error is too big."""
    if baud <= 0:
        raise ValueError(f"baud must be positive, not {baud}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud={baud} is too fast for a {clk_hz / 1e6:g} MHz clock"
                         f" (needs at least {MIN_DIVISOR} cycles per bit)")
    error = abs(clk_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud={baud} is {error:.1%} off at {clk_hz / 1e6:g} MHz"
                         f" (divisor {divisor}); at most {MAX_BAUD_ERROR:.0%} is allowed")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer of at least {MIN_DIVISOR}, not {divisor!r}")


class UartTx(wiring.Component):
    """8N1 transmitter.

    Ports
      i     In(stream{data: 8}): one byte per transfer.
      tx    Out(1): the line, idle high.

    Latency: the start bit begins the cycle after ``i`` is accepted.
    Throughput: one byte per ``10 * divisor`` cycles (``i.ready`` rises in the last cycle of
    the stop bit, so bytes go back to back).
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"i": In(ByteStream()), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        frame_bits = DATA_BITS + 2
        shreg = Signal(frame_bits, init=(1 << frame_bits) - 1)
        bits_left = Signal(range(frame_bits + 1))
        timer = Signal(range(self._divisor))

        m.d.comb += self.tx.eq(shreg[0])
        last_cycle = (timer == 0) & (bits_left <= 1)
        m.d.comb += self.i.ready.eq((bits_left == 0) | last_cycle)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                shreg.eq(Cat(0, self.i.payload.data, 1)),
                bits_left.eq(frame_bits),
                timer.eq(self._divisor - 1),
            ]
        with m.Elif(bits_left != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    shreg.eq(Cat(shreg[1:], 1)),
                    bits_left.eq(bits_left - 1),
                    timer.eq(self._divisor - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UartRx(wiring.Component):
    """8N1 receiver sampling each bit in its middle.

    Ports
      rx             In(1): the line (asynchronous: synchronised by two flip-flops).
      o              Out(stream{data: 8}): one transfer per good byte.
      framing_error  Out(1): one-cycle pulse when a stop bit is low (the byte is dropped;
                     the receiver then waits for the line to return high, so a break does not
                     produce bytes).
      overrun        Out(1): one-cycle pulse when a byte arrives while ``o`` still holds the
                     previous one (the new byte is dropped).

    Latency: ``o.valid`` rises about ``9.5 * divisor + 3`` cycles after the start edge.
    Throughput: one byte per 10 bit times (a stop bit of half length is accepted).
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(ByteStream()),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sync_ff = Signal(2, init=0b11)
        line = sync_ff[1]
        m.d.sync += sync_ff.eq(Cat(self.rx, sync_ff[0]))

        timer = Signal(range(self._divisor))
        bit = Signal(range(DATA_BITS))
        shreg = Signal(DATA_BITS)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"                  # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(self._divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), timer.eq(self._divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == DATA_BITS - 1):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(~line):
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
                with m.Else():
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.valid.eq(1), self.o.payload.data.eq(shreg)]
                    m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m
