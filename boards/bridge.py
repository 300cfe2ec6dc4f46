"""The UART bridge: framed requests (boards/protocol.py) to register and memory accesses."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.axi import AXI4LiteSignature, AxiResp
from hw.axi_sram import HostPortSignature

from . import protocol
from .protocol import Command, Status
from .uart import ByteStream


__all__ = ["Bridge", "crc16_next"]

HEADER_LAYOUT = data.StructLayout({"command": 8, "seq": 8, "addr": 32, "length": 16})
LENGTH_BITS = 16


def crc16_next(crc, byte):
    """CRC-16/CCITT-FALSE of ``crc`` followed by ``byte``, as a combinational expression."""
    for i in reversed(range(8)):
        feedback = crc[15] ^ byte[i]
        crc = Cat(Const(0, 1), crc[:15]) ^ Mux(feedback, protocol.CRC_POLY, 0)
    return crc


class Bridge(wiring.Component):
    """Parses request frames from ``rx``, executes them and answers on ``tx``.

    Ports
      rx        In(stream{data: 8}): bytes from the UART receiver, always accepted; bytes
                that arrive while a request executes or is answered are dropped (the host
                waits for each answer).
      tx        Out(stream{data: 8}): bytes to the UART transmitter.
      m_axil    Out(AXI4LiteSignature(reg_addr_width, 32)): REG_READ / REG_WRITE.
      mem       Out(HostPortSignature(mem_addr_width, mem_data_width)): MEM_READ / MEM_WRITE,
                one byte per word access (byte strobe for writes).
      bad_frame Out(1): one-cycle pulse when a frame is rejected for its CRC or dropped for a
                timeout (for a LED).

    Parameters
      mem_base, mem_size   the RAM's byte range; MEM ranges outside it answer BUS_ERROR.
      frame_timeout        cycles without a byte after which a partial frame is dropped.
      bus_timeout          cycles a register access may take before it answers TIMEOUT (the
                           AXI4-Lite request is then withdrawn).
      max_payload          bytes of the MEM_WRITE buffer (and the longest MEM_READ).

    Latency: the answer starts a few cycles after the last CRC byte (MEM_WRITE: about
    ``4 * length`` cycles). Throughput is the UART's: MEM_READ fetches a byte per UART byte.
    """

    def __init__(self, *, mem_base, mem_size, mem_addr_width, mem_data_width, reg_addr_width,
                 frame_timeout, bus_timeout, max_payload=protocol.MAX_PAYLOAD):
        word_bytes = mem_data_width // 8
        if not isinstance(mem_size, int) or mem_size <= 0 or mem_size % word_bytes:
            raise ValueError(f"mem_size must be a positive multiple of {word_bytes} bytes,"
                             f" not {mem_size!r}")
        if not isinstance(mem_base, int) or mem_base < 0 or mem_base + mem_size > 1 << 32:
            raise ValueError(f"mem_base must leave the RAM inside 32-bit addresses, not"
                             f" {mem_base!r}")
        if mem_size > word_bytes << mem_addr_width:
            raise ValueError(f"mem_addr_width={mem_addr_width} cannot address mem_size={mem_size}")
        for name, value in (("frame_timeout", frame_timeout), ("bus_timeout", bus_timeout)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive number of cycles, not {value!r}")
        if not isinstance(max_payload, int) or not 4 <= max_payload < 1 << LENGTH_BITS:
            raise ValueError(f"max_payload must be from 4 to {(1 << LENGTH_BITS) - 1} bytes,"
                             f" not {max_payload!r}")
        self.mem_base = mem_base
        self.mem_size = mem_size
        self.word_bytes = word_bytes
        self.reg_addr_width = reg_addr_width
        self.frame_timeout = frame_timeout
        self.bus_timeout = bus_timeout
        self.max_payload = max_payload
        self.info = protocol.BoardInfo(protocol.PROTOCOL_VERSION, max_payload, mem_base,
                                       mem_size)
        super().__init__({
            "rx": In(ByteStream()),
            "tx": Out(ByteStream()),
            "m_axil": Out(AXI4LiteSignature(reg_addr_width, protocol.REG_BYTES * 8)),
            "mem": Out(HostPortSignature(mem_addr_width, mem_data_width)),
            "bad_frame": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        axil, mem = self.m_axil, self.mem
        byte = self.rx.payload.data
        got = self.rx.valid & self.rx.ready

        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[])
        buf_wr = buf.write_port()
        buf_rd = buf.read_port()

        hdr = Signal(HEADER_LAYOUT)
        crc = Signal(16)
        count = Signal(LENGTH_BITS)
        timer = Signal(range(max(self.frame_timeout, self.bus_timeout) + 1))
        status = Signal(8)
        resp_len = Signal(LENGTH_BITS)
        info = self.info.encode()
        # PING answers with constants, picked by the byte index rather than shifted out of
        # a register (flip-flops are what a small FPGA runs out of).
        info_byte = Signal(8)
        with m.Switch(count):
            for index, value in enumerate(info):
                with m.Case(index):
                    m.d.comb += info_byte.eq(value)
        reg_out = Signal(protocol.REG_BYTES * 8)
        reg_word = Signal(protocol.REG_BYTES * 8)
        mem_byte = Signal(8)
        aw_done = Signal()
        w_done = Signal()
        last_write_valid = Signal()
        last_write_seq = Signal(8)
        last_write_status = Signal(8)

        command, length = hdr.command, hdr.length
        is_write = (command == Command.REG_WRITE) | (command == Command.MEM_WRITE)
        last_byte = count == length - 1
        offset = Signal(32)
        m.d.comb += offset.eq(hdr.addr - self.mem_base + count)
        lane = offset[:(self.word_bytes - 1).bit_length()]
        m.d.comb += [
            mem.req.payload.addr.eq(offset[(self.word_bytes - 1).bit_length():]),
            mem.req.payload.data.eq(Cat([buf_rd.data] * self.word_bytes)),
            mem.req.payload.strb.eq(Const(1, self.word_bytes) << lane),
            buf_rd.addr.eq(count),
            buf_wr.addr.eq(count),
            buf_wr.data.eq(byte),
            axil.awaddr.eq(hdr.addr),
            axil.araddr.eq(hdr.addr),
            axil.wdata.eq(reg_word),
            axil.wstrb.eq((1 << protocol.REG_BYTES) - 1),
            # Late answers of a withdrawn (timed-out) access are drained rather than left
            # to stall the slave.
            axil.bready.eq(1),
            axil.rready.eq(1),
            mem.resp.ready.eq(1),
            self.rx.ready.eq(1),
        ]

        def send(value, next_state, *, checked=True):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.data.eq(value)]
            with m.If(self.tx.ready):
                if checked:
                    m.d.sync += crc.eq(crc16_next(crc, value))
                m.next = next_state

        def answer(value):
            m.d.sync += status.eq(value)
            m.next = "TX_SYNC"

        def record_write(value):
            m.d.sync += [last_write_valid.eq(1), last_write_seq.eq(hdr.seq),
                         last_write_status.eq(value)]

        def receive(next_state, *, done):
            """Take a frame byte into the CRC; ``done`` moves on to ``next_state``."""
            with m.If(got):
                m.d.sync += [crc.eq(crc16_next(crc, byte)), count.eq(count + 1),
                             timer.eq(self.frame_timeout)]
                with m.If(done):
                    m.d.sync += count.eq(0)
                    m.next = next_state
            with m.Elif(timer == 0):
                m.d.comb += self.bad_frame.eq(1)
                m.next = "IDLE"
            with m.Else():
                m.d.sync += timer.eq(timer - 1)

        mem_range_ok = ((hdr.addr >= self.mem_base)
                        & (hdr.addr + length <= self.mem_base + self.mem_size))
        reg_range_ok = (hdr.addr >> self.reg_addr_width) == 0
        mem_length_ok = (length != 0) & (length <= self.max_payload)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(got & (byte == protocol.SYNC)):
                    m.d.sync += [crc.eq(protocol.CRC_INIT), count.eq(0),
                                 timer.eq(self.frame_timeout)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                with m.If(got):
                    m.d.sync += hdr.as_value().eq(Cat(hdr.as_value()[8:], byte))
                receive("HEADER_DONE", done=count == protocol.HEADER_BYTES - 1)

            with m.State("HEADER_DONE"):
                with m.If(is_write & (length != 0)):
                    m.next = "PAYLOAD"
                with m.Else():
                    m.next = "CRC"

            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.sync += reg_word.eq(Cat(reg_word[8:], byte))
                    m.d.comb += buf_wr.en.eq(count < self.max_payload)
                receive("CRC", done=last_byte)

            with m.State("CRC"):
                receive("CHECK", done=count == protocol.CRC_BYTES - 1)

            with m.State("CHECK"):
                m.d.sync += resp_len.eq(0)
                with m.If(crc != 0):
                    m.d.comb += self.bad_frame.eq(1)
                    answer(Status.BAD_CRC)
                with m.Elif(is_write & last_write_valid & (hdr.seq == last_write_seq)):
                    answer(last_write_status)
                with m.Else():
                    with m.If(~is_write):
                        m.d.sync += last_write_valid.eq(0)
                    with m.Switch(command):
                        with m.Case(Command.PING):
                            m.d.sync += resp_len.eq(len(info))
                            answer(Status.OK)
                        with m.Case(Command.REG_READ, Command.REG_WRITE):
                            m.d.sync += [timer.eq(self.bus_timeout), aw_done.eq(0),
                                         w_done.eq(0)]
                            with m.If(length != protocol.REG_BYTES):
                                answer(Status.BAD_COMMAND)
                            with m.Elif(~reg_range_ok):
                                answer(Status.BUS_ERROR)
                            with m.Elif(command == Command.REG_READ):
                                m.next = "REG_AR"
                            with m.Else():
                                m.next = "REG_AW"
                        with m.Case(Command.MEM_READ, Command.MEM_WRITE):
                            with m.If(~mem_length_ok):
                                answer(Status.BAD_COMMAND)
                            with m.Elif(~mem_range_ok):
                                answer(Status.BUS_ERROR)
                            with m.Elif(command == Command.MEM_READ):
                                m.d.sync += resp_len.eq(length)
                                answer(Status.OK)
                            with m.Else():
                                m.next = "MW_FETCH"
                        with m.Default():
                            answer(Status.BAD_COMMAND)

            def bus_wait(next_state_ok):
                with m.If(timer == 0):
                    if next_state_ok == "REG_W_RESP":
                        record_write(Status.TIMEOUT)
                    answer(Status.TIMEOUT)
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)

            with m.State("REG_AR"):
                m.d.comb += axil.arvalid.eq(1)
                with m.If(axil.arready):
                    m.next = "REG_R"
                bus_wait("REG_R")

            with m.State("REG_R"):
                with m.If(axil.rvalid):
                    m.d.sync += [reg_out.eq(axil.rdata), resp_len.eq(protocol.REG_BYTES)]
                    answer(Mux(axil.rresp == AxiResp.OKAY, Status.OK, Status.BUS_ERROR))
                with m.Else():
                    bus_wait("REG_R")

            with m.State("REG_AW"):
                m.d.comb += [axil.awvalid.eq(~aw_done), axil.wvalid.eq(~w_done)]
                aw_now = aw_done | axil.awready
                w_now = w_done | axil.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "REG_B"
                bus_wait("REG_W_RESP")

            with m.State("REG_B"):
                with m.If(axil.bvalid):
                    write_status = Mux(axil.bresp == AxiResp.OKAY, Status.OK, Status.BUS_ERROR)
                    record_write(write_status)
                    answer(write_status)
                with m.Else():
                    bus_wait("REG_W_RESP")

            # MEM_WRITE: the buffer read port follows ``count`` one cycle late.
            with m.State("MW_FETCH"):
                m.next = "MW_REQ"

            with m.State("MW_REQ"):
                m.d.comb += [mem.req.valid.eq(1), mem.req.payload.write.eq(1)]
                with m.If(mem.req.ready):
                    m.next = "MW_RESP"

            with m.State("MW_RESP"):
                with m.If(mem.resp.valid):
                    m.d.sync += count.eq(count + 1)
                    with m.If(last_byte):
                        record_write(Status.OK)
                        answer(Status.OK)
                    with m.Else():
                        m.next = "MW_FETCH"

            with m.State("TX_SYNC"):
                with m.If(status != Status.OK):
                    m.d.sync += resp_len.eq(0)
                m.d.sync += [crc.eq(protocol.CRC_INIT), count.eq(0)]
                send(protocol.SYNC, "TX_STATUS", checked=False)

            with m.State("TX_STATUS"):
                send(status, "TX_SEQ")

            with m.State("TX_SEQ"):
                with m.If(resp_len == 0):
                    send(hdr.seq, "TX_CRC_HI")
                with m.Elif(command == Command.MEM_READ):
                    send(hdr.seq, "MR_REQ")
                with m.Else():
                    send(hdr.seq, "TX_PAYLOAD")

            with m.State("MR_REQ"):
                m.d.comb += mem.req.valid.eq(1)
                with m.If(mem.req.ready):
                    m.next = "MR_RESP"

            with m.State("MR_RESP"):
                with m.If(mem.resp.valid):
                    m.d.sync += mem_byte.eq(mem.resp.payload.data.word_select(lane, 8))
                    m.next = "TX_PAYLOAD"

            with m.State("TX_PAYLOAD"):
                is_mem = command == Command.MEM_READ
                payload = Mux(is_mem, mem_byte,
                              Mux(command == Command.PING, info_byte, reg_out[:8]))
                send(payload, "TX_PAYLOAD")
                with m.If(self.tx.ready):
                    m.d.sync += [count.eq(count + 1), reg_out.eq(reg_out >> 8)]
                    with m.If(count == resp_len - 1):
                        m.next = "TX_CRC_HI"
                    with m.Elif(is_mem):
                        m.next = "MR_REQ"

            with m.State("TX_CRC_HI"):
                send(crc[8:], "TX_CRC_LO", checked=False)

            with m.State("TX_CRC_LO"):
                send(crc[:8], "IDLE", checked=False)
        return m
