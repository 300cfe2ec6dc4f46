"""The UART bridge: framed requests (boards/protocol.py) to register and memory accesses."""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.axi import AXI4LiteSignature, AxiResp
from hw.axi_sram import HostPortSignature
from hw.ram import registered_read

from . import protocol
from .protocol import Command, Status
from .uart import ByteStream


__all__ = ["Bridge", "crc16_next"]

HEADER_LAYOUT = data.StructLayout({"command": 8, "seq": 8, "addr": 32, "length": 16})
LENGTH_BITS = HEADER_LAYOUT["length"].width


def crc16_next(crc, byte):
    """CRC-16/CCITT-FALSE of ``crc`` followed by ``byte``, as a combinational expression."""
    for i in reversed(range(8)):
        feedback = crc[15] ^ byte[i]
        crc = Cat(Const(0, 1), crc[:15]) ^ Mux(feedback, protocol.CRC_POLY, 0)
    return crc


def _index_bits(count):
    """Low bits of a byte index enough to tell ``count`` positions apart."""
    return max(1, (count - 1).bit_length())


def _header_bytes(field):
    """The header byte indexes that carry ``field`` (little-endian)."""
    start = HEADER_LAYOUT[field].offset // 8
    return range(start, start + HEADER_LAYOUT[field].width // 8)


class Bridge(wiring.Component):
    """Parses request frames from ``rx``, executes them and answers on ``tx``.

    Ports
      rx        In(stream{data: 8}): bytes from the UART receiver, always accepted; bytes
                that arrive while a request executes or is answered are dropped (the host
                waits for each answer).
      tx        Out(stream{data: 8}): bytes to the UART transmitter.
      m_axil    Out(AXI4LiteSignature(reg_addr_width, 32)): REG_READ / REG_WRITE. A
                REG_READ's R beat is held (``rready`` low) until its answer has been sent;
                otherwise ``rready`` and ``bready`` are high, so the late answer of a
                timed-out access is drained.
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

    Few flip-flops (each costs a logic cell on a small FPGA): of the 32-bit request address
    only the :attr:`addr_width` low bits (enough for the register space and the RAM's last
    byte) are kept, plus one flag for any higher bit set; a REG_READ answer is sent from the
    held R beat and a PING answer from constants, a byte at a time; one CRC step serves
    both directions; the answer is sent by a sequencer of its own.

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
        #: Request address bits kept: a higher one set is outside the registers and the RAM.
        self.addr_width = max(reg_addr_width, (mem_base + mem_size - 1).bit_length())
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
        lane_bits = (self.word_bytes - 1).bit_length()
        info = self.info.encode()

        # The buffer is written while a frame is received and read while it is carried out,
        # never both: its reads during writes (at the same index) are undefined and unused
        # (``no_rw_check``, and an asynchronous port with a reset-less register, which yosys
        # folds into the block RAM without adding registers for a defined collision).
        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[],
                                        attrs={"no_rw_check": 1})
        buf_wr = buf.write_port()
        buf_rd = buf.read_port(domain="comb")
        buf_data = registered_read(m, buf_rd, 1, name="buf_data")

        # Fields of the request. Commands outside the bits of Command are stored as 0, which
        # is none of them. Data registers need no reset: the frame loads them first.
        command = Signal(range(max(Command) + 1), reset_less=True)
        seq = Signal(8, reset_less=True)
        addr = Signal(self.addr_width, reset_less=True)
        addr_far = Signal()                 # a request address bit above addr_width is set
        length = Signal(LENGTH_BITS, reset_less=True)
        reg_wdata = Signal(protocol.REG_BYTES * 8, reset_less=True)

        count = Signal(LENGTH_BITS)         # byte index inside the current frame section
        crc = Signal(16, reset_less=True)
        # Cycles since the last frame byte, or since the register access started.
        idle = Signal(range(max(self.frame_timeout, self.bus_timeout) + 1))
        status = Signal(range(max(Status) + 1))
        mem_byte = Signal(8, reset_less=True)
        aw_done = Signal()
        w_done = Signal()
        last_write_valid = Signal()
        last_write_seq = Signal(8, reset_less=True)
        last_write_status = Signal.like(status, reset_less=True)

        count_next = count + 1
        is_write = (command == Command.REG_WRITE) | (command == Command.MEM_WRITE)
        is_mem_read = command == Command.MEM_READ
        last_byte = count_next == length
        has_payload = (status == Status.OK) & (
            (command == Command.PING) | (command == Command.REG_READ) | is_mem_read)
        # The PING and REG_READ payloads end at a constant index: low bits of count suffice.
        small_bits = max(len(info), protocol.REG_BYTES).bit_length()
        payload_done = Mux(is_mem_read, last_byte,
                           count_next[:small_bits] == Mux(command == Command.PING, len(info),
                                                          protocol.REG_BYTES))
        # PING answers with constants, REG_READ with the R beat held on the bus, both picked
        # by the byte index rather than shifted out of a register.
        payload_byte = Signal(8)
        with m.Switch(command):
            with m.Case(Command.PING):
                with m.Switch(count[:small_bits]):
                    for index, value in enumerate(info):
                        with m.Case(index):
                            m.d.comb += payload_byte.eq(value)
            with m.Case(Command.REG_READ):
                m.d.comb += payload_byte.eq(
                    axil.rdata.word_select(count[:_index_bits(protocol.REG_BYTES)], 8))
            with m.Default():
                m.d.comb += payload_byte.eq(mem_byte)

        # One adder gives the RAM offset of byte ``count`` and, while the request is checked,
        # the end of its range. A MEM length is checked against max_payload, so only the
        # bits of max_payload take part.
        checking = Signal()
        mem_length = length[:self.max_payload.bit_length()]
        offset = Signal(max(self.addr_width, len(mem_length)) + 1)
        m.d.comb += offset.eq(addr - self.mem_base
                              + Mux(checking, mem_length, count[:len(mem_length)]))
        mem_length_ok = (length != 0) & (length <= self.max_payload)
        mem_range_ok = ~addr_far & (addr >= self.mem_base) & (offset <= self.mem_size)
        reg_range_ok = ~addr_far & (addr[self.reg_addr_width:] == 0)
        lane = offset[:lane_bits]
        hold_r = Signal()       # a REG_READ's R beat is held until its answer is sent
        answering = Signal()
        answered = Signal()
        m.d.comb += [
            mem.req.payload.addr.eq(offset[lane_bits:]),
            mem.req.payload.data.eq(Cat([buf_data] * self.word_bytes)),
            mem.req.payload.strb.eq(Const(1, self.word_bytes) << lane),
            buf_rd.addr.eq(count),
            buf_wr.addr.eq(count),
            buf_wr.data.eq(byte),
            axil.awaddr.eq(addr),
            axil.araddr.eq(addr),
            axil.wdata.eq(reg_wdata),
            axil.wstrb.eq((1 << protocol.REG_BYTES) - 1),
            # Late answers of a withdrawn (timed-out) access are drained rather than left
            # to stall the slave (a late R once the answer is sent).
            axil.bready.eq(1),
            axil.rready.eq(~hold_r),
            mem.resp.ready.eq(1),
            self.rx.ready.eq(1),
        ]

        # The wide registers change in one place each, under one-bit controls that the
        # states set: their logic then does not grow with the number of states.
        in_rx = Signal()
        crc_init = Signal()
        crc_step = Signal()         # one CRC step: the byte received or the byte sent
        count_clear = Signal()
        count_inc = Signal()
        idle_clear = Signal()
        with m.If(crc_init):
            m.d.sync += crc.eq(protocol.CRC_INIT)
        with m.Elif(crc_step):
            m.d.sync += crc.eq(crc16_next(crc, Mux(in_rx, byte, self.tx.payload.data)))
        with m.If(count_clear):
            m.d.sync += count.eq(0)
        with m.Elif(count_inc):
            m.d.sync += count.eq(count_next)
        # Free-running between clears: each state that tests it clears it on entry.
        with m.If(idle_clear):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)

        def send(value, next_state, *, checked=True):
            m.d.comb += [self.tx.valid.eq(1), self.tx.payload.data.eq(value)]
            if checked:
                m.d.comb += crc_step.eq(self.tx.ready)
            with m.If(self.tx.ready):
                m.next = next_state

        def answer(value):
            m.d.sync += status.eq(value)
            m.next = "ANSWER"

        def receive(next_state, *, done):
            """Take a frame byte into the CRC; ``done`` moves on to ``next_state``."""
            m.d.comb += [in_rx.eq(1), crc_step.eq(got)]
            with m.If(got):
                m.d.comb += [count_inc.eq(1), idle_clear.eq(1)]
                with m.If(done):
                    m.d.comb += count_clear.eq(1)
                    m.next = next_state
            with m.Elif(idle == self.frame_timeout):
                m.d.comb += self.bad_frame.eq(1)
                m.next = "IDLE"

        def take_header_byte():
            """Store header byte ``count`` into its field."""
            with m.Switch(count[:_index_bits(protocol.HEADER_BYTES)]):
                (index,) = _header_bytes("command")
                with m.Case(index):
                    known = byte[len(command):] == 0
                    m.d.sync += command.eq(Mux(known, byte[:len(command)], 0))
                (index,) = _header_bytes("seq")
                with m.Case(index):
                    m.d.sync += seq.eq(byte)
                for k, index in enumerate(_header_bytes("addr")):
                    with m.Case(index):
                        kept = max(0, min(8, self.addr_width - 8 * k))
                        if kept:
                            m.d.sync += addr[8 * k:][:kept].eq(byte[:kept])
                        if kept < 8:
                            with m.If(byte[kept:] != 0):
                                m.d.sync += addr_far.eq(1)
                for k, index in enumerate(_header_bytes("length")):
                    with m.Case(index):
                        m.d.sync += length[8 * k:][:8].eq(byte)

        def bus_wait():
            with m.If(idle == self.bus_timeout):
                answer(Status.TIMEOUT)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(got & (byte == protocol.SYNC)):
                    m.d.sync += addr_far.eq(0)
                    m.d.comb += [crc_init.eq(1), count_clear.eq(1), idle_clear.eq(1)]
                    m.next = "HEADER"

            with m.State("HEADER"):
                with m.If(got):
                    take_header_byte()
                receive("HEADER_DONE", done=count[:_index_bits(protocol.HEADER_BYTES)]
                        == protocol.HEADER_BYTES - 1)

            with m.State("HEADER_DONE"):
                with m.If(is_write & (length != 0)):
                    m.next = "PAYLOAD"
                with m.Else():
                    m.next = "CRC"

            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.sync += reg_wdata.eq(Cat(reg_wdata[8:], byte))
                    m.d.comb += buf_wr.en.eq(count < self.max_payload)
                receive("CRC", done=last_byte)

            with m.State("CRC"):
                receive("CHECK", done=count[:_index_bits(protocol.CRC_BYTES)]
                        == protocol.CRC_BYTES - 1)

            with m.State("CHECK"):
                m.d.comb += checking.eq(1)
                m.d.comb += idle_clear.eq(1)
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                with m.If(crc != 0):
                    m.d.comb += self.bad_frame.eq(1)
                    answer(Status.BAD_CRC)
                with m.Elif(is_write & last_write_valid & (seq == last_write_seq)):
                    answer(last_write_status)
                with m.Else():
                    with m.If(~is_write):
                        m.d.sync += last_write_valid.eq(0)
                    with m.Switch(command):
                        with m.Case(Command.PING):
                            answer(Status.OK)
                        with m.Case(Command.REG_READ, Command.REG_WRITE):
                            m.d.sync += status.eq(Status.OK)
                            with m.If(length != protocol.REG_BYTES):
                                answer(Status.BAD_COMMAND)
                            with m.Elif(~reg_range_ok):
                                answer(Status.BUS_ERROR)
                            with m.Elif(command == Command.REG_READ):
                                m.next = "REG_AR"
                            with m.Else():
                                m.next = "REG_AW"
                        with m.Case(Command.MEM_READ, Command.MEM_WRITE):
                            m.d.sync += status.eq(Status.OK)
                            with m.If(~mem_length_ok):
                                answer(Status.BAD_COMMAND)
                            with m.Elif(~mem_range_ok):
                                answer(Status.BUS_ERROR)
                            with m.Elif(is_mem_read):
                                m.next = "ANSWER"
                            with m.Else():
                                m.next = "MW_FETCH"
                        with m.Default():
                            answer(Status.BAD_COMMAND)

            # A register access leaves ``status`` OK unless the bus answers an error or
            # nothing in time.
            with m.State("REG_AR"):
                m.d.comb += axil.arvalid.eq(1)
                with m.If(axil.arready):
                    m.next = "REG_R"
                bus_wait()

            with m.State("REG_R"):
                m.d.comb += hold_r.eq(1)
                with m.If(axil.rvalid):
                    with m.If(axil.rresp != AxiResp.OKAY):
                        m.d.sync += status.eq(Status.BUS_ERROR)
                    m.next = "ANSWER"
                with m.Else():
                    bus_wait()

            with m.State("REG_AW"):
                m.d.comb += [axil.awvalid.eq(~aw_done), axil.wvalid.eq(~w_done)]
                aw_now = aw_done | axil.awready
                w_now = w_done | axil.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "REG_B"
                bus_wait()

            with m.State("REG_B"):
                with m.If(axil.bvalid):
                    with m.If(axil.bresp != AxiResp.OKAY):
                        m.d.sync += status.eq(Status.BUS_ERROR)
                    m.next = "ANSWER"
                with m.Else():
                    bus_wait()

            # MEM_WRITE: the buffer read port follows ``count`` one cycle late.
            with m.State("MW_FETCH"):
                m.next = "MW_REQ"

            with m.State("MW_REQ"):
                m.d.comb += [mem.req.valid.eq(1), mem.req.payload.write.eq(1)]
                with m.If(mem.req.ready):
                    m.next = "MW_RESP"

            with m.State("MW_RESP"):
                with m.If(mem.resp.valid):
                    m.d.comb += count_inc.eq(1)
                    with m.If(last_byte):
                        m.next = "ANSWER"
                    with m.Else():
                        m.next = "MW_FETCH"

            with m.State("ANSWER"):
                m.d.comb += [answering.eq(1), hold_r.eq(1)]
                with m.If(answered):
                    m.next = "IDLE"

        # The answer, a sequencer of its own (small state decodes). A write's outcome is
        # kept for a retry of it (not a BAD_CRC one: its seq may be garbled).
        with m.FSM():
            with m.State("TX_IDLE"):
                with m.If(answering):
                    with m.If(is_write & (status != Status.BAD_CRC)):
                        m.d.sync += [last_write_valid.eq(1), last_write_seq.eq(seq),
                                     last_write_status.eq(status)]
                    m.d.comb += [crc_init.eq(1), count_clear.eq(1)]
                    m.next = "TX_SYNC"

            with m.State("TX_SYNC"):
                send(protocol.SYNC, "TX_STATUS", checked=False)

            with m.State("TX_STATUS"):
                send(status, "TX_SEQ")

            with m.State("TX_SEQ"):
                with m.If(~has_payload):
                    send(seq, "TX_CRC_HI")
                with m.Elif(is_mem_read):
                    send(seq, "MR_REQ")
                with m.Else():
                    send(seq, "TX_PAYLOAD")

            with m.State("MR_REQ"):
                m.d.comb += mem.req.valid.eq(1)
                with m.If(mem.req.ready):
                    m.next = "MR_RESP"

            with m.State("MR_RESP"):
                with m.If(mem.resp.valid):
                    m.d.sync += mem_byte.eq(mem.resp.payload.data.word_select(lane, 8))
                    m.next = "TX_PAYLOAD"

            with m.State("TX_PAYLOAD"):
                send(payload_byte, "TX_PAYLOAD")
                with m.If(self.tx.ready):
                    m.d.comb += count_inc.eq(1)
                    with m.If(payload_done):
                        m.next = "TX_CRC_HI"
                    with m.Elif(is_mem_read):
                        m.next = "MR_REQ"

            # The CRC's high byte through the CRC leaves its low byte in its place.
            with m.State("TX_CRC_HI"):
                send(crc[8:], "TX_CRC_LO")

            with m.State("TX_CRC_LO"):
                m.d.comb += answered.eq(self.tx.ready)
                send(crc[8:], "TX_IDLE")
        return m
